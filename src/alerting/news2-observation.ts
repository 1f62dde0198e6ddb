import type { Observation, ObservationComponent } from 'fhir/r4';
import { createHash } from 'node:crypto';
import { SNOMED } from '../terminology/vital-codes';
import type { News2Param, News2Result } from './news2';

/**
 * Codes of the NHS NEWS2 FHIR guidance (NHS Digital, "FHIR NEWS2", total score and sub-score
 * observations; https://nhsconnect.github.io/FHIR-NEWS2/): SNOMED CT UK edition.
 */
export const NEWS2_TOTAL = { system: SNOMED, code: '1104051000000101', display: 'Royal College of Physicians NEWS2 (National Early Warning Score 2) total score' };

const SUB_SCORE: Record<Exclude<News2Param, 'spo2'> | 'spo2-1' | 'spo2-2', [string, string]> = {
  respiratoryRate: ['1104301000000104', 'respiration rate score'],
  'spo2-1': ['1104311000000102', 'oxygen saturation scale 1 score'],
  'spo2-2': ['1104321000000108', 'oxygen saturation scale 2 score'],
  airOrOxygen: ['1104331000000105', 'air or oxygen score'],
  systolic: ['1104341000000101', 'systolic blood pressure score'],
  pulse: ['1104351000000103', 'pulse score'],
  consciousness: ['1104361000000100', 'consciousness score'],
  temperature: ['1104371000000107', 'temperature score'],
};

const PARAM_TEXT: Record<News2Param, string> = {
  respiratoryRate: 'respiration rate',
  spo2: 'oxygen saturation',
  airOrOxygen: 'air or oxygen',
  systolic: 'systolic blood pressure',
  pulse: 'pulse',
  consciousness: 'level of consciousness',
  temperature: 'temperature',
};

export function news2ObservationId(triggerRef: string, vid: number): string {
  return `news2-${createHash('sha256').update(`${triggerRef}/${vid}`).digest('hex').slice(0, 40)}`;
}

/** The derived NEWS2 Observation: total as valueInteger, one component per sub-score, derivedFrom its inputs. */
export function news2Observation(args: {
  id: string;
  patient: string;
  effective: Date;
  result: News2Result;
  inputs: string[];
}): Observation {
  const { result } = args;
  const components: ObservationComponent[] = [];
  for (const [param, score] of Object.entries(result.scores) as [News2Param, number][]) {
    const [code, text] = SUB_SCORE[param === 'spo2' ? (`spo2-${result.scale}` as const) : param];
    components.push({
      code: { coding: [{ system: SNOMED, code, display: `Royal College of Physicians NEWS2 (National Early Warning Score 2) - ${text}` }] },
      valueInteger: score,
    });
  }
  const obs: Observation = {
    resourceType: 'Observation',
    id: args.id,
    status: result.complete ? 'final' : 'preliminary',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'survey', display: 'Survey' }] }],
    code: { coding: [NEWS2_TOTAL], text: 'NEWS2 total score' },
    subject: { reference: args.patient },
    effectiveDateTime: args.effective.toISOString(),
    derivedFrom: args.inputs.map((reference) => ({ reference })),
    method: { text: `RCP NEWS2 (2017), SpO2 scale ${result.scale}` },
  };
  if (result.complete) {
    obs.valueInteger = result.total;
    obs.interpretation = [{ text: `Clinical risk: ${result.band}` }];
  } else {
    obs.dataAbsentReason = {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/data-absent-reason', code: 'unknown', display: 'Unknown' }],
      text: `Incomplete: no current ${result.missing.map((m) => PARAM_TEXT[m]).join(', ')}`,
    };
  }
  if (components.length) obs.component = components;
  return obs;
}
