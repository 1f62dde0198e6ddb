import type { AuditEvent, AuditEventEntity } from 'fhir/r4';
import type { Logger } from 'pino';
import type { Counters } from '../metrics';
import { textProblem } from '../strict-text';

/**
 * Writes audit events so that no request can poison the trail: whatever a request contained,
 * its AuditEvent is stored, with what cannot be stored escaped and the event saying so; an
 * event the store still refuses is replaced by a minimal one; one that cannot be written at all
 * is a log line and a counter, never a retry that holds back the events behind it.
 */

const REFERENCE = /^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/;

/** Escapes what a FHIR string may not hold (control characters, lone surrogates) as \uXXXX text. */
export function escapeText(s: string): string {
  if (!textProblem(s)) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const pair = c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && s.charCodeAt(i + 1) >= 0xdc00 && s.charCodeAt(i + 1) <= 0xdfff;
    if (pair) {
      out += s[i] + s[i + 1];
      i++;
    } else if ((c < 32 && c !== 9 && c !== 10 && c !== 13) || (c >= 0xd800 && c <= 0xdfff)) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else out += s[i];
  }
  return out;
}

function escapeAll(v: unknown, changed: { n: number }): unknown {
  if (typeof v === 'string') {
    const e = escapeText(v);
    if (e !== v) changed.n++;
    return e;
  }
  if (Array.isArray(v)) return v.map((x) => escapeAll(x, changed));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, escapeAll(x, changed)]));
  return v;
}

/** The event with unstorable text escaped and invalid references moved to a detail, noted in the event. */
export function sanitizeAuditEvent(e: AuditEvent): AuditEvent {
  const changed = { n: 0 };
  let moved = 0;
  const entity = (e.entity ?? []).map((en): AuditEventEntity => {
    const ref = en.what?.reference;
    if (ref === undefined || REFERENCE.test(ref)) return en;
    moved++;
    const { what: _what, ...rest } = en;
    return { ...rest, detail: [...(rest.detail ?? []), { type: 'unstorable-reference', valueString: ref }] };
  });
  const out = escapeAll({ ...e, entity }, changed) as AuditEvent;
  if (changed.n === 0 && moved === 0) return e;
  const note = `${changed.n} value(s) escaped, ${moved} reference(s) that are not valid references kept as details`;
  out.entity = out.entity ?? [];
  if (out.entity.length === 0) out.entity.push({ name: 'request' });
  out.entity[0].detail = [...(out.entity[0].detail ?? []), { type: 'sanitized', valueString: note }];
  return out;
}

/** What is left when even the sanitized event is refused: who, when, outcome, the request id. */
function minimalEvent(e: AuditEvent): AuditEvent {
  const requestId = e.entity?.flatMap((x) => x.detail ?? []).find((d) => d.type === 'requestId')?.valueString;
  return {
    resourceType: 'AuditEvent',
    type: e.type,
    action: e.action,
    recorded: e.recorded,
    outcome: e.outcome,
    outcomeDesc: `${escapeText(e.outcomeDesc ?? '')} (the full audit detail could not be stored)`.trim(),
    agent: [{ requestor: true, who: { display: escapeText(e.agent?.[0]?.who?.display ?? 'unknown') } }],
    source: { observer: { display: 'Vigil FHIR server' } },
    entity: [{ name: 'request', detail: requestId ? [{ type: 'requestId', valueString: escapeText(requestId) }] : [] }],
  };
}

export interface AuditWrites<W> {
  /** Validates and stamps one event (throws when the store refuses it). */
  prepare(e: AuditEvent): Promise<W>;
  /** Stores prepared events. */
  insert(writes: W[]): Promise<void>;
  logger: Logger;
  counters: Counters;
}

export function safeAuditPersist<W>(d: AuditWrites<W>): (events: AuditEvent[]) => Promise<void> {
  const prepareOne = async (e: AuditEvent): Promise<W | undefined> => {
    for (const candidate of [() => sanitizeAuditEvent(e), () => minimalEvent(e)]) {
      try {
        return await d.prepare(candidate());
      } catch {
        d.counters.inc('audit.refused');
      }
    }
    d.counters.inc('audit.dropped');
    d.logger.error('an audit event could not be stored even in minimal form; dropped');
    return undefined;
  };
  return async (events) => {
    const writes: W[] = [];
    for (const e of events) {
      const w = await prepareOne(e);
      if (w !== undefined) writes.push(w);
    }
    if (writes.length === 0) return;
    try {
      await d.insert(writes);
      return;
    } catch (err) {
      d.logger.warn({ err: (err as Error).message, events: writes.length }, 'audit batch write failed; writing the events one by one');
    }
    let written = 0;
    for (const w of writes) {
      try {
        await d.insert([w]);
        written++;
      } catch (err) {
        // A duplicate means an earlier attempt stored it.
        if ((err as { code?: number }).code === 11000) written++;
        else {
          d.counters.inc('audit.write_failed');
          d.logger.error({ err: (err as Error).message }, 'an audit event could not be written; dropped');
        }
      }
    }
    // Nothing at all could be written: the database is away; the trail keeps them for the next attempt.
    if (written === 0) throw new Error('audit events could not be written');
  };
}
