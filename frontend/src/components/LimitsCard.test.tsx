import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { setToken } from '../api/auth';
import { json, mockFetch, renderWithProviders } from '../test/utils';
import { AlertsPanel } from './AlertsPanel';
import { LimitsCard } from './LimitsCard';

describe('resource limits editor', () => {
  it('shows limits and sends only what changed, in bytes', async () => {
    setToken('t');
    const { calls } = mockFetch({
      '/api/streaming/limits': { memory_max_bytes: 8 * 1024 ** 3, cpu_quota_percent: null },
      'POST /api/streaming/limits': { success: true, message: 'limits applied' },
    });
    renderWithProviders(<LimitsCard />);
    const user = userEvent.setup();
    const region = await screen.findByRole('region', { name: 'Resource Limits' });
    await waitFor(() => expect(region).toHaveTextContent('8.00 GiB'));
    expect(region).toHaveTextContent('no limit');
    await user.click(within(region).getByRole('button', { name: 'Edit limits' }));
    const dialog = await screen.findByRole('dialog', { name: 'Resource limits' });
    await user.type(within(dialog).getByRole('spinbutton', { name: 'CPU quota' }), '150');
    await user.click(within(dialog).getByRole('switch', { name: /persistent/ }));
    await user.click(within(dialog).getByRole('button', { name: 'Apply limits' }));
    expect(await screen.findByText('limits applied')).toBeInTheDocument();
    expect(calls.find((c) => c.method === 'POST')!.body).toEqual({ cpu_quota_percent: 150, persistent: true });
  });

  it('clearing memory max sends null and server errors are shown', async () => {
    setToken('t');
    const { calls } = mockFetch({
      '/api/streaming/limits': { memory_max_bytes: 1024 ** 3, cpu_quota_percent: 100 },
      'POST /api/streaming/limits': json({ error: 'not_supported', message: 'resource limits need a cgroup' }, 409),
    });
    renderWithProviders(<LimitsCard />);
    const user = userEvent.setup();
    await user.click(await screen.findByRole('button', { name: 'Edit limits' }));
    const dialog = await screen.findByRole('dialog', { name: 'Resource limits' });
    await user.clear(within(dialog).getByRole('spinbutton', { name: 'Memory max' }));
    await user.click(within(dialog).getByRole('button', { name: 'Apply limits' }));
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('resource limits need a cgroup');
    expect(calls.find((c) => c.method === 'POST')!.body).toEqual({ memory_max_bytes: null, persistent: false });
  });
});

describe('AlertsPanel', () => {
  it('lists active alerts by severity and recently cleared ones', async () => {
    mockFetch({
      '/api/streaming/alerts': {
        active: [{ id: '1', rule: 'service_down', severity: 'critical', message: 'worker is down', raised_at: '2026-11-25T10:00:00Z', cleared_at: null }],
        recent: [{ id: '0', rule: 'low_disk', severity: 'warning', message: 'disk 95 %', raised_at: '2026-11-25T09:00:00Z', cleared_at: '2026-11-25T09:30:00Z' }],
      },
    });
    renderWithProviders(<AlertsPanel />);
    const active = await screen.findByRole('list', { name: 'Active alerts' });
    expect(within(active).getByRole('listitem')).toHaveTextContent('worker is down');
    expect(screen.getByLabelText('1 active alerts')).toBeInTheDocument();
    expect(screen.getByRole('list', { name: 'Recent alerts' })).toHaveTextContent('disk 95 %');
  });
});
