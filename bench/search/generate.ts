import type { Device, Observation, Patient, Resource } from 'fhir/r4';

/**
 * Realistic remote-monitoring data: patients, their home devices, and vital-sign streams with
 * LOINC codes and UCUM units, a share of them abnormal (with an interpretation). Deterministic
 * for a seed, so tests and benchmarks see the same data.
 */
export interface GenerateOptions {
  patients: number;
  observationsPerPatient: number;
  seed?: number;
  /** First effective time; readings follow every `intervalMinutes`. */
  start?: Date;
  intervalMinutes?: number;
}

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const INTERP = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';
const CATEGORY = [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs', display: 'Vital Signs' }] }];

interface Vital {
  code: string;
  display: string;
  unit: string;
  ucum: string;
  normal: [number, number];
  low: number;
  high: number;
  decimals: number;
}

export const VITALS: Vital[] = [
  { code: '8867-4', display: 'Heart rate', unit: 'beats/minute', ucum: '/min', normal: [58, 100], low: 40, high: 150, decimals: 0 },
  { code: '59408-5', display: 'Oxygen saturation in Arterial blood by Pulse oximetry', unit: '%', ucum: '%', normal: [94, 100], low: 82, high: 100, decimals: 0 },
  { code: '9279-1', display: 'Respiratory rate', unit: 'breaths/minute', ucum: '/min', normal: [12, 20], low: 6, high: 35, decimals: 0 },
  { code: '8310-5', display: 'Body temperature', unit: 'Cel', ucum: 'Cel', normal: [36.1, 37.5], low: 34.5, high: 40.5, decimals: 1 },
  { code: '29463-7', display: 'Body weight', unit: 'kg', ucum: 'kg', normal: [50, 110], low: 40, high: 160, decimals: 1 },
];

/** Small deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FAMILIES = ['Smith', 'Müller', 'García', 'Novák', 'Dubois', 'Rossi', 'Jensen', 'Nakamura', 'Okafor', 'Kowalski'];
const GIVEN = ['Eve', 'Evelyn', 'Séverine', 'Adam', 'Jonas', 'Maria', 'Li', 'Amara', 'Pedro', 'Ingrid'];

export function generateRpmData(opts: GenerateOptions): Resource[] {
  const rand = rng(opts.seed ?? 1);
  const start = (opts.start ?? new Date('2024-03-01T00:00:00Z')).getTime();
  const step = (opts.intervalMinutes ?? 15) * 60000;
  const out: Resource[] = [];
  for (let p = 1; p <= opts.patients; p++) {
    out.push(...generatePatient(p, rand));
    out.push(...generateObservations(p, opts.observationsPerPatient, rand, start, step));
  }
  return out;
}

export function generatePatient(p: number, rand: () => number = rng(p)): [Patient, Device] {
  const pid = `rpm-p${p}`;
  const patient: Patient = {
    resourceType: 'Patient',
    id: pid,
    active: true,
    identifier: [{ system: 'http://hospital.example/mrn', value: `MRN-${100000 + p}` }],
    name: [{ family: FAMILIES[p % FAMILIES.length], given: [GIVEN[Math.floor(rand() * GIVEN.length)]] }],
    gender: rand() < 0.5 ? 'female' : 'male',
    birthDate: `${1930 + Math.floor(rand() * 70)}-0${1 + Math.floor(rand() * 9)}-1${Math.floor(rand() * 9)}`,
  };
  const device: Device = {
    resourceType: 'Device',
    id: `rpm-d${p}`,
    status: 'active',
    identifier: [{ system: 'http://devices.example.org/serial', value: `SN-${p}` }],
    type: { coding: [{ system: 'http://snomed.info/sct', code: '448703006', display: 'Pulse oximeter' }] },
    patient: { reference: `Patient/${pid}` },
    manufacturer: 'Acme Home Health',
  };
  return [patient, device];
}

/** `count` readings of one patient, cycling through the vital signs (every 6th a blood pressure panel). */
export function generateObservations(p: number, count: number, rand: () => number, start: number, step: number, firstIndex = 0): Observation[] {
  const out: Observation[] = [];
  for (let i = firstIndex; i < firstIndex + count; i++) {
    const when = new Date(start + i * step).toISOString();
    const abnormal = rand() < 0.08;
    const base = {
      resourceType: 'Observation' as const,
      id: `rpm-o${p}-${i}`,
      status: 'final' as const,
      category: CATEGORY,
      subject: { reference: `Patient/rpm-p${p}` },
      device: { reference: `Device/rpm-d${p}` },
      effectiveDateTime: when,
    };
    if (i % 6 === 5) {
      const sys = Math.round(abnormal ? 150 + rand() * 40 : 105 + rand() * 30);
      const dia = Math.round(abnormal ? 92 + rand() * 20 : 65 + rand() * 20);
      out.push({
        ...base,
        code: { coding: [{ system: LOINC, code: '85354-9', display: 'Blood pressure panel with all children optional' }], text: 'Blood pressure' },
        component: [
          { code: { coding: [{ system: LOINC, code: '8480-6', display: 'Systolic blood pressure' }] }, valueQuantity: { value: sys, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' } },
          { code: { coding: [{ system: LOINC, code: '8462-4', display: 'Diastolic blood pressure' }] }, valueQuantity: { value: dia, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' } },
        ],
        ...(abnormal ? { interpretation: [{ coding: [{ system: INTERP, code: 'H' }] }] } : {}),
      });
      continue;
    }
    const v = VITALS[i % VITALS.length];
    let value: number;
    let interp: string | undefined;
    if (abnormal) {
      const low = rand() < 0.5;
      value = low ? v.low + rand() * (v.normal[0] - v.low) : v.normal[1] + rand() * (v.high - v.normal[1]);
      interp = low ? 'L' : 'H';
    } else value = v.normal[0] + rand() * (v.normal[1] - v.normal[0]);
    value = Number(value.toFixed(v.decimals));
    out.push({
      ...base,
      code: { coding: [{ system: LOINC, code: v.code, display: v.display }], text: v.display },
      valueQuantity: { value, unit: v.unit, system: UCUM, code: v.ucum },
      ...(interp ? { interpretation: [{ coding: [{ system: INTERP, code: interp }] }] } : {}),
    });
  }
  return out;
}

export { rng };
