import type { Period, Timing } from 'fhir/r4';
import { type Cond, and, not, or } from '../cond';
import type { Encoder, Idx, SearchParam, TypedValue } from '../types';
import { invalid, splitPrefix } from './common';

/** Earliest and latest instants MongoDB dates can hold: open ends of periods. */
export const MIN_DATE = new Date(-8.64e15);
export const MAX_DATE = new Date(8.64e15);

const DATE_RE =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

/**
 * A FHIR date, dateTime or instant (or a search value, which may stop at minutes) as the range
 * of instants its precision covers, [low, high] inclusive in milliseconds. Without a zone, UTC.
 */
export function dateRange(s: string): { l: Date; h: Date } | undefined {
  const m = DATE_RE.exec(s);
  if (!m) return undefined;
  const [, y, mo, d, hh, mi, ss, frac, tz] = m;
  const year = Number(y);
  const month = mo ? Number(mo) : 1;
  const day = d ? Number(d) : 1;
  if (month < 1 || month > 12) return undefined;
  const daysIn = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (day < 1 || day > daysIn) return undefined;
  if (hh && (Number(hh) > 23 || Number(mi) > 59)) return undefined;
  if (ss && Number(ss) > 59) return undefined;
  let offsetMin = 0;
  if (tz && tz !== 'Z') {
    const sign = tz[0] === '-' ? -1 : 1;
    offsetMin = sign * (Number(tz.slice(1, 3)) * 60 + Number(tz.slice(4, 6)));
    if (Number(tz.slice(1, 3)) > 14 || Number(tz.slice(4, 6)) > 59) return undefined;
  }
  const ms = frac ? Number(frac.slice(0, 3).padEnd(3, '0')) : 0;
  const low = Date.UTC(year, month - 1, day, hh ? Number(hh) : 0, mi ? Number(mi) : 0, ss ? Number(ss) : 0, ms) - offsetMin * 60000;
  let high: number;
  if (!mo) high = Date.UTC(year + 1, 0, 1) - 1;
  else if (!d) high = Date.UTC(year, month, 1) - 1;
  else if (!hh) high = Date.UTC(year, month - 1, day + 1) - 1;
  else if (ss === undefined) high = low + 60000 - 1;
  else if (!frac) high = low + 999;
  else high = low + Math.max(0, 10 ** Math.max(0, 3 - frac.length) - 1);
  if (year === 0 && !mo) return undefined;
  return { l: new Date(low), h: new Date(high) };
}

function valueRanges(values: TypedValue[]): { l: Date; h: Date }[] {
  const out: { l: Date; h: Date }[] = [];
  for (const { type, value } of values) {
    if (value === null || value === undefined) continue;
    if (typeof value === 'string') {
      const r = dateRange(value);
      if (r) out.push(r);
    } else if (type === 'Period') {
      const p = value as Period;
      const s = p.start ? dateRange(p.start) : undefined;
      const e = p.end ? dateRange(p.end) : undefined;
      if (s || e) out.push({ l: s?.l ?? MIN_DATE, h: e?.h ?? MAX_DATE });
    } else if (type === 'Timing') {
      const t = value as Timing;
      for (const ev of t.event ?? []) {
        const r = dateRange(ev);
        if (r) out.push(r);
      }
      const b = t.repeat?.boundsPeriod;
      if (b) out.push({ l: (b.start && dateRange(b.start)?.l) || MIN_DATE, h: (b.end && dateRange(b.end)?.h) || MAX_DATE });
    }
  }
  return out;
}

const P = (f: string) => `idx.${f}`;

/**
 * Dates: single-valued parameters keep scalar `<f>.l`/`<f>.h` (compound indexes may use them);
 * multi-valued ones keep arrays of lows and highs, each compared on its own.
 */
export const dateEncoder: Encoder = {
  modifiers: [],
  index(param, values, idx: Idx, field) {
    const ranges = valueRanges(values);
    if (ranges.length === 0) return;
    if (param.single) {
      idx[`${field}.l`] = ranges[0].l;
      idx[`${field}.h`] = ranges[0].h;
    } else {
      idx[`${field}.l`] = ranges.map((r) => r.l);
      idx[`${field}.h`] = ranges.map((r) => r.h);
      idx[`${field}.s`] = ranges.reduce((m, r) => (r.l < m ? r.l : m), ranges[0].l);
    }
  },
  toCond(param, value, field) {
    if (value.modifier) throw invalid(param, 'modifier', value.modifier);
    return dateCond(param, value.raw, P(field), !param.single);
  },
  presenceField: (field) => P(`${field}.l`),
  sortField: (param, field) => P(param.single ? `${field}.l` : `${field}.s`),
};

/** The prefix semantics of the spec for a stored range [L, H] and a search range [ql, qh]. */
export function dateCond(param: SearchParam, raw: string, path: string, elem: boolean, now = new Date()): Cond {
  const { prefix, rest } = splitPrefix(raw);
  const q = dateRange(rest);
  if (!q) throw invalid(param, 'date', raw);
  const L = `${path}.l`;
  const H = `${path}.h`;
  const r = (f: string, b: Record<string, Date>): Cond => ({ k: 'range', f, elem, b });
  switch (prefix) {
    case 'eq':
      return and([r(L, { gte: q.l }), r(H, { lte: q.h })]);
    case 'ne':
      // Resources without a value are not "not equal" to anything.
      return and([{ k: 'exists', f: L, v: true }, not(and([r(L, { gte: q.l }), r(H, { lte: q.h })]))]);
    case 'gt':
      return r(H, { gt: q.h });
    case 'lt':
      return r(L, { lt: q.l });
    case 'ge':
      return or([r(H, { gt: q.h }), r(L, { gte: q.l })]);
    case 'le':
      return or([r(L, { lt: q.l }), r(H, { lte: q.h })]);
    case 'sa':
      return r(L, { gt: q.h });
    case 'eb':
      return r(H, { lt: q.l });
    case 'ap': {
      // Approximately: within 10 % of the distance between the value and now (spec's suggestion).
      const gap = Math.abs(now.getTime() - q.l.getTime()) * 0.1;
      return and([r(L, { lte: new Date(q.h.getTime() + gap) }), r(H, { gte: new Date(q.l.getTime() - gap) })]);
    }
  }
}
