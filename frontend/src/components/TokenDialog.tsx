import {
  Button,
  Dialog,
  DialogActions,
  DialogContent,
  DialogContentText,
  DialogTitle,
  TextField,
} from '@mui/material';
import { useState, useSyncExternalStore, type FormEvent } from 'react';
import { cancelTokenPrompt, getPromptReason, submitToken, subscribeAuth } from '../api/auth';

/** The token prompt: opens whenever something calls requestToken()/openTokenPrompt(). */
export function TokenDialog() {
  const reason = useSyncExternalStore(subscribeAuth, getPromptReason, () => null);
  const open = reason !== null;
  return (
    <Dialog open={open} onClose={cancelTokenPrompt} aria-labelledby="token-dialog-title">
      {open ? <TokenForm reason={reason} /> : null}
    </Dialog>
  );
}

function TokenForm({ reason }: { reason: string }) {
  const [value, setValue] = useState('');
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (value.trim()) submitToken(value.trim());
  };
  return (
    <form onSubmit={submit}>
      <DialogTitle id="token-dialog-title">Sign in</DialogTitle>
      <DialogContent>
        <DialogContentText sx={{ mb: 2 }}>{reason}</DialogContentText>
        <TextField
          autoFocus
          fullWidth
          type="password"
          label="API token"
          autoComplete="off"
          value={value}
          onChange={(e) => setValue(e.target.value)}
          helperText="Kept in this tab's session storage only."
        />
      </DialogContent>
      <DialogActions>
        <Button onClick={cancelTokenPrompt}>Cancel</Button>
        <Button type="submit" variant="contained" disabled={!value.trim()}>
          Sign in
        </Button>
      </DialogActions>
    </form>
  );
}
