import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StructureDefinition } from 'fhir/r4';
import { isCalendarDate } from '../../../src/resources/validation/compile';
import { deriveFromInstalledDefinitions } from '../../../src/resources/validation/derive-element-rules';
import elementRules from '../../../src/resources/validation/element-rules.json';
import { parsePointer, toFhirPath } from '../../../src/resources/validation/issues';
import { loadR4Schema } from '../../../src/resources/validation/schema';

/** The official R4 StructureDefinitions, the reference the shipped schema is checked against. */
const DIR = join(require.resolve('hl7.fhir.r4.examples/package.json'), '..');
const SDS: StructureDefinition[] = readdirSync(DIR)
  .filter((f) => f.startsWith('StructureDefinition-') && f.endsWith('.json'))
  .map((f) => JSON.parse(readFileSync(join(DIR, f), 'utf8')) as StructureDefinition)
  .filter((sd) => sd.derivation === 'specialization' && sd.snapshot && sd.kind !== 'logical');

const cap = (s: string): string => s[0].toUpperCase() + s.slice(1);

/** JSON property names R4 allows per schema definition name (`Observation_Component`, ...). */
function officialProperties(): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const sd of SDS) {
    for (const el of sd.snapshot?.element ?? []) {
      const parts = el.path.split('.');
      if (parts.length < 2) continue;
      const parent = parts.slice(0, -1);
      const name = parts[parts.length - 1];
      // The schema names backbone elements either by the full path or by the last segment.
      const defNames = [
        [parent[0], ...parent.slice(1).map(cap)].join('_'),
        parent.length > 1 ? `${parent[0]}_${cap(parent[parent.length - 1])}` : parent[0],
      ];
      const props = name.endsWith('[x]') ? (el.type ?? []).map((t) => name.slice(0, -3) + cap(t.code)) : [name];
      for (const d of defNames) {
        const set = out.get(d) ?? new Set<string>();
        for (const p of props) set.add(p).add(`_${p}`);
        out.set(d, set);
      }
    }
  }
  return out;
}

describe('the patched schema is R4, nothing more', () => {
  const r4 = loadR4Schema();
  const defs = r4.schema.definitions as Record<string, { properties?: Record<string, unknown> }>;

  test('resource types are exactly the concrete R4 resources', () => {
    const official = SDS.filter((sd) => sd.kind === 'resource' && !sd.abstract).map((sd) => sd.type);
    expect([...r4.resourceTypes].sort()).toEqual(official.sort());
    expect(r4.resourceTypes.size).toBe(146);
  });

  test('no definition has an element R4 does not define', () => {
    const official = officialProperties();
    const extra: string[] = [];
    for (const [name, def] of Object.entries(defs)) {
      const allowed = official.get(name);
      if (!def.properties || !allowed) continue;
      for (const p of Object.keys(def.properties)) {
        if (p !== 'resourceType' && !allowed.has(p)) extra.push(`${name}.${p}`);
      }
    }
    expect(extra).toEqual([]);
  });

  test('every definition of our types is checked by the test above', () => {
    const official = officialProperties();
    for (const t of ['Patient', 'Device', 'Observation', 'Observation_Component', 'Meta', 'Reference', 'Extension', 'Quantity']) {
      expect(official.has(t)).toBe(true);
      expect(defs[t]?.properties).toBeDefined();
    }
  });

  test('element-rules.json is what the R4 StructureDefinitions say (regenerate with derive-element-rules.ts)', () => {
    expect(deriveFromInstalledDefinitions()).toEqual(elementRules);
  });
});

describe('JSON pointer to FHIRPath', () => {
  test.each([
    ['', 'Patient'],
    ['/name/0/given/1', 'Patient.name[0].given[1]'],
    ['/name/0/_given/1', 'Patient.name[0].given[1]'],
    ['/contained/2/code/coding/0/system', 'Patient.contained[2].code.coding[0].system'],
    ['/a~1b/c~0d', 'Patient.a/b.c~d'],
  ])('%j', (pointer, path) => {
    expect(toFhirPath('Patient', parsePointer(pointer))).toBe(path);
  });
});

describe('calendar dates', () => {
  test.each([
    ['2024-02-29', true],
    ['2023-02-29', false],
    ['2000-02-29', true],
    ['1900-02-29', false],
    ['2024-04-31', false],
    ['2024-12-31T23:59:59Z', true],
    ['2024', true],
    ['2024-06', true],
  ])('%s -> %s', (s, ok) => {
    expect(isCalendarDate(s)).toBe(ok);
  });
});
