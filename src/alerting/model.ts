/** Canonical URLs, codes and shared types of the alerting module (see README.md in this folder). */
import { VIGIL_CANONICAL_BASE } from '../subscriptions/constants';

export const ALERT_EXT = {
  /** Core R4 extension: the Observations that triggered a Flag (first and latest). */
  flagDetail: 'http://hl7.org/fhir/StructureDefinition/flag-detail',
  /** Core R4 extension: the Flag's priority (flag-priority-code PN/PL/PM/PH). */
  flagPriority: 'http://hl7.org/fhir/StructureDefinition/flag-priority',
  /** What the latest version of an episode Flag records: raised, updated, escalated, resolved, acknowledged. */
  event: `${VIGIL_CANONICAL_BASE}/StructureDefinition/alert-event`,
  /** The interpretation (H, HH, L, LL...) or NEWS2 band that drives the episode's severity. */
  severity: `${VIGIL_CANONICAL_BASE}/StructureDefinition/alert-severity`,
  /** Who acknowledged the episode and when (complex: by, at). */
  acknowledgement: `${VIGIL_CANONICAL_BASE}/StructureDefinition/alert-acknowledgement`,
  /** On Device: the interval within which it is expected to report (Duration, at least 10 s). */
  reportingInterval: `${VIGIL_CANONICAL_BASE}/StructureDefinition/device-expected-reporting-interval`,
  /** On Patient: the NEWS2 SpO2 scale prescribed for the patient (valueInteger 1 or 2). */
  news2Scale: `${VIGIL_CANONICAL_BASE}/StructureDefinition/news2-spo2-scale`,
  /** On Goal.target: the critical range (values outside it are HH / LL). */
  criticalRange: `${VIGIL_CANONICAL_BASE}/StructureDefinition/goal-critical-range`,
} as const;

export const ALERT_PROFILE = `${VIGIL_CANONICAL_BASE}/StructureDefinition/alert-episode`;
export const ALERT_TOPIC = `${VIGIL_CANONICAL_BASE}/SubscriptionTopic/alert-episode`;
export const ALERT_CODES = `${VIGIL_CANONICAL_BASE}/CodeSystem/alert-episode`;
export const FLAG_PRIORITY = 'http://hl7.org/fhir/flag-priority-code';
export const FLAG_CATEGORY = 'http://terminology.hl7.org/CodeSystem/flag-category';

export type AlertEvent = 'raised' | 'updated' | 'escalated' | 'resolved' | 'acknowledged';
/** Events subscribers are told about (`updated` is recorded on the Flag but notifies nobody). */
export const NOTIFYING_EVENTS: readonly AlertEvent[] = ['raised', 'escalated', 'resolved', 'acknowledged'];

/** What an episode is about: one subject and one vital sign, score or device condition. */
export interface EpisodeStream {
  /** "Patient/1|8867-4", "Patient/1|news2", "Device/7|device-silent". */
  key: string;
  subject: { reference?: string; display?: string };
  /** Flag.code. */
  code: { system: string; code: string; display: string };
}

/** One reading judged for an episode: level 0 is normal; higher levels are more severe. */
export interface Judged {
  level: number;
  /** The severity code shown on the Flag (H, HH, LL, low-medium, high, silent...). */
  severity: string;
  /** "Observation/123" (or "Device/7" for device-silent). */
  ref: string;
  /** What counts the reading once towards resolution (default `ref`; NEWS2: the input reading). */
  key?: string;
  at: Date;
}

/** Level of each severity code (0 = normal). Vital signs: H/L 1, HH/LL 2; NEWS2 bands 1-3; a silent device 1. */
export const SEVERITY_LEVEL: Readonly<Record<string, number>> = {
  N: 0, H: 1, L: 1, A: 1, HU: 1, LU: 1, '>': 1, '<': 1, HH: 2, LL: 2, AA: 2,
  low: 0, 'low-medium': 1, medium: 2, high: 3, silent: 1, reporting: 0,
};
