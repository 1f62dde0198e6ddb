import type { Idx } from '../../search/types';
import { bareCode } from './bucket-plan';

/** Time units of the buckets: UTC days, hours and minutes as sortable key strings. */

export const DAY_MS = 86_400_000;
export const HOUR_MS = 3_600_000;
export const MINUTE_MS = 60_000;

export function dateRangeOf(idx: Idx): { l: number; h: number } | undefined {
  const { l, h } = (idx.date ?? {}) as { l?: unknown; h?: unknown };
  if (!(l instanceof Date) || !(h instanceof Date)) return undefined;
  return { l: l.getTime(), h: h.getTime() };
}

/** Units a range spans, or `long` when more than `max`. */
export function spanKeys(r: { l: number; h: number }, unit: number, max: number, key: (t: number) => string): string[] {
  const first = Math.floor(r.l / unit);
  const lastUnit = Math.floor(r.h / unit);
  if (lastUnit - first + 1 > max || !Number.isFinite(first) || !Number.isFinite(lastUnit)) return ['long'];
  const out: string[] = [];
  for (let u = first; u <= lastUnit; u++) out.push(key(u * unit));
  return out;
}

export function dayKey(t: number): string {
  return new Date(t).toISOString().slice(0, 10);
}

export function hourKey(t: number): string {
  return new Date(t).toISOString().slice(0, 13);
}

export function minuteKey(t: number): string {
  return new Date(t).toISOString().slice(0, 16);
}

/** Start (ms) of a day (`2024-03-01`), hour (`2024-03-01T10`) or minute (`2024-03-01T10:05`) key. */
export function unitStart(unit: string): number {
  if (unit.length === 10) return Date.parse(`${unit}T00:00:00Z`);
  return Date.parse(unit.length === 13 ? `${unit}:00:00Z` : `${unit}:00Z`);
}

export function bareCodes(tokens: unknown): string[] {
  if (!Array.isArray(tokens)) return [];
  const out = new Set<string>();
  for (const t of tokens) {
    const c = typeof t === 'string' ? bareCode(t) : undefined;
    if (c) out.add(c);
  }
  return [...out];
}

export function pick(idx: Idx, fields: Set<string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(idx)) if (fields.has(k.split('.')[0])) out[k] = v;
  return out;
}
