import type { Device, Observation, Resource } from 'fhir/r4';
import { Errors } from '../errors';
import { ALERT_EXT } from './model';

const MIN_INTERVAL_S = 10;

/** The expected reporting interval of a Device in seconds (undefined when absent or unusable). */
export function reportingIntervalS(d: Device | undefined): number | undefined {
  const q = d?.extension?.find((e) => e.url === ALERT_EXT.reportingInterval)?.valueDuration;
  if (!q || typeof q.value !== 'number') return undefined;
  const per: Record<string, number> = { s: 1, min: 60, h: 3600, d: 86400 };
  const f = per[q.code ?? q.unit ?? ''];
  return f === undefined ? undefined : q.value * f;
}

/** When a reading was taken (its effective time), else `fallback`. */
export function effectiveOf(o: Observation, fallback: Date): Date {
  const t = Date.parse(o.effectiveDateTime ?? o.effectiveInstant ?? o.effectivePeriod?.end ?? o.effectivePeriod?.start ?? '');
  return Number.isFinite(t) ? new Date(t) : fallback;
}

/** Refuses a Device whose expected reporting interval is malformed or shorter than 10 s. */
export function checkDeviceWrite(r: Resource): Resource {
  if (r.resourceType !== 'Device') return r;
  const ext = (r as Device).extension?.filter((e) => e.url === ALERT_EXT.reportingInterval) ?? [];
  if (ext.length === 0) return r;
  const s = ext.length === 1 ? reportingIntervalS(r as Device) : undefined;
  if (s === undefined || s < MIN_INTERVAL_S) {
    throw Errors.unprocessable(
      `The expected reporting interval must be one Duration of at least ${MIN_INTERVAL_S} seconds (UCUM s, min, h or d)`,
      'MSG_REPORTING_INTERVAL',
      ['Device.extension'],
    );
  }
  return r;
}
