import { screen, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { metrics, status } from '../test/fixtures';
import { mockFetch, renderWithProviders } from '../test/utils';
import { QueueCard } from './QueueCard';

describe('QueueCard', () => {
  it('shows how many input files were unrecognised or arrived late', async () => {
    mockFetch({
      '/api/streaming/status': status({ running: true }),
      '/api/streaming/metrics': metrics({ rejected_files: 1, unrecognised_files: 7, late_files: 2 }),
    });
    renderWithProviders(<QueueCard />);
    const facts = await screen.findByLabelText('Processing');
    const value = (term: string) => within(facts).getByText(term).nextElementSibling;
    expect(await within(facts).findByText('Unrecognised files')).toBeInTheDocument();
    expect(value('Unrecognised files')).toHaveTextContent('7');
    expect(value('Late subbands')).toHaveTextContent('2');
    expect(value('Rejected files')).toHaveTextContent('1');
  });
});
