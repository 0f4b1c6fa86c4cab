import EditIcon from '@mui/icons-material/Edit';
import { Alert, Box, Button, Typography } from '@mui/material';
import { useState } from 'react';
import { useConfig } from '../api/queries';
import type { ControlResponse } from '../api/types';
import { displayValue, sectionsFor } from '../configFields';
import { ConfigDialog } from './ConfigDialog';
import { Facts } from './Facts';
import { Loadable, Panel } from './Panel';

export function ConfigCard() {
  const q = useConfig();
  const [open, setOpen] = useState(false);
  const [saved, setSaved] = useState<ControlResponse | null>(null);
  return (
    <Panel
      title="Current Configuration"
      action={
        <Button startIcon={<EditIcon />} size="small" variant="outlined" onClick={() => setOpen(true)} disabled={!q.data}>
          Edit configuration
        </Button>
      }
    >
      {saved ? (
        <Alert severity="success" onClose={() => setSaved(null)} sx={{ mb: 2 }}>
          {saved.message || 'Configuration saved'}
          {saved.changed?.length ? ` — changed: ${saved.changed.join(', ')}` : ''}
          {saved.restarted ? ' — service restarted' : ''}
        </Alert>
      ) : null}
      <Loadable query={q} what="configuration" skeletonRows={6}>
        {({ config }) => (
          <Box sx={{ display: 'flex', flexDirection: 'column', gap: 2 }}>
            {sectionsFor(config).map((s) => (
              <Box key={s.title}>
                <Typography variant="subtitle2" color="text.secondary" component="h3" sx={{ mb: 0.5 }}>
                  {s.title}
                </Typography>
                <Facts label={`${s.title} settings`} minColumn={170} items={s.fields.map((f) => [f.label, displayValue(config, f)])} />
              </Box>
            ))}
            <Box>
              <Typography variant="subtitle2" color="text.secondary" component="h3" sx={{ mb: 0.5 }}>
                Converter
              </Typography>
              <Typography variant="body2" sx={{ fontFamily: 'monospace', overflowWrap: 'anywhere' }} aria-label="Converter">
                {config.converter?.kind === 'command' ? config.converter.argv.join(' ') : (config.converter?.kind ?? 'builtin')}
              </Typography>
            </Box>
          </Box>
        )}
      </Loadable>
      <ConfigDialog
        open={open}
        onClose={() => setOpen(false)}
        onSaved={(r) => {
          setOpen(false);
          setSaved(r);
        }}
      />
    </Panel>
  );
}
