import { Box, Skeleton, ToggleButton, ToggleButtonGroup, Typography, useMediaQuery, useTheme } from '@mui/material';
import { useMemo, useState } from 'react';
import { useHistory } from '../api/queries';
import type { HistoryWindow } from '../api/types';
import { toColumns, windowSpan, type Pick } from '../chartData';
import { Panel, QueryError } from './Panel';
import { UPlotChart, type SeriesDef } from './UPlotChart';

const WINDOWS: HistoryWindow[] = ['1h', '24h', '7d'];

export function HistoryCharts() {
  const [win, setWin] = useState<HistoryWindow>('1h');
  const q = useHistory(win);
  const t = useTheme();
  const wall = useMediaQuery(t.breakpoints.up('wall'));
  const pts = q.data?.points;
  // Ends when the shown data was fetched (charts render only once there is data),
  // so the span moves with every refetch.
  const fetchedAt = q.dataUpdatedAt;
  const xRange = useMemo(() => windowSpan(win, fetchedAt), [win, fetchedAt]);

  const charts = useMemo(() => {
    const p = pts ?? [];
    const c = t.palette;
    const defs: { title: string; unit?: string; series: SeriesDef[]; picks: Pick[] }[] = [
      { title: 'CPU', unit: '%', series: [{ label: 'CPU', color: c.primary.main, fill: true }], picks: [(x) => x.cpu_percent] },
      { title: 'Memory', unit: 'MiB', series: [{ label: 'Memory', color: c.secondary.main, fill: true }], picks: [(x) => x.memory_mb] },
      {
        title: 'Queue depth',
        series: [
          { label: 'Depth', color: c.info.main, fill: true },
          { label: 'Pending', color: c.warning.main },
          { label: 'In progress', color: c.success.main },
          { label: 'Failed', color: c.error.main },
        ],
        picks: [(x) => x.queue_depth, (x) => x.pending, (x) => x.in_progress, (x) => x.failed],
      },
      {
        title: 'Processing rate',
        unit: '/h',
        series: [{ label: 'Groups/h', color: c.success.main, fill: true }],
        picks: [(x) => x.processing_rate_per_hour],
      },
    ];
    return defs.map((d) => ({ ...d, data: toColumns(p, d.picks) }));
  }, [pts, t.palette]);

  return (
    <Panel
      title="History"
      action={
        <ToggleButtonGroup
          size="small"
          exclusive
          value={win}
          onChange={(_e, v: HistoryWindow | null) => v && setWin(v)}
          aria-label="History window"
        >
          {WINDOWS.map((w) => (
            <ToggleButton key={w} value={w} aria-label={`Last ${w}`}>
              {w}
            </ToggleButton>
          ))}
        </ToggleButtonGroup>
      }
    >
      {q.isPending ? (
        <Box aria-busy="true" aria-label="Loading history" sx={{ display: 'grid', gridTemplateColumns: 'repeat(auto-fit, minmax(280px, 1fr))', gap: 2 }}>
          {charts.map((c) => (
            <Skeleton key={c.title} variant="rectangular" height={220} />
          ))}
        </Box>
      ) : q.data === undefined ? (
        <QueryError what="history" error={q.error} onRetry={() => void q.refetch()} />
      ) : (
        <>
          {q.isRefetchError ? <QueryError compact what="history" error={q.error} onRetry={() => void q.refetch()} /> : null}
          {q.data.points.length === 0 ? (
            <Typography variant="body2" color="text.secondary" sx={{ mb: 1 }}>
              No history recorded for this window yet.
            </Typography>
          ) : null}
          <Box sx={{ display: 'grid', gridTemplateColumns: 'repeat(auto-fit, minmax(280px, 1fr))', gap: 2 }}>
            {charts.map((c) => (
              <Box key={c.title} sx={{ minWidth: 0 }}>
                <Typography variant="subtitle2" component="h3">
                  {c.title}
                  {c.unit ? (
                    <Typography component="span" variant="caption" color="text.secondary">
                      {' '}
                      ({c.unit})
                    </Typography>
                  ) : null}
                </Typography>
                <UPlotChart label={`${c.title} over the last ${win}`} series={c.series} data={c.data} xRange={xRange} unit={c.unit} height={wall ? 300 : 180} />
              </Box>
            ))}
          </Box>
        </>
      )}
    </Panel>
  );
}
