// Typed models mirroring docs/api.md (contimg-api). Fields are only ever added
// server-side, so everything beyond the seed's original fields is optional here
// and the UI degrades gracefully when a field is absent.

export type LogLevel = 'DEBUG' | 'INFO' | 'WARNING' | 'ERROR' | 'CRITICAL';
/** Levels of log lines (docs/api.md), most severe first. */
export const LOG_LEVELS: LogLevel[] = ['ERROR', 'WARNING', 'INFO', 'DEBUG'];
/** Levels the worker's `log_level` setting accepts. */
export const CONFIG_LOG_LEVELS: LogLevel[] = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'];

export type ConverterConfig =
  | { kind: 'builtin' }
  | { kind: 'manifest' }
  | { kind: 'command'; argv: string[]; env?: Record<string, string> };

export interface StreamingConfig {
  input_dir: string;
  output_dir: string;
  queue_db: string;
  registry_db: string;
  scratch_dir: string;
  expected_subbands: number;
  chunk_duration: number;
  log_level: LogLevel;
  use_subprocess: boolean;
  monitoring: boolean;
  monitor_interval: number;
  poll_interval: number;
  worker_poll_interval: number;
  max_workers: number;
  stage_to_tmpfs: boolean;
  tmpfs_path: string;
  group_tolerance_s?: number;
  incomplete_timeout_s?: number;
  max_retries?: number;
  retry_backoff_s?: number;
  retry_backoff_max_s?: number;
  convert_timeout_s?: number;
  drain_timeout_s?: number;
  validate_uvh5?: boolean;
  /** Hours after completion before a completed group's inputs are removed or archived. */
  retain_input_hours?: number;
  /** Where retention moves inputs; null = delete them. */
  archive_dir?: string | null;
  retain_failed_days?: number;
  /** null = outputs are never removed. */
  retain_output_days?: number | null;
  retention_interval_s?: number;
  /** Below this much free space (decimal GB) in a directory it writes, the worker claims nothing. */
  min_free_gb?: number;
  free_space_factor?: number;
  converter?: ConverterConfig;
}

/** systemd ActiveState values (plus whatever other backends report). */
export type ActiveState =
  | 'active'
  | 'reloading'
  | 'inactive'
  | 'failed'
  | 'activating'
  | 'deactivating'
  | (string & {});

export interface ServiceStatus {
  running: boolean;
  pid: number | null;
  started_at: string | null;
  uptime_seconds: number | null;
  cpu_percent: number | null;
  memory_mb: number | null;
  last_heartbeat: string | null;
  /** Why the running worker claims no conversion (disk back-pressure); null while it claims. */
  claim_paused?: string | null;
  claim_paused_since?: string | null;
  /** Where conversions run: "local" or "slurm" (from the config). */
  executor?: string | null;
  /** "local", "Slurm, partition debug", "Slurm, the cluster's default partition". */
  executor_description?: string | null;
  /** Slurm jobs in flight; queued includes jobs being submitted. */
  jobs_in_flight?: { queued: number; running: number } | null;
  /** With executor = "slurm" and a running worker: whether slurmctld answers; else null. */
  scheduler_reachable?: boolean | null;
  scheduler_unreachable_since?: string | null;
  config: StreamingConfig | null;
  error: string | null;
  backend?: string;
  /** The backend in words: "systemd system unit contimg-stream.service", "direct process (PID file)", "Docker container NAME". */
  backend_description?: string;
  /** The state dir the API works on (canonical), and the rule that chose it:
   * "state_dir in /etc/contimg/api.toml", "ExecStart= --state-dir of contimg-stream@lab.service on the system manager". */
  state_dir?: string | null;
  state_dir_rule?: string | null;
  unit?: string;
  active_state?: ActiveState;
  sub_state?: string;
  restart_count?: number | null;
  status_text?: string | null;
  memory_limit_mb?: number | null;
  tasks?: number | null;
}

export interface HealthCheck {
  name: string;
  ok: boolean;
  detail?: string | null;
}

export interface Health {
  healthy: boolean;
  running: boolean;
  uptime_seconds: number | null;
  cpu_percent: number | null;
  memory_mb: number | null;
  error: string | null;
  checks?: HealthCheck[];
}

export type GroupState = 'collecting' | 'pending' | 'in_progress' | 'completed' | 'failed';
export const GROUP_STATES: GroupState[] = ['collecting', 'pending', 'in_progress', 'completed', 'failed'];

export type QueueStats = Partial<Record<GroupState, number>> & Record<string, number>;

export interface Metrics {
  service_running: boolean;
  uptime_seconds: number | null;
  cpu_percent: number | null;
  memory_mb: number | null;
  queue_stats: QueueStats;
  processing_rate_per_hour: number;
  queue_error?: string | null;
  rejected_files?: number | null;
  /** input_dir entries refused for their name, place or type */
  unrecognised_files?: number | null;
  /** subbands that arrived after their group was closed (never attached) */
  late_files?: number | null;
  oldest_pending_age_seconds?: number | null;
  last_completed_at?: string | null;
}

export interface ControlResponse {
  success: boolean;
  message: string;
  pid?: number | null;
  changed?: string[];
  restarted?: boolean;
  logs?: string[] | LogEntry[];
}

export interface LogEntry {
  timestamp: string;
  level: LogLevel | string;
  message: string;
  group_id?: string | null;
  pid?: number | null;
}

export interface LogsResponse {
  lines: LogEntry[];
}

export type HistoryWindow = '1h' | '24h' | '7d';

/** One configured directory and its filesystem (GET disk). */
export interface DirUsage {
  /** The config field: input_dir, output_dir, scratch_dir, state_dir, tmpfs_path, archive_dir. */
  dir: string;
  path: string;
  /** major:minor of the filesystem; dirs that share one have the same value. */
  filesystem: string | null;
  total_bytes: number | null;
  used_bytes: number | null;
  /** Free for an unprivileged writer (root's reserve not counted). */
  free_bytes: number | null;
  error: string | null;
}

export interface DiskTrend {
  dir: string;
  points: { t: string; free_bytes: number }[];
}

export interface DiskResponse {
  dirs: DirUsage[];
  window: HistoryWindow;
  step_seconds: number;
  trend: DiskTrend[];
}

export interface HistoryPoint {
  t: string;
  cpu_percent: number | null;
  memory_mb: number | null;
  queue_depth: number | null;
  pending?: number | null;
  in_progress?: number | null;
  failed?: number | null;
  processing_rate_per_hour: number | null;
  running?: boolean;
}

export interface HistoryResponse {
  window: HistoryWindow;
  step_seconds: number;
  points: HistoryPoint[];
}

export interface GroupSummary {
  group_id: string;
  state: GroupState | string;
  received_at: string | null;
  last_update: string | null;
  expected_subbands: number | null;
  subbands: number | null;
  retry_count: number | null;
  error: string | null;
  processing_stage: string | null;
  next_attempt_at?: string | null;
  started_at?: string | null;
  completed_at?: string | null;
  output_path?: string | null;
  /** The latest attempt's batch job (executor = "slurm"); null when it never ran as one. */
  job?: GroupJob | null;
}

/** An attempt's Slurm job as the worker last recorded it. */
export interface GroupJob {
  executor: string;
  job_id: string | null;
  /** PENDING, RUNNING, COMPLETED, FAILED, NODE_FAIL, CANCELLED, TIMEOUT, …; SUBMITTING before sbatch answered. */
  state: string | null;
  node: string | null;
  exit_code: number | null;
  log_path: string | null;
  submitted_at?: string | null;
}

/** `GET groups/{id}/log`: the end of an attempt's job log. */
export interface GroupLog {
  group_id: string;
  attempt: number;
  job_id: string | null;
  path: string;
  size_bytes: number;
  truncated: boolean;
  text: string;
}

export interface GroupsResponse {
  groups: GroupSummary[];
  next_before: string | null;
}

export interface GroupFile {
  subband_idx: number;
  path: string;
  size_bytes?: number | null;
  freq_min_hz?: number | null;
  freq_max_hz?: number | null;
}

export interface GroupTimings {
  load_time?: number | null;
  phase_time?: number | null;
  write_time?: number | null;
  total_time?: number | null;
  writer_type?: string | null;
}

/** Attempt records are not specified in detail; render whatever keys arrive. */
export type GroupAttempt = Record<string, unknown>;

export interface GroupDetail extends GroupSummary {
  files?: GroupFile[];
  timings?: GroupTimings | null;
  attempts?: GroupAttempt[];
  /** Paths of duplicate subband files that were ignored. */
  duplicates?: string[];
}

export interface Limits {
  memory_max_bytes: number | null;
  cpu_quota_percent: number | null;
}

export interface LimitsUpdate {
  memory_max_bytes?: number | null;
  cpu_quota_percent?: number | null;
  persistent?: boolean;
}

export type AlertRule =
  | 'service_down'
  | 'restart_loop'
  | 'failed_groups'
  | 'queue_stalled'
  | 'incomplete_groups'
  | 'low_disk'
  | 'queue_db_unwritable'
  | 'worker_hung'
  | 'supervisor_gave_up'
  | 'claim_paused'
  | 'scheduler_unreachable'
  | (string & {});

export interface Alert {
  id: string;
  rule: AlertRule;
  severity: 'critical' | 'warning' | (string & {});
  message: string;
  raised_at: string;
  cleared_at: string | null;
}

export interface AlertsResponse {
  active: Alert[];
  recent: Alert[];
}

export interface FieldError {
  field: string;
  message: string;
}

export interface ApiErrorBody {
  error: string;
  message: string;
  details?: unknown;
}
