import type { Bundle, CapabilityStatementRestResourceSearchParam, Resource } from 'fhir/r4';
import type { Db, Document, Filter } from 'mongodb';
import type { AccessPolicy } from '../auth/types';
import type { Config } from '../config';
import { Errors } from '../errors';
import { CursorCodec, CURSOR_SECRET_KEY } from '../resources/cursor';
import { type CurrentDoc, type Engine, detectEngine, serverSecret } from '../storage';
import { type BucketSource, type Explanation, type QueryExecutor, createExecutor, hasElemRange, relax } from '../storage/query';
import { type Cond, and, evaluate, toMongo } from './cond';
import { filterCond } from './conditions';
import type { SearchContext } from './context';
import { parseControl } from './control';
import { indexSpecs } from './index-specs';
import { compartmentParams, indexResource } from './indexer';
import { lastn } from './lastn';
import { parseQuery, queryPairs } from './parse';
import { type Ignored, simpleCond } from './query';
import { type Registry, buildRegistry } from './registry';
import { systemSearch, typeSearch } from './searchset';
import type { EncodeContext, Idx, SearchParam } from './types';

export interface SearchRequest {
  /** undefined = system-level search (`_type`). */
  type?: string;
  /** Raw decoded query pairs (GET query or POST form body). */
  params: [string, string][];
  policy: AccessPolicy;
  /** e.g. http://localhost:8080/fhir (for fullUrl, links, absolute references). */
  baseUrl: string;
  /** Prefer: handling= */
  handling: 'strict' | 'lenient';
}

/** A query compiled once (subscription criteria, scope restrictions), evaluable both ways. */
export interface CompiledCriteria {
  resourceType: string;
  query: string;
  cond: Cond;
  /**
   * Whether `criteriaFilter` selects exactly the matches. False when the criteria compare ranges
   * within multi-valued elements (e.g. component values): FerretDB cannot bind such bounds to one
   * element, so the filter then selects a superset and `matches()` must confirm each document.
   */
  exact: boolean;
}

/** The resource types served when the caller does not say. */
export const DEFAULT_TYPES = ['Patient', 'Practitioner', 'Device', 'Observation', 'ObservationDefinition', 'Subscription', 'Basic', 'AuditEvent'];

/**
 * The search module's face: parse -> Cond and control parameters -> storage executor -> shape
 * -> Bundle (searchset.ts, lastn.ts), plus the criteria other modules compile once and evaluate
 * in memory (subscriptions, scope restrictions).
 */
export class SearchService implements SearchContext {
  readonly ctx: EncodeContext;
  /** Index values of resources being matched, so one version matched against many criteria is indexed once. */
  private readonly matchCache = new WeakMap<Resource, { idx: Idx; comp: string[] }>();

  private constructor(
    readonly registry: Registry,
    readonly config: Config,
    readonly cursors: CursorCodec,
    readonly supportedTypes: string[],
    private executorRef: QueryExecutor | undefined,
  ) {
    this.ctx = { baseUrl: config.baseUrl };
  }

  get executor(): QueryExecutor {
    if (!this.executorRef) throw new Error('search executor not set');
    return this.executorRef;
  }

  /**
   * Loads and compiles the registry for `types` (default: DEFAULT_TYPES); the cursor codec is the server's.
   * The server hands in storage's executor; without one (tests, tools) an executor is built for
   * `engine` (detected when absent; tests force one to cover both strategies).
   */
  static async create(deps: {
    db: Db;
    config: Config;
    types?: string[];
    executor?: QueryExecutor;
    engine?: Engine;
    cursors?: CursorCodec;
    /** Resources a page of an unserved query may examine (tests make it small; see src/storage/query/scan.ts). */
    scanBudget?: number;
  }): Promise<SearchService> {
    const types = deps.types ?? DEFAULT_TYPES;
    const registry = buildRegistry(types);
    const cursors = deps.cursors ?? new CursorCodec(deps.config.cursorSecret ?? (await serverSecret(deps.db, CURSOR_SECRET_KEY)));
    const svc = new SearchService(registry, deps.config, cursors, types, deps.executor);
    if (!deps.executor) {
      const engine = deps.engine ?? (await detectEngine(deps.db));
      svc.executorRef = createExecutor(engine, deps.db, (r, only) => svc.indexOnce(r, only), { scanBudget: deps.scanBudget });
    }
    return svc;
  }

  /** Search parameters of a type (code -> compiled parameter). */
  paramsOf(type: string): Map<string, SearchParam> {
    const p = this.registry.byType.get(type);
    if (!p) throw Errors.notFound(`Resource type "${type}" is not supported`, 'MSG_UNKNOWN_TYPE');
    return p;
  }

  /**
   * At write time: index values for doc.idx and the patient compartments for doc.comp. With
   * `only`, the values of those parameters alone (storage's partial index of carried documents).
   */
  index(resource: Resource, only?: ReadonlySet<string>): { idx: Idx; comp: string[] } {
    const all = this.paramsOf(resource.resourceType);
    const params = only ? [...only].flatMap((code) => all.get(code) ?? []) : all.values();
    return indexResource(resource, params, compartmentParams(resource.resourceType), this.ctx);
  }

  // ---------------------------------------------------------------- criteria

  /** Compiles a criteria query once. Strict: unknown params -> 400 naming them; chains and _has cannot be evaluated in memory. */
  compileCriteria(type: string, query: string): CompiledCriteria {
    const params = this.paramsOf(type);
    const { filters, control } = parseQuery(queryPairs(query));
    if (control.length > 0) {
      throw Errors.badRequest(`Criteria may not contain ${control.map(([n]) => n).join(', ')}`, 'MSG_PARAM_INVALID');
    }
    const conds: Cond[] = [];
    for (const fp of filters) {
      if (fp.chain !== undefined || fp.has) {
        throw Errors.badRequest(`Criteria parameter "${fp.name}" (chaining, _has) cannot be evaluated on a single resource`, 'MSG_PARAM_INVALID');
      }
      const c = simpleCond(params, fp, this.ctx, 'strict', []);
      if (c) conds.push(c);
    }
    const cond = and(conds);
    return { resourceType: type, query, cond, exact: !hasElemRange(cond) };
  }

  /**
   * index() of a committed version, computed once however many consumers need it (the bucket
   * store and every subscription's match). Callers hand in immutable versions (a new object per
   * version), so identity is a safe cache key.
   */
  indexOnce(resource: Resource, only?: ReadonlySet<string>): { idx: Idx; comp: string[] } {
    if (only) return this.index(resource, only);
    let entry = this.matchCache.get(resource);
    if (!entry) {
      entry = this.index(resource);
      this.matchCache.set(resource, entry);
    }
    return entry;
  }

  /** In-memory evaluation with the same semantics as the MongoDB filter of the same query. */
  matches(criteria: CompiledCriteria, resource: Resource): boolean {
    if (resource.resourceType !== criteria.resourceType) return false;
    const { idx, comp } = this.indexOnce(resource);
    return evaluate(criteria.cond, { _id: resource.id, idx, comp });
  }

  /** The condition of compiled criteria (scope restrictions are refused unless exact). */
  criteriaCond(criteria: CompiledCriteria): Cond {
    return criteria.cond;
  }

  /**
   * MongoDB filter on the CurrentDoc shape (current, not deleted) for compiled criteria. Never
   * misses a match; exact when `criteria.exact` (otherwise confirm with `matches()`).
   */
  criteriaFilter(criteria: CompiledCriteria): Filter<Document> {
    const c = criteria.exact ? criteria.cond : relax(criteria.cond, true);
    return { $and: [toMongo(c), { deleted: false }] };
  }

  /** Conditional create/update/delete and conditional references: current docs matching `query` (strict). */
  async findMatches(type: string, query: string, policy: AccessPolicy, limit: number): Promise<CurrentDoc[]> {
    const params = this.paramsOf(type);
    const { filters, control } = parseQuery(queryPairs(query));
    const used = control.filter(([n]) => !['_format', '_pretty'].includes(n));
    if (used.length > 0) {
      throw Errors.badRequest(`Conditional operations do not accept ${used.map(([n]) => n).join(', ')}`, 'MSG_PARAM_INVALID');
    }
    if (filters.length === 0) throw Errors.badRequest('A conditional operation needs search parameters', 'MSG_PARAM_INVALID');
    void params;
    const cond = await filterCond(this, type, filters, policy, 'strict', []);
    return this.executor.page({ type, cond, policy, limit });
  }

  // ---------------------------------------------------------------- search

  /** The search interaction: a searchset Bundle (type level, or system level without a type). */
  search(req: SearchRequest): Promise<Bundle> {
    if (!req.type) return systemSearch(this, req);
    this.paramsOf(req.type);
    return typeSearch(this, { ...req, type: req.type });
  }

  /** Observation/$lastn. */
  lastn(req: SearchRequest): Promise<Bundle> {
    return lastn(this, req);
  }

  /**
   * The main database query a type-level search runs (filter, sort, limit) and the database's
   * plan for it: which index serves it. For benchmarks and operators.
   */
  async explain(req: SearchRequest): Promise<Explanation> {
    const type = req.type;
    if (!type) throw Errors.badRequest('explain needs a resource type', 'MSG_PARAM_INVALID');
    const ignored: Ignored[] = [];
    const { filters, control } = parseQuery(req.params);
    const ctl = parseControl(this, type, control, req.handling, ignored);
    const cond = await filterCond(this, type, filters, req.policy, req.handling, ignored);
    return this.executor.explain({ type, cond, policy: req.policy, order: [...ctl.sort, { field: '_id', dir: 1 }], limit: ctl.count + 1 });
  }

  // ---------------------------------------------------------------- metadata, storage upkeep

  /** For /metadata: the search parameters of a type. */
  capabilitySearchParams(type: string): CapabilityStatementRestResourceSearchParam[] {
    return [...this.paramsOf(type).values()]
      .filter((p) => !p.unsupported)
      .map((p) => ({ name: p.code, definition: p.url, type: p.type, ...(p.description ? { documentation: p.description } : {}) }));
  }

  /** Creates the indexes the search parameters are served from (where the engine uses indexes). */
  async ensureIndexes(): Promise<void> {
    await this.executor.ensureIndexes(new Map(this.supportedTypes.map((t) => [t, indexSpecs(t, this.paramsOf(t))])));
  }

  /** Rebuilds stored index values (and engine-side structures) whose search definitions changed. */
  async reindexIfNeeded(progress: (msg: string) => void = () => {}): Promise<void> {
    await this.executor.maintain({
      types: this.supportedTypes,
      definitions: (t) => this.registry.hashes.get(t) ?? this.registry.hash,
      index: (r) => this.index(r),
      progress,
    });
  }

  /** Loaders and tests writing current documents around storage: their engine-side entries. */
  async recordCandidates(type: string, docs: readonly BucketSource[], concurrency?: number): Promise<void> {
    await this.executor.record(type, docs, concurrency);
  }
}
