import type { Goal, Observation, Patient } from 'fhir/r4';
import { rangeBounds, type PatientFacts, type RangeContext, type Ranges } from '../subscriptions/interpretation';
import { canonicalLoinc } from '../terminology/vital-codes';
import { ALERT_EXT } from './model';

/**
 * A patient's own ranges are active `Goal`s about the patient: each `target` whose `measure` is a
 * vital sign (LOINC, or MDC mapped to LOINC) gives the normal range in `detailRange`, and the
 * critical range in the `goal-critical-range` extension (valueRange) of the same target.
 */
export function targetRanges(goals: readonly Goal[], loinc: string, unit: string | undefined): Ranges | undefined {
  for (const g of goals) {
    if (g.lifecycleStatus !== 'active' && g.lifecycleStatus !== 'accepted') continue;
    for (const t of g.target ?? []) {
      if (canonicalLoinc(t.measure?.coding) !== loinc) continue;
      const normal = rangeBounds(t.detailRange, unit);
      const critRange = t.extension?.find((e) => e.url === ALERT_EXT.criticalRange)?.valueRange;
      const critical = rangeBounds(critRange, unit);
      if (!normal && !critical) continue;
      return { normal, critical, unit, source: 'patient-target', sourceName: g.id ? `Goal/${g.id}` : 'the patient target' };
    }
  }
  return undefined;
}

export function patientFacts(p: Patient | undefined, now: Date): PatientFacts | undefined {
  if (!p) return undefined;
  const facts: PatientFacts = { gender: p.gender };
  const m = p.birthDate ? /^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?/.exec(p.birthDate) : null;
  if (m) {
    const born = Date.UTC(Number(m[1]), Number(m[2] ?? 1) - 1, Number(m[3] ?? 1));
    facts.ageYears = (now.getTime() - born) / (365.2425 * 24 * 3600 * 1000);
  }
  return facts;
}

/** What range resolution needs about the Observation's patient (loaded only for vital signs with a patient). */
export async function rangeContextFor(
  obs: Observation,
  load: { patient(id: string): Promise<Patient | undefined>; goals(patientRef: string): Promise<Goal[]> },
  now: Date,
): Promise<RangeContext | undefined> {
  const ref = obs.subject?.reference;
  if (!ref?.startsWith('Patient/')) return undefined;
  const vital = canonicalLoinc(obs.code?.coding) ?? (obs.component ?? []).map((c) => canonicalLoinc(c.code?.coding)).find(Boolean);
  if (!vital) return undefined;
  const [patient, goals] = await Promise.all([load.patient(ref.slice('Patient/'.length)), load.goals(ref)]);
  return {
    patient: patientFacts(patient, now),
    targetFor: goals.length ? (loinc, unit) => targetRanges(goals, loinc, unit) : undefined,
  };
}
