import { QueryClient } from '@tanstack/react-query';
import { describe, expect, it } from 'vitest';
import { metrics, status } from '../test/fixtures';
import { applyEvent, mergeAlert } from './events';
import { keys } from './keys';
import type { Alert, AlertsResponse, Health, Metrics, ServiceStatus } from './types';

const alert = (over: Partial<Alert> = {}): Alert => ({
  id: 'a1',
  rule: 'service_down',
  severity: 'critical',
  message: 'down',
  raised_at: '2026-11-25T10:00:00Z',
  cleared_at: null,
  ...over,
});

describe('SSE events → query cache', () => {
  it('writes status and metrics events into the cache', () => {
    const qc = new QueryClient();
    applyEvent(qc, { event: 'status', data: JSON.stringify(status({ running: false, active_state: 'inactive' })) });
    expect(qc.getQueryData<ServiceStatus>(keys.status)?.active_state).toBe('inactive');
    applyEvent(qc, { event: 'metrics', data: JSON.stringify(metrics({ processing_rate_per_hour: 42 })) });
    expect(qc.getQueryData<Metrics>(keys.metrics)?.processing_rate_per_hour).toBe(42);
  });

  it('shows the health verdict the API pushed, even while the service runs', () => {
    const qc = new QueryClient();
    applyEvent(qc, { event: 'status', data: JSON.stringify(status({ running: true })) });
    const verdict: Health = {
      healthy: false,
      running: true,
      uptime_seconds: 100,
      cpu_percent: 0,
      memory_mb: 10,
      error: 'heartbeat: stale: 25 s ago (PID 7)',
      checks: [
        { name: 'service_running', ok: true, detail: 'active (running)' },
        { name: 'heartbeat', ok: false, detail: 'stale: 25 s ago (PID 7)' },
      ],
    };
    applyEvent(qc, { event: 'health', data: JSON.stringify(verdict) });
    expect(qc.getQueryData<Health>(keys.health)).toEqual(verdict);
  });

  it('ignores malformed data', () => {
    const qc = new QueryClient();
    applyEvent(qc, { event: 'status', data: '{not json' });
    expect(qc.getQueryData(keys.status)).toBeUndefined();
  });

  it('merges raised and cleared alerts', () => {
    const qc = new QueryClient();
    applyEvent(qc, { event: 'alert', data: JSON.stringify(alert()) });
    expect(qc.getQueryData<AlertsResponse>(keys.alerts)?.active.map((a) => a.id)).toEqual(['a1']);
    applyEvent(qc, { event: 'alert', data: JSON.stringify(alert({ cleared_at: '2026-11-25T10:05:00Z' })) });
    const a = qc.getQueryData<AlertsResponse>(keys.alerts)!;
    expect(a.active).toEqual([]);
    expect(a.recent[0].cleared_at).toBe('2026-11-25T10:05:00Z');
    expect(a.recent).toHaveLength(1);
  });

  it('mergeAlert replaces an alert with the same id', () => {
    const r = mergeAlert({ active: [alert()], recent: [alert()] }, alert({ message: 'still down' }));
    expect(r.active).toHaveLength(1);
    expect(r.active[0].message).toBe('still down');
  });
});
