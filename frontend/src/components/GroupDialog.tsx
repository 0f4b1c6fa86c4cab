import {
  Alert,
  Box,
  Button,
  Chip,
  CircularProgress,
  Dialog,
  DialogActions,
  DialogContent,
  DialogTitle,
  Table,
  TableBody,
  TableCell,
  TableHead,
  TableRow,
  Typography,
} from '@mui/material';
import { useState } from 'react';
import { errorMessage } from '../api/client';
import { useGroup, useGroupLog } from '../api/queries';
import type { GroupAttempt, GroupDetail, GroupJob } from '../api/types';
import { jobWords } from '../jobs';
import { formatHz, formatMb, formatSeconds, formatTime } from '../format';
import { stateColor, stateLabel } from '../groupStates';
import { Facts } from './Facts';
import { QueryError } from './Panel';
import { RetryButton } from './RetryButton';

export function GroupDialog({ groupId, onClose }: { groupId: string; onClose: () => void }) {
  const q = useGroup(groupId);
  const [notice, setNotice] = useState<{ severity: 'success' | 'error'; text: string } | null>(null);
  return (
    <Dialog open onClose={onClose} maxWidth="lg" fullWidth aria-labelledby="group-dialog-title">
      <DialogTitle id="group-dialog-title" sx={{ display: 'flex', alignItems: 'center', gap: 1.5, flexWrap: 'wrap' }}>
        <span>
          Group <code>{groupId}</code>
        </span>
        {q.data ? <Chip size="small" label={stateLabel(q.data.state)} color={stateColor(q.data.state)} /> : null}
      </DialogTitle>
      <DialogContent dividers>
        {notice ? (
          <Alert severity={notice.severity} onClose={() => setNotice(null)} sx={{ mb: 2 }}>
            {notice.text}
          </Alert>
        ) : null}
        {q.isPending ? (
          <Box sx={{ display: 'flex', justifyContent: 'center', p: 4 }} aria-busy="true" aria-label="Loading group">
            <CircularProgress />
          </Box>
        ) : q.data ? (
          <GroupBody g={q.data} />
        ) : (
          <QueryError what="group" error={q.error} onRetry={() => void q.refetch()} />
        )}
      </DialogContent>
      <DialogActions>
        {q.data?.state === 'failed' ? (
          <RetryButton
            size="medium"
            groupId={groupId}
            onDone={(r) =>
              setNotice(
                r.ok
                  ? { severity: 'success', text: r.res.message || 'Group re-queued' }
                  : { severity: 'error', text: `Retry failed: ${errorMessage(r.err)}` },
              )
            }
          />
        ) : null}
        <Button onClick={onClose}>Close</Button>
      </DialogActions>
    </Dialog>
  );
}

function Section({ title, children }: { title: string; children: React.ReactNode }) {
  return (
    <Box component="section" aria-label={title} sx={{ mt: 3 }}>
      <Typography variant="subtitle1" component="h3" sx={{ mb: 1, fontWeight: 600 }}>
        {title}
      </Typography>
      {children}
    </Box>
  );
}

function cell(v: unknown): string {
  if (v == null) return '—';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(3);
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

/** The end of the latest job attempt's log (stdout and stderr of the Slurm job). */
function JobLog({ g }: { g: GroupDetail }) {
  const q = useGroupLog(g.group_id, !!g.job?.log_path);
  return (
    <Section title={q.data ? `Job log (attempt ${q.data.attempt}, job ${q.data.job_id ?? '—'})` : 'Job log'}>
      {q.data ? (
        <>
          <Typography variant="caption" color="text.secondary" sx={{ fontFamily: 'monospace' }}>
            {q.data.path}
            {q.data.truncated ? ` (last ${q.data.text.length} of ${q.data.size_bytes} bytes)` : ''}
          </Typography>
          <Box
            component="pre"
            aria-label="Job log"
            sx={{ m: 0, p: 1.5, bgcolor: 'action.hover', borderRadius: 1, whiteSpace: 'pre-wrap', fontSize: 13, maxHeight: 320, overflow: 'auto' }}
          >
            {q.data.text}
          </Box>
        </>
      ) : (
        <Typography variant="body2" color="text.secondary">
          {q.isError ? errorMessage(q.error) : q.isPending && g.job?.log_path ? 'Loading…' : 'No job log recorded.'}
        </Typography>
      )}
    </Section>
  );
}

function GroupBody({ g }: { g: GroupDetail }) {
  const files = [...(g.files ?? [])].sort((a, b) => a.subband_idx - b.subband_idx);
  const attempts = g.attempts ?? [];
  const attemptCols = Array.from(new Set(attempts.flatMap((a: GroupAttempt) => Object.keys(a))));
  return (
    <>
      <Facts
        label="Group summary"
        items={[
          ['Subbands', `${g.subbands ?? '—'} / ${g.expected_subbands ?? '—'}`],
          ['Retries', String(g.retry_count ?? 0)],
          ['Stage', g.processing_stage ?? '—'],
          ['Received', formatTime(g.received_at)],
          ['Last update', formatTime(g.last_update)],
          ['Started', formatTime(g.started_at)],
          ['Completed', formatTime(g.completed_at)],
          ['Next attempt', formatTime(g.next_attempt_at)],
          ['Output', g.output_path ?? '—'],
        ]}
      />
      {g.error ? (
        <Section title="Error">
          <Box
            component="pre"
            aria-label="Group error"
            sx={{ m: 0, p: 1.5, bgcolor: 'action.hover', borderRadius: 1, whiteSpace: 'pre-wrap', fontSize: 13, color: 'error.main' }}
          >
            {g.error}
          </Box>
        </Section>
      ) : null}
      <Section title="Timings">
        {g.timings ? (
          <Facts
            label="Timings"
            items={[
              ['Load', formatSeconds(g.timings.load_time)],
              ['Phase', formatSeconds(g.timings.phase_time)],
              ['Write', formatSeconds(g.timings.write_time)],
              ['Total', formatSeconds(g.timings.total_time)],
              ['Writer', g.timings.writer_type ?? '—'],
            ]}
          />
        ) : (
          <Typography variant="body2" color="text.secondary">
            No timings recorded.
          </Typography>
        )}
      </Section>
      <Section title={`Attempts (${attempts.length})`}>
        {attempts.length ? (
          <Table size="small" aria-label="Attempts">
            <TableHead>
              <TableRow>
                {attemptCols.map((c) => (
                  <TableCell key={c}>{c.replace(/_/g, ' ')}</TableCell>
                ))}
              </TableRow>
            </TableHead>
            <TableBody>
              {attempts.map((a, i) => (
                <TableRow key={i}>
                  {attemptCols.map((c) => (
                    <TableCell key={c} sx={{ fontFamily: typeof a[c] === 'string' ? 'monospace' : undefined, fontSize: 13 }}>
                      {c === 'job' && a[c] ? jobWords(a[c] as GroupJob) : c.endsWith('_at') && typeof a[c] === 'string' ? formatTime(a[c] as string) : cell(a[c])}
                    </TableCell>
                  ))}
                </TableRow>
              ))}
            </TableBody>
          </Table>
        ) : (
          <Typography variant="body2" color="text.secondary">
            No attempt records.
          </Typography>
        )}
      </Section>
      {g.job ? <JobLog g={g} /> : null}
      {g.duplicates?.length ? (
        <Section title={`Ignored duplicates (${g.duplicates.length})`}>
          <Box component="ul" sx={{ m: 0, pl: 2, fontFamily: 'monospace', fontSize: 13 }}>
            {g.duplicates.map((d) => (
              <li key={d}>{d}</li>
            ))}
          </Box>
        </Section>
      ) : null}
      <Section title={`Files (${files.length})`}>
        {files.length ? (
          <Table size="small" aria-label="Subband files">
            <TableHead>
              <TableRow>
                <TableCell>Subband</TableCell>
                <TableCell>Path</TableCell>
                <TableCell align="right">Size</TableCell>
                <TableCell align="right">Freq min</TableCell>
                <TableCell align="right">Freq max</TableCell>
              </TableRow>
            </TableHead>
            <TableBody>
              {files.map((f) => (
                <TableRow key={f.subband_idx}>
                  <TableCell>sb{String(f.subband_idx).padStart(2, '0')}</TableCell>
                  <TableCell sx={{ fontFamily: 'monospace', fontSize: 13, wordBreak: 'break-all' }}>{f.path}</TableCell>
                  <TableCell align="right">{f.size_bytes != null ? formatMb(f.size_bytes / 1048576) : '—'}</TableCell>
                  <TableCell align="right">{formatHz(f.freq_min_hz)}</TableCell>
                  <TableCell align="right">{formatHz(f.freq_max_hz)}</TableCell>
                </TableRow>
              ))}
            </TableBody>
          </Table>
        ) : (
          <Typography variant="body2" color="text.secondary">
            No files recorded.
          </Typography>
        )}
      </Section>
    </>
  );
}
