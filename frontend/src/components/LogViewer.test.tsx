import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import type { LogEntry } from '../api/types';
import { mockFetch, renderWithProviders } from '../test/utils';
import { LogViewer } from './LogViewer';

const lines: LogEntry[] = [
  { timestamp: '2026-11-25T10:00:00.123Z', level: 'INFO', message: 'watching /data/incoming', group_id: null, pid: 1 },
  { timestamp: '2026-11-25T10:00:01.000Z', level: 'WARNING', message: 'group incomplete', group_id: '2026-11-25T09:55:00', pid: 1 },
  { timestamp: '2026-11-25T10:00:02.000Z', level: 'ERROR', message: 'convert failed: boom', group_id: '2026-11-25T09:50:00', pid: 1 },
];

function sseBody(events: string[]): Response {
  const enc = new TextEncoder();
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      events.forEach((e) => c.enqueue(enc.encode(e)));
      // keep open
    },
  });
  return new Response(stream, { headers: { 'Content-Type': 'text/event-stream' } });
}

describe('LogViewer', () => {
  it('shows a timestamp and level on every line', async () => {
    mockFetch({ '/api/streaming/logs': { lines } });
    renderWithProviders(<LogViewer />);
    const log = await screen.findByRole('log', { name: 'Service log' });
    await waitFor(() => expect(within(log).getAllByTestId('log-line')).toHaveLength(3));
    for (const l of within(log).getAllByTestId('log-line')) {
      expect(l.querySelector('time')).toHaveAttribute('dateTime');
      expect(l.querySelector('time')?.textContent).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$/);
    }
  });

  it('filters by level, text and group, and sends the filters to the server', async () => {
    const { calls } = mockFetch({ '/api/streaming/logs': { lines } });
    renderWithProviders(<LogViewer />);
    const user = userEvent.setup();
    const log = await screen.findByRole('log', { name: 'Service log' });
    await waitFor(() => expect(within(log).getAllByTestId('log-line')).toHaveLength(3));

    await user.selectOptions(screen.getByRole('combobox', { name: 'Level' }), 'WARNING');
    expect(within(log).getAllByTestId('log-line').map((l) => l.dataset.level)).toEqual(['WARNING', 'ERROR']);
    await waitFor(() => expect(calls.some((c) => c.url.includes('level=WARNING'))).toBe(true));

    await user.type(screen.getByRole('textbox', { name: 'Search text' }), 'boom');
    expect(within(log).getAllByTestId('log-line')).toHaveLength(1);
    await waitFor(() => expect(calls.some((c) => c.url.includes('grep=boom'))).toBe(true));

    await user.clear(screen.getByRole('textbox', { name: 'Search text' }));
    await user.selectOptions(screen.getByRole('combobox', { name: 'Level' }), '');
    await user.click(within(log).getByRole('button', { name: 'Filter by group 2026-11-25T09:55:00' }));
    expect(screen.getByRole('textbox', { name: 'Group id' })).toHaveValue('2026-11-25T09:55:00');
    expect(within(log).getAllByTestId('log-line')).toHaveLength(1);
  });

  it('follows new lines over SSE', async () => {
    const extra: LogEntry = { timestamp: '2026-11-25T10:00:03.000Z', level: 'INFO', message: 'group completed', group_id: null, pid: 1 };
    const { calls } = mockFetch({
      '/api/streaming/logs': (c) =>
        c.url.includes('follow=true')
          ? sseBody([`event: log\ndata: ${JSON.stringify(lines[2])}\n\n`, `event: log\ndata: ${JSON.stringify(extra)}\n\n`])
          : { lines },
    });
    renderWithProviders(<LogViewer />);
    const user = userEvent.setup();
    const log = await screen.findByRole('log', { name: 'Service log' });
    await waitFor(() => expect(within(log).getAllByTestId('log-line')).toHaveLength(3));
    await user.click(screen.getByRole('switch', { name: 'Follow' }));
    // The duplicate of an already-shown line is dropped; the new one is appended.
    await waitFor(() => expect(within(log).getAllByTestId('log-line')).toHaveLength(4));
    expect(within(log).getAllByTestId('log-line')[3]).toHaveTextContent('group completed');
    expect(calls.some((c) => c.url.includes('follow=true'))).toBe(true);
    expect(await screen.findByText('following')).toBeInTheDocument();
  });
});
