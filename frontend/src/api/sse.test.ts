import { describe, expect, it } from 'vitest';
import { SseParser, type SseMessage } from './sse';

function parse(chunks: string[]): SseMessage[] {
  const out: SseMessage[] = [];
  const p = new SseParser((m) => out.push(m));
  chunks.forEach((c) => p.feed(c));
  return out;
}

describe('SseParser', () => {
  it('parses named events with JSON data', () => {
    const out = parse(['event: status\ndata: {"running":true}\n\n', 'event: metrics\ndata: {}\n\n']);
    expect(out).toEqual([
      { event: 'status', data: '{"running":true}', id: undefined },
      { event: 'metrics', data: '{}', id: undefined },
    ]);
  });

  it('ignores keep-alive comments and joins multi-line data', () => {
    const out = parse([': ping\n\n', 'data: a\ndata: b\n\n']);
    expect(out).toEqual([{ event: 'message', data: 'a\nb', id: undefined }]);
  });

  it('handles CRLF and events split across chunks', () => {
    const out = parse(['event: lo', 'g\r\ndata: {"message":"x"', '}\r', '\n\r\n']);
    expect(out).toEqual([{ event: 'log', data: '{"message":"x"}', id: undefined }]);
  });
});
