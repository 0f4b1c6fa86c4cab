import { screen, waitFor, within } from '@testing-library/react';
import { Route, Routes, useParams } from 'react-router';
import { describe, expect, it } from 'vitest';
import type { GroupDetail, GroupJob, GroupLog, GroupSummary } from '../api/types';
import { metrics } from '../test/fixtures';
import { mockFetch, renderWithProviders } from '../test/utils';
import { GroupDialog } from './GroupDialog';
import { GroupsTable } from './GroupsTable';

const job = (state: string, node: string | null, exit_code: number | null, job_id = '4711'): GroupJob => ({
  executor: 'slurm',
  job_id,
  state,
  node,
  exit_code,
  log_path: `/scratch/slurm-jobs/${job_id}.log`,
});
const group = (group_id: string, state: string, j: GroupJob | null): GroupSummary => ({
  group_id,
  state,
  received_at: '2026-11-25T10:00:00Z',
  last_update: '2026-11-25T10:10:00Z',
  expected_subbands: 16,
  subbands: 16,
  retry_count: 0,
  error: null,
  processing_stage: null,
  job: j,
});

describe('Slurm jobs in the dashboard', () => {
  it('the groups table shows each group’s job: waiting, running where, or finished', async () => {
    mockFetch({
      '/api/streaming/metrics': metrics(),
      '/api/streaming/groups': {
        groups: [
          group('2026-11-25T10:10:00', 'in_progress', job('PENDING', null, null, '4713')),
          group('2026-11-25T10:05:00', 'in_progress', job('RUNNING', 'n3', null, '4712')),
          group('2026-11-25T10:00:00', 'failed', job('FAILED', 'n2', 1, '4711')),
          group('2026-11-25T09:55:00', 'pending', null),
        ],
        next_before: null,
      },
    });
    renderWithProviders(<GroupsTable />);
    const table = await screen.findByRole('table', { name: 'Groups' });
    await waitFor(() => expect(within(table).getAllByRole('row')).toHaveLength(5));
    expect(within(table).getByRole('columnheader', { name: 'Job' })).toBeInTheDocument();
    const rows = within(table).getAllByRole('row');
    expect(rows[1]).toHaveTextContent('4713 · PENDING · waiting in Slurm');
    expect(rows[2]).toHaveTextContent('4712 · RUNNING · n3');
    expect(rows[3]).toHaveTextContent('4711 · FAILED · n2 · exit 1');
  });

  it('has no Job column while no group ran as a job', async () => {
    mockFetch({
      '/api/streaming/metrics': metrics(),
      '/api/streaming/groups': { groups: [group('2026-11-25T09:55:00', 'pending', null)], next_before: null },
    });
    renderWithProviders(<GroupsTable />);
    const table = await screen.findByRole('table', { name: 'Groups' });
    await waitFor(() => expect(within(table).getAllByRole('row')).toHaveLength(2));
    expect(within(table).queryByRole('columnheader', { name: 'Job' })).toBeNull();
  });

  it('the group dialog shows every attempt’s job and the latest job log', async () => {
    const id = '2026-11-25T10:00:00';
    const detail: GroupDetail = {
      ...group(id, 'in_progress', job('RUNNING', 'n3', null, '4712')),
      attempts: [
        { attempt: 1, started_at: '2026-11-25T10:01:00Z', outcome: 'failed', error: 'exit 1', job: job('FAILED', 'n2', 1, '4711') },
        { attempt: 2, started_at: '2026-11-25T10:03:00Z', job: job('RUNNING', 'n3', null, '4712') },
      ],
    };
    const log: GroupLog = {
      group_id: id,
      attempt: 2,
      job_id: '4712',
      path: '/scratch/slurm-jobs/4712.log',
      size_bytes: 40,
      truncated: false,
      text: 'converting 2026-11-25T10:00:00 on n3\n',
    };
    const { calls } = mockFetch({
      [`/api/streaming/groups/${encodeURIComponent(id)}`]: detail,
      [`/api/streaming/groups/${encodeURIComponent(id)}/log`]: log,
    });
    renderWithProviders(
      <Routes>
        <Route path="/streaming/groups/:groupId" element={<DialogOnly />} />
      </Routes>,
      { route: `/streaming/groups/${encodeURIComponent(id)}` },
    );
    const dialog = await screen.findByRole('dialog');
    const attempts = await within(dialog).findByRole('table', { name: 'Attempts' });
    expect(attempts).toHaveTextContent('4711 · FAILED · n2 · exit 1');
    expect(attempts).toHaveTextContent('4712 · RUNNING · n3');
    expect(await within(dialog).findByLabelText('Job log')).toHaveTextContent('converting 2026-11-25T10:00:00 on n3');
    expect(within(dialog).getByText(/Job log \(attempt 2, job 4712\)/)).toBeInTheDocument();
    // Only the group id is sent; the file is the one the queue DB names.
    const logCall = calls.find((c) => c.url.includes('/log'))!;
    expect(logCall.url).not.toContain('slurm-jobs');
  });
});

function DialogOnly() {
  const { groupId } = useParams();
  return <GroupDialog groupId={groupId!} onClose={() => {}} />;
}
