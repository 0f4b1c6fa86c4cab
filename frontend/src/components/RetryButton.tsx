import ReplayIcon from '@mui/icons-material/Replay';
import { Button, CircularProgress } from '@mui/material';
import { useRetryGroup } from '../api/queries';
import type { ControlResponse } from '../api/types';

interface Props {
  groupId: string;
  onDone: (r: { ok: true; res: ControlResponse } | { ok: false; err: unknown }) => void;
  size?: 'small' | 'medium';
}

export function RetryButton({ groupId, onDone, size = 'small' }: Props) {
  const retry = useRetryGroup();
  return (
    <Button
      size={size}
      variant="outlined"
      color="warning"
      aria-label={`Retry group ${groupId}`}
      startIcon={retry.isPending ? <CircularProgress size={14} color="inherit" /> : <ReplayIcon />}
      disabled={retry.isPending}
      onClick={(e) => {
        e.stopPropagation();
        retry.mutate(groupId, {
          onSuccess: (res) => onDone({ ok: true, res }),
          onError: (err) => onDone({ ok: false, err }),
        });
      }}
    >
      Retry
    </Button>
  );
}
