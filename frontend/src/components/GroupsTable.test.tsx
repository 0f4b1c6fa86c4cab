import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { Route, Routes, useParams } from 'react-router';
import { describe, expect, it } from 'vitest';
import { setToken } from '../api/auth';
import type { GroupDetail, GroupSummary } from '../api/types';
import { metrics } from '../test/fixtures';
import { json, mockFetch, renderWithProviders } from '../test/utils';
import { GroupDialog } from './GroupDialog';
import { GroupsTable } from './GroupsTable';

const failed: GroupSummary = {
  group_id: '2026-11-25T10:00:00',
  state: 'failed',
  received_at: '2026-11-25T10:00:00Z',
  last_update: '2026-11-25T10:10:00Z',
  expected_subbands: 16,
  subbands: 16,
  retry_count: 3,
  error: 'converter exited with status 1',
  processing_stage: 'converting',
};
const done: GroupSummary = { ...failed, group_id: '2026-11-25T10:05:00', state: 'completed', error: null, retry_count: 0 };

describe('GroupsTable', () => {
  it('lists groups, filters by state and retries a failed one', async () => {
    setToken('t');
    const { calls } = mockFetch({
      '/api/streaming/metrics': metrics(),
      '/api/streaming/groups': (c) => ({
        groups: c.url.includes('state=failed') ? [failed] : [failed, done],
        next_before: null,
      }),
      [`POST /api/streaming/groups/${encodeURIComponent(failed.group_id)}/retry`]: { success: true, message: 'group re-queued' },
    });
    renderWithProviders(<GroupsTable />);
    const user = userEvent.setup();
    const table = await screen.findByRole('table', { name: 'Groups' });
    await waitFor(() => expect(within(table).getAllByRole('row')).toHaveLength(3));
    // Only failed groups have a Retry button.
    expect(within(table).getAllByRole('button', { name: /^Retry group/ })).toHaveLength(1);

    await user.click(screen.getByRole('button', { name: /^Failed/ }));
    await waitFor(() => expect(within(screen.getByRole('table', { name: 'Groups' })).getAllByRole('row')).toHaveLength(2));
    expect(calls.some((c) => c.url.includes('state=failed'))).toBe(true);

    await user.click(screen.getByRole('button', { name: `Retry group ${failed.group_id}` }));
    expect(await screen.findByText('group re-queued')).toBeInTheDocument();
    expect(calls.find((c) => c.method === 'POST')!.headers.authorization).toBe('Bearer t');
  });

  it('shows a 409 from retry as an error', async () => {
    setToken('t');
    mockFetch({
      '/api/streaming/metrics': metrics(),
      '/api/streaming/groups': { groups: [failed], next_before: null },
      [`POST /api/streaming/groups/${encodeURIComponent(failed.group_id)}/retry`]: json({ error: 'conflict', message: 'group is not failed' }, 409),
    });
    renderWithProviders(<GroupsTable />);
    const user = userEvent.setup();
    await user.click(await screen.findByRole('button', { name: `Retry group ${failed.group_id}` }));
    expect(await screen.findByRole('alert')).toHaveTextContent('group is not failed');
  });
});

describe('group drill-down', () => {
  it('opens from the route and shows files, timings, attempts and errors', async () => {
    const detail: GroupDetail = {
      ...failed,
      files: [
        { subband_idx: 1, path: '/data/incoming/2026-11-25T10:00:00_sb01.hdf5', freq_min_hz: 1.4e9, freq_max_hz: 1.41e9 },
        { subband_idx: 0, path: '/data/incoming/2026-11-25T10:00:00_sb00.hdf5', freq_min_hz: 1.41e9, freq_max_hz: 1.42e9 },
      ],
      timings: { load_time: 1.5, phase_time: 2.25, write_time: 3, total_time: 6.75, writer_type: 'uvh5' },
      attempts: [{ attempt: 1, started_at: '2026-11-25T10:01:00Z', error: 'boom' }],
    };
    mockFetch({ [`/api/streaming/groups/${encodeURIComponent(failed.group_id)}`]: detail });
    renderWithProviders(
      <Routes>
        <Route path="/streaming/groups/:groupId" element={<GroupDialogOnly />} />
      </Routes>,
      { route: `/streaming/groups/${encodeURIComponent(failed.group_id)}` },
    );
    const dialog = await screen.findByRole('dialog');
    const files = await within(dialog).findByRole('table', { name: 'Subband files' });
    const rows = within(files).getAllByRole('row');
    expect(rows[1]).toHaveTextContent('sb00');
    expect(rows[2]).toHaveTextContent('sb01');
    expect(within(dialog).getByRole('region', { name: 'Timings' })).toHaveTextContent('6.75 s');
    expect(within(dialog).getByRole('table', { name: 'Attempts' })).toHaveTextContent('boom');
    expect(within(dialog).getByLabelText('Group error')).toHaveTextContent('converter exited with status 1');
    expect(within(dialog).getByRole('button', { name: `Retry group ${failed.group_id}` })).toBeInTheDocument();
  });
});

function GroupDialogOnly() {
  const { groupId } = useParams();
  return <GroupDialog groupId={groupId!} onClose={() => {}} />;
}
