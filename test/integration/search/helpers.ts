import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { Bundle, OperationOutcome, Resource } from 'fhir/r4';
import { type Db, MongoClient } from 'mongodb';
import { allowAllPolicy, type AccessPolicy } from '../../../src/auth/types';
import { type Config, loadConfig } from '../../../src/config';
import { FhirError } from '../../../src/errors';
import { SearchService } from '../../../src/search';

export const BASE = 'http://localhost:8080/fhir';

export interface SearchFixture {
  db: Db;
  service: SearchService;
  config: Config;
  /** Stores resources as current documents, indexed by the service (the store's write path in miniature). */
  put(...resources: Resource[]): Promise<void>;
  /** Runs a search (query string without `?`) and returns the Bundle. */
  search(type: string | undefined, query: string, opts?: { handling?: 'strict' | 'lenient'; policy?: AccessPolicy }): Promise<Bundle>;
  /** Ids of the `match` entries of a search. */
  ids(type: string | undefined, query: string): Promise<string[]>;
  /** The FhirError a search throws. */
  error(type: string | undefined, query: string, handling?: 'strict' | 'lenient'): Promise<FhirError>;
  close(): Promise<void>;
}

export async function createSearchFixture(name: string, env: Record<string, string> = {}): Promise<SearchFixture> {
  const uri = process.env.VIGIL_TEST_MONGODB_URI;
  if (!uri) throw new Error('VIGIL_TEST_MONGODB_URI is not set (run through jest)');
  const client = await MongoClient.connect(uri);
  const db = client.db(`vigil_test_${name}_${randomBytes(4).toString('hex')}`);
  const config = loadConfig({ BASE_URL: BASE, AUTH_ENABLED: 'false', SEARCH_DEFAULT_COUNT: '50', SEARCH_MAX_COUNT: '500', ...env });
  const service = await SearchService.create({ db, config, types: ['Patient', 'Device', 'Observation', 'Basic'] });
  await service.ensureIndexes();
  let seq = 0;
  const fixture: SearchFixture = {
    db,
    service,
    config,
    async put(...resources) {
      for (const r of resources) {
        seq++;
        const res = { ...r, meta: { ...(r.meta ?? {}), versionId: '1', lastUpdated: r.meta?.lastUpdated ?? new Date(Date.UTC(2024, 0, 1, 0, 0, seq)).toISOString() } } as Resource;
        const { idx, comp } = service.index(res);
        await service.recordCandidates(res.resourceType, [{ _id: res.id ?? '', idx, comp, vid: 1, ts: new Date(res.meta?.lastUpdated ?? 0) }]);
        await db.collection(res.resourceType).replaceOne(
          { _id: res.id as never },
          { res, vid: 1, ts: new Date(res.meta?.lastUpdated ?? 0), deleted: false, idx, comp },
          { upsert: true },
        );
      }
    },
    search(type, query, opts = {}) {
      return service.search({
        type,
        params: [...new URLSearchParams(query).entries()],
        policy: opts.policy ?? allowAllPolicy,
        baseUrl: BASE,
        handling: opts.handling ?? 'lenient',
      });
    },
    async ids(type, query) {
      const b = await fixture.search(type, query, { handling: 'strict' });
      return (b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource?.id ?? '').sort();
    },
    async error(type, query, handling = 'strict') {
      try {
        await fixture.search(type, query, { handling });
      } catch (e) {
        if (e instanceof FhirError) return e;
        throw e;
      }
      throw new Error(`expected ${query} to fail`);
    },
    async close() {
      await db.dropDatabase().catch(() => undefined);
      await client.close();
    },
  };
  return fixture;
}

const EXAMPLES = path.resolve(__dirname, '..', '..', '..', 'node_modules', 'hl7.fhir.r4.examples');

/** The official R4 examples of the given types. */
export function officialExamples(types: string[]): Resource[] {
  return readdirSync(EXAMPLES)
    .filter((f) => types.some((t) => f.startsWith(`${t}-`)) && f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(path.join(EXAMPLES, f), 'utf8')) as Resource)
    .filter((r) => types.includes(r.resourceType));
}

export function outcomeOf(b: Bundle): OperationOutcome | undefined {
  return b.entry?.find((e) => e.search?.mode === 'outcome')?.resource as OperationOutcome | undefined;
}
