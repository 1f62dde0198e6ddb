import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, FhirResource, Parameters, ParametersParameter, Resource } from 'fhir/r4';
import { PROFILE, type NotificationType, type PayloadContent, type SubscriptionStatusCode } from './constants';

/** One event to put in a notification: its number and the version it is about. */
export interface EventForBundle {
  num: number;
  ts: Date;
  type: string;
  id: string;
  vid: number;
  method: 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Present for full-resource content (absent for deletions). */
  resource?: Resource;
  /** The resource was erased: the event keeps its number and time, nothing else. */
  erased?: boolean;
}

export interface StatusInput {
  baseUrl: string;
  subscriptionId: string;
  topic?: string;
  status: SubscriptionStatusCode;
  type: NotificationType;
  /** Highest event number so far (events-since-subscription-start). */
  eventsSinceStart: number;
  events: EventForBundle[];
  content: PayloadContent;
  error?: string;
}

/** The SubscriptionStatus as R4 Parameters (backport-subscription-status-r4). */
export function statusParameters(s: StatusInput): Parameters {
  const parameter: ParametersParameter[] = [
    { name: 'subscription', valueReference: { reference: `${s.baseUrl}/Subscription/${s.subscriptionId}` } },
  ];
  if (s.topic) parameter.push({ name: 'topic', valueCanonical: s.topic });
  parameter.push(
    { name: 'status', valueCode: s.status },
    { name: 'type', valueCode: s.type },
    // STU 1.1 carries event numbers as strings (R4 has no int64).
    { name: 'events-since-subscription-start', valueString: String(s.eventsSinceStart) },
  );
  for (const e of s.events) {
    const part: ParametersParameter[] = [
      { name: 'event-number', valueString: String(e.num) },
      { name: 'timestamp', valueInstant: e.ts.toISOString() },
    ];
    if (s.content !== 'empty' && !e.erased) part.push({ name: 'focus', valueReference: { reference: `${s.baseUrl}/${e.type}/${e.id}/_history/${e.vid}` } });
    parameter.push({ name: 'notification-event', part });
  }
  if (s.error) parameter.push({ name: 'error', valueCodeableConcept: { text: s.error } });
  return { resourceType: 'Parameters', id: randomUUID(), meta: { profile: [PROFILE.status] }, parameter };
}

function eventEntry(baseUrl: string, e: EventForBundle, content: PayloadContent): BundleEntry {
  const created = e.method === 'POST' && e.vid === 1;
  const entry: BundleEntry = {
    fullUrl: `${baseUrl}/${e.type}/${e.id}`,
    request: { method: e.method === 'PATCH' ? 'PUT' : e.method, url: created ? e.type : `${e.type}/${e.id}` },
    response: { status: e.method === 'DELETE' ? '204' : created ? '201' : '200' },
  };
  if (content === 'full-resource' && e.resource) entry.resource = e.resource as FhirResource;
  return entry;
}

/**
 * A notification Bundle (type history): the SubscriptionStatus first, then one entry per event
 * unless the content is `empty`.
 */
export function notificationBundle(s: StatusInput, now: Date = new Date()): Bundle {
  const status = statusParameters(s);
  const entry: BundleEntry[] = [
    {
      fullUrl: `urn:uuid:${status.id}`,
      resource: status,
      request: { method: 'GET', url: `${s.baseUrl}/Subscription/${s.subscriptionId}/$status` },
      response: { status: '200' },
    },
  ];
  if (s.content !== 'empty') for (const e of s.events) if (!e.erased) entry.push(eventEntry(s.baseUrl, e, s.content));
  return { resourceType: 'Bundle', id: randomUUID(), type: 'history', timestamp: now.toISOString(), entry };
}
