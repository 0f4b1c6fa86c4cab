// One function per contimg-api endpoint (docs/api.md).
import { get, getJson, post } from './client';
import type {
  AlertsResponse,
  ControlResponse,
  DiskResponse,
  GroupDetail,
  GroupLog,
  GroupsResponse,
  Health,
  HistoryResponse,
  HistoryWindow,
  Limits,
  LimitsUpdate,
  LogsResponse,
  Metrics,
  ServiceStatus,
  StreamingConfig,
} from './types';

export const API = '/api/streaming';

export type ControlAction = 'start' | 'stop' | 'restart';

export interface LogQuery {
  lines?: number;
  since?: string;
  grep?: string;
  group?: string;
  level?: string;
}

export function logsQueryString(q: LogQuery, follow = false): string {
  const p = new URLSearchParams();
  if (q.lines) p.set('lines', String(q.lines));
  if (q.since) p.set('since', q.since);
  if (q.grep) p.set('grep', q.grep);
  if (q.group) p.set('group', q.group);
  if (q.level) p.set('level', q.level);
  if (follow) p.set('follow', 'true');
  return p.toString();
}

export interface ConfigWithEtag {
  config: StreamingConfig;
  etag: string | null;
}

export const api = {
  status: (s?: AbortSignal) => get<ServiceStatus>(`${API}/status`, s),
  health: (s?: AbortSignal) => get<Health>(`${API}/health`, s),
  metrics: (s?: AbortSignal) => get<Metrics>(`${API}/metrics`, s),
  config: async (s?: AbortSignal): Promise<ConfigWithEtag> => {
    const r = await getJson<StreamingConfig>(`${API}/config`, s);
    return { config: r.data, etag: r.etag };
  },
  saveConfig: (cfg: Partial<StreamingConfig>, etag: string | null) =>
    post<ControlResponse>(`${API}/config`, cfg, { ifMatch: etag }),
  control: (action: ControlAction) => post<ControlResponse>(`${API}/${action}`, {}),
  logs: (q: LogQuery, s?: AbortSignal) => get<LogsResponse>(`${API}/logs?${logsQueryString(q)}`, s),
  disk: (s?: AbortSignal) => get<DiskResponse>(`${API}/disk?window=24h`, s),
  history: (w: HistoryWindow, s?: AbortSignal) =>
    get<HistoryResponse>(`${API}/history?window=${encodeURIComponent(w)}`, s),
  groups: (state: string | null, before: string | null, limit: number, s?: AbortSignal) => {
    const p = new URLSearchParams({ limit: String(limit) });
    if (state) p.set('state', state);
    if (before) p.set('before', before);
    return get<GroupsResponse>(`${API}/groups?${p}`, s);
  },
  group: (id: string, s?: AbortSignal) =>
    get<GroupDetail>(`${API}/groups/${encodeURIComponent(id)}`, s),
  /** The end of the latest job attempt's log (the path comes from the queue DB, never from here). */
  groupLog: (id: string, s?: AbortSignal) =>
    get<GroupLog>(`${API}/groups/${encodeURIComponent(id)}/log?max_bytes=65536`, s),
  retryGroup: (id: string) =>
    post<ControlResponse>(`${API}/groups/${encodeURIComponent(id)}/retry`, {}),
  limits: (s?: AbortSignal) => get<Limits>(`${API}/limits`, s),
  saveLimits: (l: LimitsUpdate) => post<ControlResponse>(`${API}/limits`, l),
  alerts: (s?: AbortSignal) => get<AlertsResponse>(`${API}/alerts`, s),
};
