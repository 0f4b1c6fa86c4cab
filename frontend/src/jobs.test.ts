import { describe, expect, it } from 'vitest';
import type { GroupJob, ServiceStatus } from './api/types';
import { executorFacts, jobColor, jobWords } from './jobs';

const job = (state: string, node: string | null, exit_code: number | null): GroupJob => ({
  executor: 'slurm',
  job_id: '4711',
  state,
  node,
  exit_code,
  log_path: '/logs/a.log',
});

describe('Slurm jobs in words', () => {
  it('says whether the job waits, runs where, or finished', () => {
    expect(jobWords(job('PENDING', null, null))).toBe('4711 · PENDING · waiting in Slurm');
    expect(jobWords(job('RUNNING', 'n3', null))).toBe('4711 · RUNNING · n3');
    expect(jobWords(job('FAILED', 'n2', 1))).toBe('4711 · FAILED · n2 · exit 1');
    expect(jobWords({ ...job('SUBMITTING', null, null), job_id: null })).toBe('no id yet · SUBMITTING · waiting in Slurm');
    expect(jobColor('NODE_FAIL')).toBe('error');
    expect(jobColor('COMPLETED')).toBe('success');
  });

  it('lists the executor, and with Slurm the jobs and the scheduler', () => {
    const base = { running: true } as ServiceStatus;
    expect(executorFacts(base)).toEqual([]);
    expect(executorFacts({ ...base, executor: 'local', executor_description: 'local' })).toEqual([['Executor', 'local']]);
    const slurm = {
      ...base,
      executor: 'slurm',
      executor_description: 'Slurm, partition debug',
      jobs_in_flight: { queued: 2, running: 5 },
      scheduler_reachable: false,
      scheduler_unreachable_since: '2026-11-29T18:16:02Z',
    };
    expect(executorFacts(slurm)).toEqual([
      ['Executor', 'Slurm, partition debug'],
      ['Slurm jobs', '2 queued, 5 running'],
      ['Scheduler', 'UNREACHABLE since 2026-11-29T18:16:02Z'],
    ]);
  });
});
