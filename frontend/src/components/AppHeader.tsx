import DarkModeIcon from '@mui/icons-material/DarkMode';
import WarningAmberIcon from '@mui/icons-material/WarningAmber';
import LightModeIcon from '@mui/icons-material/LightMode';
import LockIcon from '@mui/icons-material/Lock';
import LockOpenIcon from '@mui/icons-material/LockOpen';
import { AppBar, Box, Button, Chip, IconButton, Toolbar, Tooltip, Typography } from '@mui/material';
import { useSyncExternalStore } from 'react';
import { getToken, openTokenPrompt, setToken, subscribeAuth } from '../api/auth';
import { useLiveState } from '../api/liveContext';
import { useAlerts } from '../api/queries';
import { useThemeMode } from '../themeMode';

export function AppHeader() {
  const live = useLiveState();
  const { mode, toggle } = useThemeMode();
  const token = useSyncExternalStore(subscribeAuth, getToken, () => null);
  const active = useAlerts().data?.active ?? [];
  const critical = active.some((a) => a.severity === 'critical');
  return (
    <AppBar position="sticky" color="default" elevation={0} sx={{ borderBottom: 1, borderColor: 'divider' }}>
      <Toolbar sx={{ gap: 2 }}>
        <Typography variant="h6" component="h1" sx={{ fontWeight: 700, whiteSpace: 'nowrap' }}>
          DSA-110 · Streaming
        </Typography>
        <Chip
          size="small"
          role="status"
          aria-label={`Live updates: ${live === 'live' ? 'connected' : live === 'connecting' ? 'connecting' : 'disconnected, polling'}`}
          data-live={live}
          color={live === 'live' ? 'success' : live === 'connecting' ? 'default' : 'warning'}
          variant="outlined"
          label={live === 'live' ? 'Live' : live === 'connecting' ? 'Connecting…' : 'Polling (live feed down)'}
        />
        {active.length ? (
          <Chip
            size="small"
            icon={<WarningAmberIcon />}
            color={critical ? 'error' : 'warning'}
            label={`${active.length} active alert${active.length === 1 ? '' : 's'}`}
            onClick={() => document.querySelector('section[aria-label="Alerts"]')?.scrollIntoView({ behavior: 'smooth' })}
          />
        ) : null}
        <Box sx={{ flex: 1 }} />
        {token ? (
          <Button startIcon={<LockOpenIcon />} color="inherit" onClick={() => setToken(null)}>
            Sign out
          </Button>
        ) : (
          <Button startIcon={<LockIcon />} color="inherit" onClick={() => openTokenPrompt()}>
            Sign in
          </Button>
        )}
        <Tooltip title={mode === 'dark' ? 'Light theme' : 'Dark theme'}>
          <IconButton onClick={toggle} aria-label={mode === 'dark' ? 'Switch to light theme' : 'Switch to dark theme'} color="inherit">
            {mode === 'dark' ? <LightModeIcon /> : <DarkModeIcon />}
          </IconButton>
        </Tooltip>
      </Toolbar>
    </AppBar>
  );
}
