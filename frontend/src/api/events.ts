// Writes the dashboard SSE events into the TanStack Query cache.
import type { QueryClient } from '@tanstack/react-query';
import type { SseMessage } from './sse';
import type { Alert, AlertsResponse, Health, Metrics, ServiceStatus } from './types';
import { keys } from './keys';

/** Merge an alert event into the cached alerts lists. */
export function mergeAlert(prev: AlertsResponse | undefined, a: Alert): AlertsResponse {
  const active = (prev?.active ?? []).filter((x) => x.id !== a.id);
  const recent = (prev?.recent ?? []).filter((x) => x.id !== a.id);
  if (a.cleared_at) return { active, recent: [a, ...recent].slice(0, 100) };
  return { active: [a, ...active], recent: [a, ...recent].slice(0, 100) };
}

export function applyEvent(qc: QueryClient, m: SseMessage) {
  let data: unknown;
  try {
    data = JSON.parse(m.data);
  } catch {
    return;
  }
  switch (m.event) {
    case 'status': {
      const prev = qc.getQueryData<ServiceStatus>(keys.status);
      qc.setQueryData(keys.status, data as ServiceStatus);
      const s = data as ServiceStatus;
      // Health follows the service state: refresh it when the state changes.
      if (!prev || prev.running !== s.running || prev.active_state !== s.active_state) {
        void qc.invalidateQueries({ queryKey: keys.health });
      }
      break;
    }
    case 'metrics': {
      const prev = qc.getQueryData<Metrics>(keys.metrics);
      qc.setQueryData(keys.metrics, data as Metrics);
      const next = data as Metrics;
      if (JSON.stringify(prev?.queue_stats) !== JSON.stringify(next.queue_stats)) {
        void qc.invalidateQueries({ queryKey: keys.groupsAll });
      }
      break;
    }
    case 'health':
      // The API's own verdict (the one `contimgctl health` computes too): shown
      // as sent, never recomputed here.
      qc.setQueryData(keys.health, data as Health);
      break;
    case 'alert':
      qc.setQueryData<AlertsResponse>(keys.alerts, (prev) => mergeAlert(prev, data as Alert));
      void qc.invalidateQueries({ queryKey: keys.health });
      break;
    default:
      break;
  }
}
