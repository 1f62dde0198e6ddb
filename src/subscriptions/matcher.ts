import type { Resource } from 'fhir/r4';
import type { AccessPolicy } from '../auth/types';
import type { FilterSpec, SubscriptionSpec } from './spec';
import type { CriteriaEvaluator } from './topics';
import { ID_PATTERN, ID_RE } from '../resources/id';

/** An active subscription ready to be matched: compiled once when it is loaded. */
export interface ActiveSubscription {
  spec: SubscriptionSpec;
  policy: AccessPolicy;
  filters: Array<{ resourceType: string; compiled: unknown }>;
  /** Keys one of its filters pins it to ("Patient/1", "code:http://loinc.org|8867-4"), used to skip it cheaply. */
  patientKeys?: string[];
}

/**
 * Types whose `patient` / `subject` search parameter is the resource's own `subject` or `patient`
 * reference, so a pinned patient can be read straight from the resource to pre-select candidates.
 */
const PATIENT_ELEMENT_TYPES = new Set([
  'Observation', 'Condition', 'Encounter', 'DiagnosticReport', 'MedicationRequest', 'MedicationStatement',
  'Procedure', 'AllergyIntolerance', 'Immunization', 'ServiceRequest', 'CarePlan', 'QuestionnaireResponse',
  // Alert episodes: `patient` is Flag.subject where it is a Patient, `subject` Flag.subject.
  'Flag',
]);

/** Normalises "Patient/1", "1" or "http://x/fhir/Patient/1/_history/2" to "Patient/1". */
export function patientKey(ref: string | undefined, bareIsPatient: boolean): string | undefined {
  return refKey('Patient', ref, bareIsPatient);
}

function refKey(type: string, ref: string | undefined, bareIsType: boolean): string | undefined {
  if (!ref) return undefined;
  const m = new RegExp(`(?:^|/)${type}/(${ID_PATTERN})(?:/_history/[^/]+)?$`).exec(ref);
  if (m) return `${type}/${m[1]}`;
  return bareIsType && ID_RE.test(ref) ? `${type}/${ref}` : undefined;
}

/** Keys for `code=` values: "sys|code", "|code" (no system) or "code" (any system). */
function codeKey(value: string): string | undefined {
  if (!value || value.includes('\\')) return undefined; // escaped separators: leave to the evaluator
  return `code:${value}`;
}

/**
 * Keys a filter pins its subscription to, from one equality parameter the resource itself can
 * answer: patient/subject (a Patient reference), and for Observation also code and device. A
 * comma means any of; modifiers (other than a Patient/Device type) disable pinning.
 */
export function pinnedKeys(f: FilterSpec): string[] | undefined {
  if (!PATIENT_ELEMENT_TYPES.has(f.resourceType)) return undefined;
  const obs = f.resourceType === 'Observation';
  for (const kv of f.query.split('&')) {
    const eq = kv.indexOf('=');
    if (eq < 0) continue;
    let name: string;
    let value: string;
    try {
      name = decodeURIComponent(kv.slice(0, eq));
      value = decodeURIComponent(kv.slice(eq + 1));
    } catch {
      return undefined;
    }
    let key: ((v: string) => string | undefined) | undefined;
    if (name === 'patient' || name === 'subject:Patient' || name === 'patient:Patient') key = (v) => patientKey(v, true);
    else if (name === 'subject') key = (v) => patientKey(v, false);
    else if (obs && name === 'code') key = codeKey;
    else if (obs && (name === 'device' || name === 'device:Device')) key = (v) => refKey('Device', v, true);
    if (!key) continue;
    const keys = value.split(',').map(key);
    if (keys.length && keys.every((k): k is string => k !== undefined)) return keys;
  }
  return undefined;
}

/** Patient keys only (see pinnedKeys). */
export function pinnedPatients(f: FilterSpec): string[] | undefined {
  const k = pinnedKeys(f);
  return k && k.every((x) => x.startsWith('Patient/')) ? k : undefined;
}

/** Every key under which a subscription able to match this resource could be filed. */
export function resourceKeys(r: Resource): string[] {
  if (!PATIENT_ELEMENT_TYPES.has(r.resourceType)) return [];
  const rec = r as unknown as {
    subject?: { reference?: string };
    patient?: { reference?: string };
    device?: { reference?: string };
    code?: { coding?: Array<{ system?: string; code?: string }> };
  };
  const keys = [patientKey(rec.subject?.reference, false), patientKey(rec.patient?.reference, false)];
  if (r.resourceType === 'Observation') {
    keys.push(refKey('Device', rec.device?.reference, false));
    for (const c of rec.code?.coding ?? []) {
      if (!c.code) continue;
      keys.push(`code:${c.code}`, c.system ? `code:${c.system}|${c.code}` : `code:|${c.code}`);
    }
  }
  return keys.filter((k): k is string => k !== undefined);
}

/** The patient a resource is about, read from its subject/patient element (see PATIENT_ELEMENT_TYPES). */
export function resourcePatientKeys(r: Resource): string[] {
  return resourceKeys(r).filter((k) => k.startsWith('Patient/'));
}

/** Subscriptions bucketed so that an event only looks at those that can match it. */
class Buckets {
  private any: ActiveSubscription[] = [];
  private byPatient = new Map<string, ActiveSubscription[]>();
  private ids = new Set<string>();
  add(s: ActiveSubscription): void {
    this.ids.add(s.spec.id);
    if (s.patientKeys?.length) {
      for (const k of s.patientKeys) {
        const list = this.byPatient.get(k) ?? [];
        list.push(s);
        this.byPatient.set(k, list);
      }
    } else this.any.push(s);
  }
  remove(id: string): void {
    if (!this.ids.delete(id)) return;
    this.any = this.any.filter((s) => s.spec.id !== id);
    for (const [k, list] of this.byPatient) {
      const kept = list.filter((s) => s.spec.id !== id);
      if (kept.length) this.byPatient.set(k, kept);
      else this.byPatient.delete(k);
    }
  }
  candidates(r: Resource | undefined): ActiveSubscription[] {
    if (!r) return this.any;
    const keys = resourceKeys(r);
    if (!keys.length) return this.any;
    const seen = new Set<ActiveSubscription>(this.any);
    for (const k of keys) for (const s of this.byPatient.get(k) ?? []) seen.add(s);
    return [...seen];
  }
  get size(): number {
    return this.ids.size;
  }
}

/**
 * Active subscriptions indexed by resource type (R4 criteria) and by topic, then by a pinned
 * patient, code or device, so matching cost does not grow with subscriptions that cannot match the event.
 */
export class ActiveIndex {
  private byType = new Map<string, Buckets>();
  private byTopic = new Map<string, Map<string, Buckets>>();
  private all = new Map<string, ActiveSubscription>();

  constructor(private readonly criteria: CriteriaEvaluator) {}

  /** Compiles and adds (or replaces) a subscription. Throws if its criteria no longer compile. */
  put(spec: SubscriptionSpec, policy: AccessPolicy, topicTypes: Set<string> = new Set()): ActiveSubscription {
    this.remove(spec.id);
    const filters = spec.filters.map((f) => ({ resourceType: f.resourceType, compiled: this.criteria.compileCriteria(f.resourceType, f.query) }));
    const s: ActiveSubscription = { spec, policy, filters };
    if (spec.kind === 'criteria') {
      s.patientKeys = pinnedKeys(spec.filters[0]);
      const type = spec.filters[0].resourceType;
      if (!this.byType.has(type)) this.byType.set(type, new Buckets());
      this.byType.get(type)!.add(s);
    } else {
      const perType = this.byTopic.get(spec.topic!) ?? new Map<string, Buckets>();
      this.byTopic.set(spec.topic!, perType);
      for (const type of topicTypes) {
        const own = spec.filters.filter((f) => f.resourceType === type);
        const pinned = own.map(pinnedKeys).find((k) => k !== undefined);
        const entry: ActiveSubscription = pinned ? { ...s, patientKeys: pinned } : s;
        if (!perType.has(type)) perType.set(type, new Buckets());
        perType.get(type)!.add(entry);
      }
    }
    this.all.set(spec.id, s);
    return s;
  }

  remove(id: string): void {
    if (!this.all.delete(id)) return;
    for (const b of this.byType.values()) b.remove(id);
    for (const m of this.byTopic.values()) for (const b of m.values()) b.remove(id);
  }

  get(id: string): ActiveSubscription | undefined {
    return this.all.get(id);
  }

  get size(): number {
    return this.all.size;
  }

  heartbeatIds(): string[] {
    return [...this.all.values()].filter((s) => s.spec.heartbeatSeconds).map((s) => s.spec.id);
  }

  /** Topics that have at least one subscription interested in this type. */
  topicsFor(type: string): string[] {
    const out: string[] = [];
    for (const [url, perType] of this.byTopic) if ((perType.get(type)?.size ?? 0) > 0) out.push(url);
    return out;
  }

  criteriaCandidates(type: string, r: Resource | undefined): ActiveSubscription[] {
    return this.byType.get(type)?.candidates(r) ?? [];
  }

  topicCandidates(topic: string, type: string, r: Resource | undefined): ActiveSubscription[] {
    return this.byTopic.get(topic)?.get(type)?.candidates(r) ?? [];
  }

  /** All filters of the subscription for this type pass on the resource. */
  filtersPass(s: ActiveSubscription, type: string, r: Resource): boolean {
    return s.filters.every((f) => f.resourceType !== type || this.criteria.matches(f.compiled, r));
  }
}
