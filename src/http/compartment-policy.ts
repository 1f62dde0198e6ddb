import type { Filter, Document } from 'mongodb';
import type { AccessPolicy } from '../auth/types';
import { SERVED_TYPES } from '../resources/registry';
import { compartmentParams } from '../search/indexer';

/**
 * Served types that are in the R4 Patient compartment (CompartmentDefinition/patient, plus
 * Device.patient, see src/search/indexer.ts). The Patient itself is in its own compartment.
 */
export const PATIENT_COMPARTMENT_TYPES: readonly string[] = SERVED_TYPES.filter((t) => t === 'Patient' || compartmentParams(t).length > 0);

function and(a: Filter<Document> | undefined, b: Filter<Document>): Filter<Document> {
  return a && Object.keys(a).length > 0 ? { $and: [a, b] } : b;
}

/**
 * The caller's policy, narrowed to one patient's compartment (`comp`, computed at write time):
 * a compartment search is the same search with one more restriction, so it obeys the caller's
 * access exactly as search does, includes and paging alike. With no patient id, narrowed to
 * resources in some patient's compartment (type-level Patient/$everything).
 */
export function compartmentPolicy(policy: AccessPolicy, patientId?: string): AccessPolicy {
  const member = patientId ? `Patient/${patientId}` : undefined;
  const filter = (type: string): Filter<Document> | undefined => {
    if (member) return { comp: member };
    return type === 'Patient' ? undefined : { comp: { $regex: '^Patient/' } };
  };
  const inside = (type: string, comp: string[]): boolean =>
    member ? comp.includes(member) : type === 'Patient' || comp.some((c) => c.startsWith('Patient/'));
  return {
    assertAllowed: (interaction, type) => policy.assertAllowed(interaction, type),
    readFilter: (type, interaction) => {
      const own = policy.readFilter(type, interaction);
      const f = filter(type);
      return f ? and(own, f) : own;
    },
    canRead: (resource, comp, interaction) => inside(resource.resourceType, comp) && policy.canRead(resource, comp, interaction),
    canWrite: (resource, comp, interaction) => policy.canWrite(resource, comp, interaction),
  };
}
