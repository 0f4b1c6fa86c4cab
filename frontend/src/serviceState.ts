import type { ServiceStatus } from './api/types';

export type StateKey = 'active' | 'activating' | 'deactivating' | 'reloading' | 'inactive' | 'failed' | 'unknown';

export interface StateInfo {
  key: StateKey;
  /** Operator-facing word: Running, Stopped, … */
  label: string;
  /** systemd detail, e.g. "active (running)". */
  detail: string;
  color: 'success' | 'info' | 'warning' | 'error' | 'default';
  transitional: boolean;
}

const LABELS: Record<StateKey, [string, StateInfo['color']]> = {
  active: ['Running', 'success'],
  reloading: ['Reloading', 'info'],
  activating: ['Starting', 'info'],
  deactivating: ['Stopping', 'warning'],
  inactive: ['Stopped', 'default'],
  failed: ['Failed', 'error'],
  unknown: ['Unknown', 'default'],
};

export function serviceState(s: ServiceStatus | undefined): StateInfo {
  let key: StateKey;
  const a = s?.active_state;
  if (!s) key = 'unknown';
  else if (a && a in LABELS) key = a as StateKey;
  else if (s.running) key = 'active';
  else if (s.error) key = 'failed';
  else key = 'inactive';
  const [label, color] = LABELS[key];
  const raw = a ?? (s ? (s.running ? 'active' : 'inactive') : 'unknown');
  const detail = s?.sub_state ? `${raw} (${s.sub_state})` : raw;
  return {
    key,
    label,
    detail,
    color,
    transitional: key === 'activating' || key === 'deactivating' || key === 'reloading',
  };
}
