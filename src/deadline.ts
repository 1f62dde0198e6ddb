import { AsyncLocalStorage } from 'node:async_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Errors } from './errors';

/**
 * The server-side deadline of the request being handled, carried by AsyncLocalStorage so that
 * long loops anywhere below the edge (bundle entries, validation, includes) can stop cleanly
 * without every signature growing a parameter. Outside a request there is no deadline.
 */
interface Deadline {
  at: number;
  ms: number;
  /** The server's clock (injectable, so tests can run out of time deterministically). */
  now: () => number;
  /** When the current loop last gave the event loop back. */
  lastYield: number;
}

const current = new AsyncLocalStorage<Deadline>();

/** How long a loop may keep the event loop before it lets other requests run. */
const SLICE_MS = 20;

export function runWithDeadline<T>(ms: number, fn: () => Promise<T>, now: () => number = Date.now): Promise<T> {
  const start = now();
  return current.run({ at: start + ms, ms, now, lastYield: Date.now() }, fn);
}

/** Milliseconds left for the current request (Infinity outside a request). */
export function remainingMs(): number {
  const d = current.getStore();
  return d ? d.at - d.now() : Infinity;
}

/** Throws the deadline error when the current request has run out of time. */
export function checkDeadline(): void {
  const d = current.getStore();
  if (d && d.now() >= d.at) {
    throw Errors.deadline(`The request took longer than its deadline of ${d.ms} ms (REQUEST_DEADLINE_MS) and was stopped; nothing of it was written`);
  }
}

/**
 * Called between the steps of a long loop: checks the deadline and, when the loop has held the
 * event loop for a slice, yields so that other requests are answered meanwhile.
 */
export async function breathe(): Promise<void> {
  checkDeadline();
  const d = current.getStore();
  const now = Date.now();
  if (!d || now - d.lastYield < SLICE_MS) return;
  d.lastYield = now;
  await nextTurn();
  checkDeadline();
}
