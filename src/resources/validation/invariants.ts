import { toFhirPath, type JsonPath, type ValidationIssue } from './issues';
import type { Report } from './json-rules';

/**
 * The error-severity invariants of R4 that matter for our resources, hand-coded: evaluating every
 * constraint's FHIRPath on every write would cost far more than the whole schema validation.
 * ele-1 (no empty elements) and the narrative checks live in json-rules.ts and compile.ts.
 */

type Json = Record<string, unknown>;

export interface Invariant {
  key: string;
  human: string;
  /** Returns true when the element satisfies the invariant. */
  holds(e: Json, root?: Json): boolean;
  /** The child element to point at when it fails (default: the element itself). */
  blame?: string;
}

const has = (e: Json, p: string): boolean => e[p] !== undefined || e[`_${p}`] !== undefined;
/** Whether any variant of the choice element `base[x]` (or its `_` extension half) is present. */
function hasChoice(e: Json, base: string): boolean {
  for (const k in e) {
    const n = k[0] === '_' ? k.slice(1) : k;
    if (n.length > base.length && n.startsWith(base)) {
      const c = n.charCodeAt(base.length);
      if (c >= 65 && c <= 90) return true;
    }
  }
  return false;
}

/** Deep equality of two small JSON values (FHIRPath `=` on Codings). */
function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as Json);
  const kb = Object.keys(b as Json);
  return ka.length === kb.length && ka.every((k) => jsonEqual((a as Json)[k], (b as Json)[k]));
}

/** start <= end where FHIRPath can decide; different precisions compare as unknown (no failure). */
function notAfter(start: unknown, end: unknown): boolean {
  if (typeof start !== 'string' || typeof end !== 'string') return true;
  const st = start.includes('T');
  const et = end.includes('T');
  if (st && et) {
    const a = Date.parse(start);
    const b = Date.parse(end);
    return Number.isNaN(a) || Number.isNaN(b) || a <= b;
  }
  if (!st && !et && start.length === end.length) return start <= end;
  return true;
}

const quantityValue = (q: unknown): { value?: unknown; code?: unknown; system?: unknown } =>
  (q && typeof q === 'object' ? q : {}) as { value?: unknown; code?: unknown; system?: unknown };

const QTY_3: Invariant = {
  key: 'qty-3',
  human: 'If a code for the unit is present, the system SHALL also be present',
  holds: (e) => !has(e, 'code') || has(e, 'system'),
  blame: 'system',
};

/** Invariants by schema definition name (schema.ts attaches them as the `fhirInvariants` keyword). */
export const INVARIANTS: Record<string, Invariant[]> = {
  Extension: [
    {
      key: 'ext-1',
      human: 'Must have either extensions or value[x], not both',
      holds: (e) => (e.extension !== undefined) !== hasChoice(e, 'value'),
    },
  ],
  Quantity: [QTY_3],
  Age: [QTY_3],
  Count: [QTY_3],
  Distance: [QTY_3],
  Duration: [QTY_3],
  Period: [
    {
      key: 'per-1',
      human: 'If present, start SHALL have a lower value than end',
      holds: (e) => notAfter(e.start, e.end),
      blame: 'end',
    },
  ],
  Range: [
    {
      key: 'rng-2',
      human: 'If present, low SHALL have a lower value than high',
      holds: (e) => {
        const low = quantityValue(e.low);
        const high = quantityValue(e.high);
        if (typeof low.value !== 'number' || typeof high.value !== 'number') return true;
        if (low.code !== high.code || low.system !== high.system) return true; // other units: not decided here
        return low.value <= high.value;
      },
      blame: 'high',
    },
  ],
  Ratio: [
    {
      key: 'rat-1',
      human: 'Numerator and denominator SHALL both be present, or both are absent. If both are absent, there SHALL be some extension present',
      holds: (e) => (e.numerator === undefined) === (e.denominator === undefined) && (e.numerator !== undefined || e.extension !== undefined),
    },
  ],
  Attachment: [
    {
      key: 'att-1',
      human: 'If the Attachment has data, it SHALL have a contentType',
      holds: (e) => !has(e, 'data') || has(e, 'contentType'),
      blame: 'contentType',
    },
  ],
  ContactPoint: [
    {
      key: 'cpt-2',
      human: 'A system is required if a value is provided.',
      holds: (e) => !has(e, 'value') || has(e, 'system'),
      blame: 'system',
    },
  ],
  Observation: [
    {
      key: 'obs-6',
      human: 'dataAbsentReason SHALL only be present if Observation.value[x] is not present',
      holds: (e) => e.dataAbsentReason === undefined || !hasChoice(e, 'value'),
      blame: 'dataAbsentReason',
    },
    {
      key: 'obs-7',
      human:
        'If Observation.code is the same as an Observation.component.code then the value element associated with the code SHALL NOT be present',
      holds: (e) => {
        if (!hasChoice(e, 'value') || !Array.isArray(e.component)) return true;
        const codings = ((e.code as Json | undefined)?.coding ?? []) as unknown[];
        return !(e.component as Json[]).some((c) =>
          (((c.code as Json | undefined)?.coding ?? []) as unknown[]).some((x) => codings.some((y) => jsonEqual(x, y))),
        );
      },
      blame: 'component',
    },
  ],
  Observation_ReferenceRange: [
    {
      key: 'obs-3',
      human: 'Must have at least a low or a high or text',
      holds: (e) => e.low !== undefined || e.high !== undefined || has(e, 'text'),
    },
  ],
  Patient_Contact: [
    {
      key: 'pat-1',
      human: "SHALL at least contain a contact's details or a reference to an organization",
      holds: (e) => e.name !== undefined || e.telecom !== undefined || e.address !== undefined || e.organization !== undefined,
    },
  ],
  Timing_Repeat: [
    { key: 'tim-1', human: "if there's a duration, there needs to be duration units", holds: (e) => !has(e, 'duration') || has(e, 'durationUnit'), blame: 'durationUnit' },
    { key: 'tim-2', human: "if there's a period, there needs to be period units", holds: (e) => !has(e, 'period') || has(e, 'periodUnit'), blame: 'periodUnit' },
    { key: 'tim-4', human: 'duration SHALL be a non-negative value', holds: (e) => typeof e.duration !== 'number' || e.duration >= 0, blame: 'duration' },
    { key: 'tim-5', human: 'period SHALL be a non-negative value', holds: (e) => typeof e.period !== 'number' || e.period >= 0, blame: 'period' },
    { key: 'tim-6', human: "If there's a periodMax, there must be a period", holds: (e) => !has(e, 'periodMax') || has(e, 'period'), blame: 'period' },
    { key: 'tim-7', human: "If there's a durationMax, there must be a duration", holds: (e) => !has(e, 'durationMax') || has(e, 'duration'), blame: 'duration' },
    { key: 'tim-8', human: "If there's a countMax, there must be a count", holds: (e) => !has(e, 'countMax') || has(e, 'count'), blame: 'count' },
    {
      key: 'tim-9',
      human: "If there's an offset, there must be a when (and not C, CM, CD, CV)",
      holds: (e) =>
        !has(e, 'offset') ||
        (Array.isArray(e.when) && !(e.when as unknown[]).some((w) => w === 'C' || w === 'CM' || w === 'CD' || w === 'CV')),
      blame: 'offset',
    },
    { key: 'tim-10', human: "If there's a timeOfDay, there cannot be a when, or vice versa", holds: (e) => e.timeOfDay === undefined || e.when === undefined, blame: 'when' },
  ],
};

/** dom-2, dom-4, dom-5: what a contained resource may not carry. Returns the broken one, if any. */
export function containedViolation(r: Json): { key: string; human: string; blame: string } | undefined {
  if (r.contained !== undefined) {
    return { key: 'dom-2', human: 'If the resource is contained in another resource, it SHALL NOT contain nested Resources', blame: 'contained' };
  }
  const meta = r.meta as Json | undefined;
  if (meta && (meta.versionId !== undefined || meta.lastUpdated !== undefined)) {
    return { key: 'dom-4', human: 'If a resource is contained in another resource, it SHALL NOT have a meta.versionId or a meta.lastUpdated', blame: 'meta' };
  }
  if (meta?.security !== undefined) {
    return { key: 'dom-5', human: 'If a resource is contained in another resource, it SHALL NOT have a security label', blame: 'meta' };
  }
  return undefined;
}

/** A string starting with '#' found in the resource (a local reference, or a canonical/uri to a contained one). */
export interface LocalRef {
  path: JsonPath;
  value: string;
}

/**
 * ref-1 (a local reference names a contained resource) and dom-3 (every contained resource is
 * referenced from elsewhere in the resource, or refers to its container with '#').
 */
export function checkLocalReferences(resource: Json, rootType: string, refs: readonly LocalRef[], report: Report): void {
  const contained = Array.isArray(resource.contained) ? (resource.contained as unknown[]) : [];
  if (contained.length === 0 && refs.length === 0) return;
  const ids = new Set(contained.map((c) => (c && typeof c === 'object' ? (c as Json).id : undefined)).filter((id) => typeof id === 'string'));
  const fail = (key: string, human: string, path: JsonPath): boolean => {
    const expression = toFhirPath(rootType, path);
    const issue: ValidationIssue = {
      code: 'invariant',
      messageCode: 'MSG_INVARIANT',
      message: `Constraint ${key} failed: ${human} at ${expression}`,
      expression,
    };
    return report(issue);
  };
  for (const ref of refs) {
    if (ref.path[ref.path.length - 1] !== 'reference' || ref.value === '#') continue;
    if (!ids.has(ref.value.slice(1))) {
      if (!fail('ref-1', `SHALL have a contained resource if a local reference is provided ('${ref.value}')`, ref.path)) return;
    }
  }
  const referenced = new Set(refs.map((r) => r.value));
  for (let i = 0; i < contained.length; i++) {
    const c = contained[i];
    const id = c && typeof c === 'object' ? (c as Json).id : undefined;
    if (typeof id === 'string' && referenced.has(`#${id}`)) continue;
    if (refs.some((r) => r.value === '#' && r.path[0] === 'contained' && r.path[1] === i)) continue;
    const human =
      'If the resource is contained in another resource, it SHALL be referred to from elsewhere in the resource or SHALL refer to the containing resource';
    if (!fail('dom-3', human, ['contained', i])) return;
  }
}
