import { encoderFor } from './encoders';
import type { IndexSpec } from '../storage/query';
import type { SearchParam } from './types';

/** Parameters with a single-field index of their own (the others are filtered after the indexed ones). */
const INDEXED_PARAMS = ['identifier', 'code', 'subject', 'patient', 'status', 'category', 'device', 'family', 'given', 'birthdate', 'date', '_lastUpdated', 'url', 'type'];

/** The indexes a type's queries are served from where the engine uses indexes (MongoDB). */
export function indexSpecs(type: string, params: Map<string, SearchParam>): IndexSpec[] {
  const specs: IndexSpec[] = [{ key: { comp: 1 }, name: 'comp' }];
  for (const code of INDEXED_PARAMS) {
    const p = params.get(code);
    const enc = p && !p.unsupported ? encoderFor(p) : undefined;
    if (!p || !enc) continue;
    const field = p.type === 'date' ? enc.sortField(p, p.code) : `idx.${p.code}`;
    specs.push({ key: { [field]: 1 }, name: `p_${code}` });
  }
  if (type === 'Observation') {
    // The remote-monitoring queries: a patient's vital sign over time, newest first.
    specs.push({ key: { 'idx.subject': 1, 'idx.code': 1, 'idx.date.l': -1 }, name: 'rpm_subject_code_date' });
    specs.push({ key: { 'idx.patient': 1, 'idx.code': 1, 'idx.date.l': -1 }, name: 'rpm_patient_code_date' });
    specs.push({ key: { 'idx.subject': 1, 'idx.code:s': 1, 'idx.date.l': -1 }, name: 'lastn_subject_code_date' });
  }
  return specs;
}
