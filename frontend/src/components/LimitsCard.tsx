import TuneIcon from '@mui/icons-material/Tune';
import {
  Alert,
  Button,
  CircularProgress,
  Dialog,
  DialogActions,
  DialogContent,
  DialogTitle,
  FormControlLabel,
  InputAdornment,
  Stack,
  Switch,
  TextField,
} from '@mui/material';
import { useState, type FormEvent } from 'react';
import { ApiError, errorMessage } from '../api/client';
import { useLimits, useSaveLimits } from '../api/queries';
import type { Limits, LimitsUpdate } from '../api/types';
import { formatMb } from '../format';
import { Facts } from './Facts';
import { Loadable, Panel } from './Panel';

const MIB = 1024 * 1024;

export function LimitsCard() {
  const q = useLimits();
  const [open, setOpen] = useState(false);
  const [msg, setMsg] = useState<string | null>(null);
  return (
    <Panel
      title="Resource Limits"
      action={
        <Button size="small" variant="outlined" startIcon={<TuneIcon />} onClick={() => setOpen(true)} disabled={!q.data}>
          Edit limits
        </Button>
      }
    >
      {msg ? (
        <Alert severity="success" onClose={() => setMsg(null)} sx={{ mb: 1 }}>
          {msg}
        </Alert>
      ) : null}
      <Loadable query={q} what="resource limits" skeletonRows={2}>
        {(l) => (
          <Facts
            label="Limits"
            items={[
              ['Memory max', l.memory_max_bytes != null ? formatMb(l.memory_max_bytes / MIB) : 'no limit'],
              ['CPU quota', l.cpu_quota_percent != null ? `${l.cpu_quota_percent} %` : 'no limit'],
            ]}
          />
        )}
      </Loadable>
      {open && q.data ? (
        <LimitsDialog
          limits={q.data}
          onClose={() => setOpen(false)}
          onSaved={(m) => {
            setOpen(false);
            setMsg(m);
          }}
        />
      ) : null}
    </Panel>
  );
}

export function LimitsDialog({ limits, onClose, onSaved }: { limits: Limits; onClose: () => void; onSaved: (msg: string) => void }) {
  const save = useSaveLimits();
  const [mem, setMem] = useState(limits.memory_max_bytes != null ? String(Math.round(limits.memory_max_bytes / MIB)) : '');
  const [cpu, setCpu] = useState(limits.cpu_quota_percent != null ? String(limits.cpu_quota_percent) : '');
  const [persistent, setPersistent] = useState(false);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const errs: Record<string, string> = {};
    const body: LimitsUpdate = { persistent };
    const parse = (s: string, field: string): number | null | undefined => {
      if (s.trim() === '') return null;
      const n = Number(s);
      if (!Number.isFinite(n) || n <= 0) {
        errs[field] = 'Enter a positive number, or leave empty for no limit';
        return undefined;
      }
      return n;
    };
    const m = parse(mem, 'memory_max_bytes');
    const c = parse(cpu, 'cpu_quota_percent');
    if (Object.keys(errs).length) {
      setErrors(errs);
      return;
    }
    const memBytes = m == null ? null : Math.round(m * MIB);
    if (memBytes !== limits.memory_max_bytes) body.memory_max_bytes = memBytes;
    if ((c ?? null) !== limits.cpu_quota_percent) body.cpu_quota_percent = c ?? null;
    save.mutate(body, {
      onSuccess: (r) => onSaved(r.message || 'Limits applied'),
      onError: (err) => {
        if (err instanceof ApiError && err.fieldErrors.length) {
          setErrors(Object.fromEntries(err.fieldErrors.map((f) => [f.field, f.message])));
        }
        setError(errorMessage(err));
      },
    });
  };

  return (
    <Dialog open onClose={onClose} aria-labelledby="limits-dialog-title" maxWidth="xs" fullWidth>
      <form onSubmit={submit} noValidate>
        <DialogTitle id="limits-dialog-title">Resource limits</DialogTitle>
        <DialogContent>
          {error ? (
            <Alert severity="error" role="alert" sx={{ mb: 2 }}>
              {error}
            </Alert>
          ) : null}
          <Stack spacing={2} sx={{ mt: 1 }}>
            <TextField
              label="Memory max"
              type="number"
              value={mem}
              onChange={(e) => setMem(e.target.value)}
              error={!!errors.memory_max_bytes}
              helperText={errors.memory_max_bytes ?? 'MemoryMax of the unit; empty = no limit'}
              slotProps={{ input: { endAdornment: <InputAdornment position="end">MiB</InputAdornment> }, htmlInput: { min: 1 } }}
            />
            <TextField
              label="CPU quota"
              type="number"
              value={cpu}
              onChange={(e) => setCpu(e.target.value)}
              error={!!errors.cpu_quota_percent}
              helperText={errors.cpu_quota_percent ?? '100 % = one core; empty = no limit'}
              slotProps={{ input: { endAdornment: <InputAdornment position="end">%</InputAdornment> }, htmlInput: { min: 1 } }}
            />
            <FormControlLabel
              control={<Switch checked={persistent} onChange={(e) => setPersistent(e.target.checked)} />}
              label="Keep after reboot (persistent)"
            />
          </Stack>
        </DialogContent>
        <DialogActions>
          <Button onClick={onClose}>Cancel</Button>
          <Button type="submit" variant="contained" disabled={save.isPending} startIcon={save.isPending ? <CircularProgress size={16} color="inherit" /> : undefined}>
            Apply limits
          </Button>
        </DialogActions>
      </form>
    </Dialog>
  );
}
