import { randomBytes, randomUUID } from 'node:crypto';
import type { Resource } from 'fhir/r4';
import { MongoClient, type Db } from 'mongodb';
import pino from 'pino';
import { allowAllPolicy, anonymousPrincipal, type Principal } from '../../../src/auth/types';
import { loadConfig, type Config } from '../../../src/config';
import type { CurrentDoc, HistoryDoc } from '../../../src/storage/types';
import { SearchService } from '../../../src/search/service';
import { Errors } from '../../../src/errors';
import { createStorage, type Storage } from '../../../src/storage';
import { SubscriptionService, type CommittedEvent, type SubscriptionOptions } from '../../../src/subscriptions';

/**
 * Drives the subscription service directly against a real database: versions are written the
 * way the store writes them (history = commit point, then the current document) and handed to
 * onCommitted as the outbox would, so tests control re-offers, races and several instances.
 */
export class Harness {
  readonly services: SubscriptionService[] = [];
  private client!: MongoClient;
  db!: Db;
  search!: SearchService;
  storage!: Storage;
  config!: Config;
  private ids = 0;

  async open(name: string): Promise<this> {
    this.client = await MongoClient.connect(process.env.VIGIL_TEST_MONGODB_URI!);
    this.db = this.client.db(`vigil_test_${name}_${randomBytes(4).toString('hex')}`);
    this.config = loadConfig({ BASE_URL: 'http://127.0.0.1:1/fhir', AUTH_ENABLED: 'false', CURSOR_SECRET: 'harness-cursor-secret-0123456789', LOG_LEVEL: 'silent' });
    this.storage = await createStorage({ db: this.db, logger: pino({ level: 'silent' }), index: (r) => this.search.index(r) });
    this.search = await SearchService.create({ db: this.db, config: this.config, executor: this.storage.executor });
    return this;
  }

  /** A new service instance on the same database (as another server process would have). */
  async instance(options: Partial<SubscriptionOptions> = {}): Promise<SubscriptionService> {
    const svc: SubscriptionService = await SubscriptionService.create({
      db: this.db,
      repository: this.storage.repository,
      executor: this.storage.executor,
      config: this.config,
      logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
      criteria: this.search,
      policyFor: () => allowAllPolicy,
      // System-level writes (status changes): conditional on the version read, no client checks, then the outbox.
      writeResource: async (r, ifMatch) => {
        const cur = await this.db.collection<CurrentDoc>(r.resourceType).findOne({ _id: r.id! });
        if (cur?.vid !== ifMatch) throw Errors.preconditionFailed(`If-Match W/"${ifMatch}" does not match`, 'MSG_VERSION_AWARE_CONFLICT');
        const ev = await this.commit(r, 'PUT');
        await svc.onCommitted([ev]);
        return ev.resource!;
      },
      options: { pollMs: 30, backoffBaseMs: 30, backoffMaxMs: 120, ...options },
    });
    this.services.push(svc);
    return svc;
  }

  async current(type: string, id: string): Promise<Resource | undefined> {
    const d = await this.db.collection<CurrentDoc>(type).findOne({ _id: id, deleted: false });
    return d?.res;
  }

  /** Writes a version: history first (the commit point), then the current document. */
  async commit(resource: Resource, method: 'POST' | 'PUT' | 'DELETE' = 'POST'): Promise<CommittedEvent> {
    const type = resource.resourceType;
    const id = resource.id ?? `${type.toLowerCase()}-${++this.ids}-${randomUUID().slice(0, 8)}`;
    const cur = await this.db.collection<CurrentDoc>(type).findOne({ _id: id });
    const vid = (cur?.vid ?? 0) + 1;
    const ts = new Date();
    const res = { ...resource, id, meta: { ...(resource.meta ?? {}), versionId: String(vid), lastUpdated: ts.toISOString() } } as Resource;
    const { idx, comp } = method === 'DELETE' ? { idx: {}, comp: cur?.comp ?? [] } : this.search.index(res);
    const h: HistoryDoc = { _id: `${type}/${id}/${vid}`, type, id, vid, ts, deleted: method === 'DELETE', method, comp, ...(method === 'DELETE' ? {} : { res }) };
    await this.db.collection<HistoryDoc>('history').insertOne(h);
    await this.db.collection<CurrentDoc>(type).replaceOne(
      { _id: id },
      { res: method === 'DELETE' ? (cur?.res as Resource) : res, vid, ts, deleted: method === 'DELETE', idx, comp },
      { upsert: true },
    );
    const db = this.db;
    return {
      historyId: h._id,
      type,
      id,
      vid,
      ts,
      method,
      resource: h.res,
      async previous() {
        return vid > 1 ? ((await db.collection<HistoryDoc>('history').findOne({ _id: `${type}/${id}/${vid - 1}` }))?.res ?? undefined) : undefined;
      },
    };
  }

  /** Create or update through beforeWrite (as the store does), then commit; returns the event (not yet offered). */
  async write(svc: SubscriptionService, resource: Resource, principal: Principal = anonymousPrincipal): Promise<CommittedEvent> {
    const prev = resource.id ? await this.current(resource.resourceType, resource.id) : undefined;
    const out = await svc.beforeWrite({ principal, method: prev ? 'PUT' : 'POST' }, resource, prev);
    return this.commit(out, prev ? 'PUT' : 'POST');
  }

  async close(): Promise<void> {
    for (const s of this.services) await s.stop();
    await this.db.dropDatabase().catch(() => undefined);
    await this.client.close();
  }
}
