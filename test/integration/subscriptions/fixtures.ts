import type { Subscription } from 'fhir/r4';

export const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';
export const ABNORMAL = 'http://vigil-fhir.org/fhir/SubscriptionTopic/abnormal-vital-sign';

/** A topic-based (Backport IG) rest-hook Subscription with filters and a payload content. */
export function topicSubscription(
  endpoint: string,
  topic: string,
  filters: string[],
  channel: Partial<Subscription['channel']> = {},
  content = 'full-resource',
): Subscription {
  return {
    resourceType: 'Subscription',
    status: 'requested',
    reason: 'test',
    criteria: topic,
    ...(filters.length ? { _criteria: { extension: filters.map((f) => ({ url: `${BACKPORT}/backport-filter-criteria`, valueString: f })) } } : {}),
    channel: {
      type: 'rest-hook',
      endpoint,
      payload: 'application/fhir+json',
      _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: content }] },
      ...channel,
    },
  } as Subscription;
}
