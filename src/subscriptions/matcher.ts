import type { Resource } from 'fhir/r4';
import type { AccessPolicy } from '../auth/types';
import type { FilterSpec, SubscriptionSpec } from './spec';
import type { CriteriaEvaluator } from './topics';

/** An active subscription ready to be matched: compiled once when it is loaded. */
export interface ActiveSubscription {
  spec: SubscriptionSpec;
  policy: AccessPolicy;
  filters: Array<{ resourceType: string; compiled: unknown }>;
  /** "Patient/<id>" keys one of its filters pins it to, when any (used to skip it cheaply). */
  patientKeys?: string[];
}

/**
 * Types whose `patient` / `subject` search parameter is the resource's own `subject` or `patient`
 * reference, so a pinned patient can be read straight from the resource to pre-select candidates.
 */
const PATIENT_ELEMENT_TYPES = new Set([
  'Observation', 'Condition', 'Encounter', 'DiagnosticReport', 'MedicationRequest', 'MedicationStatement',
  'Procedure', 'AllergyIntolerance', 'Immunization', 'ServiceRequest', 'CarePlan', 'QuestionnaireResponse',
]);

/** Normalises "Patient/1", "1" or "http://x/fhir/Patient/1/_history/2" to "Patient/1". */
export function patientKey(ref: string | undefined, bareIsPatient: boolean): string | undefined {
  if (!ref) return undefined;
  const m = /(?:^|\/)Patient\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(ref);
  if (m) return `Patient/${m[1]}`;
  return bareIsPatient && /^[A-Za-z0-9\-.]{1,64}$/.test(ref) ? `Patient/${ref}` : undefined;
}

/** Patient keys a filter pins, from `patient=` / `subject=` / `subject:Patient=` (comma means any of). */
export function pinnedPatients(f: FilterSpec): string[] | undefined {
  if (!PATIENT_ELEMENT_TYPES.has(f.resourceType)) return undefined;
  for (const kv of f.query.split('&')) {
    const eq = kv.indexOf('=');
    if (eq < 0) continue;
    const name = decodeURIComponent(kv.slice(0, eq));
    const value = decodeURIComponent(kv.slice(eq + 1));
    const bare = name === 'patient' || name === 'subject:Patient' || name === 'patient:Patient';
    if (!bare && name !== 'subject') continue;
    const keys = value.split(',').map((v) => patientKey(v, bare));
    if (keys.length && keys.every((k): k is string => k !== undefined)) return keys;
  }
  return undefined;
}

/** The patient a resource is about, read from its subject/patient element (see PATIENT_ELEMENT_TYPES). */
export function resourcePatientKeys(r: Resource): string[] {
  if (!PATIENT_ELEMENT_TYPES.has(r.resourceType)) return [];
  const rec = r as unknown as { subject?: { reference?: string }; patient?: { reference?: string } };
  const keys = [patientKey(rec.subject?.reference, false), patientKey(rec.patient?.reference, false)];
  return keys.filter((k): k is string => k !== undefined);
}

/** Subscriptions bucketed so that an event only looks at those that can match it. */
class Buckets {
  private any: ActiveSubscription[] = [];
  private byPatient = new Map<string, ActiveSubscription[]>();
  add(s: ActiveSubscription): void {
    if (s.patientKeys?.length) {
      for (const k of s.patientKeys) {
        const list = this.byPatient.get(k) ?? [];
        list.push(s);
        this.byPatient.set(k, list);
      }
    } else this.any.push(s);
  }
  remove(id: string): void {
    this.any = this.any.filter((s) => s.spec.id !== id);
    for (const [k, list] of this.byPatient) {
      const kept = list.filter((s) => s.spec.id !== id);
      if (kept.length) this.byPatient.set(k, kept);
      else this.byPatient.delete(k);
    }
  }
  candidates(r: Resource | undefined): ActiveSubscription[] {
    if (!r) return this.any;
    const keys = resourcePatientKeys(r);
    if (!keys.length) return this.any;
    const seen = new Set<ActiveSubscription>(this.any);
    for (const k of keys) for (const s of this.byPatient.get(k) ?? []) seen.add(s);
    return [...seen];
  }
  get size(): number {
    return this.any.length + [...this.byPatient.values()].reduce((n, l) => n + l.length, 0);
  }
}

/**
 * Active subscriptions indexed by resource type (R4 criteria) and by topic, then by pinned
 * patient, so matching cost does not grow with subscriptions that cannot match the event.
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
      s.patientKeys = pinnedPatients(spec.filters[0]);
      const type = spec.filters[0].resourceType;
      if (!this.byType.has(type)) this.byType.set(type, new Buckets());
      this.byType.get(type)!.add(s);
    } else {
      const perType = this.byTopic.get(spec.topic!) ?? new Map<string, Buckets>();
      this.byTopic.set(spec.topic!, perType);
      for (const type of topicTypes) {
        const own = spec.filters.filter((f) => f.resourceType === type);
        const pinned = own.map(pinnedPatients).find((k) => k !== undefined);
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
