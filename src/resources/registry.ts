import type { Interaction } from '../auth/types';

/** One served resource type. Adding a type to the server is adding one entry here. */
export interface ResourceTypeDef {
  type: string;
  /** Interactions offered on the type (and announced in the CapabilityStatement). */
  interactions: readonly Interaction[];
  /** Whether clients may write it through the REST API (AuditEvent is written by the server only). */
  clientWritable: boolean;
  /** Short description for the CapabilityStatement. */
  documentation: string;
}

const ALL: readonly Interaction[] = ['read', 'vread', 'history', 'search', 'create', 'update', 'patch', 'delete'];
const READ_ONLY: readonly Interaction[] = ['read', 'vread', 'history', 'search'];

export const RESOURCE_TYPES: readonly ResourceTypeDef[] = [
  { type: 'Patient', interactions: ALL, clientWritable: true, documentation: 'People whose devices report to the server.' },
  { type: 'Practitioner', interactions: ALL, clientWritable: true, documentation: 'Clinicians and care team members (users sign in as one).' },
  { type: 'Device', interactions: ALL, clientWritable: true, documentation: 'Wearables, implants and home monitors.' },
  { type: 'Observation', interactions: ALL, clientWritable: true, documentation: 'Vital signs and other measurements.' },
  {
    type: 'ObservationDefinition',
    interactions: ALL,
    clientWritable: true,
    documentation: 'Normal and critical ranges per code, used to derive interpretations.',
  },
  {
    type: 'Goal',
    interactions: ALL,
    clientWritable: true,
    documentation: "A patient's own normal and critical ranges for a vital sign (target.measure + detailRange).",
  },
  {
    type: 'Flag',
    interactions: READ_ONLY,
    clientWritable: false,
    documentation: 'Alert episodes (written by the server; acknowledge with $acknowledge).',
  },
  { type: 'Group', interactions: ALL, clientWritable: true, documentation: 'Cohorts, such as the patients enrolled in a monitoring programme (Bulk Data export).' },
  { type: 'Subscription', interactions: ALL, clientWritable: true, documentation: 'Alert subscriptions (R4 and topic-based).' },
  {
    type: 'Basic',
    interactions: READ_ONLY,
    clientWritable: false,
    documentation:
      'The subscription topics the server offers, as the R4 Subscriptions Backport IG represents them: Basic with code SubscriptionTopic and the R5 cross-version extensions (search by url, status, identifier or code).',
  },
  { type: 'AuditEvent', interactions: READ_ONLY, clientWritable: false, documentation: 'The audit trail of every access.' },
];

const BY_TYPE = new Map(RESOURCE_TYPES.map((d) => [d.type, d]));

export function typeDef(type: string): ResourceTypeDef | undefined {
  return BY_TYPE.get(type);
}

export const SERVED_TYPES: readonly string[] = RESOURCE_TYPES.map((d) => d.type);
