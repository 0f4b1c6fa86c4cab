import type { GroupJob, ServiceStatus } from './api/types';

/** A Slurm job in a few words: id, state, node, exit code ("4711 · RUNNING · n3"). */
export function jobWords(job: GroupJob): string {
  const parts = [job.job_id ?? 'no id yet', job.state ?? '?'];
  if (job.state === 'PENDING' || job.state === 'SUBMITTING') {
    parts.push('waiting in Slurm');
  } else if (job.node) {
    parts.push(job.node);
  }
  if (job.exit_code != null) parts.push(`exit ${job.exit_code}`);
  return parts.join(' · ');
}

/** MUI chip colour for a Slurm state. */
export function jobColor(state: string | null): 'default' | 'info' | 'success' | 'error' | 'warning' {
  switch (state) {
    case 'RUNNING':
    case 'COMPLETING':
      return 'info';
    case 'COMPLETED':
      return 'success';
    case 'PENDING':
    case 'SUBMITTING':
      return 'warning';
    case null:
      return 'default';
    default:
      return 'error';
  }
}

/** The status card's executor facts: where conversions run, the jobs in flight and the scheduler. */
export function executorFacts(s: ServiceStatus): [string, string][] {
  if (!s.executor) return [];
  const facts: [string, string][] = [['Executor', s.executor_description ?? s.executor]];
  if (s.executor !== 'slurm') return facts;
  const jobs = s.jobs_in_flight;
  facts.push(['Slurm jobs', jobs ? `${jobs.queued} queued, ${jobs.running} running` : '—']);
  facts.push([
    'Scheduler',
    s.scheduler_reachable == null
      ? 'unknown (worker not running)'
      : s.scheduler_reachable
        ? 'reachable'
        : `UNREACHABLE since ${s.scheduler_unreachable_since ?? '?'}`,
  ]);
  return facts;
}
