import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { setToken } from '../api/auth';
import { metrics, status } from '../test/fixtures';
import { json, mockFetch, renderWithProviders } from '../test/utils';
import { ResourceCard } from './ResourceCard';
import { StatusCard } from './StatusCard';

describe('StatusCard', () => {
  it('shows state, unit, PID, restarts and status text', async () => {
    mockFetch({ '/api/streaming/status': status({ restart_count: 2 }) });
    renderWithProviders(<StatusCard />);
    const state = await screen.findByRole('status', { name: 'Service state' });
    expect(state).toHaveAttribute('data-state', 'active');
    expect(state).toHaveTextContent('Running');
    expect(state).toHaveTextContent('active (running)');
    const facts = screen.getByLabelText('Service details');
    expect(facts).toHaveTextContent('contimg-stream.service');
    expect(facts).toHaveTextContent('1234');
    expect(within(facts).getByText('Restarts').nextSibling).toHaveTextContent('2');
    expect(screen.getByLabelText('Status text')).toHaveTextContent('collecting 1, pending 0');
  });

  it('says what the backend is in words, not as a unit name', async () => {
    mockFetch({
      '/api/streaming/status': status({
        backend: 'process',
        unit: 'process',
        backend_description: 'direct process (PID file)',
      }),
    });
    renderWithProviders(<StatusCard />);
    const facts = await screen.findByLabelText('Service details');
    expect(within(facts).getByText('Backend').nextSibling).toHaveTextContent('direct process (PID file)');
    // "Unit: process" looked like a unit name.
    expect(within(facts).queryByText('Unit')).toBeNull();
    expect(facts).not.toHaveTextContent(/\bprocess\b(?! \(PID file\))/);
  });

  it('names the systemd manager and unit', async () => {
    mockFetch({
      '/api/streaming/status': status({ backend_description: 'systemd system unit contimg-stream@lab.service' }),
    });
    renderWithProviders(<StatusCard />);
    const facts = await screen.findByLabelText('Service details');
    expect(within(facts).getByText('Backend').nextSibling).toHaveTextContent(
      'systemd system unit contimg-stream@lab.service',
    );
  });

  it('shows the state dir and the rule that chose it', async () => {
    mockFetch({
      '/api/streaming/status': status({
        state_dir: '/var/lib/contimg/lab',
        state_dir_rule: 'ExecStart= --state-dir of contimg-stream@lab.service on the system manager',
      }),
    });
    renderWithProviders(<StatusCard />);
    const facts = await screen.findByLabelText('Service details');
    const value = within(facts).getByText('State dir').nextSibling as HTMLElement;
    expect(within(value).getByLabelText('State dir')).toHaveTextContent(/^\/var\/lib\/contimg\/lab$/);
    expect(within(value).getByLabelText('State dir rule')).toHaveTextContent(
      'from ExecStart= --state-dir of contimg-stream@lab.service on the system manager',
    );
  });

  it('leaves the state dir out when the API does not say', async () => {
    mockFetch({ '/api/streaming/status': status({ state_dir: null, state_dir_rule: null }) });
    renderWithProviders(<StatusCard />);
    const facts = await screen.findByLabelText('Service details');
    expect(within(facts).getByText('Backend')).toBeInTheDocument();
    expect(within(facts).queryByText('State dir')).toBeNull();
  });

  it('shows an error state with retry when status cannot load', async () => {
    mockFetch({ '/api/streaming/status': json({ error: 'backend', message: 'backend unreachable' }, 503) });
    renderWithProviders(<StatusCard />);
    expect(await screen.findByText(/backend unreachable/)).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Retry loading service status' })).toBeInTheDocument();
  });

  it('asks for confirmation before stopping, and stops on confirm', async () => {
    setToken('t');
    const { calls } = mockFetch({
      '/api/streaming/status': status(),
      'POST /api/streaming/stop': { success: true, message: 'stopped contimg-stream.service', pid: null },
    });
    renderWithProviders(<StatusCard />);
    const user = userEvent.setup();
    await user.click(await screen.findByRole('button', { name: 'Stop' }));
    const dialog = await screen.findByRole('dialog', { name: 'Stop the streaming service?' });
    // Cancel does nothing.
    await user.click(within(dialog).getByRole('button', { name: 'Cancel' }));
    expect(calls.some((c) => c.method === 'POST')).toBe(false);
    await user.click(screen.getByRole('button', { name: 'Stop' }));
    await user.click(within(await screen.findByRole('dialog')).getByRole('button', { name: 'Stop service' }));
    await waitFor(() => expect(calls.some((c) => c.method === 'POST' && c.url.endsWith('/stop'))).toBe(true));
    expect(await screen.findByText('stopped contimg-stream.service')).toBeInTheDocument();
  });

  it('starts without confirmation and refreshes the status', async () => {
    setToken('t');
    let running = false;
    const { calls } = mockFetch({
      '/api/streaming/status': () => status(running ? {} : { running: false, pid: null, active_state: 'inactive', sub_state: 'dead' }),
      'POST /api/streaming/start': () => {
        running = true;
        return { success: true, message: 'started', pid: 99 };
      },
    });
    renderWithProviders(<StatusCard />);
    const user = userEvent.setup();
    const state = await screen.findByRole('status', { name: 'Service state' });
    expect(state).toHaveAttribute('data-state', 'inactive');
    expect(screen.getByRole('button', { name: 'Stop' })).toBeDisabled();
    await user.click(screen.getByRole('button', { name: 'Start' }));
    await waitFor(() => expect(screen.getByRole('status', { name: 'Service state' })).toHaveAttribute('data-state', 'active'));
    expect(calls.filter((c) => c.method === 'POST')).toHaveLength(1);
  });

  it('shows the unit log when a start fails', async () => {
    setToken('t');
    mockFetch({
      '/api/streaming/status': status({ running: false, active_state: 'failed', sub_state: 'failed', error: 'exit 1' }),
      'POST /api/streaming/start': json({ success: false, message: 'unit failed', logs: ['config: bad input_dir'] }, 500),
    });
    renderWithProviders(<StatusCard />);
    const user = userEvent.setup();
    await user.click(await screen.findByRole('button', { name: 'Start' }));
    expect(await screen.findByText('Could not start the service')).toBeInTheDocument();
    expect(screen.getByLabelText('Unit log')).toHaveTextContent('config: bad input_dir');
  });
});

describe('ResourceCard', () => {
  it('colours CPU and memory bars by thresholds, memory relative to the limit', async () => {
    mockFetch({
      '/api/streaming/status': status({ cpu_percent: 65, memory_mb: 900, memory_limit_mb: 1000 }),
      '/api/streaming/metrics': metrics(),
      '/api/streaming/limits': { memory_max_bytes: 1000 * 1048576, cpu_quota_percent: null },
    });
    renderWithProviders(<ResourceCard />);
    const cpu = await screen.findByRole('progressbar', { name: 'CPU' });
    expect(cpu).toHaveAttribute('data-level', 'warning');
    const mem = screen.getByRole('progressbar', { name: 'Memory' });
    expect(mem).toHaveAttribute('data-level', 'error');
    expect(mem).toHaveAttribute('aria-valuenow', '90');
  });

  it('has no memory bar without a limit', async () => {
    mockFetch({
      '/api/streaming/status': status({ memory_limit_mb: null }),
      '/api/streaming/metrics': metrics(),
      '/api/streaming/limits': { memory_max_bytes: null, cpu_quota_percent: null },
    });
    renderWithProviders(<ResourceCard />);
    expect(await screen.findByText('No memory limit set')).toBeInTheDocument();
    expect(screen.queryByRole('progressbar', { name: 'Memory' })).toBeNull();
  });
});
