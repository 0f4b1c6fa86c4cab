import { Stack, Typography } from '@mui/material';
import { useLimits, useMetrics, useStatus } from '../api/queries';
import { formatMb, formatPercent } from '../format';
import { Loadable, Panel } from './Panel';
import { UsageBar } from './UsageBar';

export function ResourceCard() {
  const status = useStatus();
  const metrics = useMetrics();
  const limits = useLimits();
  const quota = limits.data?.cpu_quota_percent ?? null;
  return (
    <Panel title="Resource Usage">
      <Loadable query={status} what="resource usage">
        {(s) => {
          const cpu = s.cpu_percent ?? metrics.data?.cpu_percent ?? null;
          const mem = s.memory_mb ?? metrics.data?.memory_mb ?? null;
          const limit = s.memory_limit_mb ?? null;
          // CPU is relative to one core, or to the quota when one is set.
          const cpuPct = cpu == null ? null : quota ? (cpu / quota) * 100 : cpu;
          const memPct = mem != null && limit ? (mem / limit) * 100 : null;
          return (
            <Stack spacing={2.5}>
              <UsageBar
                label="CPU"
                percent={cpu == null ? null : (cpuPct ?? 0)}
                value={formatPercent(cpu)}
                caption={quota ? `of ${quota.toFixed(0)} % quota` : 'of one core'}
              />
              <UsageBar
                label="Memory"
                percent={memPct}
                value={formatMb(mem)}
                caption={
                  limit
                    ? `${formatPercent(memPct)} of ${formatMb(limit)} limit`
                    : 'No memory limit set'
                }
              />
              {!s.running ? (
                <Typography variant="body2" color="text.secondary">
                  Service is not running.
                </Typography>
              ) : null}
            </Stack>
          );
        }}
      </Loadable>
    </Panel>
  );
}
