import { describe, expect, it } from 'vitest';
import { json, mockFetch } from '../test/utils';
import { cancelTokenPrompt, getPromptReason, getToken, setToken, submitToken, TokenCancelled } from './auth';
import { ApiError, post } from './client';
import { api } from './endpoints';

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('API client', () => {
  it('sends the bearer token and If-Match on POST', async () => {
    setToken('s3cret');
    const { calls } = mockFetch({ 'POST /api/streaming/config': { success: true, message: 'ok' } });
    await api.saveConfig({ max_workers: 2 }, '"etag-1"');
    expect(calls[0].headers.authorization).toBe('Bearer s3cret');
    expect(calls[0].headers['if-match']).toBe('"etag-1"');
    expect(calls[0].body).toEqual({ max_workers: 2 });
  });

  it('asks for a token before the first mutation and then proceeds', async () => {
    const { calls } = mockFetch({ 'POST /api/streaming/start': { success: true, message: 'started' } });
    const p = post('/api/streaming/start', {});
    await tick();
    expect(getPromptReason()).toMatch(/token/i);
    expect(calls).toHaveLength(0);
    submitToken('tok');
    await expect(p).resolves.toMatchObject({ success: true });
    expect(calls[0].headers.authorization).toBe('Bearer tok');
    expect(sessionStorage.getItem('contimg.token')).toBe('tok');
  });

  it('on 401 clears the token, prompts again and retries once', async () => {
    setToken('old');
    let n = 0;
    mockFetch({
      'POST /api/streaming/stop': () =>
        n++ === 0 ? json({ error: 'unauthorized', message: 'bad token' }, 401) : { success: true, message: 'stopped' },
    });
    const p = post('/api/streaming/stop', {});
    await tick();
    await tick();
    expect(getToken()).toBeNull();
    expect(getPromptReason()).toMatch(/401/);
    submitToken('new');
    await expect(p).resolves.toMatchObject({ message: 'stopped' });
  });

  it('rejects when the prompt is cancelled', async () => {
    mockFetch({});
    const p = post('/api/streaming/start', {});
    await tick();
    cancelTokenPrompt();
    await expect(p).rejects.toBeInstanceOf(TokenCancelled);
  });

  it('exposes 422 field errors and failed-control logs', async () => {
    setToken('t');
    mockFetch({
      'POST /api/streaming/config': json(
        { error: 'validation', message: 'invalid', details: [{ field: 'max_workers', message: 'too small' }] },
        422,
      ),
      'POST /api/streaming/start': json({ success: false, message: 'start failed', logs: ['line 1', 'line 2'] }, 500),
    });
    const e = (await api.saveConfig({ max_workers: 0 }, null).catch((x) => x)) as ApiError;
    expect(e.status).toBe(422);
    expect(e.fieldErrors).toEqual([{ field: 'max_workers', message: 'too small' }]);
    const e2 = (await api.control('start').catch((x) => x)) as ApiError;
    expect(e2.status).toBe(500);
    expect(e2.message).toBe('start failed');
    expect(e2.logs).toEqual(['line 1', 'line 2']);
  });

  it('returns the ETag with the config', async () => {
    mockFetch({ '/api/streaming/config': json({ max_workers: 4 }, 200, { ETag: '"v7"' }) });
    const r = await api.config();
    expect(r.etag).toBe('"v7"');
  });
});
