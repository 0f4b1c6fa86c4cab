import type { StreamingConfig } from './api/types';

export type FieldKind = 'path' | 'int' | 'float' | 'bool' | 'level' | 'text' | 'choice';

export interface FieldDef {
  name: string;
  label: string;
  kind: FieldKind;
  help?: string;
  unit?: string;
  /** An optional setting (null in the config, empty in the editor): what unset means. */
  unset?: string;
  /** kind 'choice': the allowed values. */
  choices?: string[];
}

/**
 * A field's value in the config. `name` may name a key of a table
 * (`slurm.partition`): such fields are sent back as a partial table
 * (`{"slurm": {"partition": "x"}}`), which the server merges.
 */
export function fieldValue(cfg: StreamingConfig, name: string): unknown {
  let v: unknown = cfg;
  for (const key of name.split('.')) {
    if (v === null || typeof v !== 'object' || !(key in v)) return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

export function hasField(cfg: StreamingConfig, name: string): boolean {
  return fieldValue(cfg, name) !== undefined;
}

export interface FieldSection {
  title: string;
  fields: FieldDef[];
}

/** The known StreamingConfig fields, grouped for the editor and the summary card. */
export const CONFIG_SECTIONS: FieldSection[] = [
  {
    title: 'Paths',
    fields: [
      { name: 'input_dir', label: 'Input directory', kind: 'path', help: 'Watched for *_sbNN.hdf5 subband files' },
      { name: 'output_dir', label: 'Output directory', kind: 'path', help: 'Where converted groups are written' },
      { name: 'queue_db', label: 'Queue database', kind: 'path' },
      { name: 'registry_db', label: 'Calibration registry database', kind: 'path' },
      { name: 'scratch_dir', label: 'Scratch directory', kind: 'path' },
      { name: 'tmpfs_path', label: 'tmpfs path', kind: 'path' },
    ],
  },
  {
    title: 'Grouping',
    fields: [
      { name: 'expected_subbands', label: 'Expected subbands', kind: 'int' },
      { name: 'chunk_duration', label: 'Chunk duration', kind: 'float', unit: 'min' },
      { name: 'group_tolerance_s', label: 'Group tolerance', kind: 'float', unit: 's', help: 'Subbands within this many seconds form one group' },
      { name: 'incomplete_timeout_s', label: 'Incomplete timeout', kind: 'float', unit: 's' },
    ],
  },
  {
    title: 'Worker',
    fields: [
      { name: 'max_workers', label: 'Max workers', kind: 'int' },
      { name: 'poll_interval', label: 'Poll interval', kind: 'float', unit: 's' },
      { name: 'worker_poll_interval', label: 'Worker poll interval', kind: 'float', unit: 's' },
      { name: 'monitor_interval', label: 'Monitor interval', kind: 'float', unit: 's' },
      { name: 'convert_timeout_s', label: 'Convert timeout', kind: 'float', unit: 's' },
      { name: 'max_retries', label: 'Max retries', kind: 'int' },
      { name: 'retry_backoff_s', label: 'Retry backoff', kind: 'float', unit: 's' },
      { name: 'retry_backoff_max_s', label: 'Max retry backoff', kind: 'float', unit: 's' },
      { name: 'drain_timeout_s', label: 'Drain timeout', kind: 'float', unit: 's', help: 'On stop, how long running conversions may finish' },
      { name: 'log_level', label: 'Log level', kind: 'level' },
    ],
  },
  {
    title: 'Disk and retention',
    fields: [
      {
        name: 'retain_input_hours',
        label: 'Keep inputs of completed groups',
        kind: 'float',
        unit: 'h',
        help: 'Then they are deleted, or moved to the archive directory',
      },
      { name: 'archive_dir', label: 'Archive directory', kind: 'path', unset: 'none (delete)', help: 'Empty: inputs are deleted, not archived' },
      { name: 'retain_failed_days', label: 'Keep inputs of failed groups', kind: 'float', unit: 'd', help: 'Also of groups that never completed' },
      { name: 'retain_output_days', label: 'Keep outputs', kind: 'float', unit: 'd', unset: 'forever', help: 'Empty: outputs are never removed' },
      { name: 'retention_interval_s', label: 'Retention sweep interval', kind: 'float', unit: 's' },
      { name: 'min_free_gb', label: 'Minimum free space', kind: 'float', unit: 'GB', help: 'Below it in a directory it writes, the worker claims no conversion' },
      { name: 'free_space_factor', label: 'Free space per input', kind: 'float', unit: '×', help: "A claim also needs the group's input size times this free" },
    ],
  },
  {
    title: 'Executor',
    fields: [
      {
        name: 'executor',
        label: 'Executor',
        kind: 'choice',
        choices: ['local', 'slurm'],
        help: 'local: conversions run on this host; slurm: one batch job per group attempt',
      },
      { name: 'slurm.partition', label: 'Slurm partition', kind: 'text', help: "Empty: the cluster's default partition" },
      { name: 'slurm.account', label: 'Slurm account', kind: 'text' },
      { name: 'slurm.qos', label: 'Slurm QOS', kind: 'text' },
      { name: 'slurm.time_limit', label: 'Slurm time limit', kind: 'text', help: 'Slurm time format, e.g. 30 or 1:00:00; empty: the partition’s limit' },
      { name: 'slurm.cpus_per_task', label: 'CPUs per job', kind: 'int' },
      { name: 'slurm.mem', label: 'Memory per job', kind: 'text', help: 'Slurm format, e.g. 4G; empty: the cluster default' },
      { name: 'slurm.max_jobs', label: 'Max jobs in flight', kind: 'int' },
      { name: 'slurm.poll_interval_s', label: 'Slurm poll interval', kind: 'float', unit: 's' },
      { name: 'slurm.log_dir', label: 'Job log directory', kind: 'path', help: 'On storage every node sees; empty: <scratch_dir>/slurm-jobs' },
      { name: 'slurm.cancel_on_stop', label: 'Cancel jobs on stop', kind: 'bool' },
    ],
  },
  {
    title: 'Switches',
    fields: [
      { name: 'use_subprocess', label: 'Use subprocess', kind: 'bool' },
      { name: 'monitoring', label: 'Monitoring', kind: 'bool' },
      { name: 'stage_to_tmpfs', label: 'Stage to tmpfs', kind: 'bool' },
      { name: 'validate_uvh5', label: 'Validate UVH5 files', kind: 'bool' },
    ],
  },
];

/** A setting as the summary cards show it: with its unit, or what "unset" means. */
export function displayValue(cfg: StreamingConfig, def: FieldDef): string {
  const v = fieldValue(cfg, def.name);
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  if (v == null || v === '') return def.unset ?? '—';
  return def.unit ? `${v} ${def.unit}` : String(v);
}

const KNOWN = new Set(['converter', 'slurm', ...CONFIG_SECTIONS.flatMap((s) => s.fields.map((f) => f.name))]);

function humanize(name: string): string {
  const s = name.replace(/_/g, ' ');
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/**
 * Sections for a given config: known fields that the server actually returned,
 * plus an "Other" section for fields the server added that we don't know yet
 * (the API only ever adds fields), typed from their JSON values.
 */
export function sectionsFor(cfg: StreamingConfig): FieldSection[] {
  const rec = cfg as unknown as Record<string, unknown>;
  const out = CONFIG_SECTIONS.map((s) => ({ ...s, fields: s.fields.filter((f) => hasField(cfg, f.name)) })).filter(
    (s) => s.fields.length > 0,
  );
  const extra: FieldDef[] = [];
  for (const [k, v] of Object.entries(rec)) {
    if (KNOWN.has(k)) continue;
    if (typeof v === 'boolean') extra.push({ name: k, label: humanize(k), kind: 'bool' });
    else if (typeof v === 'number') extra.push({ name: k, label: humanize(k), kind: Number.isInteger(v) ? 'int' : 'float' });
    else if (typeof v === 'string' || v === null) extra.push({ name: k, label: humanize(k), kind: 'text' });
  }
  if (extra.length) out.push({ title: 'Other', fields: extra });
  return out;
}
