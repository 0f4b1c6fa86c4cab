import type { HistoryWindow } from './types';
import type { LogQuery } from './endpoints';

export const keys = {
  status: ['status'] as const,
  health: ['health'] as const,
  metrics: ['metrics'] as const,
  config: ['config'] as const,
  limits: ['limits'] as const,
  alerts: ['alerts'] as const,
  history: (w: HistoryWindow) => ['history', w] as const,
  disk: ['disk'] as const,
  groupsAll: ['groups'] as const,
  groups: (state: string | null) => ['groups', state ?? 'all'] as const,
  group: (id: string) => ['group', id] as const,
  groupLog: (id: string) => ['group', id, 'log'] as const,
  logs: (q: LogQuery) => ['logs', q] as const,
};
