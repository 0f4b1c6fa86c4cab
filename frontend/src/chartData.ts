import type uPlot from 'uplot';
import type { HistoryPoint } from './api/types';

export type Pick = (p: HistoryPoint) => number | null | undefined;

export function toColumns(points: HistoryPoint[], picks: Pick[]): uPlot.AlignedData {
  const xs = points.map((p) => new Date(p.t).getTime() / 1000);
  return [xs, ...picks.map((f) => points.map((p) => f(p) ?? null))] as uPlot.AlignedData;
}
