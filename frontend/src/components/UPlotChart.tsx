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
  /** Fixed x span [min, max] (unix seconds); without it the axis fits the data. */
  xRange?: [number, number];
}

export function UPlotChart({ label, series, data, unit, height = 180, xRange }: Props) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  // Read by the x scale's range function, which uPlot calls on every setData.
  const span = useRef(xRange);
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
      // The x span the chart shows, readable by tests and e2e checks (the canvas is not).
      hooks: {
        setScale: [
          (u, key) => {
            if (key !== 'x') return;
            node.dataset.xMin = String(u.scales.x.min);
            node.dataset.xMax = String(u.scales.x.max);
          },
        ],
      },
      cursor: { drag: { x: true, y: false } },
      scales: {
        x: { time: true, range: (_u, min, max) => span.current ?? [min, max] },
        y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
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
    span.current = xRange;
    plot.current?.setData(data);
  }, [data, xRange]);

  return <Box ref={el} role="img" aria-label={label} sx={{ width: '100%', minWidth: 0, '& .u-legend': { fontSize: 12, color: 'text.secondary' } }} />;
}
