// TanStack Query hooks over the API. Live data (status, metrics, alerts)
// arrives over SSE (see live.tsx); these hooks poll only while SSE is down.
import {
  useInfiniteQuery,
  useMutation,
  useQuery,
  useQueryClient,
} from '@tanstack/react-query';
import { api, type ControlAction, type LogQuery } from './endpoints';
import { keys } from './keys';
import { useLiveState } from './liveContext';
import type { HistoryWindow, LimitsUpdate, StreamingConfig } from './types';

/** Fallback polling periods (the seed's): used only while SSE is down. */
export const POLL = { status: 5_000, health: 10_000, metrics: 30_000 } as const;
/** Health arrives as the SSE `health` event when the verdict changes; this slow
 * refetch only refreshes the moving details (the heartbeat's age). */
const HEALTH_WHEN_LIVE = 60_000;

function usePolling(periodMs: number): number | false {
  return useLiveState() === 'live' ? false : periodMs;
}

export function useStatus() {
  const interval = usePolling(POLL.status);
  return useQuery({
    queryKey: keys.status,
    queryFn: ({ signal }) => api.status(signal),
    refetchInterval: interval,
  });
}

export function useHealth() {
  const live = useLiveState() === 'live';
  return useQuery({
    queryKey: keys.health,
    queryFn: ({ signal }) => api.health(signal),
    refetchInterval: live ? HEALTH_WHEN_LIVE : POLL.health,
  });
}

export function useMetrics() {
  const interval = usePolling(POLL.metrics);
  return useQuery({
    queryKey: keys.metrics,
    queryFn: ({ signal }) => api.metrics(signal),
    refetchInterval: interval,
  });
}

export function useAlerts() {
  const interval = usePolling(POLL.metrics);
  return useQuery({
    queryKey: keys.alerts,
    queryFn: ({ signal }) => api.alerts(signal),
    refetchInterval: interval,
  });
}

export function useConfig(enabled = true) {
  return useQuery({
    queryKey: keys.config,
    queryFn: ({ signal }) => api.config(signal),
    enabled,
  });
}

export function useLimits() {
  return useQuery({ queryKey: keys.limits, queryFn: ({ signal }) => api.limits(signal) });
}

export function useHistory(window: HistoryWindow) {
  return useQuery({
    queryKey: keys.history(window),
    queryFn: ({ signal }) => api.history(window, signal),
    refetchInterval: (q) => Math.max(30, q.state.data?.step_seconds ?? 60) * 1000,
  });
}

/** Disk usage and its 24 h trend: measured every 30 s, sampled every monitor_interval. */
export function useDisk() {
  return useQuery({
    queryKey: keys.disk,
    queryFn: ({ signal }) => api.disk(signal),
    refetchInterval: 60_000,
  });
}

export const GROUPS_PAGE = 50;

export function useGroups(state: string | null) {
  const interval = usePolling(POLL.metrics);
  return useInfiniteQuery({
    queryKey: keys.groups(state),
    queryFn: ({ pageParam, signal }) => api.groups(state, pageParam, GROUPS_PAGE, signal),
    initialPageParam: null as string | null,
    getNextPageParam: (last) => last.next_before ?? undefined,
    refetchInterval: interval,
  });
}

export function useGroup(id: string | null) {
  return useQuery({
    queryKey: keys.group(id ?? ''),
    queryFn: ({ signal }) => api.group(id!, signal),
    enabled: !!id,
  });
}

/** The end of a group's Slurm job log; only for a group that ran as a job. */
export function useGroupLog(id: string, enabled: boolean) {
  return useQuery({
    queryKey: keys.groupLog(id),
    queryFn: ({ signal }) => api.groupLog(id, signal),
    enabled,
    retry: false,
  });
}

export function useLogs(q: LogQuery, enabled = true) {
  return useQuery({
    queryKey: keys.logs(q),
    queryFn: ({ signal }) => api.logs(q, signal),
    enabled,
  });
}

function useInvalidate() {
  const qc = useQueryClient();
  return (...ks: ReadonlyArray<readonly unknown[]>) =>
    Promise.all(ks.map((k) => qc.invalidateQueries({ queryKey: k })));
}

export function useControl() {
  const invalidate = useInvalidate();
  return useMutation({
    mutationFn: (action: ControlAction) => api.control(action),
    onSettled: () => invalidate(keys.status, keys.health, keys.metrics),
  });
}

export function useSaveConfig() {
  const invalidate = useInvalidate();
  return useMutation({
    mutationFn: (v: { config: Partial<StreamingConfig>; etag: string | null }) =>
      api.saveConfig(v.config, v.etag),
    onSuccess: () => invalidate(keys.config, keys.status, keys.health),
  });
}

export function useRetryGroup() {
  const invalidate = useInvalidate();
  return useMutation({
    mutationFn: (id: string) => api.retryGroup(id),
    onSettled: (_d, _e, id) => invalidate(keys.groupsAll, keys.group(id), keys.metrics),
  });
}

export function useSaveLimits() {
  const invalidate = useInvalidate();
  return useMutation({
    mutationFn: (l: LimitsUpdate) => api.saveLimits(l),
    onSuccess: () => invalidate(keys.limits, keys.status),
  });
}
