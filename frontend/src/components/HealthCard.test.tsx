import { screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { status } from '../test/fixtures';
import { mockFetch, renderWithProviders } from '../test/utils';
import { HealthCard } from './HealthCard';
import { StatusCard } from './StatusCard';

describe('HealthCard', () => {
  it("shows the API's verdict, not one derived from the running service", async () => {
    mockFetch({
      '/api/streaming/status': status({ running: true }),
      '/api/streaming/health': {
        healthy: false,
        running: true,
        uptime_seconds: 120,
        cpu_percent: 0,
        memory_mb: 12,
        error: 'queue_db: disk full: /var/lib/contimg has 0 B free (needs at least 4.0 MiB)',
        checks: [
          { name: 'service_running', ok: true, detail: 'active (running)' },
          { name: 'queue_db', ok: false, detail: 'disk full: /var/lib/contimg has 0 B free (needs at least 4.0 MiB)' },
        ],
      },
    });
    renderWithProviders(
      <>
        <StatusCard />
        <HealthCard />
      </>,
    );
    expect(await screen.findByLabelText('Overall health: unhealthy')).toHaveTextContent('Unhealthy');
    expect(screen.getByLabelText('queue_db: failing')).toHaveTextContent('disk full: /var/lib/contimg');
    expect(screen.getByLabelText('service_running: ok')).toBeInTheDocument();
    expect(await screen.findByRole('status', { name: 'Service state' })).toHaveTextContent('Running');
  });
});
