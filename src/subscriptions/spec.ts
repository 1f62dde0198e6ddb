import { decodeComponent } from '../strict-text';
import type { Extension, Subscription } from 'fhir/r4';
import { Errors, isFhirError } from '../errors';
import { EXT, type ChannelType, type PayloadContent, type SubscriptionStatusCode } from './constants';
import type { CompiledTopic, CriteriaEvaluator } from './topics';

/** One search-style test a notification must pass (R4 criteria, or one Backport filter). */
export interface FilterSpec {
  resourceType: string;
  /** The query string after "?" (may be empty: every resource of the type). */
  query: string;
}

/** What we keep of a Subscription to evaluate and deliver it; plain JSON so it can be stored. */
export interface SubscriptionSpec {
  id: string;
  kind: 'criteria' | 'topic';
  /** Topic canonical (topic subscriptions). */
  topic?: string;
  /** R4 criteria: exactly one filter. Topic: zero or more, all must pass (logical AND). */
  filters: FilterSpec[];
  channelType: ChannelType;
  endpoint?: string;
  /** Kept as objects: FerretDB stores no nested arrays. */
  headers: Array<{ name: string; value: string }>;
  /** channel.payload; absent means: notify without a body (R4 "empty" ping). */
  payloadMime?: string;
  content: PayloadContent;
  heartbeatSeconds?: number;
  timeoutSeconds?: number;
  maxCount: number;
  /** Subscription.end as an ISO instant. */
  end?: string;
  status: SubscriptionStatusCode;
}

/** Search result parameters that change how results are returned, meaningless for one resource. */
const RESULT_PARAMS = new Set(['_include', '_revinclude', '_sort', '_count', '_summary', '_elements', '_total', '_contained', '_containedType', '_maxresults', '_page', '_cursor']);
const SUPPORTED_MIME = new Set(['application/fhir+json', 'application/json', 'application/json+fhir']);
/** Headers a subscriber must not set: they belong to the transport or to our signature. */
const RESERVED_HEADERS = new Set(['host', 'content-length', 'content-type', 'transfer-encoding', 'connection', 'x-vigil-signature', 'x-vigil-event-numbers']);
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const invalid = (message: string, expression: string, code = 'MSG_SUBSCRIPTION_INVALID') =>
  Errors.unprocessable(message, code, [expression]);

function ext(list: Extension[] | undefined, url: string): Extension[] {
  return (list ?? []).filter((e) => e.url === url);
}

/** Splits "Observation?code=x" into type and query; a filter may omit the type when it is implied. */
export function splitCriteria(s: string, impliedType?: string): FilterSpec | undefined {
  const t = s.trim();
  const q = t.indexOf('?');
  if (q < 0) {
    if (/^[A-Z][A-Za-z]+$/.test(t)) return { resourceType: t, query: '' };
    return impliedType && t.includes('=') ? { resourceType: impliedType, query: t } : undefined;
  }
  const type = t.slice(0, q);
  if (type === '' && impliedType) return { resourceType: impliedType, query: t.slice(1) };
  return /^[A-Z][A-Za-z]+$/.test(type) ? { resourceType: type, query: t.slice(q + 1) } : undefined;
}

export function paramNames(query: string): string[] {
  return query
    .split('&')
    .filter(Boolean)
    .map((kv) => decodeComponent(kv.split('=')[0], 'a criteria parameter name').split(':')[0].split('.')[0]);
}

function compileOrRefuse(criteria: CriteriaEvaluator, f: FilterSpec, expression: string): void {
  const bad = paramNames(f.query).filter((p) => RESULT_PARAMS.has(p));
  if (bad.length) {
    throw invalid(`Parameter ${bad.join(', ')} cannot be used in subscription criteria: it shapes a result page, not a match`, expression, 'MSG_SUBSCRIPTION_CRITERIA');
  }
  try {
    criteria.compileCriteria(f.resourceType, f.query);
  } catch (e) {
    const why = isFhirError(e) ? e.message : (e as Error).message;
    throw invalid(`Criteria "${f.resourceType}?${f.query}" cannot be evaluated for notifications: ${why}`, expression, 'MSG_SUBSCRIPTION_CRITERIA');
  }
}

function positiveInt(e: Extension | undefined, field: 'valueUnsignedInt' | 'valuePositiveInt', min: number, max: number, expression: string): number | undefined {
  if (!e) return undefined;
  const v = e[field] ?? e.valueInteger ?? e.valuePositiveInt ?? e.valueUnsignedInt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalid(`${expression} must be an integer between ${min} and ${max}`, expression);
  }
  return v;
}

/**
 * Reads and checks a Subscription. Anything we cannot honour is refused here, with a reason,
 * so that an accepted Subscription is one we will actually deliver.
 */
export function parseSubscription(
  sub: Subscription,
  deps: { criteria: CriteriaEvaluator; topic: (url: string) => CompiledTopic | undefined; now?: Date },
): SubscriptionSpec {
  if (sub.resourceType !== 'Subscription') throw invalid('Expected a Subscription', 'Subscription');
  const criteriaText = typeof sub.criteria === 'string' ? sub.criteria.trim() : '';
  if (!criteriaText) throw invalid('Subscription.criteria is required', 'Subscription.criteria');
  const channel = sub.channel;
  if (!channel || typeof channel.type !== 'string') throw invalid('Subscription.channel.type is required', 'Subscription.channel.type');

  let kind: SubscriptionSpec['kind'];
  let topicUrl: string | undefined;
  const filters: FilterSpec[] = [];
  if (/^https?:\/\//.test(criteriaText) || /^urn:/.test(criteriaText)) {
    kind = 'topic';
    topicUrl = criteriaText.split('|')[0];
    const topic = deps.topic(topicUrl);
    if (!topic) {
      throw invalid(`Unknown SubscriptionTopic "${criteriaText}"; see the CapabilityStatement for the topics this server supports`, 'Subscription.criteria', 'MSG_SUBSCRIPTION_TOPIC');
    }
    const filterExts = ext((sub as { _criteria?: { extension?: Extension[] } })._criteria?.extension, EXT.filterCriteria);
    filterExts.forEach((e, i) => {
      const where = `Subscription.criteria.extension[${i}]`;
      const implied = topic.resourceTypes.size === 1 ? [...topic.resourceTypes][0] : undefined;
      const f = typeof e.valueString === 'string' ? splitCriteria(e.valueString, implied) : undefined;
      if (!f) throw invalid(`Filter "${e.valueString ?? ''}" must look like "Observation?patient=Patient/123"`, where, 'MSG_SUBSCRIPTION_FILTER');
      if (!topic.resourceTypes.has(f.resourceType)) {
        throw invalid(`Topic ${topic.url} has no trigger on ${f.resourceType}`, where, 'MSG_SUBSCRIPTION_FILTER');
      }
      const allowed = topic.filterBy.get(f.resourceType);
      const notAllowed = allowed ? paramNames(f.query).filter((p) => !allowed.has(p)) : [];
      if (notAllowed.length) {
        throw invalid(
          `Topic ${topic.url} cannot be filtered by ${notAllowed.join(', ')}; allowed: ${[...(allowed ?? [])].join(', ')}`,
          where,
          'MSG_SUBSCRIPTION_FILTER',
        );
      }
      compileOrRefuse(deps.criteria, f, where);
      filters.push(f);
    });
  } else {
    kind = 'criteria';
    const f = splitCriteria(criteriaText);
    if (!f) throw invalid(`Criteria "${criteriaText}" must look like "Observation?code=http://loinc.org|8867-4"`, 'Subscription.criteria', 'MSG_SUBSCRIPTION_CRITERIA');
    compileOrRefuse(deps.criteria, f, 'Subscription.criteria');
    filters.push(f);
  }

  const channelTypeExt = ext(channel.extension, EXT.channelType)[0]?.valueCoding?.code;
  const channelType = channelTypeExt ?? channel.type;
  if (channelType !== 'rest-hook' && channelType !== 'websocket') {
    throw invalid(`Channel type "${channelType}" is not supported; use rest-hook or websocket`, 'Subscription.channel.type', 'MSG_SUBSCRIPTION_CHANNEL');
  }
  let endpoint: string | undefined;
  if (channelType === 'rest-hook') {
    try {
      const u = new URL(channel.endpoint ?? '');
      if (!/^https?:$/.test(u.protocol)) throw new Error('scheme');
      endpoint = u.toString();
    } catch {
      throw invalid('A rest-hook channel needs an absolute http(s) endpoint', 'Subscription.channel.endpoint', 'MSG_SUBSCRIPTION_CHANNEL');
    }
  }
  const headers: Array<{ name: string; value: string }> = (channel.header ?? []).map((h, i) => {
    const where = `Subscription.channel.header[${i}]`;
    const m = /^([^:]+):\s*(.*)$/.exec(h ?? '');
    if (!m || !HEADER_NAME.test(m[1].trim()) || /[\r\n]/.test(m[2])) throw invalid(`Header "${h}" must look like "Name: value"`, where, 'MSG_SUBSCRIPTION_CHANNEL');
    const name = m[1].trim();
    if (RESERVED_HEADERS.has(name.toLowerCase())) throw invalid(`Header ${name} is set by the server and cannot be given`, where, 'MSG_SUBSCRIPTION_CHANNEL');
    return { name, value: m[2].trim() };
  });

  let payloadMime: string | undefined;
  if (channel.payload) {
    const mime = channel.payload.split(';')[0].trim().toLowerCase();
    if (!SUPPORTED_MIME.has(mime)) {
      throw invalid(`Payload type "${channel.payload}" is not supported; use application/fhir+json`, 'Subscription.channel.payload', 'MSG_SUBSCRIPTION_PAYLOAD');
    }
    payloadMime = mime === 'application/json+fhir' ? 'application/fhir+json' : mime;
  }
  const contentExt = ext((channel as { _payload?: { extension?: Extension[] } })._payload?.extension, EXT.payloadContent)[0];
  let content: PayloadContent;
  if (contentExt) {
    const c = contentExt.valueCode;
    if (c !== 'empty' && c !== 'id-only' && c !== 'full-resource') {
      throw invalid(`Payload content "${c}" is not one of empty, id-only, full-resource`, 'Subscription.channel.payload.extension', 'MSG_SUBSCRIPTION_PAYLOAD');
    }
    content = c;
  } else {
    // R4 meaning: a payload type asks for the resource, no payload asks for a bare ping.
    content = payloadMime ? (kind === 'topic' ? 'id-only' : 'full-resource') : 'empty';
  }
  if (kind === 'topic' && !payloadMime) payloadMime = 'application/fhir+json';

  const heartbeatSeconds = positiveInt(ext(channel.extension, EXT.heartbeatPeriod)[0], 'valueUnsignedInt', 1, 86400, 'Subscription.channel.extension(heartbeat-period)');
  const timeoutSeconds = positiveInt(ext(channel.extension, EXT.timeout)[0], 'valueUnsignedInt', 1, 120, 'Subscription.channel.extension(timeout)');
  const maxCount = positiveInt(ext(channel.extension, EXT.maxCount)[0], 'valuePositiveInt', 1, 1000, 'Subscription.channel.extension(max-count)') ?? 1;

  let end: string | undefined;
  if (sub.end) {
    const t = Date.parse(sub.end);
    if (Number.isNaN(t)) throw invalid(`Subscription.end "${sub.end}" is not an instant`, 'Subscription.end');
    end = new Date(t).toISOString();
  }
  const status = (['requested', 'active', 'error', 'off'] as const).find((s) => s === sub.status);
  if (!status) throw invalid(`Subscription.status "${sub.status}" is not one of requested, active, error, off`, 'Subscription.status');

  return {
    id: sub.id ?? '',
    kind,
    topic: topicUrl,
    filters,
    channelType,
    endpoint,
    headers,
    payloadMime,
    content,
    heartbeatSeconds,
    timeoutSeconds,
    maxCount,
    end,
    status,
  };
}

/** Removes our write-only signing-secret extension; returns the secret it carried, if any. */
export function takeSigningSecret(sub: Subscription): { resource: Subscription; secret?: string } {
  const exts = sub.channel?.extension ?? [];
  const found = exts.find((e) => e.url === EXT.signingSecret);
  if (!found) return { resource: sub };
  const secret = found.valueString;
  if (typeof secret !== 'string' || secret.length < 16) {
    throw invalid('The signing secret must be a string of at least 16 characters', 'Subscription.channel.extension(signing-secret)', 'MSG_SUBSCRIPTION_SECRET');
  }
  const rest = exts.filter((e) => e !== found);
  const channel = { ...sub.channel };
  if (rest.length) channel.extension = rest;
  else delete channel.extension;
  return { resource: { ...sub, channel }, secret };
}
