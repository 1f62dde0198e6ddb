import type { Basic, Extension } from 'fhir/r4';
import type { SubscriptionTopicResource } from './topics';

/**
 * R4 has no SubscriptionTopic. The Subscriptions Backport IG represents a topic in R4 as a
 * `Basic` resource (code `SubscriptionTopic` from fhir-types) carrying the R5 elements as
 * cross-version extensions: the simple ones from R5 (`5.0`), the backbone ones from R4B
 * (`4.3`), status as a modifier extension. Our topics are authored in the R5 shape (ig/) and
 * compiled from it; this module turns them into what R4 clients read and search.
 */
const XV5 = 'http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.';
const XV43 = 'http://hl7.org/fhir/4.3/StructureDefinition/extension-SubscriptionTopic.';

export const TOPIC_BASIC_CODE = { system: 'http://hl7.org/fhir/fhir-types', code: 'SubscriptionTopic' } as const;
export const TOPIC_URL_EXTENSION = `${XV5}url`;

type Value = Pick<Extension, 'valueUri' | 'valueString' | 'valueMarkdown' | 'valueCode' | 'valueBoolean' | 'valueDateTime'>;

function sub(url: string, v: Value | undefined): Extension[] {
  return v && Object.values(v).some((x) => x !== undefined) ? [{ url, ...v }] : [];
}

function many(url: string, values: string[] | undefined, key: 'valueCode' | 'valueString'): Extension[] {
  return (values ?? []).map((v) => ({ url, [key]: v }));
}

function complex(url: string, parts: Extension[]): Extension {
  return { url, extension: parts };
}

function triggers(t: SubscriptionTopicResource): Extension[] {
  return (t.resourceTrigger ?? []).map((r) => {
    const q = r.queryCriteria;
    const query = q
      ? [
          complex('queryCriteria', [
            ...sub('previous', { valueString: q.previous }),
            ...sub('resultForCreate', { valueCode: q.resultForCreate }),
            ...sub('current', { valueString: q.current }),
            ...sub('resultForDelete', { valueCode: q.resultForDelete }),
            ...sub('requireBoth', { valueBoolean: q.requireBoth }),
          ]),
        ]
      : [];
    return complex(`${XV43}resourceTrigger`, [
      ...sub('description', { valueMarkdown: r.description }),
      ...sub('resource', { valueUri: r.resource }),
      ...many('supportedInteraction', r.supportedInteraction, 'valueCode'),
      ...query,
      ...sub('fhirPathCriteria', { valueString: r.fhirPathCriteria }),
    ]);
  });
}

/** The Backport IG's R4 form of a topic. */
export function topicToBasic(t: SubscriptionTopicResource & { date?: string }): Basic {
  const extension: Extension[] = [
    ...sub(`${XV5}url`, { valueUri: t.url }),
    ...sub(`${XV5}version`, { valueString: t.version }),
    ...sub(`${XV5}name`, { valueString: t.name }),
    ...sub(`${XV5}title`, { valueString: t.title }),
    ...sub(`${XV5}date`, { valueDateTime: t.date }),
    ...sub(`${XV5}description`, { valueMarkdown: t.description }),
    ...triggers(t),
    ...(t.canFilterBy ?? []).map((f) =>
      complex(`${XV43}canFilterBy`, [
        ...sub('description', { valueMarkdown: f.description }),
        ...sub('resource', { valueUri: f.resource }),
        ...sub('filterParameter', { valueString: f.filterParameter }),
        ...sub('filterDefinition', { valueUri: f.filterDefinition }),
      ]),
    ),
    ...(t.notificationShape ?? []).map((n) =>
      complex(`${XV43}notificationShape`, [
        ...sub('resource', { valueUri: n.resource }),
        ...many('include', n.include, 'valueString'),
        ...many('revInclude', n.revInclude, 'valueString'),
      ]),
    ),
  ];
  const basic: Basic = {
    resourceType: 'Basic',
    extension,
    modifierExtension: [{ url: `${XV5}status`, valueCode: t.status }],
    identifier: [{ system: 'urn:ietf:rfc:3986', value: t.url }],
    code: { coding: [{ ...TOPIC_BASIC_CODE }], text: 'SubscriptionTopic' },
  };
  return t.id ? { id: t.id, ...basic } : basic;
}

/** Whether a resource is a topic in its Basic form. */
export function isTopicBasic(r: { resourceType: string; code?: Basic['code'] }): boolean {
  return r.resourceType === 'Basic' && Boolean(r.code?.coding?.some((c) => c.system === TOPIC_BASIC_CODE.system && c.code === TOPIC_BASIC_CODE.code));
}
