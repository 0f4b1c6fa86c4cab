import type uPlot from 'uplot';
import type { HistoryPoint, HistoryWindow } from './api/types';

export type Pick = (p: HistoryPoint) => number | null | undefined;

export function toColumns(points: HistoryPoint[], picks: Pick[]): uPlot.AlignedData {
  const xs = points.map((p) => new Date(p.t).getTime() / 1000);
  return [xs, ...picks.map((f) => points.map((p) => f(p) ?? null))] as uPlot.AlignedData;
}

export const WINDOW_SECONDS: Record<HistoryWindow, number> = { '1h': 3600, '24h': 86_400, '7d': 7 * 86_400 };

/**
 * The x span (unix seconds) of a chart of `win` ending at `endMs`. Charts are
 * pinned to it: left to itself uPlot fits the x axis to the samples, so a fresh
 * install's one sample became a two-year axis and a gap in the data moved the axis.
 */
export function windowSpan(win: HistoryWindow, endMs: number): [number, number] {
  const end = Math.round(endMs / 1000);
  return [end - WINDOW_SECONDS[win], end];
}
