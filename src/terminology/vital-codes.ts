import type { Coding } from 'fhir/r4';

/**
 * Which codes name the same vital sign. Devices following the Personal Health Device IG code
 * their readings in IEEE 11073-10101 (MDC) only; clinicians search and configure by LOINC. This
 * one table says which MDC code is which LOINC vital, for the search index (a LOINC query finds
 * MDC-coded Observations: the equivalent LOINC token is indexed beside the sent codes, which are
 * stored untouched), for derived interpretations, alert episodes, NEWS2 and `$lastn`.
 */
export const LOINC = 'http://loinc.org';
export const MDC = 'urn:iso:std:iso:11073:10101';
export const SNOMED = 'http://snomed.info/sct';

/** The vital signs the server understands, by their LOINC code. */
export const VITAL_LOINC = {
  heartRate: '8867-4',
  respiratoryRate: '9279-1',
  oxygenSaturation: '59408-5',
  oxygenSaturationArterial: '2708-6',
  bodyTemperature: '8310-5',
  bloodPressurePanel: '85354-9',
  systolic: '8480-6',
  diastolic: '8462-4',
  meanPressure: '8478-0',
  inhaledOxygenConcentration: '3151-8',
  inhaledOxygenFlow: '3150-0',
  consciousness: '67775-7',
} as const;

/** MDC code -> LOINC code (the PHD IG's vital-sign mappings). */
const MDC_TO_LOINC: Readonly<Record<string, string>> = {
  '147842': VITAL_LOINC.heartRate, // MDC_ECG_HEART_RATE
  '149530': VITAL_LOINC.heartRate, // MDC_PULS_OXIM_PULS_RATE (pulse rate from an oximeter)
  '149546': VITAL_LOINC.heartRate, // MDC_PULS_RATE_NON_INV (pulse rate from a cuff)
  '150456': VITAL_LOINC.oxygenSaturation, // MDC_PULS_OXIM_SAT_O2
  '150020': VITAL_LOINC.bloodPressurePanel, // MDC_PRESS_BLD_NONINV
  '150021': VITAL_LOINC.systolic, // MDC_PRESS_BLD_NONINV_SYS
  '150022': VITAL_LOINC.diastolic, // MDC_PRESS_BLD_NONINV_DIA
  '150023': VITAL_LOINC.meanPressure, // MDC_PRESS_BLD_NONINV_MEAN
  '150364': VITAL_LOINC.bodyTemperature, // MDC_TEMP_BODY
  '151562': VITAL_LOINC.respiratoryRate, // MDC_RESP_RATE
  '151578': VITAL_LOINC.respiratoryRate, // MDC_TTHOR_RESP_RATE
};

/** The LOINC code a coding stands for: itself when LOINC, its mapping when MDC. */
export function loincOf(c: Coding): string | undefined {
  if (!c.code) return undefined;
  if (c.system === LOINC) return c.code;
  if (c.system === MDC) return MDC_TO_LOINC[c.code];
  return undefined;
}

/** The first LOINC code any of the codings stands for. */
export function canonicalLoinc(codings: readonly Coding[] | undefined): string | undefined {
  for (const c of codings ?? []) {
    const l = loincOf(c);
    if (l) return l;
  }
  return undefined;
}

/**
 * The codings plus the LOINC equivalent of each MDC coding that is not already there, the
 * equivalents first (so a sort or grouping key taken from the first code is the LOINC one).
 * Used by the token index of Observation.code; the stored resource is never changed.
 */
export function withLoincEquivalents(codings: readonly Coding[]): Coding[] {
  const present = new Set(codings.filter((c) => c.system === LOINC).map((c) => c.code));
  const extra: Coding[] = [];
  for (const c of codings) {
    const l = c.system === MDC && c.code ? MDC_TO_LOINC[c.code] : undefined;
    if (l && !present.has(l)) {
      present.add(l);
      extra.push({ system: LOINC, code: l });
    }
  }
  return extra.length ? [...extra, ...codings] : [...codings];
}

/** Observation search parameters whose token index includes the equivalents. */
export const EQUIVALENCE_PARAMS: ReadonlySet<string> = new Set(['code', 'combo-code', 'component-code']);
