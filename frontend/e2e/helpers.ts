import { expect, type APIRequestContext, type Page, type TestInfo } from '@playwright/test';

export const API_URL = (process.env.CONTIMG_API_URL ?? 'http://127.0.0.1:8010').replace(/\/$/, '');
export const TOKEN = process.env.CONTIMG_API_TOKEN ?? '';

export function requireToken() {
  if (!TOKEN) throw new Error('CONTIMG_API_TOKEN is not set: the mutating e2e tests need the daemon token');
}

const auth = () => ({ Authorization: `Bearer ${TOKEN}` });

/** Direct API calls (not through the UI), to arrange and to check state. */
export function api(request: APIRequestContext) {
  const get = async <T>(path: string): Promise<T> => {
    const r = await request.get(`${API_URL}${path}`, { headers: TOKEN ? auth() : {} });
    expect(r.status(), `GET ${path}`).toBe(200);
    return (await r.json()) as T;
  };
  const post = async (path: string, body: unknown = {}) => {
    requireToken();
    const r = await request.post(`${API_URL}${path}`, { headers: auth(), data: body, timeout: 60_000 });
    return { status: r.status(), body: await r.json().catch(() => null) };
  };
  return {
    get,
    post,
    status: () => get<{ running: boolean; pid: number | null; active_state?: string; started_at: string | null }>('/api/streaming/status'),
    config: async () => {
      const r = await request.get(`${API_URL}/api/streaming/config`, { headers: TOKEN ? auth() : {} });
      expect(r.status()).toBe(200);
      return { body: (await r.json()) as Record<string, unknown>, etag: r.headers()['etag'] ?? null };
    },
    /** Bring the service to running / stopped and wait until the API agrees. */
    ensure: async (running: boolean) => {
      const s = await get<{ running: boolean }>('/api/streaming/status');
      if (s.running !== running) {
        const r = await post(`/api/streaming/${running ? 'start' : 'stop'}`);
        expect(r.status, JSON.stringify(r.body)).toBe(200);
      }
      await expect
        .poll(async () => (await get<{ running: boolean }>('/api/streaming/status')).running, { timeout: 20_000 })
        .toBe(running);
    },
  };
}

/** Collect console errors and uncaught exceptions of a page. */
export function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console.error: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  return errors;
}

/** Put the token in sessionStorage before the app loads (skips the sign-in prompt). */
export async function signIn(page: Page) {
  requireToken();
  await page.addInitScript((t) => sessionStorage.setItem('contimg.token', t), TOKEN);
}

export async function openDashboard(page: Page) {
  await page.goto('/streaming');
  await expect(page.getByRole('status', { name: 'Service state' })).toBeVisible();
}

export function serviceState(page: Page) {
  return page.getByRole('status', { name: 'Service state' });
}

export async function shot(page: Page, info: TestInfo, name: string) {
  await page.screenshot({ path: info.outputPath(`${name}.png`), fullPage: true });
}
