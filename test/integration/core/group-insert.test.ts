import { MongoClient, type Db } from 'mongodb';
import { randomBytes } from 'node:crypto';
import { GroupInserter } from '../../../src/storage/group-insert';

let client: MongoClient;
let db: Db;
beforeAll(async () => {
  client = await MongoClient.connect(process.env.VIGIL_TEST_MONGODB_URI!);
  db = client.db(`vigil_test_group_${randomBytes(4).toString('hex')}`);
});
afterAll(async () => {
  await db.dropDatabase();
  await client.close();
});

describe('GroupInserter', () => {
  it('inserts concurrent documents and fails only the duplicate', async () => {
    const col = db.collection<{ _id: string; n: number }>('g1');
    await col.insertOne({ _id: 'taken', n: -1 });
    const g = new GroupInserter(col);
    const ids = Array.from({ length: 40 }, (_, i) => (i === 17 ? 'taken' : `d${i}`));
    const results = await Promise.allSettled(ids.map((id, n) => g.insert({ _id: id, n })));
    const rejected = results.map((r, i) => (r.status === 'rejected' ? i : -1)).filter((i) => i >= 0);
    expect(rejected).toEqual([17]);
    expect((results[17] as PromiseRejectedResult).reason).toMatchObject({ code: 11000 });
    expect(await col.countDocuments()).toBe(40);
    expect((await col.findOne({ _id: 'taken' }))?.n).toBe(-1);
  });

  it('reports two callers of the same id: one wins, one gets the duplicate key', async () => {
    const col = db.collection<{ _id: string; who: string }>('g2');
    const g = new GroupInserter(col);
    const [a, b, c] = await Promise.allSettled([g.insert({ _id: 'x', who: 'a' }), g.insert({ _id: 'x', who: 'b' }), g.insert({ _id: 'y', who: 'c' })]);
    expect([a.status, b.status].sort()).toEqual(['fulfilled', 'rejected']);
    expect(c.status).toBe('fulfilled');
    expect(await col.countDocuments()).toBe(2);
  });
});
