// Pure conversion between a StreamingConfig and the editor's form state.
import type { ConverterConfig, FieldError, StreamingConfig } from './api/types';
import { fieldValue, sectionsFor, type FieldDef } from './configFields';

export interface ConfigForm {
  values: Record<string, string | boolean>;
  converterKind: 'builtin' | 'manifest' | 'command';
  /** One argv element per line. */
  argv: string;
  /** KEY=VALUE per line. */
  env: string;
}

export function toForm(cfg: StreamingConfig): ConfigForm {
  const values: Record<string, string | boolean> = {};
  for (const s of sectionsFor(cfg)) {
    for (const f of s.fields) {
      const v = fieldValue(cfg, f.name);
      values[f.name] = f.kind === 'bool' ? Boolean(v) : v == null ? '' : String(v);
    }
  }
  const conv = cfg.converter;
  return {
    values,
    converterKind: conv?.kind === 'command' || conv?.kind === 'manifest' ? conv.kind : 'builtin',
    argv: conv?.kind === 'command' ? conv.argv.join('\n') : '',
    env:
      conv?.kind === 'command' && conv.env
        ? Object.entries(conv.env)
            .map(([k, v]) => `${k}=${v}`)
            .join('\n')
        : '',
  };
}

function parseValue(f: FieldDef, raw: string | boolean): { value?: unknown; error?: string } {
  if (f.kind === 'bool') return { value: Boolean(raw) };
  const s = String(raw).trim();
  // An optional setting left empty is unset: null clears it on the server.
  if (f.unset !== undefined && s === '') return { value: null };
  if (f.kind === 'int' || f.kind === 'float') {
    if (s === '') return { error: 'Enter a number' };
    const n = Number(s);
    if (!Number.isFinite(n)) return { error: 'Enter a number' };
    if (f.kind === 'int' && !Number.isInteger(n)) return { error: 'Enter a whole number' };
    return { value: n };
  }
  if (f.kind === 'choice' && f.choices && !f.choices.includes(s)) return { error: `One of ${f.choices.join(', ')}` };
  return { value: f.kind === 'path' || f.kind === 'level' || f.kind === 'choice' ? s : String(raw) };
}

export function parseConverter(form: ConfigForm): { value?: ConverterConfig; error?: string } {
  if (form.converterKind !== 'command') return { value: { kind: form.converterKind } };
  const argv = form.argv
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  if (argv.length === 0) return { error: 'Enter the command, one argument per line' };
  const env: Record<string, string> = {};
  for (const line of form.env.split('\n')) {
    const l = line.trim();
    if (!l) continue;
    const eq = l.indexOf('=');
    if (eq <= 0) return { error: `Environment line "${l}" is not KEY=VALUE` };
    env[l.slice(0, eq).trim()] = l.slice(eq + 1);
  }
  return { value: Object.keys(env).length ? { kind: 'command', argv, env } : { kind: 'command', argv } };
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export interface BuiltPayload {
  /** Only the fields that differ from the loaded config. */
  payload: Partial<StreamingConfig>;
  /** Client-side problems (unparseable numbers, empty argv): field → message. */
  errors: Record<string, string>;
}

/** Sets `name` in the payload; a table key (`slurm.partition`) goes into a partial table. */
function setField(payload: Record<string, unknown>, name: string, value: unknown) {
  const dot = name.indexOf('.');
  if (dot < 0) {
    payload[name] = value;
    return;
  }
  const table = name.slice(0, dot);
  const inner = (payload[table] as Record<string, unknown> | undefined) ?? {};
  setField(inner, name.slice(dot + 1), value);
  payload[table] = inner;
}

export function buildPayload(original: StreamingConfig, form: ConfigForm): BuiltPayload {
  const payload: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  for (const s of sectionsFor(original)) {
    for (const f of s.fields) {
      const r = parseValue(f, form.values[f.name] ?? '');
      if (r.error) errors[f.name] = r.error;
      else if (!sameJson(r.value, fieldValue(original, f.name) ?? (f.kind === 'bool' ? false : f.unset !== undefined ? null : '')))
        setField(payload, f.name, r.value);
    }
  }
  const conv = parseConverter(form);
  if (conv.error) errors.converter = conv.error;
  else if (!sameJson(conv.value, original.converter ?? { kind: 'builtin' })) {
    if (original.converter !== undefined || conv.value?.kind !== 'builtin') payload.converter = conv.value;
  }
  return { payload: payload as Partial<StreamingConfig>, errors };
}

/**
 * Attach the server's 422 field errors to form fields. Errors for nested
 * converter fields (`converter.argv`, `converter.env.X`) go to `converter`;
 * errors naming no field we show are returned in `other`.
 */
export function mapFieldErrors(
  errs: FieldError[],
  known: Set<string>,
): { byField: Record<string, string>; other: FieldError[] } {
  const byField: Record<string, string> = {};
  const other: FieldError[] = [];
  for (const e of errs) {
    const top = e.field.split(/[.[]/)[0];
    const key = known.has(e.field) ? e.field : top === 'converter' ? 'converter' : known.has(top) ? top : null;
    if (key) byField[key] = byField[key] ? `${byField[key]}; ${e.message}` : e.message;
    else other.push(e);
  }
  return { byField, other };
}
