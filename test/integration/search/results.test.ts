import type { Bundle, Observation, Patient, Resource } from 'fhir/r4';
import { SearchService } from '../../../src/search';
import type { AccessPolicy } from '../../../src/auth/types';
import { allowAllPolicy } from '../../../src/auth/types';
import { all } from './fixtures';
import { BASE, type SearchFixture, createSearchFixture, outcomeOf } from './helpers';

/** Result shaping: sorting, keyset paging, includes, _summary, _elements, _total, _type, $lastn, policies. */
let f: SearchFixture;
beforeAll(async () => {
  f = await createSearchFixture('results', { SEARCH_DEFAULT_COUNT: '3', SEARCH_MAX_COUNT: '5' });
  await f.put(...all);
});
afterAll(() => f.close());

const matchIds = (b: Bundle) => (b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource?.id);
const includeIds = (b: Bundle) => (b.entry ?? []).filter((e) => e.search?.mode === 'include').map((e) => `${e.resource?.resourceType}/${e.resource?.id}`).sort();
const linkOf = (b: Bundle, rel: string) => b.link?.find((l) => l.relation === rel)?.url;
const paramsOf = (url: string) => new URL(url).searchParams.toString();

async function follow(type: string | undefined, first: Bundle, rel = 'next'): Promise<Bundle[]> {
  const pages = [first];
  let url = linkOf(first, rel);
  while (url) {
    const b = await f.search(type, paramsOf(url));
    pages.push(b);
    url = linkOf(b, rel);
    if (pages.length > 50) throw new Error('paging does not end');
  }
  return pages;
}

describe('sorting', () => {
  test('_sort=date ascending, -date descending, ties and missing values ordered by id', async () => {
    expect(matchIds(await f.search('Observation', '_sort=date&_count=5'))).toEqual(['str1', 'temp1', 'bp1', 'hr1', 'hr2']);
    expect(matchIds(await f.search('Observation', '_sort=-date&_count=5'))).toEqual(['wt1', 'spo2', 'hr3', 'hr2', 'hr1']);
  });

  test('several keys', async () => {
    const b = await f.search('Observation', '_sort=subject,-date&_count=5&code=8867-4,85354-9,59408-5,29463-7');
    expect(matchIds(b)).toEqual(['wt1', 'spo2', 'hr2', 'hr1', 'bp1']);
    expect(matchIds(await f.search('Patient', '_sort=-birthdate,family'))).toEqual(['adam', 'severine', 'eve']);
    expect(matchIds(await f.search('Patient', '_sort=family'))).toEqual(['severine', 'eve', 'evelyn']);
  });
});

describe('paging', () => {
  test('_count is bounded by the configured maximum and defaults to the configured default', async () => {
    expect(matchIds(await f.search('Observation', ''))).toHaveLength(3);
    expect(matchIds(await f.search('Observation', '_count=100'))).toHaveLength(5);
  });

  test('next links walk every result exactly once, in order; previous links walk back', async () => {
    const first = await f.search('Observation', '_sort=-date&_count=2');
    const pages = await follow('Observation', first);
    const ids = pages.flatMap(matchIds);
    expect(ids).toEqual(['wt1', 'spo2', 'hr3', 'hr2', 'hr1', 'bp1', 'temp1', 'str1']);
    expect(pages.map((p) => matchIds(p).length)).toEqual([2, 2, 2, 2]);
    expect(linkOf(pages[0], 'previous')).toBeUndefined();
    const back = await follow('Observation', pages[3], 'previous');
    expect(back.map(matchIds)).toEqual([['temp1', 'str1'], ['hr1', 'bp1'], ['hr3', 'hr2'], ['wt1', 'spo2']]);
    // The self link keeps the parameters used; next adds only the cursor.
    expect(linkOf(first, 'self')).toBe(`${BASE}/Observation?_sort=-date&_count=2`);
    expect(new URL(linkOf(first, 'next') ?? '').searchParams.get('_sort')).toBe('-date');
  });

  test('no result is skipped or repeated while others insert', async () => {
    const first = await f.search('Patient', '_count=1');
    const seen = matchIds(first);
    let url = linkOf(first, 'next');
    const inserted: string[] = [];
    try {
      while (url) {
        // New resources sorting before the cursor are not seen, those after it are; old ones exactly once.
        if (inserted.length < 8) {
          const n = String(inserted.length).padStart(3, '0');
          await f.put({ resourceType: 'Patient', id: `aaa-new-${n}`, name: [{ family: 'New' }] } as Patient, { resourceType: 'Patient', id: `zzz-new-${n}`, name: [{ family: 'New' }] } as Patient);
          inserted.push(`aaa-new-${n}`, `zzz-new-${n}`);
        }
        const b = await f.search('Patient', paramsOf(url));
        seen.push(...matchIds(b));
        url = linkOf(b, 'next');
      }
      expect(seen.filter((id) => !id?.includes('-new-'))).toEqual(['adam', 'eve', 'evelyn', 'severine']);
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen.filter((id) => id?.startsWith('zzz-new-'))).toEqual(inserted.filter((id) => id.startsWith('zzz')));
    } finally {
      await f.db.collection('Patient').deleteMany({ _id: { $in: inserted } } as never);
    }
  });

  test('a tampered cursor, or one from another query, is a 400', async () => {
    const first = await f.search('Observation', '_count=2');
    const cursor = new URL(linkOf(first, 'next') ?? '').searchParams.get('_cursor') ?? '';
    const [body, mac] = cursor.split('.');
    const forged = Buffer.from(Buffer.from(body, 'base64url').toString().replace(/"id":"[^"]+"/, '"id":"a"')).toString('base64url');
    for (const bad of [`${forged}.${mac}`, `${body}.${mac.slice(1)}x`, 'garbage', '']) {
      const e = await f.error('Observation', `_count=2&_cursor=${encodeURIComponent(bad)}`, 'lenient');
      expect(e.status).toBe(400);
      expect(e.expression).toEqual(['_cursor']);
    }
    const other = await f.error('Observation', `_count=2&code=8867-4&_cursor=${encodeURIComponent(cursor)}`, 'lenient');
    expect(other.status).toBe(400);
  });
});

describe('_include and _revinclude', () => {
  test('_include adds referenced resources once, marked include', async () => {
    const b = await f.search('Observation', 'code=8867-4&_include=Observation:subject');
    expect(matchIds(b)).toEqual(['hr1', 'hr2', 'hr3']);
    expect(includeIds(b)).toEqual(['Patient/eve', 'Patient/evelyn']);
    const e = b.entry?.find((x) => x.search?.mode === 'include');
    expect(e?.fullUrl).toMatch(/^http:\/\/localhost:8080\/fhir\/Patient\//);
  });

  test('typed include, :iterate and *', async () => {
    expect(includeIds(await f.search('Observation', 'code=8867-4&_include=Observation:subject:Device'))).toEqual([]);
    const it = await f.search('Observation', '_id=hr3&_include=Observation:device&_include:iterate=Device:patient');
    expect(includeIds(it)).toEqual(['Device/dev1', 'Patient/eve']);
    const noIterate = await f.search('Observation', '_id=hr3&_include=Observation:device&_include=Device:patient');
    expect(includeIds(noIterate)).toEqual(['Device/dev1']);
    expect(includeIds(await f.search('Observation', '_id=hr3&_include=*'))).toEqual(['Device/dev1', 'Patient/evelyn']);
  });

  test('_revinclude', async () => {
    const b = await f.search('Patient', '_id=eve&_revinclude=Observation:subject&_revinclude=Device:patient');
    expect(matchIds(b)).toEqual(['eve']);
    expect(includeIds(b)).toEqual(['Device/dev1', 'Observation/bp1', 'Observation/hr1', 'Observation/hr2']);
  });

  test('a bad include is reported (lenient) or refused (strict)', async () => {
    const b = await f.search('Observation', '_id=hr1&_include=Observation:bogus');
    expect(outcomeOf(b)?.issue[0].diagnostics).toContain('Observation:bogus');
    expect((await f.error('Observation', '_include=Observation:status')).status).toBe(400);
  });

  test('includes respect the read policy', async () => {
    const policy: AccessPolicy = {
      ...allowAllPolicy,
      assertAllowed(_i, type) {
        if (type === 'Patient') throw new Error('no');
      },
    };
    const b = await f.search('Observation', 'code=8867-4&_include=Observation:subject', { policy });
    expect(includeIds(b)).toEqual([]);
    // Row-level: only the patient the policy lets the caller read is included.
    const onlyEve: AccessPolicy = {
      ...allowAllPolicy,
      readCond: (type) => (type === 'Patient' ? { k: 'eq', f: '_id', v: 'eve' } : undefined),
      canRead: (r) => r.resourceType !== 'Patient' || r.id === 'eve',
    };
    const rows = await f.search('Observation', 'code=8867-4&_include=Observation:subject', { policy: onlyEve });
    expect(includeIds(rows)).toEqual(['Patient/eve']);
  });
});

describe('_summary, _elements, _total', () => {
  test('_summary=count and _count=0 give the total only', async () => {
    for (const q of ['_summary=count&code=8867-4', '_count=0&code=8867-4']) {
      const b = await f.search('Observation', q);
      expect(b.total).toBe(3);
      expect(b.entry).toBeUndefined();
    }
  });

  test('_total=accurate counts every match, not the page; none leaves it out', async () => {
    expect((await f.search('Observation', '_total=accurate&_count=1')).total).toBe(8);
    expect((await f.search('Observation', '_total=none')).total).toBeUndefined();
  });

  test('_elements keeps the listed elements (plus id and meta) and marks the resource SUBSETTED', async () => {
    const b = await f.search('Observation', '_id=hr1&_elements=status,value');
    const r = b.entry?.[0].resource as Observation;
    // `code` and `status` are mandatory in Observation: kept whatever _elements asks for.
    expect(Object.keys(r).sort()).toEqual(['code', 'id', 'meta', 'resourceType', 'status', 'valueQuantity']);
    expect(r.meta?.tag?.map((t) => t.code)).toContain('SUBSETTED');
  });

  test('_summary=true keeps summary elements only; data drops the narrative', async () => {
    await f.put({ resourceType: 'Patient', id: 'narr', text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>' }, name: [{ family: 'Narr' }], photo: [{ contentType: 'image/png', data: 'AA==' }] } as Patient);
    const s = (await f.search('Patient', '_id=narr&_summary=true')).entry?.[0].resource as Resource & Record<string, unknown>;
    expect(s.name).toBeDefined();
    expect(s.photo).toBeUndefined();
    expect(s.text).toBeUndefined();
    const d = (await f.search('Patient', '_id=narr&_summary=data')).entry?.[0].resource as Resource & Record<string, unknown>;
    expect(d.text).toBeUndefined();
    expect(d.photo).toBeDefined();
    const t = (await f.search('Patient', '_id=narr&_summary=text')).entry?.[0].resource as Resource & Record<string, unknown>;
    expect(t.text).toBeDefined();
    expect(t.name).toBeUndefined();
    await f.db.collection('Patient').deleteOne({ _id: 'narr' } as never);
  });
});

describe('system-level search', () => {
  test('_type limits the types; common parameters apply to each', async () => {
    const b = await f.search(undefined, '_type=Patient,Device&_count=10');
    expect(matchIds(b)).toEqual(['adam', 'eve', 'evelyn', 'severine', 'dev1']);
    expect(matchIds(await f.search(undefined, '_id=eve,dev1,hr1&_count=10'))).toEqual(['eve', 'dev1', 'hr1']);
  });

  test('system-level paging', async () => {
    const pages = await follow(undefined, await f.search(undefined, '_type=Patient,Device&_count=2'));
    expect(pages.flatMap(matchIds)).toEqual(['adam', 'eve', 'evelyn', 'severine', 'dev1']);
  });

  test('a type-specific parameter is reported; an unknown type is a 400', async () => {
    const b = await f.search(undefined, '_type=Patient,Device&gender=female');
    expect(outcomeOf(b)?.issue[0].diagnostics).toContain('gender');
    expect((await f.error(undefined, '_type=Bogus')).status).toBe(400);
  });
});

describe('$lastn', () => {
  const lastn = (q: string) =>
    f.service.lastn({ type: 'Observation', params: [...new URLSearchParams(q).entries()], policy: allowAllPolicy, baseUrl: BASE, handling: 'strict' });

  test('the newest observation per code for a patient', async () => {
    expect(matchIds(await lastn('patient=eve&code=8867-4'))).toEqual(['hr2']);
    expect(matchIds(await lastn('patient=eve&code=8867-4&max=2'))).toEqual(['hr2', 'hr1']);
    expect(matchIds(await lastn('patient=eve')).sort()).toEqual(['bp1', 'hr2']);
    expect(matchIds(await lastn('category=vital-signs&code=8867-4')).sort()).toEqual(['hr2', 'hr3']);
  });

  test('the MongoDB strategy (distinct + one indexed query per code) gives the same answers', async () => {
    const mongoStyle = await SearchService.create({ db: f.db, config: f.config, types: ['Patient', 'Device', 'Observation'], engine: 'mongodb' });
    const run = async (q: string) =>
      matchIds(await mongoStyle.lastn({ type: 'Observation', params: [...new URLSearchParams(q).entries()], policy: allowAllPolicy, baseUrl: BASE, handling: 'strict' })).sort();
    for (const q of ['patient=eve&code=8867-4', 'patient=eve&code=8867-4&max=2', 'patient=eve', 'category=vital-signs&code=8867-4', 'value-quantity=gt100']) {
      expect([q, await run(q)]).toEqual([q, matchIds(await lastn(q)).sort()]);
    }
  });

  test('bad max is a 400', async () => {
    await expect(lastn('patient=eve&max=0')).rejects.toMatchObject({ status: 400 });
    await expect(lastn('patient=eve&max=x')).rejects.toMatchObject({ status: 400 });
  });
});

describe('access policy and conditional matching', () => {
  test("the policy's read filter is part of every query", async () => {
    const policy: AccessPolicy = { ...allowAllPolicy, readCond: () => ({ k: 'eq', f: 'comp', v: 'Patient/eve' }) };
    const b = await f.search('Observation', '_count=5', { policy });
    expect(matchIds(b).sort()).toEqual(['bp1', 'hr1', 'hr2']);
    const chained = await f.search('Observation', 'subject.name=evelyn', { policy });
    expect(matchIds(chained)).toEqual([]);
  });

  test('findMatches: strict, limited, policy-filtered', async () => {
    expect((await f.service.findMatches('Patient', 'identifier=http://hospital.example/mrn|E1', allowAllPolicy, 2)).map((d) => d._id)).toEqual(['eve']);
    expect(await f.service.findMatches('Observation', 'code=8867-4', allowAllPolicy, 2)).toHaveLength(2);
    await expect(f.service.findMatches('Patient', 'bogus=1', allowAllPolicy, 2)).rejects.toMatchObject({ status: 400 });
    await expect(f.service.findMatches('Patient', 'birthdate=notadate', allowAllPolicy, 2)).rejects.toMatchObject({ status: 400 });
    await expect(f.service.findMatches('Patient', '', allowAllPolicy, 2)).rejects.toMatchObject({ status: 400 });
  });
});
