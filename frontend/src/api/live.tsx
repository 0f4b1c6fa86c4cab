// The live connection: one SSE stream (`/api/streaming/events`) whose
// `status`, `metrics`, `health` and `alert` events are written straight into the
// TanStack Query cache. While it is down, the queries poll instead.
import { useQueryClient } from '@tanstack/react-query';
import { useEffect, useState, type ReactNode } from 'react';
import { API } from './endpoints';
import { applyEvent } from './events';
import { LiveContext, type LiveState } from './liveContext';
import { connectSse } from './sse';

export function LiveProvider({ children, url = `${API}/events` }: { children: ReactNode; url?: string }) {
  const qc = useQueryClient();
  const [state, setState] = useState<LiveState>('connecting');

  useEffect(() => {
    const close = connectSse(url, {
      onOpen: () => setState('live'),
      onDown: () => setState('down'),
      onMessage: (m) => applyEvent(qc, m),
    });
    return close;
  }, [qc, url]);

  return <LiveContext.Provider value={state}>{children}</LiveContext.Provider>;
}
