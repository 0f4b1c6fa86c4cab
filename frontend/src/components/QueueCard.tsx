import { Alert, Box, Typography } from '@mui/material';
import { useMetrics } from '../api/queries';
import { GROUP_STATES, type Metrics } from '../api/types';
import { STATE_COLOR, STATE_LABEL } from '../groupStates';
import { formatAgo, formatDuration } from '../format';
import { useNow } from '../hooks/useNow';
import { Facts } from './Facts';
import { Loadable, Panel } from './Panel';

export function QueueCard() {
  const q = useMetrics();
  return (
    <Panel title="Queue Statistics">
      <Loadable query={q} what="queue statistics">
        {(m) => <QueueBody m={m} />}
      </Loadable>
    </Panel>
  );
}

function QueueBody({ m }: { m: Metrics }) {
  const now = useNow(5000);
  return (
    <>
      {m.queue_error ? (
        <Alert severity="error" sx={{ mb: 1.5 }}>
          Queue DB: {m.queue_error}
        </Alert>
      ) : null}
      <Box
        component="ul"
        aria-label="Queue counts"
        sx={{ listStyle: 'none', p: 0, m: 0, mb: 2, display: 'grid', gridTemplateColumns: 'repeat(auto-fit, minmax(68px, 1fr))', gap: 1 }}
      >
        {GROUP_STATES.map((st) => {
          const n = m.queue_stats?.[st] ?? 0;
          const color = STATE_COLOR[st];
          return (
            <Box
              component="li"
              key={st}
              aria-label={`${STATE_LABEL[st]}: ${n}`}
              data-testid={`queue-${st}`}
              sx={{
                p: 1,
                borderRadius: 1,
                border: 1,
                borderColor: (t) => (color === 'default' ? t.palette.divider : t.palette[color].main),
                textAlign: 'center',
              }}
            >
              <Typography variant="h5" component="div" sx={{ fontSize: '1.35rem', fontWeight: 600, fontVariantNumeric: 'tabular-nums' }}>
                {n}
              </Typography>
              <Typography variant="caption" color="text.secondary">
                {STATE_LABEL[st]}
              </Typography>
            </Box>
          );
        })}
      </Box>
      <Facts
        label="Processing"
        items={[
          ['Processing rate', `${(m.processing_rate_per_hour ?? 0).toFixed(1)} groups/h`],
          ['Oldest pending', m.oldest_pending_age_seconds != null ? formatDuration(m.oldest_pending_age_seconds) : '—'],
          ['Last completed', m.last_completed_at ? formatAgo(m.last_completed_at, now) : '—'],
          ['Rejected files', m.rejected_files != null ? String(m.rejected_files) : '—'],
          ['Unrecognised files', m.unrecognised_files != null ? String(m.unrecognised_files) : '—'],
          ['Late subbands', m.late_files != null ? String(m.late_files) : '—'],
        ]}
      />
    </>
  );
}
