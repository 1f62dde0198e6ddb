import { backoffDelay } from '../../../src/subscriptions/backoff';

describe('back-off with jitter', () => {
  it('doubles per failure between half and all of the window', () => {
    expect(backoffDelay(1, 1000, 60_000, () => 0)).toBe(500);
    expect(backoffDelay(1, 1000, 60_000, () => 1)).toBe(1000);
    expect(backoffDelay(3, 1000, 60_000, () => 0)).toBe(2000);
    expect(backoffDelay(3, 1000, 60_000, () => 1)).toBe(4000);
  });

  it('is capped, also for absurd failure counts', () => {
    expect(backoffDelay(50, 1000, 60_000, () => 1)).toBe(60_000);
    expect(backoffDelay(10_000, 1000, 60_000, () => 0.5)).toBe(45_000);
  });

  it('treats zero or negative counts as the first failure', () => {
    expect(backoffDelay(0, 1000, 60_000, () => 1)).toBe(1000);
    expect(backoffDelay(-3, 1000, 60_000, () => 1)).toBe(1000);
  });

  it('spreads retries: different random draws give different delays', () => {
    const seen = new Set([0, 0.25, 0.5, 0.75, 1].map((r) => backoffDelay(4, 1000, 60_000, () => r)));
    expect(seen.size).toBe(5);
  });
});
