import type { CodeableConcept, Coding, Observation, Quantity } from 'fhir/r4';
import { canonicalLoinc, LOINC, SNOMED, VITAL_LOINC } from '../terminology/vital-codes';
import { V3_INTERPRETATION } from '../subscriptions/constants';
import type { News2Inputs } from './news2';

/** Vital signs that get alert episodes (by LOINC; MDC codes count as their LOINC equivalent). */
const EPISODE_VITALS: Readonly<Record<string, string>> = {
  [VITAL_LOINC.heartRate]: 'Heart rate',
  [VITAL_LOINC.respiratoryRate]: 'Respiratory rate',
  [VITAL_LOINC.oxygenSaturation]: 'Oxygen saturation',
  [VITAL_LOINC.oxygenSaturationArterial]: 'Oxygen saturation in arterial blood',
  [VITAL_LOINC.bodyTemperature]: 'Body temperature',
  [VITAL_LOINC.systolic]: 'Systolic blood pressure',
  [VITAL_LOINC.diastolic]: 'Diastolic blood pressure',
};

/** Interpretation codes and their severity (the highest one on the element wins). */
const INTERPRETATION_RANK: Readonly<Record<string, number>> = { N: 0, H: 1, L: 1, A: 1, HU: 1, LU: 1, '>': 1, '<': 1, HH: 2, LL: 2, AA: 2 };

export interface VitalReading {
  loinc: string;
  display: string;
  /** 0 normal, 1 abnormal, 2 critical. */
  level: number;
  /** The interpretation code that set the level. */
  severity: string;
}

function judge(interpretation: CodeableConcept[] | undefined): { level: number; severity: string } | undefined {
  let best: { level: number; severity: string } | undefined;
  for (const c of (interpretation ?? []).flatMap((i) => i.coding ?? [])) {
    if (c.system !== V3_INTERPRETATION || !c.code || !(c.code in INTERPRETATION_RANK)) continue;
    const level = INTERPRETATION_RANK[c.code];
    if (!best || level > best.level) best = { level, severity: c.code };
  }
  return best;
}

/** The judged vital signs of an Observation: itself and each component (blood pressure). */
export function vitalReadings(obs: Observation): VitalReading[] {
  const out: VitalReading[] = [];
  const add = (codings: Coding[] | undefined, interp: CodeableConcept[] | undefined) => {
    const loinc = canonicalLoinc(codings);
    if (!loinc || !EPISODE_VITALS[loinc]) return;
    const j = judge(interp);
    if (j) out.push({ loinc, display: EPISODE_VITALS[loinc], ...j });
  };
  add(obs.code?.coding, obs.interpretation);
  for (const c of obs.component ?? []) add(c.code?.coding, c.interpretation);
  return out;
}

/** One NEWS2 input value found in an Observation. */
export interface News2Value {
  param: keyof News2Inputs;
  value: number | boolean | string;
}

const ALERT_CODES = new Set(['248234009', 'A']); // SNOMED "Alert" and the ACVPU letter
const CVPU_CODES = new Set(['162846003', '248235005', '248236006', '248237002', '300202002', 'C', 'V', 'P', 'U']);

function num(q: Quantity | undefined, units: string[]): number | undefined {
  if (!q || typeof q.value !== 'number' || q.comparator) return undefined;
  const u = q.code ?? q.unit;
  return u === undefined || units.includes(u) ? q.value : undefined;
}

function consciousness(obs: Observation): 'A' | 'CVPU' | undefined {
  const codes = [...(obs.valueCodeableConcept?.coding ?? []).map((c) => c.code), obs.valueString].filter((x): x is string => Boolean(x));
  if (codes.some((c) => ALERT_CODES.has(c))) return 'A';
  if (codes.some((c) => CVPU_CODES.has(c))) return 'CVPU';
  return undefined;
}

/**
 * NEWS2 inputs an Observation carries: respiration rate (/min), SpO2 (%), inhaled oxygen
 * (FiO2 % above 21 or a flow above 0 L/min means supplemental oxygen), systolic pressure (mmHg,
 * alone or as a blood-pressure component), pulse (/min), level of consciousness (LOINC 67775-7,
 * ACVPU as SNOMED or the letter) and body temperature (Cel).
 */
export function news2Values(obs: Observation): News2Value[] {
  const out: News2Value[] = [];
  const loinc = canonicalLoinc(obs.code?.coding);
  const v = obs.valueQuantity;
  switch (loinc) {
    case VITAL_LOINC.respiratoryRate: {
      const n = num(v, ['/min', 'breaths/min', '{breaths}/min']);
      if (n !== undefined) out.push({ param: 'respiratoryRate', value: n });
      break;
    }
    case VITAL_LOINC.oxygenSaturation:
    case VITAL_LOINC.oxygenSaturationArterial: {
      const n = num(v, ['%']);
      if (n !== undefined) out.push({ param: 'spo2', value: n });
      break;
    }
    case VITAL_LOINC.inhaledOxygenConcentration: {
      const n = num(v, ['%']);
      if (n !== undefined) out.push({ param: 'onOxygen', value: n > 21 });
      break;
    }
    case VITAL_LOINC.inhaledOxygenFlow: {
      const n = num(v, ['L/min']);
      if (n !== undefined) out.push({ param: 'onOxygen', value: n > 0 });
      break;
    }
    case VITAL_LOINC.systolic: {
      const n = num(v, ['mm[Hg]', 'mmHg']);
      if (n !== undefined) out.push({ param: 'systolic', value: n });
      break;
    }
    case VITAL_LOINC.heartRate: {
      const n = num(v, ['/min', 'beats/minute', '{beats}/min']);
      if (n !== undefined) out.push({ param: 'pulse', value: n });
      break;
    }
    case VITAL_LOINC.bodyTemperature: {
      const n = num(v, ['Cel']);
      if (n !== undefined) out.push({ param: 'temperature', value: n });
      break;
    }
    case VITAL_LOINC.consciousness: {
      const c = consciousness(obs);
      if (c) out.push({ param: 'consciousness', value: c });
      break;
    }
    default:
      break;
  }
  for (const c of obs.component ?? []) {
    if (canonicalLoinc(c.code?.coding) === VITAL_LOINC.systolic) {
      const n = num(c.valueQuantity, ['mm[Hg]', 'mmHg']);
      if (n !== undefined) out.push({ param: 'systolic', value: n });
    }
  }
  return out;
}

export { LOINC, SNOMED };
