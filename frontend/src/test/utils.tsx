import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { render } from '@testing-library/react';
import type { ReactElement } from 'react';
import { MemoryRouter } from 'react-router';
import { vi } from 'vitest';
import { LiveContext, type LiveState } from '../api/liveContext';
import { ThemeModeProvider } from '../ThemeModeProvider';
import { TokenDialog } from '../components/TokenDialog';

export function testClient() {
  return new QueryClient({ defaultOptions: { queries: { retry: false, gcTime: Infinity }, mutations: { retry: false } } });
}

export function renderWithProviders(
  ui: ReactElement,
  { live = 'live', route = '/streaming', client = testClient() }: { live?: LiveState; route?: string; client?: QueryClient } = {},
) {
  const r = render(
    <ThemeModeProvider>
      <QueryClientProvider client={client}>
        <LiveContext.Provider value={live}>
          <MemoryRouter initialEntries={[route]}>
            {ui}
            <TokenDialog />
          </MemoryRouter>
        </LiveContext.Provider>
      </QueryClientProvider>
    </ThemeModeProvider>,
  );
  return { ...r, client };
}

export interface Call {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: unknown;
}

type Handler = ((c: Call) => Response | Promise<Response> | unknown) | Response | object;

export function json(body: unknown, status = 200, headers: Record<string, string> = {}) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });
}

/**
 * Stub global fetch. Keys are "METHOD /path" (query string ignored) or "/path"
 * for GET. A handler returning a non-Response value is sent as JSON 200.
 * Unmatched requests answer 404; SSE requests never resolve unless handled.
 */
export function mockFetch(handlers: Record<string, Handler>) {
  const calls: Call[] = [];
  const fn = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.toString() : input.url;
    const method = (init.method ?? 'GET').toUpperCase();
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((v, k) => (headers[k] = v));
    let body: unknown = undefined;
    if (typeof init.body === 'string') {
      try {
        body = JSON.parse(init.body);
      } catch {
        body = init.body;
      }
    }
    const call = { method, url, headers, body };
    calls.push(call);
    const path = url.split('?')[0];
    const h = handlers[`${method} ${path}`] ?? (method === 'GET' ? handlers[path] : undefined);
    if (!h) {
      if (path.endsWith('/events') || url.includes('follow=true')) return new Promise<Response>(() => {});
      return json({ error: 'not_found', message: `no handler for ${method} ${path}` }, 404);
    }
    const r = typeof h === 'function' ? await (h as (c: Call) => unknown)(call) : h instanceof Response ? h.clone() : h;
    return r instanceof Response ? r : json(r);
  });
  vi.stubGlobal('fetch', fn);
  return { fn, calls };
}
