import { screen, waitFor, within } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DiskResponse } from '../api/types';
import { configWithRetention } from '../test/fixtures';
import { json, mockFetch, renderWithProviders } from '../test/utils';
import { DiskCard } from './DiskCard';

const NOW_MS = Date.UTC(2026, 10, 29, 12, 0, 0);
const GB = 1e9;
const ago = (hours: number) => new Date(NOW_MS - hours * 3600_000).toISOString();

const disk: DiskResponse = {
  window: '24h',
  step_seconds: 600,
  dirs: [
    { dir: 'input_dir', path: '/data/incoming', filesystem: null, total_bytes: null, used_bytes: null, free_bytes: null, error: 'cannot stat /data/incoming: ENOENT' },
    { dir: 'output_dir', path: '/data/ms', filesystem: '8:1', total_bytes: 1000 * GB, used_bytes: 985 * GB, free_bytes: 15 * GB, error: null },
    { dir: 'scratch_dir', path: '/data/scratch', filesystem: '8:1', total_bytes: 1000 * GB, used_bytes: 985 * GB, free_bytes: 15 * GB, error: null },
    { dir: 'state_dir', path: '/var/lib/contimg', filesystem: '8:2', total_bytes: 100 * GB, used_bytes: 40 * GB, free_bytes: 55 * GB, error: null },
  ],
  trend: [
    { dir: 'output_dir', points: [{ t: ago(24), free_bytes: 60 * GB }, { t: ago(12), free_bytes: 40 * GB }, { t: ago(0), free_bytes: 15 * GB }] },
  ],
};

const retention = configWithRetention;

describe('DiskCard', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(NOW_MS);
  });
  afterEach(() => vi.useRealTimers());

  it('shows used and free per directory, shared filesystems, the minimum and a 24 h trend', async () => {
    const { calls } = mockFetch({ '/api/streaming/disk': disk, '/api/streaming/config': json(retention, 200, { ETag: '"v1"' }) });
    renderWithProviders(<DiskCard />);
    const region = await screen.findByRole('region', { name: 'Disk' });
    await waitFor(() => expect(region).toHaveTextContent('below the minimum free space'));
    expect(calls.some((c) => c.url.endsWith('/api/streaming/disk?window=24h'))).toBe(true);

    const output = within(region).getByRole('progressbar', { name: 'output_dir' });
    expect(output).toHaveAttribute('aria-valuenow', '98.5');
    // 15 GB free is under min_free_gb = 20: red although 1.5 % free alone is red too.
    expect(output).toHaveAttribute('data-level', 'error');
    expect(output).toHaveAttribute('aria-valuetext', expect.stringContaining('15.0 GB free'));
    expect(output).toHaveAttribute('aria-valuetext', expect.stringContaining('same filesystem as scratch_dir'));
    const state = within(region).getByRole('progressbar', { name: 'state_dir' });
    expect(state).toHaveAttribute('data-level', 'success');
    expect(state).not.toHaveAttribute('aria-valuetext', expect.stringContaining('same filesystem'));
    expect(region).toHaveTextContent('cannot stat /data/incoming: ENOENT');

    const spark = within(region).getByRole('img', { name: 'output_dir free space over the last 24 h: 60.0 GB to 15.0 GB' });
    const xs = spark.querySelector('polyline')!.getAttribute('points')!.split(' ').map((p) => Number(p.split(',')[0]));
    // The line spans the 24 h ending now: 24 h ago at the left edge, 12 h ago mid-way, now at the right.
    expect(xs).toEqual([0, 120, 240]);
    expect(spark.querySelector('circle')).toHaveAttribute('cx', '240.0');
    // scratch_dir and state_dir have no samples yet.
    expect(within(region).getAllByText('No free-space samples in the last 24 h yet.')).toHaveLength(2);
  });

  it('shows the retention settings, with what an unset one means', async () => {
    mockFetch({ '/api/streaming/disk': disk, '/api/streaming/config': json({ ...retention, archive_dir: '/archive' }, 200, { ETag: '"v1"' }) });
    renderWithProviders(<DiskCard />);
    const facts = await screen.findByLabelText('Retention settings');
    expect(facts).toHaveTextContent('Keep inputs of completed groups48 h');
    expect(facts).toHaveTextContent('Archive directory/archive');
    expect(facts).toHaveTextContent('Keep outputsforever');
    expect(facts).toHaveTextContent('Minimum free space20 GB');
  });
});

describe('DiskCard sparkline', () => {
  it('shows a lone first sample as a dot at its time, not as nothing', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(NOW_MS);
    const one: DiskResponse = { ...disk, trend: [{ dir: 'state_dir', points: [{ t: ago(6), free_bytes: 55 * GB }] }] };
    mockFetch({ '/api/streaming/disk': one, '/api/streaming/config': json(configWithRetention, 200, { ETag: '"v1"' }) });
    renderWithProviders(<DiskCard />);
    const spark = await screen.findByRole('img', { name: 'state_dir free space over the last 24 h: 55.0 GB to 55.0 GB' });
    // 6 h ago on a 24 h axis of 240 units: three quarters across, mid-height for a flat trend.
    expect(spark.querySelector('circle')).toHaveAttribute('cx', '180.0');
    expect(spark.querySelector('circle')).toHaveAttribute('cy', '18.0');
    vi.useRealTimers();
  });
});
