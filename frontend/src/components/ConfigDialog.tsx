import {
  Alert,
  AlertTitle,
  Box,
  Button,
  CircularProgress,
  Dialog,
  DialogActions,
  DialogContent,
  DialogTitle,
  FormControlLabel,
  FormHelperText,
  InputAdornment,
  Switch,
  TextField,
  Typography,
  useMediaQuery,
  useTheme,
} from '@mui/material';
import { useQueryClient } from '@tanstack/react-query';
import { useEffect, useMemo, useRef, useState, type FormEvent } from 'react';
import { ApiError, errorMessage } from '../api/client';
import type { ConfigWithEtag } from '../api/endpoints';
import { keys } from '../api/keys';
import { useConfig, useSaveConfig } from '../api/queries';
import { CONFIG_LOG_LEVELS, type ControlResponse, type FieldError } from '../api/types';
import { sectionsFor, type FieldDef } from '../configFields';
import { buildPayload, mapFieldErrors, toForm, type ConfigForm } from '../configForm';
import { QueryError } from './Panel';

interface Props {
  open: boolean;
  onClose: () => void;
  onSaved: (r: ControlResponse) => void;
}

export function ConfigDialog({ open, onClose, onSaved }: Props) {
  const q = useConfig(open);
  const theme = useTheme();
  const fullScreen = useMediaQuery(theme.breakpoints.down('sm'));
  // Survives the editor's remount after a 412 reload, so the operator is told why.
  const [stale, setStale] = useState(false);
  // The editor keeps the version it was opened with (its ETag goes in If-Match);
  // it is remounted with fresh data only after a 412.
  const [version, setVersion] = useState(0);
  const close = () => {
    setStale(false);
    onClose();
  };
  return (
    <Dialog open={open} onClose={close} maxWidth="md" fullWidth fullScreen={fullScreen} aria-labelledby="config-dialog-title">
      <DialogTitle id="config-dialog-title">Edit configuration</DialogTitle>
      {q.isPending ? (
        <DialogContent>
          <Box sx={{ display: 'flex', justifyContent: 'center', p: 4 }} aria-busy="true" aria-label="Loading configuration">
            <CircularProgress />
          </Box>
        </DialogContent>
      ) : q.data ? (
        // Remount the form whenever the server's version changes (after a 412 reload).
        <ConfigEditor
          key={version}
          loaded={q.data}
          stale={stale}
          onStale={() => {
            setStale(true);
            setVersion((v) => v + 1);
          }}
          onClose={close}
          onSaved={(r) => {
            setStale(false);
            onSaved(r);
          }}
        />
      ) : (
        <>
          <DialogContent>
            <QueryError what="configuration" error={q.error} onRetry={() => void q.refetch()} />
          </DialogContent>
          <DialogActions>
            <Button onClick={close}>Close</Button>
          </DialogActions>
        </>
      )}
    </Dialog>
  );
}

const STALE_BANNER = {
  severity: 'warning' as const,
  title: 'Configuration changed on the server',
  text: 'Someone saved the configuration after you opened this editor. The latest version has been loaded; re-apply your changes.',
};

function ConfigEditor({
  loaded: current,
  stale,
  onStale,
  onClose,
  onSaved,
}: {
  loaded: ConfigWithEtag;
  stale: boolean;
  onStale: () => void;
  onClose: () => void;
  onSaved: (r: ControlResponse) => void;
}) {
  const qc = useQueryClient();
  const save = useSaveConfig();
  const [loaded] = useState(current);
  const sections = useMemo(() => sectionsFor(loaded.config), [loaded.config]);
  const known = useMemo(() => new Set(['converter', ...sections.flatMap((s) => s.fields.map((f) => f.name))]), [sections]);
  const [form, setForm] = useState<ConfigForm>(() => toForm(loaded.config));
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const [otherErrors, setOtherErrors] = useState<FieldError[]>([]);
  const [banner, setBanner] = useState<{ severity: 'error' | 'warning' | 'info'; title?: string; text: string } | null>(
    stale ? STALE_BANNER : null,
  );

  // Bring the first field with an error into view and focus it.
  const formRef = useRef<HTMLFormElement>(null);
  const [focusErrors, setFocusErrors] = useState(0);
  useEffect(() => {
    if (!focusErrors) return;
    const el = formRef.current?.querySelector<HTMLElement>('[aria-invalid="true"]');
    el?.scrollIntoView?.({ block: 'center' });
    el?.focus();
  }, [focusErrors]);

  const setValue = (name: string, v: string | boolean) => {
    setForm((f) => ({ ...f, values: { ...f.values, [name]: v } }));
    setFieldErrors(({ [name]: _drop, ...rest }) => rest);
  };

  const submit = (e: FormEvent) => {
    e.preventDefault();
    setBanner(null);
    setOtherErrors([]);
    const { payload, errors } = buildPayload(loaded.config, form);
    setFieldErrors(errors);
    if (Object.keys(errors).length) {
      setBanner({ severity: 'error', text: 'Fix the highlighted fields.' });
      setFocusErrors((n) => n + 1);
      return;
    }
    if (Object.keys(payload).length === 0) {
      setBanner({ severity: 'info', text: 'Nothing changed.' });
      return;
    }
    save.mutate(
      { config: payload, etag: loaded.etag },
      {
        onSuccess: (r) => onSaved(r),
        onError: (err) => {
          if (err instanceof ApiError && err.status === 422) {
            const { byField, other } = mapFieldErrors(err.fieldErrors, known);
            setFieldErrors(byField);
            setOtherErrors(other);
            setFocusErrors((n) => n + 1);
            setBanner({
              severity: 'error',
              title: 'The server rejected the configuration',
              text: err.fieldErrors.length ? `${err.fieldErrors.length} field(s) need attention.` : err.message,
            });
          } else if (err instanceof ApiError && err.status === 412) {
            // Someone else saved in between: reload; this editor remounts with the new version.
            // Someone else saved in between: load their version, then remount on it.
            setBanner(STALE_BANNER);
            void qc.refetchQueries({ queryKey: keys.config }).then(onStale);
          } else {
            setBanner({ severity: 'error', text: errorMessage(err) });
          }
        },
      },
    );
  };

  return (
    <Box component="form" ref={formRef} onSubmit={submit} noValidate aria-label="Configuration form" sx={{ display: 'contents' }}>
      <DialogContent dividers>
        {banner ? (
          <Alert severity={banner.severity} sx={{ mb: 2 }} role="alert">
            {banner.title ? <AlertTitle>{banner.title}</AlertTitle> : null}
            {banner.text}
            {otherErrors.length ? (
              <Box component="ul" sx={{ m: 0, pl: 2 }}>
                {otherErrors.map((e) => (
                  <li key={e.field}>
                    <code>{e.field}</code>: {e.message}
                  </li>
                ))}
              </Box>
            ) : null}
          </Alert>
        ) : null}
        {sections.map((s) => (
          <Box key={s.title} component="fieldset" sx={{ border: 0, p: 0, m: 0, mb: 2.5 }}>
            <Typography component="legend" variant="subtitle2" color="text.secondary" sx={{ mb: 1 }}>
              {s.title}
            </Typography>
            <Box sx={{ display: 'grid', gridTemplateColumns: { xs: '1fr', sm: '1fr 1fr' }, gap: 2 }}>
              {s.fields.map((f) => (
                <ConfigField key={f.name} def={f} value={form.values[f.name]} error={fieldErrors[f.name]} onChange={(v) => setValue(f.name, v)} />
              ))}
            </Box>
          </Box>
        ))}
        <ConverterFields form={form} setForm={setForm} error={fieldErrors.converter} />
      </DialogContent>
      <DialogActions>
        <Typography variant="caption" color="text.secondary" sx={{ mr: 'auto', pl: 1 }}>
          Saving restarts the service if it is running.
        </Typography>
        <Button onClick={onClose}>Cancel</Button>
        <Button type="submit" variant="contained" disabled={save.isPending} startIcon={save.isPending ? <CircularProgress size={16} color="inherit" /> : undefined}>
          Save
        </Button>
      </DialogActions>
    </Box>
  );
}

function ConfigField({
  def,
  value,
  error,
  onChange,
}: {
  def: FieldDef;
  value: string | boolean | undefined;
  error?: string;
  onChange: (v: string | boolean) => void;
}) {
  if (def.kind === 'bool') {
    return (
      <Box>
        <FormControlLabel
          control={<Switch checked={Boolean(value)} onChange={(e) => onChange(e.target.checked)} name={def.name} />}
          label={def.label}
        />
        {error ? <FormHelperText error>{error}</FormHelperText> : null}
      </Box>
    );
  }
  if (def.kind === 'level' || def.kind === 'choice') {
    const choices: string[] = def.kind === 'choice' ? (def.choices ?? []) : CONFIG_LOG_LEVELS;
    return (
      <TextField
        select
        label={def.label}
        name={def.name}
        value={String(value ?? (def.kind === 'level' ? 'INFO' : ''))}
        onChange={(e) => onChange(e.target.value)}
        error={!!error}
        helperText={error ?? def.help}
        slotProps={{ select: { native: true }, inputLabel: { shrink: true } }}
        fullWidth
        size="small"
      >
        {choices.concat(choices.includes(String(value)) || !value ? [] : [String(value)]).map((l) => (
          <option key={l} value={l}>
            {l}
          </option>
        ))}
      </TextField>
    );
  }
  const numeric = def.kind === 'int' || def.kind === 'float';
  return (
    <TextField
      label={def.label}
      name={def.name}
      value={String(value ?? '')}
      onChange={(e) => onChange(e.target.value)}
      error={!!error}
      helperText={error ?? def.help}
      type={numeric ? 'number' : 'text'}
      fullWidth
      size="small"
      slotProps={{
        htmlInput: numeric ? { step: def.kind === 'int' ? 1 : 'any', inputMode: def.kind === 'int' ? 'numeric' : 'decimal' } : { spellCheck: false },
        input: def.unit ? { endAdornment: <InputAdornment position="end">{def.unit}</InputAdornment> } : undefined,
      }}
    />
  );
}

const KIND_HELP: Record<ConfigForm['converterKind'], string> = {
  builtin: 'Merge the subbands into one UVH5 file (built in)',
  manifest: 'Dry run: check the files and write a JSON manifest',
  command: 'Run an external command per group (e.g. the CASA orchestrator)',
};

function ConverterFields({
  form,
  setForm,
  error,
}: {
  form: ConfigForm;
  setForm: (f: (prev: ConfigForm) => ConfigForm) => void;
  error?: string;
}) {
  return (
    <Box component="fieldset" sx={{ border: 0, p: 0, m: 0 }}>
      <Typography component="legend" variant="subtitle2" color="text.secondary" sx={{ mb: 1 }}>
        Converter
      </Typography>
      <Box sx={{ display: 'grid', gridTemplateColumns: { xs: '1fr', sm: '1fr 1fr' }, gap: 2 }}>
        <TextField
          select
          label="Converter kind"
          name="converter.kind"
          value={form.converterKind}
          onChange={(e) => setForm((f) => ({ ...f, converterKind: e.target.value as ConfigForm['converterKind'] }))}
          slotProps={{ select: { native: true }, inputLabel: { shrink: true } }}
          error={!!error && form.converterKind !== 'command'}
          helperText={(form.converterKind !== 'command' && error) || KIND_HELP[form.converterKind]}
          size="small"
          fullWidth
        >
          <option value="builtin">builtin</option>
          <option value="manifest">manifest</option>
          <option value="command">command</option>
        </TextField>
        {form.converterKind === 'command' ? (
          <>
            <TextField
              label="Command (argv)"
              name="converter.argv"
              multiline
              minRows={3}
              value={form.argv}
              onChange={(e) => setForm((f) => ({ ...f, argv: e.target.value }))}
              error={!!error}
              helperText={error ?? 'One argument per line. Placeholders: {files} {output} {group_id} {start} {end} {input_dir} {output_dir} {scratch_dir} {max_workers} {tmpfs_path}'}
              slotProps={{ htmlInput: { spellCheck: false, style: { fontFamily: 'monospace' } } }}
              size="small"
              fullWidth
            />
            <TextField
              label="Environment"
              name="converter.env"
              multiline
              minRows={2}
              value={form.env}
              onChange={(e) => setForm((f) => ({ ...f, env: e.target.value }))}
              helperText="KEY=VALUE, one per line"
              slotProps={{ htmlInput: { spellCheck: false, style: { fontFamily: 'monospace' } } }}
              size="small"
              fullWidth
              sx={{ gridColumn: { sm: '1 / -1' } }}
            />
          </>
        ) : null}
      </Box>
    </Box>
  );
}
