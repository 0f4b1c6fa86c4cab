import type { LogEntry } from './api/types';

const RANK: Record<string, number> = { ERROR: 0, CRITICAL: 0, WARNING: 1, WARN: 1, INFO: 2, DEBUG: 3, TRACE: 4 };

export function levelRank(level: string): number {
  return RANK[level.toUpperCase()] ?? 2;
}

export function logKey(e: LogEntry): string {
  return `${e.timestamp}|${e.pid ?? ''}|${e.message}`;
}

export interface LogFilter {
  level?: string;
  text?: string;
  group?: string;
}

/** Client-side filter, same semantics as the server's (level = minimum level). */
export function matches(e: LogEntry, f: LogFilter): boolean {
  if (f.level && levelRank(e.level) > levelRank(f.level)) return false;
  if (f.group && e.group_id !== f.group && !e.message.includes(f.group)) return false;
  if (f.text && !e.message.toLowerCase().includes(f.text.toLowerCase())) return false;
  return true;
}

/** Merge `extra` into `base` (both oldest first), dropping duplicates, keeping the last `max`. */
export function mergeLogs(base: LogEntry[], extra: LogEntry[], max: number): LogEntry[] {
  const seen = new Set(base.map(logKey));
  const out = base.slice();
  for (const e of extra) {
    const k = logKey(e);
    if (!seen.has(k)) {
      seen.add(k);
      out.push(e);
    }
  }
  return out.length > max ? out.slice(out.length - max) : out;
}
