// Server-Sent Events over fetch(): unlike EventSource this can send the
// Authorization header (needed when the daemon runs with read_requires_token)
// and gives us control over reconnection.
import { getToken } from './auth';

export interface SseMessage {
  event: string;
  data: string;
  id?: string;
}

/** Incremental text/event-stream parser. Feed it chunks; it calls onMessage per event. */
export class SseParser {
  private buf = '';
  private event = '';
  private data: string[] = [];
  private id: string | undefined;
  private readonly onMessage: (m: SseMessage) => void;

  constructor(onMessage: (m: SseMessage) => void) {
    this.onMessage = onMessage;
  }

  feed(chunk: string) {
    this.buf += chunk;
    let idx: number;
    while ((idx = this.buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buf.slice(0, idx);
      const sepLen = this.buf[idx] === '\r' && this.buf[idx + 1] === '\n' ? 2 : 1;
      // A lone trailing \r might be the first half of \r\n: wait for more.
      if (this.buf[idx] === '\r' && idx + 1 === this.buf.length) break;
      this.buf = this.buf.slice(idx + sepLen);
      this.line(line);
    }
  }

  private line(line: string) {
    if (line === '') {
      if (this.data.length > 0) {
        this.onMessage({ event: this.event || 'message', data: this.data.join('\n'), id: this.id });
      }
      this.event = '';
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return; // comment / keep-alive
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id') this.id = value;
  }
}

export interface SseHandlers {
  onOpen?: () => void;
  onMessage: (m: SseMessage) => void;
  /** Called when the stream drops or fails to connect; reconnection follows. */
  onDown?: (err: unknown) => void;
}

export interface SseOptions {
  /** First reconnect delay; doubles up to maxDelayMs. */
  retryMs?: number;
  maxDelayMs?: number;
}

/**
 * Connect to an SSE endpoint and keep reconnecting until the returned
 * function is called.
 */
export function connectSse(url: string, h: SseHandlers, opts: SseOptions = {}): () => void {
  const base = opts.retryMs ?? 1000;
  const max = opts.maxDelayMs ?? 15000;
  const ctrl = new AbortController();
  let delay = base;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const run = async () => {
    try {
      const headers: Record<string, string> = { Accept: 'text/event-stream' };
      const t = getToken();
      if (t) headers.Authorization = `Bearer ${t}`;
      const res = await fetch(url, { headers, signal: ctrl.signal, cache: 'no-store' });
      if (!res.ok || !res.body) throw new Error(`SSE ${url}: HTTP ${res.status}`);
      delay = base;
      h.onOpen?.();
      const parser = new SseParser(h.onMessage);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
      throw new Error('SSE stream ended');
    } catch (err) {
      if (ctrl.signal.aborted) return;
      h.onDown?.(err);
      timer = setTimeout(run, delay);
      delay = Math.min(delay * 2, max);
    }
  };
  void run();

  return () => {
    ctrl.abort();
    if (timer) clearTimeout(timer);
  };
}
