import type { Resource } from 'fhir/r4';
import { allowAllPolicy } from '../../../src/auth/types';
import { SearchService } from '../../../src/search';
import { observations, patients } from './fixtures';
import { type SearchFixture, createSearchFixture } from './helpers';

/** Start-up work: indexes are idempotent, stale index values are rebuilt when definitions change. */
let f: SearchFixture;
beforeAll(async () => {
  f = await createSearchFixture('maint');
  await f.put(...(patients as Resource[]), ...(observations as Resource[]));
});
afterAll(() => f.close());

test('ensureIndexes creates the RPM compound index and can run again (MongoDB strategy)', async () => {
  const mongoStyle = await SearchService.create({ db: f.db, config: f.config, types: ['Patient', 'Device', 'Observation'], engine: 'mongodb' });
  await mongoStyle.ensureIndexes();
  await mongoStyle.ensureIndexes();
  const names = (await f.db.collection('Observation').indexes()).map((i) => i.name);
  expect(names).toEqual(expect.arrayContaining(['rpm_subject_code_date', 'rpm_patient_code_date', 'lastn_subject_code_date', 'p_code', 'comp']));
  const patient = (await f.db.collection('Patient').indexes()).map((i) => i.name);
  expect(patient).toEqual(expect.arrayContaining(['p_identifier', 'p_birthdate', 'p_family']));
});

test('on FerretDB no secondary index is created (it would never serve a read)', async () => {
  const other = f.db.client.db(`${f.db.databaseName}_ferret`);
  const ferret = await SearchService.create({ db: other, config: f.config, types: ['Observation'], engine: 'ferretdb' });
  await ferret.ensureIndexes();
  await other.collection('Observation').insertOne({ _id: 'x' } as never);
  expect((await other.collection('Observation').indexes()).map((i) => i.name)).toEqual(['_id_']);
  await other.dropDatabase();
});

test('reindexIfNeeded rebuilds idx/comp of stored resources once, reporting progress', async () => {
  // Simulate documents indexed by an older definition set.
  await f.db.collection('Observation').updateMany({}, { $set: { idx: {}, comp: [] } });
  await f.db.collection('meta').deleteMany({ _id: { $regex: '^search\\.indexHash\\.' } } as never);
  const before = await f.ids('Observation', 'code=8867-4');
  expect(before).toEqual([]);
  const messages: string[] = [];
  await f.service.reindexIfNeeded((m) => messages.push(m));
  expect(messages.some((m) => /re-indexed 8\/8 Observation/.test(m))).toBe(true);
  expect(await f.ids('Observation', 'code=8867-4')).toEqual(['hr1', 'hr2', 'hr3']);
  const comp = await f.db.collection('Observation').findOne({ _id: 'hr1' as never });
  expect(comp?.comp).toEqual(['Patient/eve']);
  // Unchanged definitions: nothing to do the second time.
  const again: string[] = [];
  await f.service.reindexIfNeeded((m) => again.push(m));
  expect(again).toEqual([]);
});

test('the paging secret is generated once and shared through the meta collection', async () => {
  const config = { ...f.config, cursorSecret: undefined };
  const a = await SearchService.create({ db: f.db, config, types: ['Patient'] });
  const b = await SearchService.create({ db: f.db, config, types: ['Patient'] });
  const first = await a.search({ type: 'Patient', params: [['_count', '1']], policy: allowAllPolicy, baseUrl: 'http://x/fhir', handling: 'strict' });
  const next = first.link?.find((l) => l.relation === 'next')?.url ?? '';
  const page = await b.search({ type: 'Patient', params: [...new URL(next).searchParams.entries()], policy: allowAllPolicy, baseUrl: 'http://x/fhir', handling: 'strict' });
  expect(page.entry?.length).toBe(1);
});
