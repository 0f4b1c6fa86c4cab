import type { GroupState } from './api/types';

export const STATE_COLOR: Record<GroupState, 'default' | 'info' | 'warning' | 'success' | 'error'> = {
  collecting: 'default',
  pending: 'info',
  in_progress: 'warning',
  completed: 'success',
  failed: 'error',
};

export const STATE_LABEL: Record<GroupState, string> = {
  collecting: 'Collecting',
  pending: 'Pending',
  in_progress: 'In progress',
  completed: 'Completed',
  failed: 'Failed',
};

export function stateColor(s: string) {
  return STATE_COLOR[s as GroupState] ?? 'default';
}

export function stateLabel(s: string) {
  return STATE_LABEL[s as GroupState] ?? s;
}
