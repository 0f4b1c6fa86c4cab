import { describe, expect, it } from 'vitest';
import type { StreamingConfig } from './api/types';
import { displayValue, sectionsFor } from './configFields';
import { buildPayload, mapFieldErrors, toForm } from './configForm';
import { config } from './test/fixtures';

// As GET config answers since issue 13: the executor and the [slurm] table.
const withSlurm = {
  ...config,
  executor: 'local',
  slurm: {
    partition: '',
    account: '',
    qos: '',
    time_limit: '',
    cpus_per_task: 1,
    mem: '',
    max_jobs: 16,
    extra_args: [],
    cancel_on_stop: false,
    poll_interval_s: 5,
    log_dir: '',
  },
} as unknown as StreamingConfig;

describe('the executor and the [slurm] table in the config editor', () => {
  it('shows them in their own section, not under Other', () => {
    const sections = sectionsFor(withSlurm);
    const executor = sections.find((s) => s.title === 'Executor');
    expect(executor?.fields.map((f) => f.name)).toContain('slurm.partition');
    expect(executor?.fields.map((f) => f.name)).toContain('executor');
    expect(sections.find((s) => s.title === 'Other')).toBeUndefined();
    const maxJobs = executor!.fields.find((f) => f.name === 'slurm.max_jobs')!;
    expect(displayValue(withSlurm, maxJobs)).toBe('16');
  });

  it('round-trips without changes and sends a changed table key as a partial table', () => {
    expect(buildPayload(withSlurm, toForm(withSlurm)).payload).toEqual({});
    const f = toForm(withSlurm);
    f.values.executor = 'slurm';
    f.values['slurm.partition'] = 'debug';
    f.values['slurm.max_jobs'] = '40';
    expect(buildPayload(withSlurm, f).payload).toEqual({ executor: 'slurm', slurm: { partition: 'debug', max_jobs: 40 } });
  });

  it('refuses an unknown executor locally and maps the server’s slurm.* errors to their fields', () => {
    const f = toForm(withSlurm);
    f.values.executor = 'kubernetes';
    expect(buildPayload(withSlurm, f).errors).toEqual({ executor: 'One of local, slurm' });
    const known = new Set(sectionsFor(withSlurm).flatMap((s) => s.fields.map((x) => x.name)));
    const { byField, other } = mapFieldErrors([{ field: 'slurm.max_jobs', message: 'must be at least 1' }], known);
    expect(byField).toEqual({ 'slurm.max_jobs': 'must be at least 1' });
    expect(other).toEqual([]);
  });

  it('a config without them (an older server) shows no Executor section', () => {
    expect(sectionsFor(config).find((s) => s.title === 'Executor')).toBeUndefined();
  });
});
