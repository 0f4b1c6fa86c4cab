import { getToken, requestToken, setToken } from './auth';
import type { ApiErrorBody, FieldError } from './types';

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: unknown;

  constructor(status: number, code: string, message: string, details?: unknown) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** The per-field errors of a 422, or [] for anything else. */
  get fieldErrors(): FieldError[] {
    if (!Array.isArray(this.details)) return [];
    return this.details.filter(
      (d): d is FieldError =>
        typeof d === 'object' && d !== null && typeof (d as FieldError).field === 'string',
    );
  }

  /** For failed start/stop/restart the server attaches the unit's last log lines. */
  get logs(): string[] {
    const d = this.details as { logs?: unknown } | null;
    const logs = d && typeof d === 'object' ? d.logs : undefined;
    if (!Array.isArray(logs)) return [];
    return logs.map((l) => {
      if (typeof l === 'string') return l;
      const e = l as { timestamp?: string; level?: string; message?: string };
      return e && typeof e.message === 'string'
        ? [e.timestamp, e.level, e.message].filter(Boolean).join(' ')
        : JSON.stringify(l);
    });
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) return err.message || `${err.status} ${err.code}`;
  if (err instanceof Error) return err.message;
  return String(err);
}

async function parseError(res: Response): Promise<ApiError> {
  let body: Partial<ApiErrorBody> & Record<string, unknown> = {};
  try {
    body = await res.json();
  } catch {
    /* not JSON (e.g. a proxy error page) */
  }
  const code = typeof body.error === 'string' ? body.error : `http_${res.status}`;
  const message =
    typeof body.message === 'string' && body.message
      ? body.message
      : res.statusText || `HTTP ${res.status}`;
  // A failed control action answers 500 with {success:false, message, logs}.
  let details: unknown = body.details;
  if (details === undefined && Array.isArray(body.logs)) details = { logs: body.logs };
  return new ApiError(res.status, code, message, details);
}

export interface JsonResult<T> {
  data: T;
  etag: string | null;
}

function authHeaders(): Record<string, string> {
  const t = getToken();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

export async function getJson<T>(path: string, signal?: AbortSignal): Promise<JsonResult<T>> {
  let res: Response;
  try {
    res = await fetch(path, { headers: { Accept: 'application/json', ...authHeaders() }, signal });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `API unreachable: ${errorMessage(e)}`);
  }
  if (res.status === 401) {
    // Reads need a token only with read_requires_token; ask once and retry.
    setToken(null);
    await requestToken('The API requires a token to read data.');
    return getJson<T>(path, signal);
  }
  if (!res.ok) throw await parseError(res);
  return { data: (await res.json()) as T, etag: res.headers.get('ETag') };
}

export async function get<T>(path: string, signal?: AbortSignal): Promise<T> {
  return (await getJson<T>(path, signal)).data;
}

export interface PostOptions {
  ifMatch?: string | null;
}

/**
 * POST JSON with the bearer token. Without a token the prompt opens first;
 * a 401 clears the stored token, re-opens the prompt and retries once.
 */
export async function post<T>(path: string, body?: unknown, opts: PostOptions = {}): Promise<T> {
  let token = getToken();
  if (!token) token = await requestToken('This action needs the API token.');
  for (let attempt = 0; ; attempt++) {
    const headers: Record<string, string> = {
      Accept: 'application/json',
      'Content-Type': 'application/json',
      Authorization: `Bearer ${token}`,
    };
    if (opts.ifMatch) headers['If-Match'] = opts.ifMatch;
    let res: Response;
    try {
      res = await fetch(path, {
        method: 'POST',
        headers,
        body: body === undefined ? '{}' : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, 'network', `API unreachable: ${errorMessage(e)}`);
    }
    if (res.status === 401 && attempt === 0) {
      setToken(null);
      token = await requestToken('The token was rejected (401). Enter a valid API token.');
      continue;
    }
    if (!res.ok) throw await parseError(res);
    const text = await res.text();
    return (text ? JSON.parse(text) : {}) as T;
  }
}
