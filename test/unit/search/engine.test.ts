import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { Resource } from 'fhir/r4';
import { type Cond, evaluate, toMongo } from '../../../src/search/cond';
import { CursorCodec } from '../../../src/resources/cursor';
import { decodeCursor, encodeCursor } from '../../../src/search/cursor';
import { compileExpression, compileWithEngine } from '../../../src/search/fhirpath';
import { buildRegistry, partsFor } from '../../../src/search/registry';
import { keysetCond, relax } from '../../../src/storage/query';

const EXAMPLES = path.resolve(__dirname, '..', '..', '..', 'node_modules', 'hl7.fhir.r4.examples');
const TYPES = ['Patient', 'Device', 'Observation'];
const examples: Resource[] = readdirSync(EXAMPLES)
  .filter((f) => TYPES.some((t) => f.startsWith(`${t}-`)))
  .map((f) => JSON.parse(readFileSync(path.join(EXAMPLES, f), 'utf8')) as Resource);

describe('registry', () => {
  const reg = buildRegistry([...TYPES, 'Basic']);

  test('every official R4 parameter of the types, the common ones, and ours from ig/', () => {
    const obs = reg.byType.get('Observation');
    for (const code of ['code', 'date', 'subject', 'patient', 'value-quantity', 'component-code-value-quantity', 'combo-code', '_id', '_lastUpdated', '_tag', '_profile', '_security', '_source', 'interpretation']) {
      expect([code, obs?.has(code)]).toEqual([code, true]);
    }
    expect(reg.byType.get('Patient')?.get('given')?.type).toBe('string');
    // Topics are Basic resources (Backport IG, R4): url and status from the R5 cross-version extensions.
    expect(reg.byType.get('Basic')?.get('url')?.type).toBe('uri');
    expect(reg.byType.get('Basic')?.get('status')?.type).toBe('token');
    expect(obs?.get('_text')?.unsupported).toBeDefined();
  });

  test('single-valued parameters are recognised (their idx keys stay scalar)', () => {
    const obs = reg.byType.get('Observation');
    expect(obs?.get('date')?.single).toBe(true);
    expect(obs?.get('subject')?.single).toBe(true);
    expect(obs?.get('patient')?.single).toBe(true);
    expect(obs?.get('performer')?.single).toBe(false);
    expect(obs?.get('component-value-quantity')?.single).toBe(false);
    expect(reg.byType.get('Patient')?.get('birthdate')?.single).toBe(true);
  });

  test('multi-type expressions are cut to the type', () => {
    expect(partsFor('AllergyIntolerance.code | (DeviceRequest.code as CodeableConcept) | Observation.code', 'Observation')).toEqual(['Observation.code']);
    expect(partsFor('Resource.meta.tag', 'Patient')).toEqual(['Patient.meta.tag']);
  });

  test('the definitions hash changes only when definitions do', () => {
    expect(buildRegistry(TYPES).hash).toBe(buildRegistry(TYPES).hash);
    expect(buildRegistry(['Patient']).hash).not.toBe(buildRegistry(TYPES).hash);
    // Per type: serving one more type leaves the others' hashes (and stored index values) alone.
    expect(buildRegistry(['Patient']).hashes.get('Patient')).toBe(buildRegistry(TYPES).hashes.get('Patient'));
  });
});

describe('FHIRPath fast path', () => {
  test('gives the values the FHIRPath engine gives, for every parameter over every official example', () => {
    const reg = buildRegistry(TYPES);
    let compared = 0;
    const extra: string[] = [];
    for (const r of examples) {
      for (const p of reg.byType.get(r.resourceType)?.values() ?? []) {
        if (!p.expression || p.unsupported || p.type === 'composite') continue;
        // A FHIRPath union drops duplicates; the index does too, so compare distinct values.
        const norm = (vs: { type: string; value: unknown }[]) => [...new Set(vs.map((v) => JSON.stringify(v.value)))].sort();
        const fast = norm(compileExpression(p.expression)(r));
        let engine: string[];
        try {
          engine = norm(compileWithEngine(p.expression)(r));
        } catch {
          continue; // the engine refuses some values (e.g. a Quantity with a comparator); the fast path indexes them
        }
        expect({ p: p.code, r: r.id, missing: engine.filter((v) => !fast.includes(v)) }).toEqual({ p: p.code, r: r.id, missing: [] });
        extra.push(...fast.filter((v) => !engine.includes(v)).map((v) => `${r.id} ${p.code} ${v}`));
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(3000);
    // The engine's union treats 1e-245 g as a duplicate of another tiny quantity (decimal
    // precision) in Observation/decimal; the fast path keeps every value. Nothing else differs.
    expect(extra.every((e) => e.startsWith('decimal '))).toBe(true);
  });
});

describe('condition language', () => {
  const doc = { _id: 'a', idx: { t: ['x', 'y'], n: [1, 10], s: 5, d: { l: new Date(1000) } } };
  test.each<[Cond, boolean]>([
    [{ k: 'eq', f: 'idx.t', v: 'x' }, true],
    [{ k: 'eq', f: 'idx.missing', v: null }, true],
    [{ k: 'in', f: 'idx.t', v: ['z', 'y'] }, true],
    [{ k: 'nin', f: 'idx.t', v: ['z', 'y'] }, false],
    [{ k: 'nin', f: 'idx.missing', v: ['z'] }, true],
    [{ k: 'exists', f: 'idx.d.l', v: true }, true],
    [{ k: 'range', f: 'idx.n', elem: true, b: { gt: 2, lt: 5 } }, false], // no single element in (2, 5)
    [{ k: 'range', f: 'idx.n', elem: false, b: { gt: 2, lt: 5 } }, true], // MongoDB: each bound by any element
    [{ k: 'range', f: 'idx.s', elem: true, b: { gt: 2 } }, false], // $elemMatch never matches a scalar
    [{ k: 'range', f: 'idx.d.l', elem: false, b: { gte: new Date(1000) } }, true],
    [{ k: 'range', f: 'idx.s', elem: false, b: { gt: '1' } }, false], // type brackets
    [{ k: 'regex', f: 'idx.t', re: '^y' }, true],
    [{ k: 'nor', c: [{ k: 'eq', f: 'idx.t', v: 'x' }] }, false],
    [{ k: 'const', v: false }, false],
  ])('%j -> %s', (c, want) => {
    expect(evaluate(c, doc)).toBe(want);
  });

  test('relax widens $elemMatch under negation (never loses a match where $elemMatch is loose)', () => {
    const c: Cond = { k: 'nor', c: [{ k: 'range', f: 'idx.n', elem: true, b: { gt: 2, lt: 5 } }] };
    expect(toMongo(relax(c, true))).toEqual({ $nor: [{ _id: { $in: [] } }] });
  });

  test('keyset conditions follow the sort order, missing values first ascending and last descending', () => {
    const rows = [
      { _id: 'a', k: 1 },
      { _id: 'b', k: 1 },
      { _id: 'c' },
      { _id: 'd', k: 2 },
      { _id: 'e' },
    ];
    const after = (dir: 1 | -1, v: number | null, id: string) =>
      rows.filter((r) => evaluate(keysetCond([{ field: 'k', dir }, { field: '_id', dir: 1 }], [v, id]), r)).map((r) => r._id);
    expect(after(1, 1, 'a')).toEqual(['b', 'd']);
    expect(after(1, null, 'c')).toEqual(['a', 'b', 'd', 'e']);
    expect(after(-1, 2, 'd')).toEqual(['a', 'b', 'c', 'e']);
    expect(after(-1, null, 'c')).toEqual(['e']);
  });
});

describe('cursor', () => {
  test('round trip, tamper-proof, bound to its query', () => {
    const tok = encodeCursor(new CursorCodec('s'), { k: [new Date(5), 'x', null], id: 'i', d: 'n', q: 'Q' });
    expect(decodeCursor(new CursorCodec('s'), tok, 'Q')).toEqual({ k: [new Date(5), 'x', null], id: 'i', d: 'n', q: 'Q' });
    expect(() => decodeCursor(new CursorCodec('other'), tok, 'Q')).toThrow(/cursor/);
    expect(() => decodeCursor(new CursorCodec('s'), tok, 'other query')).toThrow(/cursor/);
    expect(() => decodeCursor(new CursorCodec('s'), `${tok}x`, 'Q')).toThrow(/cursor/);
    expect(() => decodeCursor(new CursorCodec('s'), 'a.b.c', 'Q')).toThrow(/cursor/);
  });
});
