import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Resource } from 'fhir/r4';
import { Errors } from '../errors';

/**
 * The subset of an R5 SubscriptionTopic we evaluate. R4 has no such type; per the Backport IG the
 * R5 JSON shape is stored and served as is (resourceType "SubscriptionTopic").
 */
export interface SubscriptionTopicResource {
  resourceType: 'SubscriptionTopic';
  id?: string;
  url: string;
  version?: string;
  name?: string;
  title?: string;
  status: 'draft' | 'active' | 'retired' | 'unknown';
  description?: string;
  resourceTrigger?: Array<{
    description?: string;
    resource: string;
    supportedInteraction?: Array<'create' | 'update' | 'delete'>;
    queryCriteria?: {
      previous?: string;
      resultForCreate?: 'test-passes' | 'test-fails';
      current?: string;
      resultForDelete?: 'test-passes' | 'test-fails';
      requireBoth?: boolean;
    };
    fhirPathCriteria?: string;
  }>;
  canFilterBy?: Array<{ description?: string; resource?: string; filterParameter: string; filterDefinition?: string }>;
  notificationShape?: Array<{ resource: string; include?: string[]; revInclude?: string[] }>;
}

export type Interaction = 'create' | 'update' | 'delete';

export interface CriteriaEvaluator {
  compileCriteria(type: string, query: string): unknown;
  matches(criteria: unknown, resource: Resource): boolean;
}

type CompiledPath = (resource: unknown, env: Record<string, unknown>) => unknown[];

/** fhirpath.js ships no type declarations; this is the one function we use. */
interface FhirPathLib {
  compile(expression: string, model: unknown): CompiledPath;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const fhirpath = require('fhirpath') as FhirPathLib;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const r4model = require('fhirpath/fhir-context/r4') as unknown;

interface CompiledTrigger {
  resourceType: string;
  interactions: Set<Interaction>;
  fhirPath?: CompiledPath;
  /** Whether the trigger needs the version before (so the previous version is loaded only then). */
  needsPrevious: boolean;
  query?: {
    previous?: unknown;
    current?: unknown;
    resultForCreate: boolean;
    resultForDelete: boolean;
    requireBoth: boolean;
  };
}

export interface CompiledTopic {
  url: string;
  resource: SubscriptionTopicResource;
  triggers: CompiledTrigger[];
  /** Resource types the topic fires on. */
  resourceTypes: Set<string>;
  /** Allowed filter parameters per resource type; empty map means any search parameter. */
  filterBy: Map<string, Set<string>>;
}

/** "http://hl7.org/fhir/StructureDefinition/Observation" or "Observation" -> "Observation". */
export function resourceTypeOf(uri: string): string {
  const tail = uri.split('/').pop() ?? uri;
  return tail.split('|')[0];
}

/** Compiles a topic once; throws a 422 FhirError when it uses something we cannot evaluate. */
export function compileTopic(topic: SubscriptionTopicResource, criteria: CriteriaEvaluator): CompiledTopic {
  if (topic.resourceType !== 'SubscriptionTopic' || typeof topic.url !== 'string' || !topic.url) {
    throw Errors.unprocessable('A SubscriptionTopic needs a url', 'MSG_TOPIC_INVALID', ['SubscriptionTopic.url']);
  }
  const triggers: CompiledTrigger[] = (topic.resourceTrigger ?? []).map((t, i) => {
    const where = `SubscriptionTopic.resourceTrigger[${i}]`;
    const resourceType = resourceTypeOf(t.resource ?? '');
    if (!/^[A-Z][A-Za-z]+$/.test(resourceType)) {
      throw Errors.unprocessable(`Unknown resource "${t.resource}" in ${where}`, 'MSG_TOPIC_INVALID', [`${where}.resource`]);
    }
    let fhirPath: CompiledPath | undefined;
    if (t.fhirPathCriteria) {
      try {
        fhirPath = fhirpath.compile(t.fhirPathCriteria, r4model);
      } catch (e) {
        throw Errors.unprocessable(
          `Cannot compile fhirPathCriteria of ${where}: ${(e as Error).message}`,
          'MSG_TOPIC_INVALID',
          [`${where}.fhirPathCriteria`],
        );
      }
    }
    const q = t.queryCriteria;
    const compileQuery = (s: string | undefined, el: string): unknown => {
      if (!s) return undefined;
      const query = s.includes('?') ? s.slice(s.indexOf('?') + 1) : s;
      try {
        return criteria.compileCriteria(resourceType, query);
      } catch (e) {
        throw Errors.unprocessable(`Cannot evaluate ${where}.queryCriteria.${el}: ${(e as Error).message}`, 'MSG_TOPIC_INVALID', [
          `${where}.queryCriteria.${el}`,
        ]);
      }
    };
    return {
      resourceType,
      interactions: new Set(t.supportedInteraction?.length ? t.supportedInteraction : ['create', 'update', 'delete']),
      fhirPath,
      needsPrevious: Boolean(q?.previous) || Boolean(t.fhirPathCriteria?.includes('%previous')),
      query: q
        ? {
            previous: compileQuery(q.previous, 'previous'),
            current: compileQuery(q.current, 'current'),
            resultForCreate: q.resultForCreate !== 'test-fails',
            resultForDelete: q.resultForDelete !== 'test-fails',
            requireBoth: q.requireBoth === true,
          }
        : undefined,
    };
  });
  const filterBy = new Map<string, Set<string>>();
  for (const f of topic.canFilterBy ?? []) {
    const type = f.resource ? resourceTypeOf(f.resource) : triggers[0]?.resourceType;
    if (!type) continue;
    if (!filterBy.has(type)) filterBy.set(type, new Set());
    filterBy.get(type)!.add(f.filterParameter);
  }
  return { url: topic.url, resource: topic, triggers, resourceTypes: new Set(triggers.map((t) => t.resourceType)), filterBy };
}

export interface TriggerInput {
  type: string;
  interaction: Interaction;
  current?: Resource;
  previous: () => Promise<Resource | undefined>;
}

/** Whether any trigger of the topic fires for this change (R5 SubscriptionTopic semantics). */
export async function topicFires(topic: CompiledTopic, ev: TriggerInput, criteria: CriteriaEvaluator): Promise<boolean> {
  for (const t of topic.triggers) {
    if (t.resourceType !== ev.type || !t.interactions.has(ev.interaction)) continue;
    const previous = t.needsPrevious ? await ev.previous() : undefined;
    if (t.query && !queryPasses(t.query, ev, previous, criteria)) continue;
    if (t.fhirPath) {
      const root = ev.current ?? previous;
      const out = t.fhirPath(root ?? {}, { current: ev.current ?? [], previous: previous ?? [] });
      if (!(out.length > 0 && out.every((v) => v === true))) continue;
    }
    return true;
  }
  return false;
}

function queryPasses(
  q: NonNullable<CompiledTrigger['query']>,
  ev: TriggerInput,
  previous: Resource | undefined,
  criteria: CriteriaEvaluator,
): boolean {
  const prevOk =
    q.previous === undefined ? undefined : previous ? criteria.matches(q.previous, previous) : q.resultForCreate;
  const curOk =
    q.current === undefined ? undefined : ev.current ? criteria.matches(q.current, ev.current) : q.resultForDelete;
  const tests = [prevOk, curOk].filter((v): v is boolean => v !== undefined);
  if (tests.length === 0) return true;
  return q.requireBoth ? tests.every(Boolean) : tests.some(Boolean);
}

/** Topics shipped in ig/SubscriptionTopic-*.json. */
export function loadShippedTopics(igDir = path.resolve(__dirname, '..', '..', 'ig')): SubscriptionTopicResource[] {
  let names: string[];
  try {
    names = readdirSync(igDir).filter((n) => /^SubscriptionTopic-.*\.json$/.test(n));
  } catch {
    return [];
  }
  return names.sort().map((n) => JSON.parse(readFileSync(path.join(igDir, n), 'utf8')) as SubscriptionTopicResource);
}
