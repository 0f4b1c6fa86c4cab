import { createContext, useContext } from 'react';

export type LiveState = 'connecting' | 'live' | 'down';

export const LiveContext = createContext<LiveState>('down');

export function useLiveState(): LiveState {
  return useContext(LiveContext);
}
