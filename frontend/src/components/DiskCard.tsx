import { Box, Stack, Typography } from '@mui/material';
import { useConfig, useDisk } from '../api/queries';
import type { DirUsage, DiskTrend, StreamingConfig } from '../api/types';
import { CONFIG_SECTIONS, displayValue } from '../configFields';
import { formatBytes } from '../format';
import { Facts } from './Facts';
import { Loadable, Panel } from './Panel';
import { UsageBar } from './UsageBar';

const TREND_SECONDS = 86_400;
const SPARK_W = 240;
const SPARK_H = 36;
/** The low_disk alert's thresholds (contimg-api's [alerts] defaults), in percent free. */
const WARN_FREE_PERCENT = 10;
const CRITICAL_FREE_PERCENT = 5;

const RETENTION = CONFIG_SECTIONS.find((s) => s.title === 'Disk and retention')?.fields ?? [];

/** Free space over the last 24 h ending `endMs`, as an SVG polyline (no canvas, so it also reads in tests). */
export function Sparkline({ dir, trend, endMs }: { dir: string; trend: DiskTrend | undefined; endMs: number }) {
  const points = (trend?.points ?? []).map((p) => ({ t: new Date(p.t).getTime() / 1000, v: p.free_bytes }));
  if (points.length === 0) {
    return (
      <Typography variant="caption" color="text.secondary">
        No free-space samples in the last 24 h yet.
      </Typography>
    );
  }
  const end = endMs / 1000;
  const start = end - TREND_SECONDS;
  const values = points.map((p) => p.v);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  // A flat trend sits mid-height instead of on an edge.
  const pad = hi > lo ? 0 : Math.max(1, hi * 0.01);
  const x = (t: number) => ((t - start) / TREND_SECONDS) * SPARK_W;
  const y = (v: number) => SPARK_H - ((v - lo + pad) / (hi - lo + 2 * pad)) * SPARK_H;
  const coords = points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ');
  const first = values[0];
  const last = values[values.length - 1];
  const latest = points[points.length - 1];
  return (
    <Box
      component="svg"
      role="img"
      aria-label={`${dir} free space over the last 24 h: ${formatBytes(first)} to ${formatBytes(last)}`}
      viewBox={`0 0 ${SPARK_W} ${SPARK_H}`}
      preserveAspectRatio="none"
      sx={{ width: '100%', height: SPARK_H, display: 'block', overflow: 'visible' }}
    >
      <Box component="polyline" points={coords} fill="none" sx={{ stroke: (t) => t.palette.info.main, strokeWidth: 1.5 }} vectorEffect="non-scaling-stroke" />
      {/* The latest sample as a dot: a lone first sample draws no line. */}
      <Box component="circle" cx={x(latest.t).toFixed(1)} cy={y(latest.v).toFixed(1)} r={2.5} sx={{ fill: (t) => t.palette.info.main }} />
    </Box>
  );
}

function levelOf(u: DirUsage, minFreeBytes: number | null): 'success' | 'warning' | 'error' {
  if (u.free_bytes == null || !u.total_bytes) return 'success';
  const freePercent = (u.free_bytes / u.total_bytes) * 100;
  if (freePercent < CRITICAL_FREE_PERCENT || (minFreeBytes != null && u.free_bytes < minFreeBytes)) return 'error';
  if (freePercent < WARN_FREE_PERCENT) return 'warning';
  return 'success';
}

function DirRow({ usage, others, trend, minFreeBytes, endMs }: { usage: DirUsage; others: DirUsage[]; trend?: DiskTrend; minFreeBytes: number | null; endMs: number }) {
  if (usage.error || usage.free_bytes == null || usage.used_bytes == null) {
    return (
      <Box>
        <Typography variant="body2" color="text.secondary">
          {usage.dir}
        </Typography>
        <Typography variant="body2" color="error" sx={{ overflowWrap: 'anywhere' }}>
          {usage.error ?? `${usage.path}: not measured`}
        </Typography>
      </Box>
    );
  }
  // As df's Use%: of what an unprivileged writer can reach (root's reserve left out).
  const reachable = usage.used_bytes + usage.free_bytes;
  const percent = reachable > 0 ? (usage.used_bytes / reachable) * 100 : null;
  const shared = others.filter((o) => o.filesystem != null && o.filesystem === usage.filesystem).map((o) => o.dir);
  const parts = [usage.path, `${formatBytes(usage.used_bytes)} used of ${formatBytes(usage.total_bytes)}`];
  if (shared.length) parts.push(`same filesystem as ${shared.join(', ')}`);
  if (minFreeBytes != null && usage.free_bytes < minFreeBytes) parts.push('below the minimum free space: no new conversions');
  return (
    <Box>
      <UsageBar
        label={usage.dir}
        percent={percent}
        value={`${formatBytes(usage.free_bytes)} free`}
        caption={parts.join(' · ')}
        level={levelOf(usage, minFreeBytes)}
      />
      <Sparkline dir={usage.dir} trend={trend} endMs={endMs} />
    </Box>
  );
}

function RetentionFacts({ config }: { config: StreamingConfig }) {
  const rec = config as unknown as Record<string, unknown>;
  const fields = RETENTION.filter((f) => f.name in rec);
  if (fields.length === 0) return null;
  return (
    <Box>
      <Typography variant="subtitle2" color="text.secondary" component="h3" sx={{ mb: 0.5 }}>
        Retention
      </Typography>
      <Facts label="Retention settings" minColumn={170} items={fields.map((f) => [f.label, displayValue(config, f)])} />
    </Box>
  );
}

/** Used and free space of every configured directory, its 24 h trend, and the retention settings. */
export function DiskCard() {
  const disk = useDisk();
  const config = useConfig();
  const cfg = config.data?.config;
  const minFreeBytes = cfg?.min_free_gb != null ? cfg.min_free_gb * 1e9 : null;
  return (
    <Panel title="Disk">
      <Stack spacing={2.5}>
        <Loadable query={disk} what="disk usage">
          {(d) =>
            d.dirs.length === 0 ? (
              <Typography variant="body2" color="text.secondary">
                No directory measured yet: the configuration is unreadable or the API has just started.
              </Typography>
            ) : (
              <Stack spacing={2}>
                {d.dirs.map((u) => (
                  <DirRow
                    key={u.dir}
                    usage={u}
                    others={d.dirs.filter((o) => o.dir !== u.dir)}
                    trend={d.trend.find((t) => t.dir === u.dir)}
                    minFreeBytes={minFreeBytes}
                    endMs={disk.dataUpdatedAt}
                  />
                ))}
              </Stack>
            )
          }
        </Loadable>
        {cfg ? <RetentionFacts config={cfg} /> : null}
      </Stack>
    </Panel>
  );
}
