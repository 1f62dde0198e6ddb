import type { Device, Observation, Patient, Resource } from 'fhir/r4';

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const MRN = 'http://hospital.example/mrn';
const VITAL = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs', display: 'Vital Signs' }] };

const pat = (id: string, p: Partial<Patient>): Patient => ({ resourceType: 'Patient', id, ...p });

export const patients: Patient[] = [
  pat('eve', {
    active: true,
    name: [{ family: 'Holt', given: ['Eve'] }],
    gender: 'female',
    birthDate: '1980-03-14',
    identifier: [{ system: MRN, value: 'E1', type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] } }],
    address: [{ city: 'Zürich', country: 'CH' }],
    telecom: [{ system: 'email', value: 'eve@example.org' }],
  }),
  pat('evelyn', { active: true, name: [{ family: 'Müller', given: ['Evelyn'] }], gender: 'female', birthDate: '1980', identifier: [{ system: MRN, value: 'E2' }] }),
  pat('severine', { name: [{ family: 'Dubois', given: ['Séverine'] }], gender: 'other', birthDate: '1992-07', identifier: [{ value: 'S1' }] }),
  pat('adam', { active: false, name: [{ family: 'Smith', given: ['Adam'] }], gender: 'male', birthDate: '2001-01-01', deceasedDateTime: '2020-05-05' }),
];

export const devices: Device[] = [
  {
    resourceType: 'Device',
    id: 'dev1',
    status: 'active',
    patient: { reference: 'Patient/eve' },
    url: 'http://devices.example.org/bp/1',
    identifier: [{ system: 'http://devices.example.org/serial', value: 'SN-1' }],
    type: { coding: [{ system: 'http://snomed.info/sct', code: '258057004', display: 'Non-invasive blood pressure monitor' }] },
  },
];

function obs(id: string, subject: string | undefined, code: string, display: string, extra: Partial<Observation>): Observation {
  return {
    resourceType: 'Observation',
    id,
    status: 'final',
    category: [VITAL],
    code: { coding: [{ system: LOINC, code, display }], text: display },
    ...(subject ? { subject: { reference: subject } } : {}),
    ...extra,
  };
}

const q = (value: number, code: string, unit = code) => ({ value, unit, system: UCUM, code });
const interp = (code: string) => [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code }] }];

export const observations: Observation[] = [
  obs('hr1', 'Patient/eve', '8867-4', 'Heart rate', { effectiveDateTime: '2013-01-14T09:30:00Z', valueQuantity: q(72, '/min', 'beats/minute'), interpretation: interp('N') }),
  obs('hr2', 'Patient/eve', '8867-4', 'Heart rate', { effectiveDateTime: '2013-01-14T11:00:00Z', valueQuantity: q(130, '/min', 'beats/minute'), interpretation: interp('H') }),
  obs('hr3', undefined, '8867-4', 'Heart rate', {
    subject: { reference: 'Patient/evelyn', identifier: { system: MRN, value: 'E2' } },
    effectiveDateTime: '2013-01-15',
    valueQuantity: q(88, '/min', 'beats/minute'),
    device: { reference: 'Device/dev1' },
  }),
  obs('bp1', 'Patient/eve', '85354-9', 'Blood pressure panel', {
    effectiveDateTime: '2013-01-14',
    component: [
      { code: { coding: [{ system: LOINC, code: '8480-6', display: 'Systolic blood pressure' }] }, valueQuantity: q(150, 'mm[Hg]', 'mmHg') },
      { code: { coding: [{ system: LOINC, code: '8462-4', display: 'Diastolic blood pressure' }] }, valueQuantity: q(95, 'mm[Hg]', 'mmHg') },
    ],
  }),
  obs('temp1', 'Patient/severine', '8310-5', 'Body temperature', {
    effectivePeriod: { start: '2013-01-10', end: '2013-01-12' },
    valueQuantity: q(37.5, 'Cel', '°C'),
  }),
  obs('spo2', 'Patient/adam', '59408-5', 'Oxygen saturation', {
    status: 'preliminary',
    effectiveDateTime: '2014-06-01T08:00:00+02:00',
    valueQuantity: q(88, '%'),
    interpretation: interp('L'),
  }),
  obs('wt1', 'Patient/adam', '29463-7', 'Body weight', { effectiveDateTime: '2014-06-02', valueQuantity: q(70000, 'g') }),
  obs('str1', undefined, '8601-7', 'ECG impression', { valueString: 'Normal sinus rhythm' }),
];

export const all: Resource[] = [...patients, ...devices, ...observations];
