import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { setToken } from '../api/auth';
import { config } from '../test/fixtures';
import { json, mockFetch, renderWithProviders } from '../test/utils';
import { ConfigCard } from './ConfigCard';

async function openEditor() {
  const user = userEvent.setup();
  await user.click(await screen.findByRole('button', { name: 'Edit configuration' }));
  const dialog = await screen.findByRole('dialog', { name: 'Edit configuration' });
  return { user, dialog };
}

describe('config editor', () => {
  it('has a labelled control for every field', async () => {
    mockFetch({ '/api/streaming/config': json(config, 200, { ETag: '"v1"' }) });
    renderWithProviders(<ConfigCard />);
    const { dialog } = await openEditor();
    const d = within(dialog);
    for (const l of ['Input directory', 'Output directory', 'Queue database', 'Scratch directory', 'tmpfs path', 'Expected subbands', 'Chunk duration', 'Max workers', 'Poll interval', 'Worker poll interval', 'Monitor interval', 'Max retries', 'Converter kind']) {
      expect(d.getByLabelText(l)).toBeInTheDocument();
    }
    expect(d.getByRole('combobox', { name: 'Log level' })).toHaveValue('INFO');
    for (const l of ['Use subprocess', 'Monitoring', 'Stage to tmpfs']) expect(d.getByRole('switch', { name: l })).toBeInTheDocument();
  });

  it('shows the server 422 error next to the field and keeps the dialog open', async () => {
    setToken('t');
    const { calls } = mockFetch({
      '/api/streaming/config': json(config, 200, { ETag: '"v1"' }),
      'POST /api/streaming/config': json(
        { error: 'validation', message: 'invalid config', details: [{ field: 'max_workers', message: 'must be between 1 and 64, got 0' }] },
        422,
      ),
    });
    renderWithProviders(<ConfigCard />);
    const { user, dialog } = await openEditor();
    const field = within(dialog).getByLabelText('Max workers');
    await user.clear(field);
    await user.type(field, '0');
    await user.click(within(dialog).getByRole('button', { name: 'Save' }));
    expect(await within(dialog).findByText('must be between 1 and 64, got 0')).toBeInTheDocument();
    expect(field).toHaveAttribute('aria-invalid', 'true');
    await waitFor(() => expect(field).toHaveFocus());
    const post = calls.find((c) => c.method === 'POST')!;
    expect(post.headers['if-match']).toBe('"v1"');
    expect(post.body).toEqual({ max_workers: 0 });
    expect(screen.getByRole('dialog', { name: 'Edit configuration' })).toBeInTheDocument();
  });

  it('on 412 tells the operator and reloads the config', async () => {
    setToken('t');
    let version = 1;
    mockFetch({
      '/api/streaming/config': () => json({ ...config, max_workers: version === 1 ? 4 : 6 }, 200, { ETag: `"v${version}"` }),
      'POST /api/streaming/config': () => {
        version = 2;
        return json({ error: 'precondition_failed', message: 'stale' }, 412);
      },
    });
    renderWithProviders(<ConfigCard />);
    const { user, dialog } = await openEditor();
    const field = within(dialog).getByLabelText('Max workers');
    await user.clear(field);
    await user.type(field, '2');
    await user.click(within(dialog).getByRole('button', { name: 'Save' }));
    // The editor remounts with the new server version: the banner and the reloaded value.
    await waitFor(() => expect(within(screen.getByRole('dialog')).getByLabelText('Max workers')).toHaveValue(6));
    expect(within(screen.getByRole('dialog')).getByText('Configuration changed on the server')).toBeInTheDocument();
  });

  it('saves a valid change and reports what changed', async () => {
    setToken('t');
    let saved = false;
    mockFetch({
      // After the save the server has a new version (new ETag): the dialog must still close.
      '/api/streaming/config': () => json({ ...config, max_workers: saved ? 3 : 4 }, 200, { ETag: saved ? '"v2"' : '"v1"' }),
      'POST /api/streaming/config': () => {
        saved = true;
        return { success: true, message: 'saved', changed: ['max_workers'], restarted: true, pid: 5 };
      },
    });
    renderWithProviders(<ConfigCard />);
    const { user, dialog } = await openEditor();
    const field = within(dialog).getByLabelText('Max workers');
    await user.clear(field);
    await user.type(field, '3');
    await user.click(within(dialog).getByRole('button', { name: 'Save' }));
    expect(await screen.findByText(/changed: max_workers — service restarted/)).toBeInTheDocument();
    await waitFor(() => expect(screen.queryByRole('dialog')).toBeNull());
  });
});
