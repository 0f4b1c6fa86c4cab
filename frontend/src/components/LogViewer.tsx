import RefreshIcon from '@mui/icons-material/Refresh';
import {
  Box,
  Chip,
  FormControlLabel,
  IconButton,
  InputAdornment,
  LinearProgress,
  Switch,
  TextField,
  Tooltip,
  Typography,
} from '@mui/material';
import ClearIcon from '@mui/icons-material/Clear';
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react';
import { API, logsQueryString, type LogQuery } from '../api/endpoints';
import { useLogs } from '../api/queries';
import { connectSse } from '../api/sse';
import { LOG_LEVELS, type LogEntry } from '../api/types';
import { formatClock } from '../format';
import { useDebounced } from '../hooks/useDebounced';
import { logKey, matches, mergeLogs } from '../logs';
import { Panel, QueryError } from './Panel';

const LINE_CHOICES = [100, 200, 500, 1000, 5000];
const MAX_FOLLOW = 5000;

type FollowState = 'off' | 'connecting' | 'live' | 'down';

/** Follow the log over SSE (`logs?follow=true`), collecting entries as they arrive. */
function useLogFollow(q: LogQuery, enabled: boolean): { entries: LogEntry[]; state: FollowState } {
  const qs = logsQueryString(q, true);
  // State is tagged with the query it belongs to, so a filter change starts afresh.
  const [s, setS] = useState<{ key: string; entries: LogEntry[]; state: FollowState }>({ key: '', entries: [], state: 'off' });
  useEffect(() => {
    if (!enabled) return;
    const update = (f: (prev: { entries: LogEntry[]; state: FollowState }) => { entries: LogEntry[]; state: FollowState }) =>
      setS((p) => ({ key: qs, ...f(p.key === qs ? p : { entries: [], state: 'connecting' }) }));
    return connectSse(`${API}/logs?${qs}`, {
      onOpen: () => update((p) => ({ ...p, state: 'live' })),
      onDown: () => update((p) => ({ ...p, state: 'down' })),
      onMessage: (m) => {
        if (m.event !== 'log' && m.event !== 'message') return;
        let e: LogEntry;
        try {
          e = JSON.parse(m.data) as LogEntry;
        } catch {
          return;
        }
        update((p) => ({ ...p, entries: mergeLogs(p.entries, [e], MAX_FOLLOW) }));
      },
    });
  }, [qs, enabled]);
  if (!enabled) return { entries: [], state: 'off' };
  if (s.key !== qs) return { entries: [], state: 'connecting' };
  return s;
}

const LEVEL_COLOR: Record<string, 'error' | 'warning' | 'info' | 'default'> = {
  ERROR: 'error',
  CRITICAL: 'error',
  WARNING: 'warning',
  WARN: 'warning',
  INFO: 'info',
};

export function LogViewer({ height = 420 }: { height?: number }) {
  const [lines, setLines] = useState(200);
  const [level, setLevel] = useState('');
  const [text, setText] = useState('');
  const [group, setGroup] = useState('');
  const [follow, setFollow] = useState(false);
  const grep = useDebounced(text.trim());
  const groupQ = useDebounced(group.trim());
  const query: LogQuery = useMemo(
    () => ({ lines, level: level || undefined, grep: grep || undefined, group: groupQ || undefined }),
    [lines, level, grep, groupQ],
  );
  const snap = useLogs(query);
  const live = useLogFollow(query, follow);

  const shown = useMemo(() => {
    const base = snap.data?.lines ?? [];
    const all = follow ? mergeLogs(base, live.entries, MAX_FOLLOW) : base;
    return all.filter((e) => matches(e, { level, text: text.trim(), group: group.trim() }));
  }, [snap.data, live.entries, follow, level, text, group]);

  // Stick to the bottom while following, unless the operator scrolled up.
  const box = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  useLayoutEffect(() => {
    const el = box.current;
    if (el && atBottom.current) el.scrollTop = el.scrollHeight;
  }, [shown]);

  return (
    <Panel
      title="Logs"
      action={
        <Box sx={{ display: 'flex', alignItems: 'center', gap: 1 }}>
          {follow ? (
            <Chip
              size="small"
              label={live.state === 'live' ? 'following' : live.state === 'down' ? 'reconnecting…' : 'connecting…'}
              color={live.state === 'live' ? 'success' : 'warning'}
              variant="outlined"
            />
          ) : null}
          <Tooltip title="Reload">
            <IconButton aria-label="Reload logs" onClick={() => void snap.refetch()} size="small">
              <RefreshIcon />
            </IconButton>
          </Tooltip>
        </Box>
      }
    >
      <Box
        role="group"
        aria-label="Log filters"
        sx={{ display: 'flex', flexWrap: 'wrap', gap: 1.5, alignItems: 'center', mb: 1.5 }}
      >
        <TextField
          select
          size="small"
          label="Lines"
          value={lines}
          onChange={(e) => setLines(Number(e.target.value))}
          slotProps={{ select: { native: true }, inputLabel: { shrink: true } }}
          sx={{ width: 100 }}
        >
          {LINE_CHOICES.map((n) => (
            <option key={n} value={n}>
              {n}
            </option>
          ))}
        </TextField>
        <TextField
          select
          size="small"
          label="Level"
          value={level}
          onChange={(e) => setLevel(e.target.value)}
          slotProps={{ select: { native: true }, inputLabel: { shrink: true } }}
          sx={{ width: 130 }}
        >
          <option value="">all</option>
          {LOG_LEVELS.map((l) => (
            <option key={l} value={l}>
              {l === 'DEBUG' ? 'DEBUG' : `${l}+`}
            </option>
          ))}
        </TextField>
        <TextField
          size="small"
          label="Search text"
          value={text}
          onChange={(e) => setText(e.target.value)}
          sx={{ minWidth: 200, flex: 1 }}
        />
        <TextField
          size="small"
          label="Group id"
          value={group}
          onChange={(e) => setGroup(e.target.value)}
          sx={{ width: 240 }}
          slotProps={{
            input: {
              endAdornment: group ? (
                <InputAdornment position="end">
                  <IconButton size="small" aria-label="Clear group filter" onClick={() => setGroup('')}>
                    <ClearIcon fontSize="small" />
                  </IconButton>
                </InputAdornment>
              ) : undefined,
            },
          }}
        />
        <FormControlLabel
          control={<Switch checked={follow} onChange={(e) => setFollow(e.target.checked)} />}
          label="Follow"
        />
      </Box>
      {snap.isFetching ? <LinearProgress aria-label="Loading logs" sx={{ mb: '-4px' }} /> : null}
      {snap.error && !snap.isPending ? (
        <QueryError what="logs" error={snap.error} onRetry={() => void snap.refetch()} compact={!!snap.data} />
      ) : null}
      <Box
        ref={box}
        role="log"
        aria-label="Service log"
        aria-live={follow ? 'polite' : 'off'}
        tabIndex={0}
        onScroll={(e) => {
          const el = e.currentTarget;
          atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
        sx={{
          height,
          overflow: 'auto',
          fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace',
          fontSize: 12.5,
          lineHeight: 1.55,
          bgcolor: (t) => (t.palette.mode === 'dark' ? '#0b0f14' : '#fafbfc'),
          border: 1,
          borderColor: 'divider',
          borderRadius: 1,
          p: 1,
        }}
      >
        {snap.isPending ? (
          <Typography variant="body2" color="text.secondary">
            Loading logs…
          </Typography>
        ) : shown.length === 0 ? (
          <Typography variant="body2" color="text.secondary">
            No log lines match.
          </Typography>
        ) : (
          shown.map((e) => <LogLine key={logKey(e)} e={e} onGroup={setGroup} />)
        )}
      </Box>
      <Typography variant="caption" color="text.secondary">
        {shown.length} line{shown.length === 1 ? '' : 's'} · times in local time zone
      </Typography>
    </Panel>
  );
}

function LogLine({ e, onGroup }: { e: LogEntry; onGroup: (g: string) => void }) {
  const lvl = e.level.toUpperCase();
  const color = LEVEL_COLOR[lvl] ?? 'default';
  return (
    <Box data-testid="log-line" data-level={lvl} sx={{ whiteSpace: 'pre-wrap', wordBreak: 'break-word' }}>
      <Box component="time" dateTime={e.timestamp} title={e.timestamp} sx={{ color: 'text.secondary', mr: 1 }}>
        {formatClock(e.timestamp)}
      </Box>
      <Box
        component="span"
        sx={{
          display: 'inline-block',
          minWidth: '7ch',
          mr: 1,
          fontWeight: 600,
          color: color === 'default' ? 'text.secondary' : `${color}.main`,
        }}
      >
        {lvl}
      </Box>
      {e.group_id ? (
        <Box
          component="button"
          type="button"
          onClick={() => onGroup(e.group_id!)}
          aria-label={`Filter by group ${e.group_id}`}
          sx={{
            font: 'inherit',
            color: 'primary.main',
            background: 'none',
            border: 0,
            p: 0,
            mr: 1,
            cursor: 'pointer',
            textDecoration: 'underline dotted',
          }}
        >
          [{e.group_id}]
        </Box>
      ) : null}
      <span>{e.message}</span>
    </Box>
  );
}
