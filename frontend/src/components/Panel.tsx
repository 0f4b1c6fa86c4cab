import { Alert, Box, Button, Card, CardContent, CardHeader, Skeleton } from '@mui/material';
import type { UseQueryResult } from '@tanstack/react-query';
import type { ReactNode } from 'react';
import { errorMessage } from '../api/client';

interface PanelProps {
  title: ReactNode;
  /** Accessible name of the region; defaults to the title when it is a string. */
  label?: string;
  action?: ReactNode;
  subheader?: ReactNode;
  children: ReactNode;
  sx?: object;
}

/** A titled card that is also a labelled landmark region. */
export function Panel({ title, label, action, subheader, children, sx }: PanelProps) {
  const name = label ?? (typeof title === 'string' ? title : undefined);
  return (
    <Card component="section" aria-label={name} sx={{ display: 'flex', flexDirection: 'column', minWidth: 0, height: '100%', ...sx }}>
      <CardHeader
        title={title}
        subheader={subheader}
        action={action}
        slotProps={{ title: { variant: 'h6', component: 'h2' } }}
        sx={{ pb: 0.5, '& .MuiCardHeader-action': { alignSelf: 'center', m: 0 } }}
      />
      <CardContent sx={{ pt: 1, flex: 1, minWidth: 0 }}>{children}</CardContent>
    </Card>
  );
}

interface LoadableProps<T> {
  query: Pick<UseQueryResult<T>, 'data' | 'error' | 'isPending' | 'refetch' | 'isRefetchError'>;
  what: string;
  children: (data: T) => ReactNode;
  skeletonRows?: number;
}

/** Loading skeleton, error with retry, or the content. Keeps stale data visible on refetch errors. */
export function Loadable<T>({ query, what, children, skeletonRows = 3 }: LoadableProps<T>) {
  if (query.isPending) {
    return (
      <Box aria-busy="true" aria-label={`Loading ${what}`}>
        {Array.from({ length: skeletonRows }, (_, i) => (
          <Skeleton key={i} height={28} />
        ))}
      </Box>
    );
  }
  if (query.data === undefined) {
    return <QueryError what={what} error={query.error} onRetry={() => void query.refetch()} />;
  }
  return (
    <>
      {query.isRefetchError && query.error ? (
        <QueryError what={what} error={query.error} onRetry={() => void query.refetch()} compact />
      ) : null}
      {children(query.data)}
    </>
  );
}

export function QueryError({
  what,
  error,
  onRetry,
  compact,
}: {
  what: string;
  error: unknown;
  onRetry?: () => void;
  compact?: boolean;
}) {
  return (
    <Alert
      severity={compact ? 'warning' : 'error'}
      sx={{ mb: 1 }}
      action={
        onRetry ? (
          <Button color="inherit" size="small" onClick={onRetry} aria-label={`Retry loading ${what}`}>
            Retry
          </Button>
        ) : undefined
      }
    >
      {compact ? `Could not refresh ${what}` : `Could not load ${what}`}: {errorMessage(error)}
    </Alert>
  );
}
