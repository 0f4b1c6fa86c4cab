import { Box, LinearProgress, Typography } from '@mui/material';
import { usageColor } from '../format';

interface Props {
  label: string;
  /** Percent used, 0–100+ (clamped for the bar), or null when there is no reference. */
  percent: number | null;
  value: string;
  caption?: string;
  /** Overrides the colour the percentage alone would give (a disk below its free-space floor). */
  level?: 'success' | 'warning' | 'error';
}

/** A labelled usage bar: green, orange above 50 %, red above 80 %. */
export function UsageBar({ label, percent, value, caption, level }: Props) {
  const clamped = percent == null ? 0 : Math.min(100, Math.max(0, percent));
  const color = level ?? (percent == null ? 'success' : usageColor(percent));
  return (
    <Box>
      <Box sx={{ display: 'flex', justifyContent: 'space-between', alignItems: 'baseline', mb: 0.5 }}>
        <Typography variant="body2" color="text.secondary">
          {label}
        </Typography>
        <Typography variant="body1" sx={{ fontWeight: 600, fontVariantNumeric: 'tabular-nums' }}>
          {value}
        </Typography>
      </Box>
      {percent != null ? (
        <LinearProgress
          variant="determinate"
          value={clamped}
          color={color}
          aria-label={label}
          aria-valuetext={`${value}${caption ? `, ${caption}` : ''}`}
          data-level={color}
          sx={{ height: 10, borderRadius: 5 }}
        />
      ) : null}
      {caption ? (
        <Typography variant="caption" color="text.secondary">
          {caption}
        </Typography>
      ) : null}
    </Box>
  );
}
