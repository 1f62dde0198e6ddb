import { createHash, randomBytes } from 'node:crypto';
import type {
  Bundle,
  BundleEntry,
  CapabilityStatementRestResourceSearchParam,
  FhirResource,
  OperationOutcome,
  Resource,
} from 'fhir/r4';
import type { Collection, Db, Document, Filter, Sort } from 'mongodb';
import type { AccessPolicy } from '../auth/types';
import type { Config } from '../config';
import { Errors, FhirError } from '../errors';
import type { CurrentDoc, PreparedWrite } from '../storage/types';
import { findByIds } from '../storage/lookup';
import { BUCKET_LAYOUT, type BucketPlan, BucketIndex, type BucketSource, type Candidate } from './buckets';
import { type Cond, FALSE, and, evaluate, not, or, toMongo } from './cond';
import { encoderFor } from './encoders';
import { referenceParts } from './encoders/reference';
import { type CursorState, decodeCursor, encodeCursor } from './cursor';
import { compartmentParams, indexResource } from './indexer';
import { type FilterParam, parseName, parseQuery, queryPairs } from './parse';
import { type Handling, type Ignored, reject, simpleCond } from './query';
import { type Registry, buildRegistry } from './registry';
import { type Summary, parseSummary, shape } from './shape';
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
export const DEFAULT_TYPES = ['Patient', 'Device', 'Observation', 'ObservationDefinition', 'Subscription', 'SubscriptionTopic', 'AuditEvent'];

/** Keys of the `meta` collection. */
const META = 'meta';
const SECRET_KEY = 'search.cursorSecret';
const HASH_KEY = (type: string) => `search.indexHash.${type}`;
const BUCKETS_KEY = 'search.buckets';

/** How many ids a chain or `_has` may resolve to before the query is refused as too costly. */
const MAX_CHAIN_IDS = 5000;
/** How many resources `_include`/`_revinclude` may add to one page, and how deep `:iterate` goes. */
const MAX_INCLUDES = 1000;
const MAX_ITERATE_DEPTH = 3;

interface SortKey {
  field: string;
  dir: 1 | -1;
}

interface IncludeSpec {
  source: string;
  param: string;
  target?: string;
  iterate: boolean;
  rev: boolean;
}

interface Control {
  count: number;
  sort: SortKey[];
  includes: IncludeSpec[];
  summary?: Summary;
  elements?: string[];
  total: 'none' | 'estimate' | 'accurate';
  cursor?: string;
  types?: string[];
}

type MetaDoc = { _id: string; value: string };

export class SearchService {
  readonly supportedTypes: string[];
  private readonly ctx: EncodeContext;
  /** Index values of resources being matched, so one version matched against many criteria is indexed once. */
  private readonly matchCache = new WeakMap<Resource, { idx: Idx; comp: string[] }>();

  private constructor(
    private readonly db: Db,
    private readonly config: Config,
    private readonly registry: Registry,
    private readonly secret: string,
    types: string[],
    /** FerretDB pushes down only a bare `{ _id }` filter: a few point reads beat one `$in` scan there. */
    private readonly pointReads = false,
  ) {
    this.supportedTypes = types;
    this.ctx = { baseUrl: config.baseUrl };
    this.buckets = pointReads ? new BucketIndex(db) : undefined;
  }

  /** Candidate lists for the remote-monitoring queries where the database has no usable index (FerretDB). */
  private readonly buckets?: BucketIndex;

  /** At a version's commit point: its bucket entries, in memory (a no-op where real indexes serve). */
  stageCandidates(type: string, docs: readonly BucketSource[]): void {
    this.buckets?.stage(type, docs);
  }

  /** At the commit point of prepared versions: stages the candidates of the live (not deleted) ones. */
  stageCommitted(writes: readonly PreparedWrite[]): void {
    if (!this.buckets) return;
    const byType = new Map<string, CurrentDoc[]>();
    for (const w of writes) {
      if (w.noop || w.doc.deleted) continue;
      byType.set(w.type, [...(byType.get(w.type) ?? []), w.doc]);
    }
    for (const [type, docs] of byType) this.buckets.stage(type, docs);
  }

  /** Stores bucket entries (the outbox, for committed versions; loaders and the rebuild). */
  async recordCandidates(type: string, docs: readonly BucketSource[]): Promise<void> {
    await this.buckets?.record(type, docs);
  }

  /** Outbox consumer: stores the bucket entries of committed Observation versions. */
  async recordCommitted(events: readonly { type: string; id: string; resource?: Resource }[]): Promise<void> {
    if (!this.buckets) return;
    const docs: BucketSource[] = [];
    for (const e of events) {
      if (e.type !== 'Observation' || !e.resource) continue;
      docs.push({ _id: e.id, ...this.indexOnce(e.resource) });
    }
    await this.buckets.record('Observation', docs);
  }

  /** Loads and compiles the registry for `types` (default: DEFAULT_TYPES) and the cursor secret. */
  static async create(deps: {
    db: Db;
    config: Config;
    types?: string[];
    /** Query strategy; detected from the server when absent (tests force one to cover both). */
    flavor?: 'mongodb' | 'ferretdb';
  }): Promise<SearchService> {
    const types = deps.types ?? DEFAULT_TYPES;
    const registry = buildRegistry(types);
    const secret = deps.config.cursorSecret ?? (await loadSecret(deps.db));
    const ferret = deps.flavor ? deps.flavor === 'ferretdb' : await isFerretDb(deps.db);
    return new SearchService(deps.db, deps.config, registry, secret, types, ferret);
  }

  /** Search parameters of a type (code -> compiled parameter). */
  paramsOf(type: string): Map<string, SearchParam> {
    const p = this.registry.byType.get(type);
    if (!p) throw Errors.notFound(`Resource type "${type}" is not supported`, 'MSG_UNKNOWN_TYPE');
    return p;
  }

  /** At write time: index values for doc.idx and the patient compartments for doc.comp. */
  index(resource: Resource): { idx: Idx; comp: string[] } {
    return indexResource(resource, this.paramsOf(resource.resourceType).values(), compartmentParams(resource.resourceType), this.ctx);
  }

  private col(type: string): Collection<Document> {
    return this.db.collection(type);
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
  private indexOnce(resource: Resource): { idx: Idx; comp: string[] } {
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
    const cond = await this.filterCond(type, filters, policy, 'strict', []);
    return (await this.findChecked(type, cond, policy, { limit })) as unknown as CurrentDoc[];
  }

  // ---------------------------------------------------------------- filters

  /** The complete MongoDB filter: the query, not deleted, and what the caller may read. */
  private mongoFilter(type: string, cond: Cond, policy: AccessPolicy, extra?: Cond): Filter<Document> {
    const parts: Filter<Document>[] = [{ deleted: false }];
    const c = extra ? and([cond, extra]) : cond;
    if (!(c.k === 'const' && c.v)) parts.push(toMongo(c));
    const pf = policy.readFilter(type);
    if (pf && Object.keys(pf).length > 0) parts.push(pf);
    return parts.length === 1 ? parts[0] : { $and: parts };
  }

  /** Condition for all filtering parameters of a query (AND), resolving chains and `_has` against the database. */
  private async filterCond(type: string, filters: FilterParam[], policy: AccessPolicy, handling: Handling, ignored: Ignored[]): Promise<Cond> {
    const params = this.paramsOf(type);
    const conds: Cond[] = [];
    for (const fp of filters) {
      let c: Cond | undefined;
      if (fp.has) c = await this.hasCond(type, fp, policy, handling, ignored);
      else if (fp.chain !== undefined) c = await this.chainCond(type, params, fp, policy, handling, ignored);
      else c = simpleCond(params, fp, this.ctx, handling, ignored);
      if (c) conds.push(c);
    }
    return and(conds);
  }

  /** `subject:Patient.identifier=x`: ids of matching targets, then an equality on the reference. */
  private async chainCond(
    type: string,
    params: Map<string, SearchParam>,
    fp: FilterParam,
    policy: AccessPolicy,
    handling: Handling,
    ignored: Ignored[],
  ): Promise<Cond | undefined> {
    const p = params.get(fp.code);
    if (!p || p.type !== 'reference') {
      reject(fp.name, p ? 'cannot be chained (not a reference parameter)' : `is not known for ${type}`, handling, ignored);
      return undefined;
    }
    const targets = (fp.modifier ? [fp.modifier] : p.targets).filter((t) => this.registry.byType.has(t));
    const chained = parseName(fp.chain ?? '', fp.value);
    const usable = targets.filter((t) => {
      const tp = this.registry.byType.get(t);
      return tp?.has(chained.code) || chained.has !== undefined;
    });
    if (usable.length === 0) {
      reject(fp.name, `cannot be chained: no searchable target type has "${chained.code}"`, handling, ignored);
      return undefined;
    }
    const refs: string[] = [];
    for (const t of usable) {
      if (!this.canRead(policy, t)) continue;
      const sub = await this.filterCond(t, [chained], policy, 'strict', ignored);
      const ids = await this.findChecked(t, sub, policy, { limit: MAX_CHAIN_IDS + 1, projection: { _id: 1 } });
      if (ids.length > MAX_CHAIN_IDS) throw tooCostly(fp.name);
      refs.push(...ids.map((d) => `${t}/${d._id}`));
    }
    return refs.length === 0 ? FALSE : { k: 'in', f: `idx.${p.code}`, v: refs };
  }

  /** `_has:Observation:patient:code=x`: resources referenced by matching Observations. */
  private async hasCond(type: string, fp: FilterParam, policy: AccessPolicy, handling: Handling, ignored: Ignored[]): Promise<Cond | undefined> {
    const has = fp.has;
    if (!has) return undefined;
    const sourceParams = this.registry.byType.get(has.type);
    const ref = sourceParams?.get(has.ref);
    if (!sourceParams || !ref || ref.type !== 'reference') {
      reject(fp.name, `is not usable: ${has.type}.${has.ref} is not a searchable reference`, handling, ignored);
      return undefined;
    }
    if (!this.canRead(policy, has.type)) return FALSE;
    const inner = parseName(has.rest, fp.value);
    const sub = await this.filterCond(has.type, [inner], policy, 'strict', ignored);
    const docs = await this.findChecked(has.type, sub, policy, { limit: MAX_CHAIN_IDS + 1, projection: { [`idx.${has.ref}`]: 1 } });
    if (docs.length > MAX_CHAIN_IDS) throw tooCostly(fp.name);
    const ids = new Set<string>();
    for (const d of docs) {
      const v = (d.idx as Idx | undefined)?.[has.ref];
      for (const r of Array.isArray(v) ? v : [v]) {
        if (typeof r === 'string' && r.startsWith(`${type}/`)) ids.add(r.slice(type.length + 1));
      }
    }
    return ids.size === 0 ? FALSE : { k: 'in', f: '_id', v: [...ids] };
  }

  private canRead(policy: AccessPolicy, type: string): boolean {
    try {
      policy.assertAllowed('search', type);
      return true;
    } catch {
      return false;
    }
  }

  // ---------------------------------------------------------------- control parameters

  private parseControl(type: string | undefined, control: [string, string][], handling: Handling, ignored: Ignored[]): Control {
    const ctl: Control = { count: this.config.defaultCount, sort: [], includes: [], total: 'none' };
    for (const [name, value] of control) {
      const [base, mod] = name.split(':');
      switch (base) {
        case '_count': {
          if (!/^\d+$/.test(value)) throw Errors.badRequest(`Invalid _count "${value}" (a non-negative integer)`, 'MSG_PARAM_INVALID', ['_count']);
          ctl.count = Math.min(Number(value), this.config.maxCount);
          break;
        }
        case '_sort':
          ctl.sort = this.parseSort(type, value, handling, ignored);
          break;
        case '_include':
        case '_revinclude':
          for (const v of value.split(',').filter(Boolean)) {
            const spec = this.parseInclude(type, v, base === '_revinclude', mod, handling, ignored, name);
            if (spec) ctl.includes.push(spec);
          }
          break;
        case '_summary':
          ctl.summary = parseSummary(value);
          break;
        case '_elements':
          ctl.elements = value.split(',').map((s) => s.trim()).filter(Boolean);
          break;
        case '_total':
          if (!['none', 'estimate', 'accurate'].includes(value)) {
            throw Errors.badRequest(`Invalid _total "${value}" (none, estimate or accurate)`, 'MSG_PARAM_INVALID', ['_total']);
          }
          ctl.total = value as Control['total'];
          break;
        case '_cursor':
          ctl.cursor = value;
          break;
        case '_type':
          ctl.types = [...(ctl.types ?? []), ...value.split(',').map((s) => s.trim()).filter(Boolean)];
          break;
        case '_format':
        case '_pretty':
          break;
        default:
          reject(name, 'is not supported', handling, ignored);
      }
    }
    return ctl;
  }

  private parseSort(type: string | undefined, value: string, handling: Handling, ignored: Ignored[]): SortKey[] {
    const keys: SortKey[] = [];
    for (const item of value.split(',').map((s) => s.trim()).filter(Boolean)) {
      const desc = item.startsWith('-');
      const code = desc ? item.slice(1) : item;
      const dir = desc ? -1 : 1;
      if (code === '_id') {
        keys.push({ field: '_id', dir });
        continue;
      }
      const p = type ? this.registry.byType.get(type)?.get(code) : undefined;
      const enc = p && !p.unsupported && p.type !== 'composite' ? encoderFor(p) : undefined;
      if (!p || !enc) {
        reject(`_sort=${item}`, type ? `cannot sort on "${code}"` : 'sorting is not supported in system-level searches', handling, ignored);
        continue;
      }
      keys.push({ field: enc.sortField(p, p.code), dir });
    }
    // _id always ends the key: a total order is what makes keyset paging exact.
    return keys.filter((k) => k.field !== '_id');
  }

  private parseInclude(
    type: string | undefined,
    v: string,
    rev: boolean,
    mod: string | undefined,
    handling: Handling,
    ignored: Ignored[],
    name: string,
  ): IncludeSpec | undefined {
    const iterate = mod === 'iterate' || mod === 'recurse';
    if (mod !== undefined && !iterate) {
      reject(name, `uses the modifier :${mod}, which is not supported`, handling, ignored);
      return undefined;
    }
    if (v === '*') return rev ? undefined : { source: type ?? '*', param: '*', iterate, rev };
    const [source, param, target] = v.split(':');
    const p = this.registry.byType.get(source)?.get(param ?? '');
    if (!p || p.type !== 'reference' || (target && !this.registry.byType.has(target))) {
      reject(`${name}=${v}`, 'does not name a searchable reference parameter (Type:param[:target])', handling, ignored);
      return undefined;
    }
    return { source, param, target, iterate, rev };
  }

  // ---------------------------------------------------------------- search

  /** The search interaction: a searchset Bundle. */
  async search(req: SearchRequest): Promise<Bundle> {
    if (!req.type) return this.systemSearch(req);
    const type = req.type;
    this.paramsOf(type);
    const ignored: Ignored[] = [];
    const { filters, control } = parseQuery(req.params);
    const ctl = this.parseControl(type, control, req.handling, ignored);
    if (ctl.types) reject('_type', 'applies only to system-level searches', req.handling, ignored);
    const cond = await this.filterCond(type, filters, req.policy, req.handling, ignored);
    const used = usedPairs(req.params, ignored);
    const qHash = hashQuery(type, used);
    const self = link(req.baseUrl, type, used);

    const countOnly = ctl.summary === 'count' || ctl.count === 0;
    const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset', link: [{ relation: 'self', url: self }] };
    if (countOnly) bundle.total = await this.count(type, cond, req.policy);
    const entries: BundleEntry[] = [];
    if (!countOnly) {
      const page = await this.fetchPage(type, cond, req.policy, ctl, qHash);
      if (ctl.total !== 'none') {
        // A first page with no next page holds every match: no second query to count them.
        bundle.total = ctl.cursor === undefined && !page.next ? page.docs.length : await this.count(type, cond, req.policy);
      }
      for (const d of page.docs) entries.push(this.entry(req.baseUrl, d.res, 'match', ctl));
      const included = await this.resolveIncludes(page.docs.map((d) => d.res), ctl.includes, req.policy);
      for (const r of included) entries.push(this.entry(req.baseUrl, r, 'include', ctl));
      const withCursor = (state: CursorState) => link(req.baseUrl, type, [...used.filter(([n]) => n !== '_cursor'), ['_cursor', encodeCursor(this.secret, state)]]);
      if (page.next) bundle.link?.push({ relation: 'next', url: withCursor(page.next) });
      if (page.prev) bundle.link?.push({ relation: 'previous', url: withCursor(page.prev) });
    }
    const outcome = outcomeEntry(ignored);
    if (outcome) entries.push(outcome);
    if (entries.length > 0) bundle.entry = entries;
    return bundle;
  }

  /**
   * The main database query a type-level search runs (filter, sort, limit) and the database's
   * plan for it: which index serves it. For benchmarks and operators.
   */
  async explain(req: SearchRequest): Promise<{ filter: Filter<Document>; sort: Sort; limit: number; plan: Document; buckets?: BucketPlan }> {
    const type = req.type;
    if (!type) throw Errors.badRequest('explain needs a resource type', 'MSG_PARAM_INVALID');
    const ignored: Ignored[] = [];
    const { filters, control } = parseQuery(req.params);
    const ctl = this.parseControl(type, control, req.handling, ignored);
    const cond = await this.filterCond(type, filters, req.policy, req.handling, ignored);
    const filter = this.mongoFilter(type, hasElemRange(cond) ? relax(cond, true) : cond, req.policy);
    const sort: Sort = Object.fromEntries([...ctl.sort, { field: '_id', dir: 1 as const }].map((k) => [k.field, k.dir])) as Record<string, 1 | -1>;
    const limit = ctl.count + 1;
    const plan = await this.col(type).find(filter, { sort, limit }).explain('queryPlanner');
    const buckets = this.buckets?.plan(type, cond);
    return { filter, sort, limit, plan, ...(buckets ? { buckets } : {}) };
  }

  private entry(baseUrl: string, res: Resource, mode: 'match' | 'include', ctl: Control): BundleEntry {
    return { fullUrl: `${baseUrl}/${res.resourceType}/${res.id}`, resource: shape(res, ctl.summary, ctl.elements) as FhirResource, search: { mode } };
  }

  /** Keyset paging: count + 1 rows after (or before) the cursor's boundary in the sort order. */
  private async fetchPage(
    type: string,
    cond: Cond,
    policy: AccessPolicy,
    ctl: Control,
    qHash: string,
  ): Promise<{ docs: CurrentDoc[]; next?: CursorState; prev?: CursorState }> {
    const keys: SortKey[] = [...ctl.sort, { field: '_id', dir: 1 }];
    const state = ctl.cursor !== undefined ? decodeCursor(this.secret, ctl.cursor, qHash) : undefined;
    if (state && state.k.length !== keys.length - 1) throw Errors.badRequest('Invalid or expired paging cursor (_cursor)', 'MSG_PARAM_INVALID', ['_cursor']);
    const back = state?.d === 'p';
    const order = keys.map((k) => ({ field: k.field, dir: (back ? -k.dir : k.dir) as 1 | -1 }));
    const projection: Document = { res: 1 };
    for (const k of keys) if (k.field !== '_id') projection[k.field] = 1;
    let docs = (await this.findChecked(type, cond, policy, {
      order,
      after: state ? [...state.k, state.id] : undefined,
      limit: ctl.count + 1,
      projection,
    })) as unknown as CurrentDoc[];
    const more = docs.length > ctl.count;
    docs = docs.slice(0, ctl.count);
    if (back) docs.reverse();
    if (docs.length === 0) return { docs };
    const boundary = (d: CurrentDoc, dir: 'n' | 'p'): CursorState => ({
      k: keys.slice(0, -1).map((k) => sortValue(d, k.field)),
      id: d._id,
      d: dir,
      q: qHash,
    });
    const first = docs[0];
    const last = docs[docs.length - 1];
    const next = back ? boundary(last, 'n') : more ? boundary(last, 'n') : undefined;
    const prev = back ? (more ? boundary(first, 'p') : undefined) : state ? boundary(first, 'p') : undefined;
    return { docs, next, prev };
  }

  /**
   * Finds current documents matching `cond` (and the policy), in keyset order. MongoDB binds
   * `$elemMatch` bounds to one array element; FerretDB 1.24 does not (each bound may hold for a
   * different element), so when a condition has such ranges the database answer is a superset
   * and every row is re-checked with the in-memory evaluator: exact on both, in batches.
   */
  private async findChecked(
    type: string,
    cond: Cond,
    policy: AccessPolicy,
    opts: { order?: SortKey[]; after?: (string | number | boolean | Date | null)[]; limit: number; projection?: Document },
  ): Promise<Document[]> {
    const order = opts.order ?? [{ field: '_id', dir: 1 }];
    const viaBuckets = await this.findViaBuckets(type, cond, policy, order, opts.after, opts.limit);
    if (viaBuckets) return viaBuckets;
    const recheck = hasElemRange(cond);
    const projection = opts.projection && recheck ? { ...opts.projection, idx: 1, comp: 1 } : opts.projection;
    for (const k of order) if (projection && k.field !== '_id') projection[k.field] = 1;
    const sort: Sort = Object.fromEntries(order.map((k) => [k.field, k.dir]));
    const filter = this.mongoFilter(type, recheck ? relax(cond, true) : cond, policy);
    const out: Document[] = [];
    let after = opts.after;
    const batch = recheck ? Math.max(opts.limit, 100) : opts.limit;
    for (;;) {
      const q = after ? { $and: [filter, toMongo(keysetCond(order, after))] } : filter;
      const rows = await this.col(type).find(q, { projection, sort, limit: batch }).toArray();
      for (const r of rows) {
        if (!recheck || evaluate(cond, r)) out.push(r);
        if (out.length >= opts.limit) return out;
      }
      if (!recheck || rows.length < batch) return out;
      const lastRow = rows[rows.length - 1];
      after = [...order.slice(0, -1).map((k) => sortValue(lastRow as unknown as CurrentDoc, k.field)), String(lastRow._id)];
      if (order[order.length - 1].field !== '_id') after = order.map((k) => sortValue(lastRow as unknown as CurrentDoc, k.field));
    }
  }

  /**
   * The bucket path of findChecked (see buckets.ts): candidates from the buckets, read by `_id`,
   * each checked exactly (condition, `deleted`, access policy), ordered and cut in memory.
   * Undefined when the buckets cannot bound the query or the order is not `_id` or `date`.
   */
  private async findViaBuckets(
    type: string,
    cond: Cond,
    policy: AccessPolicy,
    order: SortKey[],
    after: (string | number | boolean | Date | null)[] | undefined,
    limit: number,
  ): Promise<Document[] | undefined> {
    const plan = this.buckets?.plan(type, cond);
    if (!plan) return undefined;
    let mode: 'none' | 'asc' | 'desc';
    if (order.length === 1 && order[0].field === '_id') mode = 'none';
    else if (order.length === 2 && order[0].field === DATE_SORT && order[1].field === '_id') mode = order[0].dir === 1 ? 'asc' : 'desc';
    else return undefined;
    const afterCond = after ? keysetCond(order, after) : undefined;
    const from = mode !== 'none' && after?.[0] instanceof Date ? after[0].getTime() : undefined;
    const found = await this.collectCandidates(type, plan, cond, policy, mode, from, afterCond, limit);
    return found.sort(compareBy(order)).slice(0, limit);
  }

  /**
   * Walks a bucket plan and fetches candidates in the order their entries give, a page's worth
   * at a time, so a first page reads about `limit` documents. A match is certain to be in order
   * (settled) once no unread day and no unfetched entry can come before it; the walk stops when
   * `limit` matches are settled and returns only settled ones (a later page refinds the rest).
   */
  private async collectCandidates(
    type: string,
    plan: BucketPlan,
    cond: Cond,
    policy: AccessPolicy,
    mode: 'none' | 'asc' | 'desc',
    from: number | undefined,
    afterCond: Cond | undefined,
    limit: number,
  ): Promise<CurrentDoc[]> {
    const buckets = this.buckets as BucketIndex;
    const { found, fetch } = this.candidateFetcher(type, cond, policy, afterCond);
    if (mode === 'none') {
      for await (const step of buckets.walk(plan, cond, 'none')) await fetch(step.ids);
      return found;
    }
    const pending: Candidate[] = [];
    let dayBound = mode === 'asc' ? -Infinity : Infinity;
    const settledCount = () => found.filter((d) => inRegion(d, mode, dayBound, pending[0])).length;
    walk: for await (const step of buckets.walk(plan, cond, mode, from)) {
      dayBound = step.bound;
      pending.push(...step.ids);
      pending.sort(candidateOrder(mode));
      for (;;) {
        const need = limit - settledCount();
        if (need <= 0) break walk;
        if (pending.length === 0) break;
        await fetch(pending.splice(0, Math.min(need + 2, 1000)));
      }
    }
    return found.filter((d) => inRegion(d, mode, dayBound, pending[0]));
  }

  /**
   * Fetches candidates by `_id`, each id once, keeping in `found` the current documents that
   * exactly match (and `extra`), are not deleted and may be read.
   */
  private candidateFetcher(type: string, cond: Cond, policy: AccessPolicy, extra?: Cond): { found: CurrentDoc[]; fetch: (cands: Candidate[]) => Promise<void> } {
    const fetched = new Set<string>();
    const found: CurrentDoc[] = [];
    const fetch = async (cands: Candidate[]) => {
      const ids = [...new Set(cands.map((c) => c.i))].filter((id) => !fetched.has(id));
      for (const id of ids) fetched.add(id);
      const docs = (await findByIds(this.col(type) as unknown as Collection<CurrentDoc>, ids)) as CurrentDoc[];
      found.push(...docs.filter((d) => !d.deleted && evaluate(cond, d) && (!extra || evaluate(extra, d)) && policy.canRead(d.res, d.comp)));
    };
    return { found, fetch };
  }

  /** Number of matches (exact, see findChecked). */
  private async count(type: string, cond: Cond, policy: AccessPolicy): Promise<number> {
    const plan = this.buckets?.plan(type, cond);
    if (plan) return (await this.collectCandidates(type, plan, cond, policy, 'none', undefined, undefined, Infinity)).length;
    if (!hasElemRange(cond)) return this.col(type).countDocuments(this.mongoFilter(type, cond, policy));
    let n = 0;
    for await (const r of this.col(type).find(this.mongoFilter(type, relax(cond, true), policy), { projection: { idx: 1, comp: 1 } })) {
      if (evaluate(cond, r)) n++;
    }
    return n;
  }

  /** `_include` / `_revinclude` (with `:iterate`, depth-capped), batched per type. */
  private async resolveIncludes(matches: Resource[], specs: IncludeSpec[], policy: AccessPolicy): Promise<Resource[]> {
    if (specs.length === 0 || matches.length === 0) return [];
    const seen = new Set(matches.map((r) => `${r.resourceType}/${r.id}`));
    const out: Resource[] = [];
    let current = matches;
    for (let depth = 0; depth < MAX_ITERATE_DEPTH && current.length > 0 && out.length < MAX_INCLUDES; depth++) {
      const active = specs.filter((s) => depth === 0 || s.iterate);
      if (active.length === 0) break;
      const found: Resource[] = [];
      // Forward includes: collect local references per target type.
      const wanted = new Map<string, Set<string>>();
      for (const s of active.filter((x) => !x.rev)) {
        for (const r of current) {
          if (s.source !== '*' && r.resourceType !== s.source) continue;
          const params = this.registry.byType.get(r.resourceType);
          const ps = s.param === '*' ? [...(params?.values() ?? [])].filter((p) => p.type === 'reference' && !p.unsupported) : [params?.get(s.param)];
          for (const p of ps) {
            if (!p?.evaluate) continue;
            for (const ref of referenceParts(p.evaluate(r), this.ctx).refs) {
              const [t, id] = ref.split('/');
              if (!id || ref.split('/').length !== 2 || !this.registry.byType.has(t) || (s.target && s.target !== t)) continue;
              if (!wanted.has(t)) wanted.set(t, new Set());
              wanted.get(t)?.add(id);
            }
          }
        }
      }
      for (const [t, ids] of wanted) {
        if (!this.canRead(policy, t)) continue;
        const todo = [...ids].filter((id) => !seen.has(`${t}/${id}`));
        if (todo.length === 0) continue;
        found.push(...(await this.byIds(t, todo.slice(0, MAX_INCLUDES), policy)));
      }
      // Reverse includes: resources of the source type whose reference points at a current one.
      for (const s of active.filter((x) => x.rev)) {
        if (!this.canRead(policy, s.source)) continue;
        const refs = current
          .filter((r) => !s.target || r.resourceType === s.target)
          .map((r) => `${r.resourceType}/${r.id}`);
        if (refs.length === 0) continue;
        const docs = await this.col(s.source)
          .find(this.mongoFilter(s.source, { k: 'in', f: `idx.${s.param}`, v: refs }, policy), { projection: { res: 1 } })
          .limit(MAX_INCLUDES)
          .toArray();
        found.push(...docs.map((d) => d.res as Resource));
      }
      const fresh: Resource[] = [];
      for (const r of found) {
        const key = `${r.resourceType}/${r.id}`;
        if (seen.has(key)) continue;
        seen.add(key);
        fresh.push(r);
      }
      out.push(...fresh);
      current = fresh;
    }
    return out.slice(0, MAX_INCLUDES);
  }

  /** Current, readable resources of a type by id. */
  private async byIds(type: string, ids: string[], policy: AccessPolicy): Promise<Resource[]> {
    if (!this.pointReads || ids.length > 50) {
      const docs = await this.findChecked(type, { k: 'in', f: '_id', v: ids }, policy, { limit: ids.length, projection: { res: 1 } });
      return docs.map((d) => d.res as Resource);
    }
    const docs = await Promise.all(ids.map((id) => this.col(type).findOne(toMongo({ k: 'eq', f: '_id', v: id }))));
    // The same checks the filter would make: current, and readable (the policy's in-memory twin).
    return docs
      .filter((d): d is NonNullable<typeof d> => Boolean(d) && d?.deleted === false && policy.canRead(d?.res as Resource, (d?.comp as string[]) ?? []))
      .map((d) => d.res as Resource);
  }

  /** System-level search: common parameters over several types, ordered by type then id. */
  private async systemSearch(req: SearchRequest): Promise<Bundle> {
    const ignored: Ignored[] = [];
    const { filters, control } = parseQuery(req.params);
    const ctl = this.parseControl(undefined, control, req.handling, ignored);
    const types = ctl.types ?? this.supportedTypes;
    for (const t of types) {
      if (!this.registry.byType.has(t)) throw Errors.badRequest(`_type names an unsupported resource type "${t}"`, 'MSG_PARAM_INVALID', ['_type']);
    }
    const readable = types.filter((t) => this.canRead(req.policy, t));
    // Only parameters every type knows are usable across types.
    const common = filters.filter((fp) => {
      const ok = readable.every((t) => this.registry.byType.get(t)?.has(fp.code)) && !fp.has && fp.chain === undefined;
      if (!ok) reject(fp.name, 'is not a parameter of every type searched', req.handling, ignored);
      return ok;
    });
    const used = usedPairs(req.params, ignored);
    const qHash = hashQuery('*', used);
    const state = ctl.cursor !== undefined ? decodeCursor(this.secret, ctl.cursor, qHash) : undefined;
    const countOnly = ctl.summary === 'count' || ctl.count === 0;
    const conds = new Map<string, Cond>();
    for (const t of readable) conds.set(t, await this.filterCond(t, common, req.policy, req.handling, []));
    const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset', link: [{ relation: 'self', url: link(req.baseUrl, undefined, used) }] };
    if (countOnly || ctl.total !== 'none') {
      let total = 0;
      for (const t of readable) total += await this.count(t, conds.get(t) ?? FALSE, req.policy);
      bundle.total = total;
    }
    const entries: BundleEntry[] = [];
    if (!countOnly) {
      const rows: Resource[] = [];
      let more = false;
      let lastType = 0;
      const startType = state ? (state.t ?? 0) : 0;
      for (let i = startType; i < readable.length && !more; i++) {
        const t = readable[i];
        const docs = await this.findChecked(t, conds.get(t) ?? FALSE, req.policy, {
          after: state && i === startType ? [state.id] : undefined,
          limit: ctl.count - rows.length + 1,
          projection: { res: 1 },
        });
        for (const d of docs) {
          if (rows.length === ctl.count) {
            more = true;
            break;
          }
          rows.push(d.res as Resource);
          lastType = i;
        }
      }
      for (const r of rows) entries.push(this.entry(req.baseUrl, r, 'match', ctl));
      if (more && rows.length > 0) {
        const last = rows[rows.length - 1];
        const cur = encodeCursor(this.secret, { k: [], id: last.id ?? '', d: 'n', q: qHash, t: lastType });
        bundle.link?.push({ relation: 'next', url: link(req.baseUrl, undefined, [...used, ['_cursor', cur]]) });
      }
    }
    const outcome = outcomeEntry(ignored);
    if (outcome) entries.push(outcome);
    if (entries.length > 0) bundle.entry = entries;
    return bundle;
  }

  /** Observation/$lastn: per code (and subject), the newest `max` observations. */
  async lastn(req: SearchRequest): Promise<Bundle> {
    const type = req.type ?? 'Observation';
    if (type !== 'Observation') throw Errors.badRequest('$lastn is defined on Observation only', 'MSG_OP_NOT_ALLOWED');
    let max = 1;
    const rest: [string, string][] = [];
    for (const [n, v] of req.params) {
      if (n === 'max') {
        if (!/^[1-9]\d{0,3}$/.test(v)) throw Errors.badRequest(`Invalid max "${v}" (a positive integer)`, 'MSG_PARAM_INVALID', ['max']);
        max = Number(v);
      } else rest.push([n, v]);
    }
    const ignored: Ignored[] = [];
    const { filters, control } = parseQuery(rest);
    const ctl = this.parseControl(type, control.filter(([n]) => ['_summary', '_elements', '_format', '_pretty'].includes(n.split(':')[0])), req.handling, ignored);
    for (const [n] of control) if (!['_summary', '_elements', '_format', '_pretty'].includes(n.split(':')[0])) reject(n, 'is not supported by $lastn', req.handling, ignored);
    const cond = await this.filterCond(type, filters, req.policy, req.handling, ignored);
    const filter = this.mongoFilter(type, relax(cond, true), req.policy);
    const col = this.col(type);
    const entries: BundleEntry[] = [];
    const recheck = hasElemRange(cond);
    const plan = this.buckets?.plan(type, cond);
    if (plan?.patients) {
      for (const d of await this.lastnViaBuckets(plan, cond, req.policy, max)) entries.push(this.entry(req.baseUrl, d.res, 'match', ctl));
    } else if (this.pointReads || recheck) {
      // One pass, newest first, grouped in memory: on FerretDB every query is a full scan, so
      // one scan beats a distinct plus a query per code.
      const taken = new Map<string, number>();
      const projection = recheck ? { res: 1, idx: 1, comp: 1 } : { res: 1, 'idx.subject': 1, 'idx.code:s': 1 };
      for await (const d of col.find(filter, { projection, sort: { 'idx.date.l': -1, _id: 1 } })) {
        if (recheck && !evaluate(cond, d)) continue;
        const idx = (d.idx ?? {}) as Idx;
        const key = `${String(idx.subject ?? '')} ${String(idx['code:s'] ?? '')}`;
        const n = taken.get(key) ?? 0;
        if (n >= max) continue;
        taken.set(key, n + 1);
        entries.push(this.entry(req.baseUrl, d.res as Resource, 'match', ctl));
      }
    } else {
      // MongoDB: per subject and code, the newest `max` from the lastn_subject_code_date index.
      const subjects = (await col.distinct('idx.subject', filter)) as unknown[];
      const subjectKeys: (string | null)[] = subjects.filter((x): x is string => typeof x === 'string');
      if (subjectKeys.length === 0 || (await col.countDocuments({ $and: [filter, { 'idx.subject': { $exists: false } }] }, { limit: 1 })) > 0) subjectKeys.push(null);
      for (const subj of subjectKeys) {
        const sf: Filter<Document> = { $and: [filter, subj === null ? { 'idx.subject': { $exists: false } } : { 'idx.subject': subj }] };
        const codes = ((await col.distinct('idx.code:s', sf)) as unknown[]).filter((c): c is string => typeof c === 'string');
        for (const c of codes) {
          const docs = await col.find({ $and: [sf, { 'idx.code:s': c }] }, { projection: { res: 1 }, sort: { 'idx.date.l': -1, _id: 1 }, limit: max }).toArray();
          for (const d of docs) entries.push(this.entry(req.baseUrl, d.res as Resource, 'match', ctl));
        }
      }
    }
    const outcome = outcomeEntry(ignored);
    if (outcome) entries.push(outcome);
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'searchset',
      total: entries.filter((e) => e.search?.mode === 'match').length,
      link: [{ relation: 'self', url: `${req.baseUrl}/Observation/$lastn${used(req.params, ignored)}` }],
    };
    if (entries.length > 0) bundle.entry = entries;
    return bundle;
  }

  /**
   * $lastn from a patient's buckets: walks the days newest first and fetches, per code, the
   * newest entries until `max` matches of that code are settled (see collectCandidates). With
   * one subject pinned it stops once every code still present in unread days is settled;
   * otherwise it reads every candidate.
   */
  private async lastnViaBuckets(plan: BucketPlan, cond: Cond, policy: AccessPolicy, max: number): Promise<CurrentDoc[]> {
    const buckets = this.buckets as BucketIndex;
    const { found, fetch } = this.candidateFetcher('Observation', cond, policy);
    const codeOf = (d: CurrentDoc) => (typeof d.idx['code:s'] === 'string' ? (d.idx['code:s'] as string) : '');
    const pending = new Map<string, Candidate[]>();
    let dayBound = Infinity;
    const settledPerCode = () => {
      const n = new Map<string, number>();
      for (const d of found) if (inRegion(d, 'desc', dayBound, pending.get(codeOf(d))?.[0])) n.set(codeOf(d), (n.get(codeOf(d)) ?? 0) + 1);
      return n;
    };
    for await (const step of buckets.walk(plan, cond, 'desc')) {
      dayBound = step.bound;
      if (!plan.subjectPinned) {
        await fetch(step.ids);
        continue;
      }
      for (const c of step.ids) pending.set(c.c, [...(pending.get(c.c) ?? []), c]);
      for (const list of pending.values()) list.sort(candidateOrder('desc'));
      for (;;) {
        const settled = settledPerCode();
        const chunk: Candidate[] = [];
        for (const [code, list] of pending) {
          const short = max - (settled.get(code) ?? 0);
          if (short > 0 && list.length > 0) chunk.push(...list.splice(0, short + 1));
        }
        if (chunk.length === 0) break;
        await fetch(chunk);
      }
      const settled = settledPerCode();
      if ([...step.codesLeft].every((c) => (settled.get(c) ?? 0) >= max)) break;
    }
    found.sort(compareBy([{ field: DATE_SORT, dir: -1 }, { field: '_id', dir: 1 }]));
    const taken = new Map<string, number>();
    return found.filter((d) => {
      const key = `${String(d.idx.subject ?? '')} ${codeOf(d)}`;
      const n = taken.get(key) ?? 0;
      taken.set(key, n + 1);
      return n < max;
    });
  }

  // ---------------------------------------------------------------- metadata, indexes

  /** For /metadata: the search parameters of a type. */
  capabilitySearchParams(type: string): CapabilityStatementRestResourceSearchParam[] {
    return [...this.paramsOf(type).values()]
      .filter((p) => !p.unsupported)
      .map((p) => ({ name: p.code, definition: p.url, type: p.type, ...(p.description ? { documentation: p.description } : {}) }));
  }

  /**
   * Creates the MongoDB indexes for every served type (idempotent). Not on FerretDB 1.24: it
   * never uses secondary indexes for reads (only a bare `_id` filter is pushed down), while
   * maintaining them made single inserts 20-35 % slower in our measurement.
   */
  async ensureIndexes(): Promise<void> {
    if (this.pointReads) return;
    for (const type of this.supportedTypes) {
      const col = this.col(type);
      const params = this.paramsOf(type);
      const specs: { key: Record<string, 1 | -1>; name: string }[] = [{ key: { comp: 1 }, name: 'comp' }];
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
      for (const s of specs) {
        try {
          await col.createIndex(s.key, { name: s.name });
        } catch (e) {
          // An index of the same name with another definition: replace it.
          if ((e as { code?: number }).code === 85 || (e as { code?: number }).code === 86) {
            await col.dropIndex(s.name);
            await col.createIndex(s.key, { name: s.name });
          } else throw e;
        }
      }
    }
  }

  /** Re-indexes stored resources of every type whose definitions changed since the last run. */
  async reindexIfNeeded(progress: (msg: string) => void = () => {}): Promise<void> {
    const meta = this.db.collection<MetaDoc>(META);
    for (const type of this.supportedTypes) {
      const hash = this.registry.hashes.get(type) ?? this.registry.hash;
      const cur = await meta.findOne({ _id: HASH_KEY(type) });
      if (cur?.value === hash) continue;
      const col = this.col(type);
      const total = await col.countDocuments({ deleted: false });
      if (total > 0) progress(`re-indexing ${total} ${type} resources (search definitions changed)`);
      // One pass for the ids, then point reads and writes: on FerretDB any other filter scans
      // the collection, which would make a batched walk quadratic.
      const ids = (await col.find({ deleted: false }, { projection: { _id: 1 } }).toArray()).map((d) => String(d._id));
      let done = 0;
      for (let i = 0; i < ids.length; i += 200) {
        const batch = await findByIds(col as unknown as Collection<CurrentDoc>, ids.slice(i, i + 200), { projection: { res: 1, vid: 1, deleted: 1 } });
        await Promise.all(
          batch
            .filter((d) => !d.deleted)
            .map((d) => {
              const { idx, comp } = this.index(d.res);
              // A concurrent write of a newer version indexes itself; only this version is updated
              // (FerretDB: a bare _id filter, since this runs before serving and nothing else writes).
              return (col as unknown as Collection<CurrentDoc>).updateOne(this.pointReads ? { _id: d._id } : { _id: d._id, vid: d.vid }, { $set: { idx, comp } });
            }),
        );
        done += batch.length;
        if (done % 5000 < 200 || i + 200 >= ids.length) progress(`re-indexed ${done}/${total} ${type}`);
      }
      await meta.updateOne({ _id: HASH_KEY(type) }, { $set: { value: hash } }, { upsert: true });
    }
    await this.rebuildBucketsIfNeeded(progress);
  }

  /**
   * Fills the candidate buckets from the stored Observations when they were never built or were
   * built with other definitions or another layout (one streaming pass; before serving).
   */
  private async rebuildBucketsIfNeeded(progress: (msg: string) => void): Promise<void> {
    if (!this.buckets || !this.supportedTypes.includes('Observation')) return;
    const meta = this.db.collection<MetaDoc>(META);
    const want = `${BUCKET_LAYOUT}:${this.registry.hashes.get('Observation') ?? this.registry.hash}`;
    if ((await meta.findOne({ _id: BUCKETS_KEY }))?.value === want) return;
    await this.buckets.clear();
    const col = this.col('Observation');
    const total = await col.countDocuments({ deleted: false });
    if (total > 0) progress(`building search buckets for ${total} Observations`);
    let batch: BucketSource[] = [];
    let done = 0;
    for await (const d of col.find({ deleted: false }, { projection: { idx: 1, comp: 1 }, batchSize: 1000 })) {
      batch.push(d as unknown as BucketSource);
      if (batch.length === 1000) {
        await this.buckets.record('Observation', batch);
        done += batch.length;
        batch = [];
        progress(`search buckets: ${done}/${total}`);
      }
    }
    await this.buckets.record('Observation', batch);
    await meta.updateOne({ _id: BUCKETS_KEY }, { $set: { value: want } }, { upsert: true });
  }
}

/** Parameters with a single-field index of their own (the others are filtered after the indexed ones). */
const INDEXED_PARAMS = ['identifier', 'code', 'subject', 'patient', 'status', 'category', 'device', 'family', 'given', 'birthdate', 'date', '_lastUpdated', 'url', 'type'];

async function isFerretDb(db: Db): Promise<boolean> {
  try {
    const info = await db.admin().command({ buildInfo: 1 });
    return 'ferretdbVersion' in info;
  } catch {
    return false;
  }
}

async function loadSecret(db: Db): Promise<string> {
  const meta = db.collection<MetaDoc>(META);
  const found = await meta.findOne({ _id: SECRET_KEY });
  if (found) return found.value;
  try {
    await meta.insertOne({ _id: SECRET_KEY, value: randomBytes(32).toString('base64url') });
  } catch {
    // Another instance created it first; use theirs.
  }
  const doc = await meta.findOne({ _id: SECRET_KEY });
  if (!doc) throw new Error('could not store the paging cursor secret');
  return doc.value;
}

function tooCostly(name: string): FhirError {
  return new FhirError(400, 'too-costly', 'MSG_TOO_COSTLY', `Search parameter "${name}" matches more than ${MAX_CHAIN_IDS} resources; narrow it down`);
}

/** The pairs the search actually used, in the client's order (for the self link). */
function usedPairs(params: [string, string][], ignored: Ignored[]): [string, string][] {
  const skip = new Set(ignored.map((i) => i.name));
  return params.filter(([n, v]) => !skip.has(n) && !skip.has(`${n}=${v}`) && !['_format', '_pretty'].includes(n) && !(n === '_sort' && skip.has(`_sort=${v}`)));
}

function used(params: [string, string][], ignored: Ignored[]): string {
  const q = new URLSearchParams(usedPairs(params, ignored)).toString();
  return q ? `?${q}` : '';
}

function hashQuery(type: string, pairs: [string, string][]): string {
  return createHash('sha256')
    .update(type)
    .update(JSON.stringify(pairs.filter(([n]) => n !== '_cursor')))
    .digest('base64url')
    .slice(0, 16);
}

function link(baseUrl: string, type: string | undefined, pairs: [string, string][]): string {
  const q = new URLSearchParams(pairs).toString();
  return `${baseUrl}${type ? `/${type}` : ''}${q ? `?${q}` : ''}`;
}

function outcomeEntry(ignored: Ignored[]): BundleEntry | undefined {
  if (ignored.length === 0) return undefined;
  const oo: OperationOutcome = {
    resourceType: 'OperationOutcome',
    issue: ignored.map((i) => ({
      severity: 'warning',
      code: 'not-supported',
      details: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/operation-outcome', code: 'MSG_PARAM_UNKNOWN' }] },
      diagnostics: `Search parameter "${i.name}" ${i.reason}; it was ignored`,
    })),
  };
  return { resource: oo, search: { mode: 'outcome' } };
}

function sortValue(doc: CurrentDoc, field: string): string | number | boolean | Date | null {
  let cur: unknown = doc;
  for (const seg of field.split('.')) {
    if (cur === null || typeof cur !== 'object' || cur instanceof Date) return null;
    cur = (cur as Record<string, unknown>)[seg];
  }
  if (cur === undefined || cur === null) return null;
  if (typeof cur === 'string' || typeof cur === 'number' || typeof cur === 'boolean' || cur instanceof Date) return cur;
  return null;
}

/** The sort field of Observation `date` (single-valued: its low bound). */
const DATE_SORT = 'idx.date.l';

function dateMs(d: CurrentDoc): number {
  const v = sortValue(d, DATE_SORT);
  return v instanceof Date ? v.getTime() : -Infinity;
}

/**
 * Whether a match lies in the part of the date order a bucket walk has completed: within the
 * days read (`dayBound`) and strictly before the next unfetched entry, whose document may tie.
 */
function inRegion(d: CurrentDoc, mode: 'asc' | 'desc', dayBound: number, next?: Candidate): boolean {
  const x = dateMs(d);
  if (mode === 'desc') return x >= dayBound && (!next || x > next.l);
  return x <= dayBound && (!next || x < next.l);
}

/** Candidates in walk order: by their entry's date, then id. */
function candidateOrder(mode: 'asc' | 'desc'): (a: Candidate, b: Candidate) => number {
  const num = (x: number, y: number) => (x === y ? 0 : x < y ? -1 : 1);
  return (a, b) => (mode === 'desc' ? num(b.l, a.l) : num(a.l, b.l)) || (a.i < b.i ? -1 : a.i > b.i ? 1 : 0);
}

/** MongoDB's order for the keys findViaBuckets allows (`_id` strings, dates with missing lowest). */
function compareBy(order: SortKey[]): (a: CurrentDoc, b: CurrentDoc) => number {
  return (a, b) => {
    for (const k of order) {
      const c = k.field === '_id' ? (a._id < b._id ? -1 : a._id > b._id ? 1 : 0) : dateMs(a) - dateMs(b);
      if (c !== 0 && !Number.isNaN(c)) return c * k.dir;
    }
    return 0;
  };
}

/** Whether a condition has `$elemMatch` ranges (which FerretDB evaluates loosely). */
export function hasElemRange(c: Cond): boolean {
  if (c.k === 'range') return c.elem;
  if (c.k === 'and' || c.k === 'or' || c.k === 'nor') return c.c.some(hasElemRange);
  return false;
}

/**
 * A condition the database may over-approximate safely: `$elemMatch` ranges stay where they only
 * widen the result and become FALSE under a negation (so the negation widens too). The exact
 * condition is then checked in memory.
 */
export function relax(c: Cond, positive: boolean): Cond {
  switch (c.k) {
    case 'range':
      return c.elem && !positive ? FALSE : c;
    case 'and':
      return and(c.c.map((x) => relax(x, positive)));
    case 'or':
      return or(c.c.map((x) => relax(x, positive)));
    case 'nor':
      return { k: 'nor', c: c.c.map((x) => relax(x, !positive)) };
    default:
      return c;
  }
}

/** Rows strictly after the boundary in the given order (missing values sort first ascending, last descending). */
export function keysetCond(order: SortKey[], values: (string | number | boolean | Date | null)[]): Cond {
  const alts: Cond[] = [];
  for (let i = 0; i < order.length; i++) {
    const eqs: Cond[] = order.slice(0, i).map((k, j) => ({ k: 'eq', f: k.field, v: values[j] }));
    const { field, dir } = order[i];
    const v = values[i];
    let after: Cond;
    if (dir === 1) after = v === null ? not({ k: 'eq', f: field, v: null }) : { k: 'range', f: field, elem: false, b: { gt: v } };
    else after = v === null ? FALSE : or([{ k: 'range', f: field, elem: false, b: { lt: v } }, { k: 'eq', f: field, v: null }]);
    alts.push(and([...eqs, after]));
  }
  return or(alts);
}
