import type { Db, Document, Filter } from 'mongodb';
import { Bodies, mayBeLean } from './bodies';
import { Collections } from './collections';
import type { CommittedEvent } from './outbox';
import type { PageQuery, QueryExecutor } from './query';
import type { CurrentDoc } from './types';

/**
 * The query face with big resources read back: every document an executor returns goes through
 * `Bodies.load` (a projection that asks for `res` is given `body` too). The executors filter and
 * check policies on the stored (lean) form; only what they return is completed.
 */
export function withBodies(inner: QueryExecutor, bodies: Bodies): QueryExecutor {
  const fieldsOf = (q: PageQuery): PageQuery => (q.fields?.includes('res') ? { ...q, fields: [...q.fields, 'body'] } : q);
  return {
    engine: inner.engine,
    page: async (q) => bodies.load(await inner.page(fieldsOf(q))),
    searchPage: async (q, resume) => {
      const p = await inner.searchPage(fieldsOf(q), resume);
      await bodies.load(p.docs);
      return p;
    },
    historyIds: (q) => inner.historyIds(q),
    recordTrail: (v) => inner.recordTrail(v),
    count: (q) => inner.count(q),
    byIds: async (type, ids, policy) => bodies.load(await inner.byIds(type, ids, policy)),
    lastn: async (q) => bodies.load(await inner.lastn(q)),
    explain: (q) => inner.explain(q),
    ensureIndexes: (specs) => inner.ensureIndexes(specs),
    maintain: (m) => inner.maintain(m),
    staged: () => inner.staged(),
    atCommitPoint: (v) => inner.atCommitPoint(v),
    onHandedOn: (events) => inner.onHandedOn(events),
    onCommitted: (events) => inner.onCommitted(events),
    record: (type, docs, concurrency) => inner.record(type, docs, concurrency),
    eraseStaged: (type, docs, ids, patients) => inner.eraseStaged(type, docs, ids, patients),
    applyErase: (plan) => inner.applyErase(plan),
  };
}

/**
 * The first outbox consumer: events of big versions carry their full resource before any other
 * consumer sees them (the outbox reads history documents, whose `res` is lean for those). A cut
 * string (bodies.ts `mayBeLean`) is the cheap sign; only then is the history document read.
 */
export function eventBodies(cols: Collections, bodies: Bodies): (events: CommittedEvent[]) => Promise<void> {
  return async (events) => {
    const lean = events.filter((e) => e.resource && mayBeLean(e.resource));
    if (lean.length === 0) return;
    const docs = await Promise.all(lean.map((e) => cols.history.findOne({ _id: e.historyId })));
    await bodies.load(docs);
    lean.forEach((e, i) => {
      const h = docs[i];
      if (h?.body && h.res) e.resource = h.res;
    });
  };
}

/**
 * Current documents of one type, streamed with their resources complete (bulk export): one
 * cursor for the filter (a batch at a time), the bodies of big ones by point reads per batch.
 */
export async function* streamCurrent(db: Db, type: string, filter: Filter<Document>, batchSize = 200): AsyncGenerator<CurrentDoc> {
  const cols = new Collections(db);
  const bodies = new Bodies(cols.bodies);
  const cursor = cols.current(type).find(filter as Filter<CurrentDoc>, { projection: { res: 1, comp: 1, deleted: 1, body: 1, dec: 1 }, batchSize });
  try {
    let batch: CurrentDoc[] = [];
    for await (const doc of cursor) {
      batch.push(doc);
      if (batch.length < batchSize) continue;
      yield* await bodies.load(batch);
      batch = [];
    }
    yield* await bodies.load(batch);
  } finally {
    await cursor.close();
  }
}
