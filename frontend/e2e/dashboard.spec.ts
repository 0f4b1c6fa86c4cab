import { expect, test } from '@playwright/test';
import { api, openDashboard, serviceState, shot, signIn, TOKEN, watchConsole } from './helpers';


test.afterEach(async ({ page }, info) => {
  if (!page.isClosed()) await shot(page, info, 'final');
});

test('the dashboard loads with no console errors', async ({ page }, info) => {
  const errors = watchConsole(page);
  await page.goto('/');
  await expect(page).toHaveURL(/\/streaming$/);
  await expect(serviceState(page)).toBeVisible();
  for (const name of ['Service Status', 'Queue Statistics', 'Resource Usage', 'Health', 'Alerts', 'History', 'Disk', 'Current Configuration', 'Groups', 'Logs']) {
    await expect(page.getByRole('region', { name })).toBeVisible();
  }
  // Every panel finished loading (no skeletons left) and none shows a load error.
  await expect(page.locator('[aria-busy="true"]')).toHaveCount(0, { timeout: 15_000 });
  await expect(page.getByText(/^Could not load/)).toHaveCount(0);
  await expect(page.getByRole('status', { name: /Live updates/ })).toHaveAttribute('data-live', 'live');
  await page.waitForTimeout(2_000);
  await shot(page, info, 'dashboard-laptop');
  expect(errors).toEqual([]);
});

test('Start turns the status to running within 2 s without a reload', async ({ page, request }, info) => {
  const a = api(request);
  await a.ensure(false);
  const errors = watchConsole(page);
  await openDashboard(page);
  await expect(serviceState(page)).not.toHaveAttribute('data-state', 'active');
  await page.evaluate(() => ((window as unknown as { __noReload: boolean }).__noReload = true));

  // First mutation without a token: the sign-in prompt appears, then the action proceeds.
  await page.getByRole('button', { name: 'Start', exact: true }).click();
  const prompt = page.getByRole('dialog', { name: 'Sign in' });
  await expect(prompt).toBeVisible();
  await prompt.getByLabel('API token').fill(TOKEN);
  const t0 = Date.now();
  await prompt.getByRole('button', { name: 'Sign in' }).click();
  await expect(serviceState(page)).toHaveAttribute('data-state', 'active', { timeout: 2_000 });
  info.annotations.push({ type: 'start-latency-ms', description: String(Date.now() - t0) });
  expect(await page.evaluate(() => (window as unknown as { __noReload?: boolean }).__noReload)).toBe(true);
  await expect(page.getByRole('region', { name: 'Service Status' }).getByLabel('Service details')).toContainText(/PID\s*\d+/);
  expect((await a.status()).running).toBe(true);
  await shot(page, info, 'started');
  expect(errors).toEqual([]);
});

test('Stop asks for confirmation', async ({ page, request }, info) => {
  const a = api(request);
  await a.ensure(true);
  await signIn(page);
  await openDashboard(page);
  await expect(serviceState(page)).toHaveAttribute('data-state', 'active');

  await page.getByRole('button', { name: 'Stop', exact: true }).click();
  const dialog = page.getByRole('dialog', { name: 'Stop the streaming service?' });
  await expect(dialog).toBeVisible();
  await shot(page, info, 'stop-confirmation');
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await expect(dialog).toBeHidden();
  await page.waitForTimeout(1_000);
  expect((await a.status()).running).toBe(true);
  await expect(serviceState(page)).toHaveAttribute('data-state', 'active');

  await page.getByRole('button', { name: 'Stop', exact: true }).click();
  await page.getByRole('dialog', { name: 'Stop the streaming service?' }).getByRole('button', { name: 'Stop service' }).click();
  await expect(serviceState(page)).toHaveAttribute('data-state', /inactive|failed/, { timeout: 15_000 });
  expect((await a.status()).running).toBe(false);

  // Restart asks too.
  await page.getByRole('button', { name: 'Restart', exact: true }).click();
  await expect(page.getByRole('dialog', { name: 'Restart the streaming service?' })).toBeVisible();
  await page.getByRole('button', { name: 'Cancel' }).click();

  await a.ensure(true);
  await expect(serviceState(page)).toHaveAttribute('data-state', 'active');
});

test('the Health card shows the API\'s verdict (the one contimgctl health computes), stopped and running', async ({ page, request }, info) => {
  const a = api(request);
  const chip = page.getByLabel(/^Overall health: /);
  const verdict = async () => (await a.get<{ healthy: boolean }>('/api/streaming/health')).healthy;
  await signIn(page);
  await openDashboard(page);
  for (const running of [false, true]) {
    await a.ensure(running);
    // The worker needs a heartbeat or two before the verdict settles.
    await expect.poll(verdict, { timeout: 30_000 }).toBe(running);
    await expect(chip).toHaveAttribute('aria-label', `Overall health: ${running ? 'healthy' : 'unhealthy'}`, { timeout: 15_000 });
    await shot(page, info, running ? 'health-running' : 'health-stopped');
  }
});

test('an invalid config shows the field error and changes nothing', async ({ page, request }, info) => {
  const a = api(request);
  const before = await a.config();
  await signIn(page);
  await openDashboard(page);
  await page.getByRole('button', { name: 'Edit configuration' }).click();
  const dialog = page.getByRole('dialog', { name: 'Edit configuration' });
  const field = dialog.getByRole('spinbutton', { name: 'Max workers' });
  await field.fill('0');
  const resp = page.waitForResponse((r) => r.url().endsWith('/api/streaming/config') && r.request().method() === 'POST');
  await dialog.getByRole('button', { name: 'Save' }).click();
  const r = await resp;
  expect(r.status()).toBe(422);
  const body = (await r.json()) as { details?: { field: string; message: string }[] };
  const msg = body.details?.find((d) => d.field === 'max_workers')?.message;
  expect(msg, JSON.stringify(body)).toBeTruthy();
  await expect(field).toHaveAttribute('aria-invalid', 'true');
  // The server's message is rendered as the field's helper text (its accessible description).
  await expect(field).toHaveAccessibleDescription(new RegExp(msg!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  await expect(dialog.getByRole('alert')).toContainText('rejected');
  await shot(page, info, 'config-422');

  const after = await a.config();
  expect(after.body).toEqual(before.body);
  if (before.etag) expect(after.etag).toBe(before.etag);
  await dialog.getByRole('button', { name: 'Cancel' }).click();
});

test('a valid config is saved and the service restarts', async ({ page, request }, info) => {
  const a = api(request);
  await a.ensure(true);
  const before = await a.config();
  const oldWorkers = Number(before.body.max_workers);
  const newWorkers = oldWorkers >= 64 ? oldWorkers - 1 : oldWorkers + 1;
  const oldStatus = await a.status();

  await signIn(page);
  await openDashboard(page);
  await page.getByRole('button', { name: 'Edit configuration' }).click();
  const dialog = page.getByRole('dialog', { name: 'Edit configuration' });
  await dialog.getByRole('spinbutton', { name: 'Max workers' }).fill(String(newWorkers));
  const resp = page.waitForResponse((r) => r.url().endsWith('/api/streaming/config') && r.request().method() === 'POST', { timeout: 60_000 });
  await dialog.getByRole('button', { name: 'Save' }).click();
  const r = await resp;
  expect(r.status()).toBe(200);
  expect(r.request().headers()['if-match']).toBe(before.etag ?? undefined);
  const body = (await r.json()) as { changed?: string[]; restarted?: boolean };
  expect(body.restarted).toBe(true);
  await expect(dialog).toBeHidden();
  const cfgRegion = page.getByRole('region', { name: 'Current Configuration' });
  await expect(cfgRegion).toContainText('service restarted');
  await expect(cfgRegion.getByLabel('Worker settings')).toContainText(`Max workers${newWorkers}`);
  expect((await a.config()).body.max_workers).toBe(newWorkers);
  await expect
    .poll(async () => {
      const s = await a.status();
      return s.running && (s.pid !== oldStatus.pid || s.started_at !== oldStatus.started_at);
    }, { timeout: 20_000 })
    .toBe(true);
  await expect(serviceState(page)).toHaveAttribute('data-state', 'active');
  await shot(page, info, 'config-saved');

  // Put the original value back.
  const restore = await a.post('/api/streaming/config', { max_workers: oldWorkers });
  expect(restore.status).toBe(200);
});

test('log lines and queue counts appear', async ({ page, request }, info) => {
  await api(request).ensure(true);
  await openDashboard(page);
  const counts = page.getByRole('list', { name: 'Queue counts' });
  for (const st of ['collecting', 'pending', 'in_progress', 'completed', 'failed']) {
    await expect(counts.getByTestId(`queue-${st}`)).toHaveText(/^\d+/);
  }
  const m = await api(request).get<{ queue_stats: Record<string, number> }>('/api/streaming/metrics');
  const total = Object.values(m.queue_stats).reduce((x, y) => x + y, 0);
  expect(total).toBeGreaterThan(0);

  const log = page.getByRole('log', { name: 'Service log' });
  await expect(log.getByTestId('log-line').first()).toBeVisible({ timeout: 20_000 });
  // Every line carries a timestamp.
  const n = await log.getByTestId('log-line').count();
  expect(await log.locator('[data-testid="log-line"] time').count()).toBe(n);

  // Follow mode connects and keeps showing lines.
  await page.getByRole('switch', { name: 'Follow' }).check();
  await expect(page.getByRole('region', { name: 'Logs' }).getByText('following')).toBeVisible();
  await expect(log.getByTestId('log-line').first()).toBeVisible();
  await shot(page, info, 'logs-and-queue');
});

test('a failed group can be retried', async ({ page, request }, info) => {
  await signIn(page);
  await openDashboard(page);
  const groups = page.getByRole('region', { name: 'Groups' });
  await groups.getByRole('button', { name: /^Failed/ }).click();
  const retry = groups.getByRole('button', { name: /^Retry group / }).first();
  await expect(retry).toBeVisible({ timeout: 20_000 });
  const label = (await retry.getAttribute('aria-label')) ?? '';
  const groupId = label.replace(/^Retry group /, '');

  // Drill-down first: files, timings, attempts.
  await groups.getByRole('link', { name: `Details of group ${groupId}` }).click();
  await expect(page).toHaveURL(new RegExp(`/streaming/groups/`));
  const dialog = page.getByRole('dialog');
  await expect(dialog.getByRole('region', { name: /^Files/ })).toBeVisible();
  await expect(dialog.getByRole('region', { name: 'Timings' })).toBeVisible();
  await expect(dialog.getByRole('region', { name: /^Attempts/ })).toBeVisible();
  await shot(page, info, 'group-detail');
  await dialog.getByRole('button', { name: 'Close' }).click();
  await expect(page).toHaveURL(/\/streaming$/);

  const resp = page.waitForResponse((r) => r.url().includes('/retry') && r.request().method() === 'POST');
  await groups.getByRole('button', { name: `Retry group ${groupId}` }).click();
  expect((await resp).status()).toBe(200);
  await expect(groups.getByRole('status').filter({ hasText: /./ })).toBeVisible();
  const g = await api(request).get<{ state: string }>(`/api/streaming/groups/${encodeURIComponent(groupId)}`);
  // Right after a retry the group is queued again (it may already be running, or have failed again);
  // this one is incomplete (2 of 4 subbands), so the worker puts it back to collecting.
  expect(['collecting', 'pending', 'in_progress', 'completed', 'failed']).toContain(g.state);
  await shot(page, info, 'group-retried');
});

test('screenshots at laptop and wall-screen widths, light and dark', async ({ page }, info) => {
  const errors = watchConsole(page);
  for (const [w, h] of [
    [1366, 768],
    [2560, 1440],
  ]) {
    await page.setViewportSize({ width: w, height: h });
    for (const mode of ['light', 'dark']) {
      await page.addInitScript((m) => localStorage.setItem('contimg.theme', m), mode);
      await openDashboard(page);
      await expect(page.locator('[aria-busy="true"]')).toHaveCount(0, { timeout: 15_000 });
      // No horizontal scrolling of the page itself.
      expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1)).toBe(true);
      await shot(page, info, `dashboard-${w}x${h}-${mode}`);
      // The README's two screenshots: laptop/light and wall/dark.
      if (process.env.UPDATE_DOC_SCREENSHOTS && (w === 1366) === (mode === 'light')) {
        await page.screenshot({ path: `../docs/screenshots/streaming-${w}x${h}-${mode}.png` });
      }
    }
  }
  expect(errors).toEqual([]);
});

test('each history chart spans the picked window ending now (a fresh install once showed 2027..2029)', async ({ page }) => {
  await openDashboard(page);
  const history = page.getByRole('region', { name: 'History' });
  const span = async (label: string) => {
    const chart = history.getByRole('img', { name: label });
    await expect(chart).toHaveAttribute('data-x-max', /^\d+/);
    const [min, max] = await Promise.all([chart.getAttribute('data-x-min'), chart.getAttribute('data-x-max')]);
    return { min: Number(min), max: Number(max) };
  };
  for (const [win, seconds] of [['1h', 3600], ['24h', 86_400], ['7d', 7 * 86_400]] as const) {
    await history.getByRole('button', { name: `Last ${win}` }).click();
    for (const title of ['CPU', 'Memory', 'Queue depth', 'Processing rate']) {
      const { min, max } = await span(`${title} over the last ${win}`);
      expect(max - min, `${title} ${win}`).toBe(seconds);
      // Ends when the window's data was fetched, which picking it just did.
      expect(Math.abs(Date.now() / 1000 - max), `${title} ${win} ends now`).toBeLessThan(120);
    }
  }
});

test('the Disk card shows used and free space of each configured directory and the retention settings', async ({ page }) => {
  await openDashboard(page);
  const region = page.getByRole('region', { name: 'Disk' });
  for (const dir of ['input_dir', 'output_dir', 'scratch_dir', 'state_dir']) {
    const bar = region.getByRole('progressbar', { name: dir });
    await expect(bar).toBeVisible();
    await expect(bar).toHaveAttribute('aria-valuetext', / free, .* used of /);
  }
  const retention = region.getByLabel('Retention settings');
  await expect(retention).toContainText('Keep outputs');
  await expect(retention).toContainText('Minimum free space');
});
