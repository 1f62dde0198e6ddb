/**
 * Exponential back-off with "full jitter": the delay before retry n (1-based) is uniform in
 * [base*2^(n-1)/2, base*2^(n-1)], capped at max. Half the window stays fixed so retries never
 * collapse to zero, the other half spreads instances that failed together.
 */
export function backoffDelay(failures: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const n = Math.max(1, Math.floor(failures));
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(n - 1, 40));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
