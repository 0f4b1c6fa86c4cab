import { describe, expect, it } from 'vitest';
import { formatDuration, formatMb, usageColor } from './format';
import { serviceState } from './serviceState';
import { status } from './test/fixtures';

describe('format', () => {
  it('colours usage orange above 50 % and red above 80 %', () => {
    expect(usageColor(10)).toBe('success');
    expect(usageColor(50)).toBe('success');
    expect(usageColor(50.1)).toBe('warning');
    expect(usageColor(80)).toBe('warning');
    expect(usageColor(80.1)).toBe('error');
  });

  it('formats durations and sizes', () => {
    expect(formatDuration(5)).toBe('5s');
    expect(formatDuration(3725)).toBe('1h 2m 5s');
    expect(formatDuration(90061)).toBe('1d 1h 1m');
    expect(formatDuration(null)).toBe('—');
    expect(formatMb(512)).toBe('512.0 MiB');
    expect(formatMb(2048)).toBe('2.00 GiB');
  });
});

describe('serviceState', () => {
  it('maps systemd states', () => {
    expect(serviceState(status()).key).toBe('active');
    expect(serviceState(status()).detail).toBe('active (running)');
    expect(serviceState(status({ running: false, active_state: 'failed', sub_state: 'failed' })).label).toBe('Failed');
    expect(serviceState(status({ running: false, active_state: 'activating', sub_state: 'start' })).transitional).toBe(true);
  });

  it('falls back to running/error for backends without active_state', () => {
    expect(serviceState(status({ active_state: undefined, sub_state: undefined })).key).toBe('active');
    expect(serviceState(status({ running: false, active_state: undefined, sub_state: undefined })).key).toBe('inactive');
    expect(serviceState(status({ running: false, error: 'boom', active_state: undefined })).key).toBe('failed');
  });
});
