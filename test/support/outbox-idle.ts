import type { Vigil } from '../../src/app';

/**
 * Waits (bounded) until the running outbox has no pending intent. Used instead of drainNow()
 * while the outbox worker runs: a drainNow beside a scheduled drain would process one batch twice.
 */
export async function outboxIdle(vigil: Vigil, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while ((await vigil.outbox.oldestPendingAt()) !== undefined) {
    if (Date.now() > deadline) throw new Error('the outbox did not become idle');
    await new Promise((r) => setTimeout(r, 25));
  }
}
