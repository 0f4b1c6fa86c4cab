import { Box, useTheme } from '@mui/material';
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { formatCompact } from '../format';

export interface SeriesDef {
  label: string;
  color: string;
  fill?: boolean;
}

interface Props {
  /** Accessible description of the chart (canvas content is invisible to AT). */
  label: string;
  series: SeriesDef[];
  /** [x (unix seconds), ...one array per series]. */
  data: uPlot.AlignedData;
  unit?: string;
  height?: number;
}

export function UPlotChart({ label, series, data, unit, height = 180 }: Props) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const theme = useTheme();
  const axisColor = theme.palette.text.secondary;
  const gridColor = theme.palette.divider;
  const seriesKey = series.map((s) => s.label + s.color).join('|');

  // (Re)create the plot when its shape or theme changes.
  useEffect(() => {
    const node = el.current;
    if (!node) return;
    const axis = { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor, width: 1 } };
    const opts: uPlot.Options = {
      width: Math.max(200, node.clientWidth),
      height,
      legend: { show: true },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
      axes: [
        axis,
        { ...axis, size: 48, values: (_u, vals) => vals.map((v) => (v == null ? '' : formatCompact(v))) },
      ],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          fill: s.fill ? `${s.color}22` : undefined,
          spanGaps: false,
          value: (_u: uPlot, v: number | null) => (v == null ? '—' : `${+v.toFixed(2)}${unit ? ` ${unit}` : ''}`),
        })),
      ],
    };
    const u = new uPlot(opts, data, node);
    plot.current = u;
    const ro = new ResizeObserver(() => {
      u.setSize({ width: Math.max(200, node.clientWidth), height });
    });
    ro.observe(node);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
    // data is pushed by the effect below; recreate only on shape/theme changes
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [seriesKey, axisColor, gridColor, height, unit]);

  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);

  return <Box ref={el} role="img" aria-label={label} sx={{ width: '100%', minWidth: 0, '& .u-legend': { fontSize: 12, color: 'text.secondary' } }} />;
}
