import type { Extension, Flag } from 'fhir/r4';
import { createHash } from 'node:crypto';
import { ALERT_EXT, ALERT_PROFILE, FLAG_CATEGORY, FLAG_PRIORITY, SEVERITY_LEVEL, type AlertEvent, type EpisodeStream } from './model';

/** Everything an episode Flag shows; the Flag is a projection of this (see episodes.ts). */
export interface EpisodeView {
  stream: EpisodeStream;
  n: number;
  level: number;
  severity: string;
  start: Date;
  end?: Date;
  firstRef: string;
  latestRef: string;
  /** The highest level acknowledged, who and when. */
  ack?: { level: number; by: string; at: Date };
}

/** Deterministic id of episode n of a stream, so a replayed raise rewrites the same Flag. */
export function flagIdOf(streamKey: string, n: number): string {
  return `ep-${createHash('sha256').update(`${streamKey}#${n}`).digest('hex').slice(0, 40)}`;
}

/** flag-priority-code: medium for a first abnormal level, high for critical or high-band. */
function priorityOf(level: number, maxLevel: number): { code: string; display: string } {
  if (level >= maxLevel) return { code: 'PH', display: 'High priority' };
  if (level >= 2 || maxLevel === 2) return { code: 'PM', display: 'Medium priority' };
  return { code: 'PL', display: 'Low priority' };
}

export function buildFlag(v: EpisodeView, event: AlertEvent, maxLevel: number): Flag {
  const p = priorityOf(v.level, maxLevel);
  const ext: Extension[] = [
    { url: ALERT_EXT.flagDetail, valueReference: { reference: v.firstRef, display: 'first triggering reading' } },
  ];
  if (v.latestRef !== v.firstRef) ext.push({ url: ALERT_EXT.flagDetail, valueReference: { reference: v.latestRef, display: 'latest triggering reading' } });
  ext.push(
    { url: ALERT_EXT.flagPriority, valueCodeableConcept: { coding: [{ system: FLAG_PRIORITY, code: p.code, display: p.display }] } },
    { url: ALERT_EXT.severity, valueCode: v.severity },
    { url: ALERT_EXT.event, valueCode: event },
  );
  if (v.ack) {
    ext.push({
      url: ALERT_EXT.acknowledgement,
      extension: [
        { url: 'by', valueString: v.ack.by },
        { url: 'at', valueDateTime: v.ack.at.toISOString() },
      ],
    });
  }
  return {
    resourceType: 'Flag',
    id: flagIdOf(v.stream.key, v.n),
    meta: { profile: [ALERT_PROFILE] },
    extension: ext,
    status: v.end ? 'inactive' : 'active',
    category: [{ coding: [{ system: FLAG_CATEGORY, code: 'clinical', display: 'Clinical' }] }],
    code: { coding: [v.stream.code], text: `Alert: ${v.stream.code.display}` },
    subject: v.stream.subject,
    period: { start: v.start.toISOString(), ...(v.end ? { end: v.end.toISOString() } : {}) },
  };
}

/** The last event recorded on a Flag, its level-bearing severity and acknowledgement level. */
export function flagState(f: Flag | undefined): { event?: AlertEvent; active: boolean; severity?: string } {
  if (!f) return { active: false };
  const get = (url: string) => f.extension?.find((e) => e.url === url)?.valueCode;
  return { event: get(ALERT_EXT.event) as AlertEvent | undefined, active: f.status === 'active', severity: get(ALERT_EXT.severity) };
}

function ext(f: Flag, url: string) {
  return f.extension?.find((e) => e.url === url);
}

/** raised > resolved > escalated > acknowledged > updated: what the new version says happened. */
export function eventBetween(cur: Flag | undefined, v: EpisodeView): AlertEvent {
  if (!cur) return 'raised';
  if (v.end && cur.status === 'active') return 'resolved';
  if (v.end) return (ext(cur, ALERT_EXT.event)?.valueCode as AlertEvent | undefined) ?? 'resolved';
  const curLevel = SEVERITY_LEVEL[ext(cur, ALERT_EXT.severity)?.valueCode ?? ''] ?? 0;
  if (v.level > curLevel) return 'escalated';
  const curAck = ext(cur, ALERT_EXT.acknowledgement)?.extension?.find((e) => e.url === 'at')?.valueDateTime;
  if (v.ack && v.ack.at.toISOString() !== curAck) return 'acknowledged';
  return 'updated';
}

/** Equal apart from meta: writing it would change nothing (a replay). */
export function sameContent(a: Flag, b: Flag, event: AlertEvent): boolean {
  if (event !== 'updated' && event !== (ext(a, ALERT_EXT.event)?.valueCode as string)) return false;
  const strip = (f: Flag) => JSON.stringify({ ...f, meta: undefined, extension: f.extension?.filter((e) => e.url !== ALERT_EXT.event) });
  return strip(a) === strip(b);
}
