import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Resource } from 'fhir/r4';
import { type Cond, evaluate } from '../../../src/search/cond';
import { compartmentParams, indexResource } from '../../../src/search/indexer';
import { buildRegistry } from '../../../src/search/registry';
import { WALK_PARAMS, evaluable, indexView, paramOfField, paramsOfCond, rebuildCarried } from '../../../src/storage/query/carried-index';
import { sortValue } from '../../../src/storage/query/keys';
import type { CarriedDoc } from '../../../src/storage/query/bucket-store';
import type { IndexEntries } from '../../../src/storage';

/**
 * A bucket walk indexes carried documents only for the parameters it reads; that is sound only
 * if a parameter indexed alone yields exactly its own entries of the full index, which these
 * tests check over every official R4 Observation example.
 */
const reg = buildRegistry(['Observation']);
const params = reg.byType.get('Observation')!;
const ctx = { baseUrl: 'http://localhost:8080/fhir' };
const dir = dirname(require.resolve('hl7.fhir.r4.examples/Observation-decimal.json'));
const examples: Resource[] = readdirSync(dir)
  .filter((f) => f.startsWith('Observation-') && f.endsWith('.json'))
  .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Resource);

let calls = { full: 0, partial: 0 };
const index = (r: Resource, only?: ReadonlySet<string>) => {
  if (only) calls.partial++;
  else calls.full++;
  const ps = only ? [...only].flatMap((c) => params.get(c) ?? []) : params.values();
  return indexResource(r, ps, compartmentParams(r.resourceType), ctx);
};
const full = (r: Resource) => indexResource(r, params.values(), compartmentParams(r.resourceType), ctx).idx;
const carried = (r: Resource): CarriedDoc => ({ _id: r.id!, res: r, vid: 1, ts: new Date(0), deleted: false, comp: [] });
const same = <T extends object>(d: T) => d;

/** The entries of an index that belong to one parameter. */
function entriesOf(idx: IndexEntries, param: string): IndexEntries {
  return Object.fromEntries(Object.entries(idx).filter(([k]) => paramOfField(`idx.${k}`) === param));
}

describe('partial index values of carried documents', () => {
  beforeEach(() => {
    calls = { full: 0, partial: 0 };
  });

  test('fields map to their parameter', () => {
    expect(paramOfField('idx.code:s')).toBe('code');
    expect(paramOfField('idx.date.l')).toBe('date');
    expect(paramOfField('idx.value-quantity')).toBe('value-quantity');
    expect(paramOfField('_id')).toBeUndefined();
    expect(paramOfField('comp')).toBeUndefined();
    const c: Cond = { k: 'and', c: [{ k: 'eq', f: 'idx.code:s', v: 'x' }, { k: 'or', c: [{ k: 'range', f: 'idx.date.l', elem: false, b: { gt: 1 } }, { k: 'eq', f: '_id', v: 'a' }] }] };
    expect([...paramsOfCond(c)].sort()).toEqual(['code', 'date']);
  });

  test(`every parameter indexed alone gives exactly its entries of the full index (${examples.length} examples)`, () => {
    expect(examples.length).toBeGreaterThan(40);
    let nonEmpty = 0;
    for (const r of examples) {
      const all = full(r);
      for (const code of params.keys()) {
        const alone = index(r, new Set([code])).idx;
        expect({ id: r.id, code, idx: alone }).toEqual({ id: r.id, code, idx: entriesOf(all, code) });
        if (Object.keys(alone).length > 0) nonEmpty++;
      }
      // Every entry of the full index belongs to some parameter.
      expect(Object.keys(all).every((k) => params.has(paramOfField(`idx.${k}`) ?? ''))).toBe(true);
    }
    expect(nonEmpty).toBeGreaterThan(200);
  });

  test('conditions over the partial index decide as over the full index', () => {
    let checked = 0;
    for (const r of examples) {
      const all = full(r);
      for (const [key, value] of Object.entries(all)) {
        const f = `idx.${key}`;
        const scalar = Array.isArray(value) ? value[0] : value;
        const conds: Cond[] = [{ k: 'exists', f, v: true }];
        if (typeof scalar === 'string') conds.push({ k: 'eq', f, v: scalar }, { k: 'eq', f, v: `${scalar}-not` });
        for (const c of conds) {
          const doc = rebuildCarried(carried(r), index, paramsOfCond(c, new Set(WALK_PARAMS)), same);
          expect({ id: r.id, c, v: evaluate(c, evaluable(doc)) }).toEqual({ id: r.id, c, v: evaluate(c, { _id: r.id, idx: all }) });
          checked++;
        }
      }
    }
    expect(calls.full).toBe(0);
    expect(checked).toBeGreaterThan(500);
  });

  test('the full index is computed on the first read of idx, once, and is what a stored document holds', () => {
    const r = examples.find((x) => x.id === 'blood-pressure')!;
    const doc = rebuildCarried(carried(r), index, new Set(WALK_PARAMS), same);
    expect(calls).toEqual({ full: 0, partial: 1 });
    // The walk's own reads come from the partial index.
    expect(sortValue(doc, 'idx.date.l')).toEqual(full(r).date && (full(r).date as { l: Date }).l);
    expect(indexView(doc, 'code')['code:s']).toEqual(full(r)['code:s']);
    expect(calls.full).toBe(0);
    // Anything else sees the full index, computed once.
    expect(doc.idx).toEqual(full(r));
    expect(doc.idx).toBe(doc.idx);
    expect({ ...doc }.idx).toEqual(full(r));
    expect(JSON.parse(JSON.stringify(doc)).idx['component-code']).toBeDefined();
    expect(calls.full).toBe(1);
    expect(indexView(doc, 'component-code')).toBe(doc.idx);
    doc.idx = { replaced: true };
    expect(doc.idx).toEqual({ replaced: true });
  });
});
