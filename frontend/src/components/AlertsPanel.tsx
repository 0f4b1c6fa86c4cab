import { Alert, Box, Chip, List, ListItem, ListItemText, Typography } from '@mui/material';
import { useAlerts } from '../api/queries';
import type { Alert as AlertT } from '../api/types';
import { formatTime } from '../format';
import { Loadable, Panel } from './Panel';

function sev(a: AlertT): 'error' | 'warning' {
  return a.severity === 'critical' ? 'error' : 'warning';
}

export function AlertsPanel() {
  const q = useAlerts();
  const n = q.data?.active.length ?? 0;
  return (
    <Panel
      title="Alerts"
      action={
        q.data ? (
          <Chip
            size="small"
            color={n ? 'error' : 'success'}
            label={n ? `${n} active` : 'none active'}
            aria-label={`${n} active alerts`}
          />
        ) : undefined
      }
    >
      <Loadable query={q} what="alerts">
        {(d) => (
          <>
            <Box role="list" aria-label="Active alerts" sx={{ display: 'flex', flexDirection: 'column', gap: 1 }}>
              {d.active.length === 0 ? (
                <Typography variant="body2" color="text.secondary">
                  No active alerts.
                </Typography>
              ) : (
                d.active.map((a) => (
                  <Alert role="listitem" key={a.id} severity={sev(a)} data-rule={a.rule}>
                    <strong>{a.rule.replace(/_/g, ' ')}</strong> — {a.message}
                    <Typography variant="caption" component="div" color="text.secondary">
                      since {formatTime(a.raised_at)}
                    </Typography>
                  </Alert>
                ))
              )}
            </Box>
            {d.recent.some((a) => a.cleared_at) ? (
              <>
                <Typography variant="subtitle2" color="text.secondary" component="h3" sx={{ mt: 2 }}>
                  Recently cleared
                </Typography>
                <List dense disablePadding aria-label="Recent alerts" sx={{ maxHeight: 180, overflow: 'auto' }}>
                  {d.recent
                    .filter((a) => a.cleared_at)
                    .slice(0, 20)
                    .map((a) => (
                      <ListItem key={a.id} disableGutters>
                        <ListItemText
                          primary={`${a.rule.replace(/_/g, ' ')}: ${a.message}`}
                          secondary={`${formatTime(a.raised_at)} → ${formatTime(a.cleared_at)}`}
                        />
                      </ListItem>
                    ))}
                </List>
              </>
            ) : null}
          </>
        )}
      </Loadable>
    </Panel>
  );
}
