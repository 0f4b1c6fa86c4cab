import type { Metrics, ServiceStatus, StreamingConfig } from '../api/types';

export const config: StreamingConfig = {
  input_dir: '/data/incoming',
  output_dir: '/data/ms',
  queue_db: 'state/ingest.sqlite3',
  registry_db: 'state/cal_registry.sqlite3',
  scratch_dir: '/scratch/dsa110-contimg',
  expected_subbands: 16,
  chunk_duration: 5.0,
  log_level: 'INFO',
  use_subprocess: true,
  monitoring: true,
  monitor_interval: 60,
  poll_interval: 5,
  worker_poll_interval: 5,
  max_workers: 4,
  stage_to_tmpfs: false,
  tmpfs_path: '/dev/shm',
  group_tolerance_s: 60,
  incomplete_timeout_s: 900,
  max_retries: 3,
  retry_backoff_s: 30,
  retry_backoff_max_s: 1800,
  convert_timeout_s: 3600,
  converter: { kind: 'builtin' },
};

/** `config` with the disk and retention settings at their defaults (archive and output retention unset). */
export const configWithRetention: StreamingConfig = {
  ...config,
  retain_input_hours: 48,
  archive_dir: null,
  retain_failed_days: 14,
  retain_output_days: null,
  retention_interval_s: 3600,
  min_free_gb: 20,
  free_space_factor: 2,
};

export function status(over: Partial<ServiceStatus> = {}): ServiceStatus {
  return {
    running: true,
    pid: 1234,
    started_at: new Date(Date.now() - 3600_000).toISOString(),
    uptime_seconds: 3600,
    cpu_percent: 12.5,
    memory_mb: 256,
    last_heartbeat: new Date().toISOString(),
    config,
    error: null,
    backend: 'systemd',
    backend_description: 'systemd system unit contimg-stream.service',
    unit: 'contimg-stream.service',
    active_state: 'active',
    sub_state: 'running',
    restart_count: 0,
    status_text: 'collecting 1, pending 0',
    memory_limit_mb: 8192,
    tasks: 7,
    ...over,
  };
}

export function metrics(over: Partial<Metrics> = {}): Metrics {
  return {
    service_running: true,
    uptime_seconds: 3600,
    cpu_percent: 12.5,
    memory_mb: 256,
    queue_stats: { collecting: 1, pending: 3, in_progress: 2, completed: 1204, failed: 2 },
    processing_rate_per_hour: 11.6,
    queue_error: null,
    rejected_files: 0,
    oldest_pending_age_seconds: 12,
    last_completed_at: new Date().toISOString(),
    ...over,
  };
}
