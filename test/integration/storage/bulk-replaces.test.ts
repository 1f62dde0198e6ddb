import { MongoClient, type Db } from 'mongodb';
import { randomBytes } from 'node:crypto';

/**
 * A bulk of replaces is one update command of many statements. FerretDB 1.24.2 kept every
 * statement's SQLite connection until the command returned while each statement asked for one
 * more, so a bulk of more than 100 replaces (or several smaller bulks at once) took its whole
 * pool and every client of the database stalled for good. The embedded database is built with
 * that fixed (tools/ferretdb/patch-ferretdb.sh); Vigil writes such bulks when a transaction
 * updates many resources and when alerting stores the state of many patients at once.
 */
let client: MongoClient;
let db: Db;

beforeAll(async () => {
  client = await MongoClient.connect(process.env.VIGIL_TEST_MONGODB_URI!);
  db = client.db(`vigil_test_bulk_${randomBytes(6).toString('hex')}`);
});

afterAll(async () => {
  await db.dropDatabase();
  await client.close();
});

interface Row {
  _id: string;
  n: number;
}

async function seed(name: string, count: number): Promise<void> {
  await db.collection<Row>(name).insertMany(Array.from({ length: count }, (_, i) => ({ _id: `r${i}`, n: 0 })));
}

function replaces(count: number, n: number) {
  return Array.from({ length: count }, (_, i) => ({ replaceOne: { filter: { _id: `r${i}` }, replacement: { n } } }));
}

test('one bulk of 250 replaces completes and replaces every document', async () => {
  await seed('one', 250);
  const r = await db.collection<Row>('one').bulkWrite(replaces(250, 1), { ordered: false });
  expect(r.matchedCount).toBe(250);
  expect(r.modifiedCount).toBe(250);
  expect(await db.collection<Row>('one').countDocuments({ n: 1 })).toBe(250);
}, 60_000);

test('six bulks of 60 replaces at once (360 statements) all complete, and the database still answers', async () => {
  const names = Array.from({ length: 6 }, (_, k) => `many${k}`);
  for (const name of names) await seed(name, 60);
  const results = await Promise.all(names.map((name) => db.collection<Row>(name).bulkWrite(replaces(60, 2), { ordered: false })));
  expect(results.map((r) => r.modifiedCount)).toEqual(names.map(() => 60));
  for (const name of names) expect(await db.collection<Row>(name).countDocuments({ n: 2 })).toBe(60);
  expect(await db.command({ ping: 1 })).toMatchObject({ ok: 1 });
}, 60_000);
