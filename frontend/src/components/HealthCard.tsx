import CheckCircleIcon from '@mui/icons-material/CheckCircle';
import ErrorIcon from '@mui/icons-material/Error';
import { Alert, Chip, List, ListItem, ListItemIcon, ListItemText } from '@mui/material';
import { useHealth } from '../api/queries';
import { Loadable, Panel } from './Panel';

export function HealthCard() {
  const q = useHealth();
  return (
    <Panel
      title="Health"
      action={
        q.data ? (
          <Chip
            label={q.data.healthy ? 'Healthy' : 'Unhealthy'}
            color={q.data.healthy ? 'success' : 'error'}
            aria-label={`Overall health: ${q.data.healthy ? 'healthy' : 'unhealthy'}`}
          />
        ) : undefined
      }
    >
      <Loadable query={q} what="health checks">
        {(h) => (
          <>
            {h.error ? (
              <Alert severity="error" sx={{ mb: 1 }}>
                {h.error}
              </Alert>
            ) : null}
            <List dense disablePadding aria-label="Health checks">
              {(h.checks ?? []).map((c) => (
                <ListItem key={c.name} disableGutters aria-label={`${c.name}: ${c.ok ? 'ok' : 'failing'}`}>
                  <ListItemIcon sx={{ minWidth: 32 }}>
                    {c.ok ? <CheckCircleIcon color="success" fontSize="small" /> : <ErrorIcon color="error" fontSize="small" />}
                  </ListItemIcon>
                  <ListItemText primary={c.name.replace(/_/g, ' ')} secondary={c.detail ?? undefined} />
                </ListItem>
              ))}
            </List>
          </>
        )}
      </Loadable>
    </Panel>
  );
}
