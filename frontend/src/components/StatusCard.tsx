import PlayArrowIcon from '@mui/icons-material/PlayArrow';
import RestartAltIcon from '@mui/icons-material/RestartAlt';
import StopIcon from '@mui/icons-material/Stop';
import {
  Alert,
  AlertTitle,
  Box,
  Button,
  Chip,
  CircularProgress,
  Stack,
  Typography,
} from '@mui/material';
import { useState, type ReactNode } from 'react';
import { errorMessage, ApiError } from '../api/client';
import type { ControlAction } from '../api/endpoints';
import { useControl, useStatus } from '../api/queries';
import type { ControlResponse, ServiceStatus } from '../api/types';
import { formatAgo, formatDuration, formatTime } from '../format';
import { useNow } from '../hooks/useNow';
import { serviceState } from '../serviceState';
import { ConfirmDialog } from './ConfirmDialog';
import { Facts } from './Facts';
import { executorFacts } from '../jobs';
import { Loadable, Panel } from './Panel';

export function StatusCard() {
  const q = useStatus();
  return (
    <Panel title="Service Status" action={<ControlButtons status={q.data} />}>
      <Loadable query={q} what="service status" skeletonRows={6}>
        {(s) => <StatusBody s={s} updatedAt={q.dataUpdatedAt} />}
      </Loadable>
    </Panel>
  );
}

export function StateIndicator({ s }: { s: ServiceStatus | undefined }) {
  const st = serviceState(s);
  return (
    <Box
      role="status"
      aria-live="polite"
      aria-label="Service state"
      data-state={st.key}
      sx={{ display: 'flex', alignItems: 'center', gap: 1.5 }}
    >
      <Box
        aria-hidden
        sx={{
          width: 18,
          height: 18,
          borderRadius: '50%',
          flexShrink: 0,
          bgcolor: (t) => (st.color === 'default' ? t.palette.grey[500] : t.palette[st.color].main),
          boxShadow: (t) =>
            st.key === 'active' ? `0 0 0 4px ${t.palette.success.main}33` : undefined,
          animation: st.transitional ? 'contimg-pulse 1s ease-in-out infinite' : undefined,
          '@keyframes contimg-pulse': { '50%': { opacity: 0.3 } },
        }}
      />
      <Typography variant="h5" component="span" sx={{ fontWeight: 600 }}>
        {st.label}
      </Typography>
      <Chip size="small" label={st.detail} color={st.color} variant="outlined" />
    </Box>
  );
}

function useUptime(s: ServiceStatus, updatedAt: number): number | null {
  const now = useNow(1000);
  if (!s.running) return null;
  if (s.started_at) {
    const t = new Date(s.started_at).getTime();
    if (!Number.isNaN(t)) return (now - t) / 1000;
  }
  if (s.uptime_seconds == null) return null;
  return s.uptime_seconds + (now - updatedAt) / 1000;
}

function StatusBody({ s, updatedAt }: { s: ServiceStatus; updatedAt: number }) {
  const uptime = useUptime(s, updatedAt);
  const now = useNow(5000);
  return (
    <Stack spacing={2}>
      <StateIndicator s={s} />
      {s.error ? (
        <Alert severity="error" role="alert">
          {s.error}
        </Alert>
      ) : null}
      <Facts
        label="Service details"
        items={[
          // In words ("direct process (PID file)", "systemd system unit …"): the
          // bare kind and target read as a unit name ("Unit: process").
          ['Backend', s.backend_description ?? s.backend ?? '—'],
          ...stateDirFacts(s),
          ['PID', s.pid ? String(s.pid) : '—'],
          ['Uptime', s.running ? formatDuration(uptime) : '—'],
          ['Started', s.running ? formatTime(s.started_at) : '—'],
          ['Restarts', s.restart_count != null ? String(s.restart_count) : '—'],
          ['Tasks', s.tasks != null ? String(s.tasks) : '—'],
          ['Last heartbeat', s.last_heartbeat ? formatAgo(s.last_heartbeat, now) : 'never'],
          ...executorFacts(s),
        ]}
      />
      {s.status_text ? (
        <Box>
          <Typography variant="caption" color="text.secondary">
            Status text
          </Typography>
          <Typography
            variant="body2"
            aria-label="Status text"
            sx={{ fontFamily: 'monospace', wordBreak: 'break-word' }}
          >
            {s.status_text}
          </Typography>
        </Box>
      ) : null}
    </Stack>
  );
}

/** Which state dir the API reads and why; omitted when the API does not say (older daemons). */
function stateDirFacts(s: ServiceStatus): [string, ReactNode][] {
  if (!s.state_dir) return [];
  return [
    [
      'State dir',
      <>
        <Box component="span" aria-label="State dir" sx={{ display: 'block', fontFamily: 'monospace' }}>
          {s.state_dir}
        </Box>
        {s.state_dir_rule ? (
          <Typography
            component="span"
            variant="caption"
            color="text.secondary"
            aria-label="State dir rule"
            sx={{ display: 'block', fontWeight: 400 }}
          >
            from {s.state_dir_rule}
          </Typography>
        ) : null}
      </>,
    ],
  ];
}

const CONFIRM: Record<'stop' | 'restart', { title: string; text: string; label: string }> = {
  stop: {
    title: 'Stop the streaming service?',
    text: 'Incoming subband files will not be grouped or converted until the service is started again. Groups in progress are re-queued.',
    label: 'Stop service',
  },
  restart: {
    title: 'Restart the streaming service?',
    text: 'The worker stops and starts again; conversions in progress are interrupted and re-queued.',
    label: 'Restart service',
  },
};

export function ControlButtons({ status }: { status: ServiceStatus | undefined }) {
  const control = useControl();
  const [confirm, setConfirm] = useState<'stop' | 'restart' | null>(null);
  const [result, setResult] = useState<
    { ok: true; res: ControlResponse } | { ok: false; action: ControlAction; err: unknown } | null
  >(null);
  const running = !!status?.running;
  const busy = control.isPending;

  const run = (action: ControlAction) => {
    setConfirm(null);
    setResult(null);
    control.mutate(action, {
      onSuccess: (res) => setResult({ ok: true, res }),
      onError: (err) => setResult({ ok: false, action, err }),
    });
  };
  const spinner = (a: ControlAction) =>
    busy && control.variables === a ? <CircularProgress size={16} color="inherit" /> : undefined;

  return (
    <Box sx={{ display: 'flex', flexDirection: 'column', alignItems: 'flex-end', gap: 1 }}>
      <Stack direction="row" spacing={1} role="group" aria-label="Service controls">
        <Button
          variant="contained"
          color="success"
          size="small"
          startIcon={spinner('start') ?? <PlayArrowIcon />}
          disabled={busy || running || !status}
          onClick={() => run('start')}
        >
          Start
        </Button>
        <Button
          variant="outlined"
          color="error"
          size="small"
          startIcon={spinner('stop') ?? <StopIcon />}
          disabled={busy || !running}
          onClick={() => setConfirm('stop')}
        >
          Stop
        </Button>
        <Button
          variant="outlined"
          size="small"
          startIcon={spinner('restart') ?? <RestartAltIcon />}
          disabled={busy || !status}
          onClick={() => setConfirm('restart')}
        >
          Restart
        </Button>
      </Stack>
      {result ? <ControlResult result={result} onClose={() => setResult(null)} /> : null}
      {confirm ? (
        <ConfirmDialog
          open
          danger={confirm === 'stop'}
          title={CONFIRM[confirm].title}
          confirmLabel={CONFIRM[confirm].label}
          onCancel={() => setConfirm(null)}
          onConfirm={() => run(confirm)}
        >
          {CONFIRM[confirm].text}
        </ConfirmDialog>
      ) : null}
    </Box>
  );
}

function ControlResult({
  result,
  onClose,
}: {
  result: { ok: true; res: ControlResponse } | { ok: false; action: ControlAction; err: unknown };
  onClose: () => void;
}) {
  if (result.ok) {
    return (
      <Alert severity="success" onClose={onClose} sx={{ maxWidth: 420 }}>
        {result.res.message || 'Done'}
      </Alert>
    );
  }
  const logs = result.err instanceof ApiError ? result.err.logs : [];
  return (
    <Alert severity="error" onClose={onClose} role="alert" sx={{ maxWidth: 560 }}>
      <AlertTitle>Could not {result.action} the service</AlertTitle>
      {errorMessage(result.err)}
      {logs.length > 0 ? (
        <Box
          component="pre"
          aria-label="Unit log"
          sx={{ mt: 1, mb: 0, maxHeight: 200, overflow: 'auto', fontSize: 12, whiteSpace: 'pre-wrap' }}
        >
          {logs.join('\n')}
        </Box>
      ) : null}
    </Alert>
  );
}
