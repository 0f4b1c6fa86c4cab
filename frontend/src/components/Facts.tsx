import { Box, Typography } from '@mui/material';
import type { ReactNode } from 'react';

/** A compact definition list (term / value pairs) in a responsive grid. */
export function Facts({ items, label, minColumn = 150 }: { items: [string, ReactNode][]; label: string; minColumn?: number }) {
  return (
    <Box
      component="dl"
      aria-label={label}
      sx={{
        m: 0,
        display: 'grid',
        gridTemplateColumns: `repeat(auto-fill, minmax(${minColumn}px, 1fr))`,
        gap: 1.5,
      }}
    >
      {items.map(([k, v]) => (
        <Box key={k} sx={{ minWidth: 0 }}>
          <Typography component="dt" variant="caption" color="text.secondary">
            {k}
          </Typography>
          <Typography component="dd" variant="body2" sx={{ m: 0, fontWeight: 500, overflowWrap: 'anywhere' }}>
            {v}
          </Typography>
        </Box>
      ))}
    </Box>
  );
}
