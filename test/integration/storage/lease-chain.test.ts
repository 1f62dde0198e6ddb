import { randomBytes } from 'node:crypto';
import { MongoClient, type Db } from 'mongodb';
import { LeaseChain, type LeaseLinkDoc, type LeaseTopDoc } from '../../../src/storage/lease-chain';

/**
 * The lease chain on the real embedded database: of many contenders exactly one wins each link,
 * a holder renews by the next link, loses to a takeover after expiry and sees it (the fence).
 * Time is the chain's injectable clock, never the wall clock.
 */
describe('LeaseChain', () => {
  let client: MongoClient;
  let db: Db;
  beforeAll(async () => {
    client = await MongoClient.connect(process.env.VIGIL_TEST_MONGODB_URI!);
    db = client.db(`vigil_test_lease_${randomBytes(4).toString('hex')}`);
  });
  afterAll(async () => {
    await db.dropDatabase().catch(() => undefined);
    await client.close();
  });

  let clock = 1_000_000;
  const chain = (owner: string) => new LeaseChain(db.collection<LeaseLinkDoc>('leases'), db.collection<LeaseTopDoc>('lease_tops'), owner, 1000, () => clock);

  it('lets exactly one of many concurrent contenders take a free lease', async () => {
    const name = `race-${randomBytes(3).toString('hex')}`;
    const got = await Promise.all(Array.from({ length: 8 }, (_, i) => chain(`c${i}`).acquire(name)));
    expect(got.filter(Boolean)).toHaveLength(1);
  });

  it('renews by the next link, is taken over only after expiry, and the old holder sees it', async () => {
    const name = `chain-${randomBytes(3).toString('hex')}`;
    const a = chain('a');
    const b = chain('b');
    const first = (await a.acquire(name))!;
    expect(first.n).toBe(1);
    expect(await b.acquire(name)).toBeUndefined(); // held
    clock += 600;
    const renewed = (await a.renew(first))!;
    expect(renewed.n).toBe(2);
    expect(await a.stillHeld(first)).toBe(false); // the old link is superseded, even by ourselves
    expect(await a.stillHeld(renewed)).toBe(true);
    clock += 600;
    expect(await b.acquire(name)).toBeUndefined(); // renewed: still held
    clock += 600; // renewed link expired
    const taken = (await b.acquire(name))!;
    expect(taken.n).toBe(3);
    expect(await a.stillHeld(renewed)).toBe(false);
    expect(await a.renew(renewed)).toBeUndefined(); // expired: no renewal
    // Two racing claims of the same next link: one wins.
    clock += 100;
    const [r1, r2] = await Promise.all([b.renew(taken), chain('c').acquire(name)]);
    expect(r2).toBeUndefined(); // c sees b's unexpired link (or loses the insert)
    expect(r1?.n).toBe(4);
    await b.release(r1!);
    const c = (await chain('c').acquire(name))!; // released: free at once
    expect(c.n).toBe(5);
  });

  it('finds the newest link past a stale hint', async () => {
    const name = `hint-${randomBytes(3).toString('hex')}`;
    const a = chain('a');
    let l = (await a.acquire(name))!;
    for (let i = 0; i < 3; i++) l = (await a.renew(l))!;
    await db.collection<LeaseTopDoc>('lease_tops').replaceOne({ _id: name }, { n: 1 });
    expect((await a.newest(name))?.n).toBe(4);
  });
});
