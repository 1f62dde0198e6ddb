import type { CodeableConcept, Coding, Observation, ObservationComponent, ObservationDefinition, Quantity, Range } from 'fhir/r4';
import { canonicalLoinc, withLoincEquivalents } from '../terminology/vital-codes';
import { EXT, V3_INTERPRETATION } from './constants';

/** UCUM unit conversion (the library ships no type declarations; this is the part we use). */
interface UcumLib {
  UcumLhcUtils: { getInstance(): { convertUnitTo(from: string, value: number, to: string): { status: string; toVal?: number } } };
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ucum = (require('@lhncbc/ucum-lhc') as UcumLib).UcumLhcUtils.getInstance();

/** The ranges one value is judged against, all in the unit of `unit` (a UCUM code or free text). */
export interface Ranges {
  normal?: { low?: number; high?: number };
  /** Values below low / above high are critical (LL / HH). */
  critical?: { low?: number; high?: number };
  unit?: string;
  source: 'reference-range' | 'patient-target' | 'observation-definition';
  /** Names the ObservationDefinition or Goal used, when there was one. */
  sourceName?: string;
}

export type DerivedCode = 'N' | 'H' | 'L' | 'HH' | 'LL';

const DISPLAY: Record<DerivedCode, string> = {
  N: 'Normal',
  H: 'High',
  L: 'Low',
  HH: 'Critical high',
  LL: 'Critical low',
};

function unitOf(q: Quantity | undefined): string | undefined {
  return q ? (q.code ?? q.unit) : undefined;
}

/**
 * Converts a range bound into `toUnit`; undefined when it cannot be compared. A bound without a
 * unit is taken to be in the value's unit (reference ranges often omit it).
 */
function boundIn(q: Quantity | undefined, toUnit: string | undefined): number | undefined {
  if (!q || typeof q.value !== 'number') return undefined;
  const from = unitOf(q);
  if (!from || from === toUnit) return q.value;
  if (!toUnit) return undefined;
  const r = ucum.convertUnitTo(from, q.value, toUnit);
  return r.status === 'succeeded' && typeof r.toVal === 'number' ? r.toVal : undefined;
}

/** Judges a value: critical bounds first, then the normal range. */
export function classify(value: number, r: Ranges): DerivedCode | undefined {
  const { normal, critical } = r;
  if (critical?.high !== undefined && value > critical.high) return 'HH';
  if (critical?.low !== undefined && value < critical.low) return 'LL';
  if (!normal || (normal.low === undefined && normal.high === undefined)) {
    return critical ? 'N' : undefined;
  }
  if (normal.high !== undefined && value > normal.high) return 'H';
  if (normal.low !== undefined && value < normal.low) return 'L';
  return 'N';
}

export function rangeBounds(range: Range | { low?: Quantity; high?: Quantity } | undefined, unit: string | undefined) {
  if (!range) return undefined;
  const low = boundIn(range.low, unit);
  const high = boundIn(range.high, unit);
  // A bound that is present but not comparable makes the whole range unusable rather than half-used.
  if ((range.low && low === undefined) || (range.high && high === undefined)) return undefined;
  return { low, high };
}

/** Ranges from an Observation's own referenceRange (entries without a type, or of type "normal"). */
export function rangesFromReferenceRange(
  refs: Observation['referenceRange'] | ObservationComponent['referenceRange'],
  unit: string | undefined,
): Ranges | undefined {
  for (const rr of refs ?? []) {
    const isNormal = !rr.type || (rr.type.coding ?? []).some((c) => c.code === 'normal');
    if (!isNormal || rr.appliesTo?.length || rr.age) continue;
    const normal = rangeBounds({ low: rr.low, high: rr.high }, unit);
    if (normal && (normal.low !== undefined || normal.high !== undefined)) return { normal, unit, source: 'reference-range' };
  }
  return undefined;
}

/** What is known about the patient an Observation is about (for age- and gender-specific ranges). */
export interface PatientFacts {
  ageYears?: number;
  gender?: string;
}

type Interval = NonNullable<ObservationDefinition['qualifiedInterval']>[number];

/** Whether an interval restricted to an age and/or gender applies to this patient. */
function appliesTo(q: Interval, p: PatientFacts): boolean {
  if (q.gender && q.gender !== p.gender) return false;
  if (q.age) {
    if (p.ageYears === undefined) return false;
    const unitYears = (x: Quantity | undefined) => (x?.code === 'mo' ? (x.value ?? 0) / 12 : x?.code === 'wk' ? (x.value ?? 0) / 52 : x?.value);
    const lo = unitYears(q.age.low);
    const hi = unitYears(q.age.high);
    if (lo !== undefined && p.ageYears < lo) return false;
    if (hi !== undefined && p.ageYears > hi) return false;
  }
  return true;
}

/**
 * Ranges from an ObservationDefinition: the `reference` interval is the normal range and the
 * `critical` interval bounds the non-critical zone (below its low: LL, above its high: HH).
 * Intervals restricted to an age and/or gender are used when the patient matches them (they win
 * over unrestricted ones); intervals restricted to a context, population or gestational age are skipped.
 */
export function rangesFromDefinition(def: ObservationDefinition, unit: string | undefined, patient?: PatientFacts): Ranges | undefined {
  const usable = (def.qualifiedInterval ?? []).filter((q) => !q.context && !q.appliesTo?.length && !q.gestationalAge);
  const general = usable.filter((q) => !q.age && !q.gender);
  const specific = patient ? usable.filter((q) => (q.age || q.gender) && appliesTo(q, patient)) : [];
  const isRef = (q: Interval) => q.category === 'reference' || (!q.category && Boolean(q.range));
  const ref = specific.find(isRef) ?? general.find(isRef);
  const crit = specific.find((q) => q.category === 'critical') ?? general.find((q) => q.category === 'critical');
  const normal = rangeBounds(ref?.range, unit);
  const critical = rangeBounds(crit?.range, unit);
  if (!normal && !critical) return undefined;
  return { normal, critical, unit, source: 'observation-definition', sourceName: def.id ? `ObservationDefinition/${def.id}` : def.code?.text };
}

export function derivedInterpretation(code: DerivedCode, ranges: Ranges): CodeableConcept {
  const coding: Coding = { system: V3_INTERPRETATION, code, display: DISPLAY[code] };
  return {
    extension: [{ url: EXT.derivedInterpretation, valueCode: ranges.source }],
    coding: [coding],
    text: ranges.sourceName ? `${DISPLAY[code]} (derived from ${ranges.sourceName})` : `${DISPLAY[code]} (derived from the reference range)`,
  };
}

/**
 * Per-Observation facts for range resolution beyond the Observation itself: the patient's own
 * targets (by LOINC code, already in the value's terms via `targetFor`) and age/gender.
 */
export interface RangeContext {
  targetFor?: (loinc: string, unit: string | undefined) => Ranges | undefined;
  patient?: PatientFacts;
}

/** Looks up definitions by the codes of an Observation (or component); "system|code" keys. */
export type DefinitionLookup = (codes: Coding[]) => ObservationDefinition | undefined;

function hasInterpretation(x: { interpretation?: CodeableConcept[] }): boolean {
  return (x.interpretation ?? []).some((i) => (i.coding?.length ?? 0) > 0 || Boolean(i.text));
}

/**
 * Ranges in the order: the Observation's own referenceRange, the patient's target, an
 * ObservationDefinition interval matching the patient's age/gender, its unrestricted intervals
 * (stored definitions override the shipped defaults `ObservationDefinition/vital-*`).
 */
function deriveFor(
  value: Quantity | undefined,
  refs: Observation['referenceRange'],
  codes: Coding[],
  lookup: DefinitionLookup,
  ctx: RangeContext = {},
): CodeableConcept | undefined {
  if (!value || typeof value.value !== 'number' || value.comparator) return undefined;
  const unit = unitOf(value);
  let ranges = rangesFromReferenceRange(refs, unit);
  if (!ranges && ctx.targetFor) {
    const loinc = canonicalLoinc(codes);
    if (loinc) ranges = ctx.targetFor(loinc, unit);
  }
  if (!ranges) {
    const def = lookup(codes);
    if (def) ranges = rangesFromDefinition(def, unit, ctx.patient);
  }
  if (!ranges) return undefined;
  const code = classify(value.value, ranges);
  return code ? derivedInterpretation(code, ranges) : undefined;
}

/**
 * Adds a server-derived interpretation where the sender gave none: on the Observation itself
 * (valueQuantity) and on each component with a valueQuantity. Returns the input unchanged when
 * there is nothing to derive. Never overwrites what a sender wrote.
 */
export function deriveObservationInterpretation(obs: Observation, lookup: DefinitionLookup, ctx?: RangeContext): Observation {
  let out = obs;
  if (!hasInterpretation(obs)) {
    const it = deriveFor(obs.valueQuantity, obs.referenceRange, obs.code?.coding ?? [], lookup, ctx);
    if (it) out = { ...out, interpretation: [it] };
  }
  if (obs.component?.length) {
    let changed = false;
    const comps = obs.component.map((c) => {
      if (hasInterpretation(c)) return c;
      const it = deriveFor(c.valueQuantity, c.referenceRange, c.code?.coding ?? [], lookup, ctx);
      if (!it) return c;
      changed = true;
      return { ...c, interpretation: [it] };
    });
    if (changed) out = { ...out, component: comps };
  }
  return out;
}

/** Drops interpretations we derived earlier, so an update re-derives from the new value. */
export function stripDerived(obs: Observation): Observation {
  const isDerived = (i: CodeableConcept) => (i.extension ?? []).some((e) => e.url === EXT.derivedInterpretation);
  const clean = <T extends { interpretation?: CodeableConcept[] }>(x: T): T => {
    if (!x.interpretation?.some(isDerived)) return x;
    const kept = x.interpretation.filter((i) => !isDerived(i));
    const copy = { ...x };
    if (kept.length) copy.interpretation = kept;
    else delete copy.interpretation;
    return copy;
  };
  const out = clean(obs);
  return out.component ? { ...out, component: out.component.map(clean) } : out;
}

/** In-memory index of ObservationDefinitions by "system|code". */
export class DefinitionIndex {
  private byCode = new Map<string, ObservationDefinition>();
  constructor(defs: ObservationDefinition[] = []) {
    for (const d of defs) this.add(d);
  }
  add(def: ObservationDefinition): void {
    for (const c of def.code?.coding ?? []) if (c.code) this.byCode.set(`${c.system ?? ''}|${c.code}`, def);
  }
  /** MDC-coded Observations find the definition of their LOINC equivalent. */
  lookup: DefinitionLookup = (codes) => {
    for (const c of withLoincEquivalents(codes)) {
      const d = c.code ? this.byCode.get(`${c.system ?? ''}|${c.code}`) : undefined;
      if (d) return d;
    }
    return undefined;
  };
}
