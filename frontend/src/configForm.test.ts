import { describe, expect, it } from 'vitest';
import { sectionsFor } from './configFields';
import { buildPayload, mapFieldErrors, toForm } from './configForm';
import { config, configWithRetention } from './test/fixtures';

describe('config form', () => {
  it('round-trips without changes', () => {
    const r = buildPayload(config, toForm(config));
    expect(r.errors).toEqual({});
    expect(r.payload).toEqual({});
  });

  it('sends only changed fields, typed', () => {
    const f = toForm(config);
    f.values.max_workers = '8';
    f.values.stage_to_tmpfs = true;
    f.values.log_level = 'DEBUG';
    expect(buildPayload(config, f).payload).toEqual({ max_workers: 8, stage_to_tmpfs: true, log_level: 'DEBUG' });
  });

  it('flags unparseable numbers locally but leaves range checks to the server', () => {
    const f = toForm(config);
    f.values.max_workers = '';
    f.values.expected_subbands = '1.5';
    f.values.poll_interval = '0';
    const r = buildPayload(config, f);
    expect(r.errors).toEqual({ max_workers: 'Enter a number', expected_subbands: 'Enter a whole number' });
    expect(r.payload).toEqual({ poll_interval: 0 });
  });

  it('builds a command converter with env', () => {
    const f = toForm(config);
    f.converterKind = 'command';
    f.argv = 'python\n-m\nmod\n{files}\n';
    f.env = 'OMP_NUM_THREADS=4\nHDF5_USE_FILE_LOCKING=FALSE';
    expect(buildPayload(config, f).payload.converter).toEqual({
      kind: 'command',
      argv: ['python', '-m', 'mod', '{files}'],
      env: { OMP_NUM_THREADS: '4', HDF5_USE_FILE_LOCKING: 'FALSE' },
    });
    f.argv = '';
    expect(buildPayload(config, f).errors.converter).toMatch(/one argument per line/);
  });

  it('maps server field errors, including nested converter ones', () => {
    const known = new Set(['max_workers', 'converter']);
    const r = mapFieldErrors(
      [
        { field: 'max_workers', message: 'must be between 1 and 64, got 0' },
        { field: 'converter.argv', message: 'must not be empty' },
        { field: 'bogus', message: 'unknown field' },
      ],
      known,
    );
    expect(r.byField).toEqual({ max_workers: 'must be between 1 and 64, got 0', converter: 'must not be empty' });
    expect(r.other).toEqual([{ field: 'bogus', message: 'unknown field' }]);
  });

  it('keeps fields the server added that the UI does not know', () => {
    const extended = { ...config, future_knob: 3, future_flag: true };
    const f = toForm(extended);
    expect(f.values.future_knob).toBe('3');
    f.values.future_flag = false;
    expect(buildPayload(extended, f).payload).toEqual({ future_flag: false });
  });
});

describe('config form: disk and retention', () => {
  const withRetention = configWithRetention;

  it('shows the settings in their own section, unset ones empty, and round-trips', () => {
    const section = sectionsFor(withRetention).find((s) => s.title === 'Disk and retention');
    expect(section?.fields.map((f) => f.name)).toEqual([
      'retain_input_hours',
      'archive_dir',
      'retain_failed_days',
      'retain_output_days',
      'retention_interval_s',
      'min_free_gb',
      'free_space_factor',
    ]);
    const f = toForm(withRetention);
    expect(f.values.archive_dir).toBe('');
    expect(f.values.retain_output_days).toBe('');
    expect(buildPayload(withRetention, f)).toEqual({ payload: {}, errors: {} });
  });

  it('sets an unset optional and clears a set one with null (empty = unset)', () => {
    const f = toForm(withRetention);
    f.values.archive_dir = '/data/archive';
    f.values.retain_output_days = '30';
    expect(buildPayload(withRetention, f).payload).toEqual({ archive_dir: '/data/archive', retain_output_days: 30 });

    const set = { ...withRetention, archive_dir: '/data/archive', retain_output_days: 30 };
    const g = toForm(set);
    expect(g.values.retain_output_days).toBe('30');
    g.values.archive_dir = '  ';
    g.values.retain_output_days = '';
    expect(buildPayload(set, g)).toEqual({ payload: { archive_dir: null, retain_output_days: null }, errors: {} });
  });

  it('still requires the non-optional numbers', () => {
    const f = toForm(withRetention);
    f.values.min_free_gb = '';
    f.values.retain_output_days = 'soon';
    expect(buildPayload(withRetention, f).errors).toEqual({ min_free_gb: 'Enter a number', retain_output_days: 'Enter a number' });
  });
});
