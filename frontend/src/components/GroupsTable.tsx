import {
  Alert,
  Box,
  Button,
  Chip,
  Link,
  Skeleton,
  Table,
  TableBody,
  TableCell,
  TableContainer,
  TableHead,
  TableRow,
  ToggleButton,
  ToggleButtonGroup,
  Tooltip,
  Typography,
} from '@mui/material';
import { useState } from 'react';
import { Link as RouterLink } from 'react-router';
import { errorMessage } from '../api/client';
import { useGroups, useMetrics } from '../api/queries';
import { GROUP_STATES } from '../api/types';
import { formatShort, formatTime } from '../format';
import { jobColor, jobWords } from '../jobs';
import { STATE_LABEL, stateColor, stateLabel } from '../groupStates';
import { Panel, QueryError } from './Panel';
import { RetryButton } from './RetryButton';

export function GroupsTable() {
  const [state, setState] = useState<string | null>(null);
  const q = useGroups(state);
  const metrics = useMetrics();
  const [notice, setNotice] = useState<{ severity: 'success' | 'error'; text: string } | null>(null);
  const groups = q.data?.pages.flatMap((p) => p.groups) ?? [];
  // The Job column only once a group ran as a Slurm job.
  const jobs = groups.some((g) => g.job);

  return (
    <Panel
      title="Groups"
      action={
        <ToggleButtonGroup
          size="small"
          exclusive
          value={state ?? 'all'}
          onChange={(_e, v: string | null) => v && setState(v === 'all' ? null : v)}
          aria-label="Filter groups by state"
          sx={{ flexWrap: 'wrap' }}
        >
          <ToggleButton value="all">All</ToggleButton>
          {GROUP_STATES.map((s) => (
            <ToggleButton key={s} value={s}>
              {STATE_LABEL[s]}
              {metrics.data?.queue_stats?.[s] != null ? ` (${metrics.data.queue_stats[s]})` : ''}
            </ToggleButton>
          ))}
        </ToggleButtonGroup>
      }
    >
      {notice ? (
        <Alert severity={notice.severity} onClose={() => setNotice(null)} sx={{ mb: 1 }} role={notice.severity === 'error' ? 'alert' : 'status'}>
          {notice.text}
        </Alert>
      ) : null}
      {q.isPending ? (
        <Box aria-busy="true" aria-label="Loading groups">
          {[0, 1, 2, 3].map((i) => (
            <Skeleton key={i} height={36} />
          ))}
        </Box>
      ) : q.data === undefined ? (
        <QueryError what="groups" error={q.error} onRetry={() => void q.refetch()} />
      ) : (
        <>
          {q.isRefetchError ? <QueryError compact what="groups" error={q.error} onRetry={() => void q.refetch()} /> : null}
          <TableContainer sx={{ maxHeight: 520 }}>
            <Table size="small" stickyHeader aria-label="Groups">
              <TableHead>
                <TableRow>
                  <TableCell>Group</TableCell>
                  <TableCell>State</TableCell>
                  <TableCell align="right">Subbands</TableCell>
                  <TableCell align="right">Retries</TableCell>
                  <TableCell>Received</TableCell>
                  <TableCell>Last update</TableCell>
                  {jobs ? <TableCell>Job</TableCell> : null}
                  <TableCell>Stage / error</TableCell>
                  <TableCell align="right">Actions</TableCell>
                </TableRow>
              </TableHead>
              <TableBody>
                {groups.length === 0 ? (
                  <TableRow>
                    <TableCell colSpan={jobs ? 9 : 8}>
                      <Typography variant="body2" color="text.secondary">
                        No {state ? stateLabel(state).toLowerCase() : ''} groups.
                      </Typography>
                    </TableCell>
                  </TableRow>
                ) : (
                  groups.map((g) => (
                    <TableRow key={g.group_id} hover data-state={g.state}>
                      <TableCell sx={{ fontFamily: 'monospace', whiteSpace: 'nowrap' }}>
                        <Link component={RouterLink} to={`/streaming/groups/${encodeURIComponent(g.group_id)}`} aria-label={`Details of group ${g.group_id}`}>
                          {g.group_id}
                        </Link>
                      </TableCell>
                      <TableCell>
                        <Chip size="small" label={stateLabel(g.state)} color={stateColor(g.state)} variant="outlined" />
                      </TableCell>
                      <TableCell align="right">
                        {g.subbands ?? '—'}/{g.expected_subbands ?? '—'}
                      </TableCell>
                      <TableCell align="right">{g.retry_count ?? 0}</TableCell>
                      <TableCell sx={{ whiteSpace: 'nowrap' }} title={formatTime(g.received_at)}>
                        {formatShort(g.received_at)}
                      </TableCell>
                      <TableCell sx={{ whiteSpace: 'nowrap' }} title={formatTime(g.last_update)}>
                        {formatShort(g.last_update)}
                      </TableCell>
                      {jobs ? (
                        <TableCell sx={{ whiteSpace: 'nowrap' }}>
                          {g.job ? (
                            <Chip size="small" variant="outlined" color={jobColor(g.job.state)} label={jobWords(g.job)} title={g.job.log_path ?? undefined} />
                          ) : null}
                        </TableCell>
                      ) : null}
                      <TableCell>
                        {g.error ? (
                          <Tooltip title={g.error}>
                            <Typography variant="body2" color="error" noWrap sx={{ maxWidth: { xs: 160, lg: 260, wall: 200 } }}>
                              {g.error}
                            </Typography>
                          </Tooltip>
                        ) : (
                          <Typography variant="body2" color="text.secondary" noWrap sx={{ maxWidth: { xs: 160, lg: 260, wall: 200 } }}>
                            {g.processing_stage ?? ''}
                          </Typography>
                        )}
                      </TableCell>
                      <TableCell align="right">
                        {g.state === 'failed' ? (
                          <RetryButton
                            groupId={g.group_id}
                            onDone={(r) =>
                              setNotice(
                                r.ok
                                  ? { severity: 'success', text: r.res.message || `Group ${g.group_id} re-queued` }
                                  : { severity: 'error', text: `Retry of ${g.group_id} failed: ${errorMessage(r.err)}` },
                              )
                            }
                          />
                        ) : null}
                      </TableCell>
                    </TableRow>
                  ))
                )}
              </TableBody>
            </Table>
          </TableContainer>
          {q.hasNextPage ? (
            <Box sx={{ textAlign: 'center', mt: 1 }}>
              <Button onClick={() => void q.fetchNextPage()} disabled={q.isFetchingNextPage}>
                {q.isFetchingNextPage ? 'Loading…' : 'Load older groups'}
              </Button>
            </Box>
          ) : null}
        </>
      )}
    </Panel>
  );
}
