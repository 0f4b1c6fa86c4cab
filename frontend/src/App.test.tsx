import { QueryClientProvider } from '@tanstack/react-query';
import { act, render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter } from 'react-router';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LiveProvider } from './api/live';
import { Shell } from './App';
import { config, metrics, status } from './test/fixtures';
import { json, mockFetch, testClient } from './test/utils';
import { ThemeModeProvider } from './ThemeModeProvider';

// jsdom has no canvas: replace uPlot with a stub.
vi.mock('uplot', () => ({
  default: class {
    setData() {}
    setSize() {}
    destroy() {}
  },
}));

function controllableSse() {
  const enc = new TextEncoder();
  let ctrl!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({ start: (c) => void (ctrl = c) });
  return {
    response: new Response(body, { headers: { 'Content-Type': 'text/event-stream' } }),
    send: (event: string, data: unknown) => ctrl.enqueue(enc.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)),
  };
}

function apiHandlers(extra: Record<string, unknown> = {}) {
  return {
    '/api/streaming/status': status({ running: false, pid: null, active_state: 'inactive', sub_state: 'dead' }),
    '/api/streaming/health': { healthy: true, running: true, uptime_seconds: 1, cpu_percent: 1, memory_mb: 1, error: null, checks: [{ name: 'queue_db', ok: true, detail: 'readable' }] },
    '/api/streaming/metrics': metrics(),
    '/api/streaming/config': json(config, 200, { ETag: '"v1"' }),
    '/api/streaming/limits': { memory_max_bytes: null, cpu_quota_percent: 200 },
    '/api/streaming/alerts': { active: [], recent: [] },
    '/api/streaming/history': { window: '1h', step_seconds: 60, points: [{ t: '2026-11-25T10:00:00Z', cpu_percent: 1, memory_mb: 100, queue_depth: 2, processing_rate_per_hour: 3 }] },
    '/api/streaming/groups': { groups: [], next_before: null },
    '/api/streaming/disk': { window: '24h', step_seconds: 600, dirs: [], trend: [] },
    '/api/streaming/logs': { lines: [{ timestamp: '2026-11-25T10:00:00Z', level: 'INFO', message: 'hello', group_id: null, pid: 1 }] },
    ...extra,
  };
}

function renderApp(route = '/streaming') {
  return render(
    <ThemeModeProvider>
      <QueryClientProvider client={testClient()}>
        <LiveProvider>
          <MemoryRouter initialEntries={[route]}>
            <Shell />
          </MemoryRouter>
        </LiveProvider>
      </QueryClientProvider>
    </ThemeModeProvider>,
  );
}

afterEach(() => {
  vi.useRealTimers();
});

describe('the dashboard', () => {
  it('renders every panel without console errors, and / redirects to /streaming', async () => {
    const errors = vi.spyOn(console, 'error');
    const sse = controllableSse();
    mockFetch(apiHandlers({ '/api/streaming/events': sse.response }));
    renderApp('/');
    for (const name of ['Service Status', 'Queue Statistics', 'Resource Usage', 'Health', 'Alerts', 'Resource Limits', 'History', 'Disk', 'Current Configuration', 'Groups', 'Logs']) {
      expect(await screen.findByRole('region', { name })).toBeInTheDocument();
    }
    await screen.findByText('hello');
    await waitFor(() => expect(screen.getByRole('region', { name: 'Queue Statistics' })).toHaveTextContent('1204'));
    expect(errors).not.toHaveBeenCalled();
  });

  it('applies SSE status events live, without a reload', async () => {
    const sse = controllableSse();
    mockFetch(apiHandlers({ '/api/streaming/events': sse.response }));
    renderApp();
    const state = await screen.findByRole('status', { name: 'Service state' });
    expect(state).toHaveAttribute('data-state', 'inactive');
    await waitFor(() => expect(screen.getByRole('status', { name: /Live updates/ })).toHaveAttribute('data-live', 'live'));
    act(() => sse.send('status', status()));
    await waitFor(() => expect(screen.getByRole('status', { name: 'Service state' })).toHaveAttribute('data-state', 'active'));
    act(() => sse.send('alert', { id: 'x', rule: 'failed_groups', severity: 'warning', message: '2 failed groups', raised_at: '2026-11-25T10:00:00Z', cleared_at: null }));
    const alerts = screen.getByRole('region', { name: 'Alerts' });
    await waitFor(() => expect(within(alerts).getByText(/2 failed groups/)).toBeInTheDocument());
  });

  it('polls status every 5 s while the live feed is down', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    const { calls } = mockFetch(apiHandlers({ '/api/streaming/events': json({ error: 'x', message: 'down' }, 503) }));
    renderApp();
    await screen.findByRole('status', { name: 'Service state' });
    await waitFor(() => expect(screen.getByRole('status', { name: /Live updates/ })).toHaveAttribute('data-live', 'down'));
    const before = calls.filter((c) => c.url === '/api/streaming/status').length;
    await act(() => vi.advanceTimersByTimeAsync(5_100));
    await act(() => vi.advanceTimersByTimeAsync(5_100));
    const after = calls.filter((c) => c.url === '/api/streaming/status').length;
    expect(after - before).toBeGreaterThanOrEqual(2);
  });

  it('does not poll status while live', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    const sse = controllableSse();
    const { calls } = mockFetch(apiHandlers({ '/api/streaming/events': sse.response }));
    renderApp();
    await screen.findByRole('status', { name: 'Service state' });
    await waitFor(() => expect(screen.getByRole('status', { name: /Live updates/ })).toHaveAttribute('data-live', 'live'));
    const before = calls.filter((c) => c.url === '/api/streaming/status').length;
    await act(() => vi.advanceTimersByTimeAsync(12_000));
    expect(calls.filter((c) => c.url === '/api/streaming/status').length).toBe(before);
  });

  it('toggles and remembers the theme', async () => {
    mockFetch(apiHandlers({ '/api/streaming/events': controllableSse().response }));
    renderApp();
    const user = userEvent.setup();
    await user.click(screen.getByRole('button', { name: 'Switch to dark theme' }));
    expect(localStorage.getItem('contimg.theme')).toBe('dark');
    expect(screen.getByRole('button', { name: 'Switch to light theme' })).toBeInTheDocument();
  });
});
