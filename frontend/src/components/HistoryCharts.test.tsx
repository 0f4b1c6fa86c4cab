import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mockFetch, renderWithProviders } from '../test/utils';
import { HistoryCharts } from './HistoryCharts';

// jsdom has no 2D canvas nor Path2D: every drawing call is a no-op, so the real uPlot
// runs its scale and axis computations (which this test is about) unchanged.
function stubCanvas() {
  const noop = () => {};
  const ctx = new Proxy(
    { measureText: () => ({ width: 10, actualBoundingBoxAscent: 8, actualBoundingBoxDescent: 2 }) } as Record<string, unknown>,
    { get: (target, key: string) => (key in target ? target[key] : noop), set: () => true },
  );
  class Path2DStub {}
  Object.setPrototypeOf(Path2DStub.prototype, new Proxy({}, { get: () => noop }));
  vi.stubGlobal('Path2D', Path2DStub);
  vi.spyOn(HTMLCanvasElement.prototype, 'getContext').mockImplementation(() => ctx as unknown as CanvasRenderingContext2D);
}

const NOW_MS = Date.UTC(2026, 10, 29, 12, 0, 0);

function historyWith(points: { t: string; cpu_percent: number }[]) {
  return (c: { url: string }) => {
    const win = new URL(c.url, 'http://x').searchParams.get('window');
    return { window: win, step_seconds: 60, points };
  };
}

function xSpan(label: string) {
  const el = screen.getByRole('img', { name: label });
  return { min: Number(el.dataset.xMin), max: Number(el.dataset.xMax) };
}

describe('HistoryCharts', () => {
  beforeEach(() => {
    stubCanvas();
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(NOW_MS);
  });
  afterEach(() => vi.useRealTimers());

  it('spans the picked window ending now, even with a single sample (was 2027..2029 around one dot)', async () => {
    const oneSample = [{ t: new Date(NOW_MS - 120_000).toISOString(), cpu_percent: 5 }];
    mockFetch({ '/api/streaming/history': historyWith(oneSample) });
    renderWithProviders(<HistoryCharts />);
    const now = NOW_MS / 1000;
    await waitFor(() => expect(xSpan('CPU over the last 1h').max).toBeGreaterThan(0));
    expect(xSpan('CPU over the last 1h')).toEqual({ min: now - 3600, max: now });
    expect(xSpan('Queue depth over the last 1h')).toEqual({ min: now - 3600, max: now });

    await userEvent.setup({ advanceTimers: vi.advanceTimersByTime }).click(screen.getByRole('button', { name: 'Last 7d' }));
    await waitFor(() => expect(xSpan('CPU over the last 7d')).toEqual({ min: now - 7 * 86400, max: now }));
  });

  it('spans the window with no samples at all', async () => {
    mockFetch({ '/api/streaming/history': historyWith([]) });
    renderWithProviders(<HistoryCharts />);
    const now = NOW_MS / 1000;
    await waitFor(() => expect(screen.getByText(/No history recorded/)).toBeInTheDocument());
    expect(xSpan('Memory over the last 1h')).toEqual({ min: now - 3600, max: now });
  });
});
