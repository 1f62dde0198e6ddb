import { BUCKET_COLLECTION, CARRY_BYTES, PART_BYTES, BucketStore, emptyOps, pushEntry, type Entry } from '../../../src/storage/query/bucket-store';
import { carriedOf, carries } from '../../../src/storage/query/entry-codec';
import { type TestContext, createTestContext } from '../../support/context';

/**
 * Bucket documents stay far below the 16 MiB document limit whatever the rate of readings: a
 * bucket that reaches PART_BYTES goes on in parts, which readers and erasure follow; only the
 * first CARRY_BYTES of a bucket's carried documents are stored with their entries.
 */
let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext({ env: { NEWS2_ENABLED: 'false', ALERTING_ENABLED: 'false' } });
});
afterAll(() => ctx.close());

const filler = 'x'.repeat(2000);
const entry = (n: number): Entry => ({ i: `e${n}`, x: { date: { l: new Date(Date.UTC(2024, 0, 1, 0, 0, n)) }, pad: filler } });

async function write(store: BucketStore, key: string, from: number, count: number, perBatch: number): Promise<void> {
  for (let n = from; n < from + count; n += perBatch) {
    const ops = emptyOps();
    for (let k = n; k < Math.min(from + count, n + perBatch); k++) pushEntry(ops, key, entry(k));
    await store.record(ops);
  }
}

it('splits a growing bucket into parts that readers and erasure follow', async () => {
  const store = new BucketStore(ctx.db);
  const key = 'Test|parts|a';
  const total = Math.ceil((2.5 * PART_BYTES) / 2100);
  await write(store, key, 0, total, 25);
  const docs = await ctx.db.collection(BUCKET_COLLECTION).find({ _id: { $in: [key, `${key}#1`, `${key}#2`, `${key}#3`] } } as never).toArray();
  expect(docs.length).toBeGreaterThanOrEqual(3);
  for (const d of docs) expect(JSON.stringify(d).length).toBeLessThan(PART_BYTES * 1.1);
  const [read] = await store.readEntries([key]);
  expect(read.map((e) => e.i)).toEqual(Array.from({ length: total }, (_, n) => `e${n}`));
  expect(read[5].x.date).toEqual({ l: new Date(Date.UTC(2024, 0, 1, 0, 0, 5)) });

  // Another process (a restart) goes on writing (into the first document, which it has not
  // read; readers treat entries as an unordered set): nothing is lost or read twice.
  const again = new BucketStore(ctx.db);
  await write(again, key, total, 10, 5);
  const [after] = await again.readEntries([key]);
  expect(after.map((e) => e.i).sort()).toEqual(Array.from({ length: total + 10 }, (_, n) => `e${n}`).sort());

  // Erasure reaches entries in every part.
  const gone = new Set(['e1', `e${total - 1}`, `e${total + 3}`]);
  expect(await again.applyErase({ entries: [{ keys: [key], ids: [...gone] }], dirs: [], dirCodes: [] })).toBe(3);
  const [left] = await again.readEntries([key]);
  expect(left).toHaveLength(total + 10 - 3);
  expect(left.some((e) => gone.has(e.i))).toBe(false);
});

it('stores at most CARRY_BYTES of carried documents per bucket, the first entries\' ones', async () => {
  const store = new BucketStore(ctx.db);
  const key = 'Test|carry|a';
  const ops = emptyOps();
  // About 10 kB each: the budget holds some thirty of them.
  const big = (n: number): Entry => ({ i: `c${n}`, x: {}, d: { _id: `c${n}`, res: { resourceType: 'Basic', id: `c${n}`, text: { status: 'generated', div: `<div>${'x'.repeat(10_000)}</div>` } } as never, vid: 1, ts: new Date(0), deleted: false, comp: [] } });
  const total = Math.ceil(CARRY_BYTES / 10_000) + 10;
  for (let n = 0; n < total; n++) pushEntry(ops, key, big(n));
  await store.record(ops);
  const [read] = await store.readEntries([key]);
  expect(read).toHaveLength(total);
  const carried = read.filter(carries).length;
  const line = JSON.stringify(big(10)).length;
  expect(carried * line).toBeLessThanOrEqual(CARRY_BYTES + carried * 2);
  expect((carried + 1) * line).toBeGreaterThan(CARRY_BYTES - carried * 2);
  expect(read.slice(0, carried).every((e) => carriedOf(e)?._id === e.i)).toBe(true);
  expect(read.slice(carried).every((e) => !carries(e))).toBe(true);
});
