import type { AccessPolicy } from '../auth/types';
import { SERVED_TYPES } from '../resources/registry';
import { type Cond, TRUE, and } from '../search/cond';
import { compartmentParams } from '../search/indexer';

/**
 * Served types that are in the R4 Patient compartment (CompartmentDefinition/patient, plus
 * Device.patient, see src/search/indexer.ts). The Patient itself is in its own compartment.
 */
export const PATIENT_COMPARTMENT_TYPES: readonly string[] = SERVED_TYPES.filter((t) => t === 'Patient' || compartmentParams(t).length > 0);

/**
 * The caller's policy, narrowed to one patient's compartment (`comp`, computed at write time):
 * a compartment search is the same search with one more restriction, so it obeys the caller's
 * access exactly as search does, includes and paging alike. With no patient id, narrowed to
 * resources in some patient's compartment (type-level Patient/$everything).
 */
export function compartmentPolicy(policy: AccessPolicy, patientId?: string): AccessPolicy {
  const member = patientId ? `Patient/${patientId}` : undefined;
  const narrowing = (type: string): Cond | undefined => {
    if (member) return { k: 'eq', f: 'comp', v: member };
    return type === 'Patient' ? undefined : { k: 'regex', f: 'comp', re: '^Patient/' };
  };
  const inside = (type: string, comp: string[]): boolean =>
    member ? comp.includes(member) : type === 'Patient' || comp.some((c) => c.startsWith('Patient/'));
  return {
    assertAllowed: (interaction, type) => policy.assertAllowed(interaction, type),
    readCond: (type, interaction) => {
      const own = policy.readCond(type, interaction);
      const n = narrowing(type);
      return n ? and([own ?? TRUE, n]) : own;
    },
    canRead: (resource, comp, interaction) => inside(resource.resourceType, comp) && policy.canRead(resource, comp, interaction),
    canWrite: (resource, comp, interaction) => policy.canWrite(resource, comp, interaction),
  };
}
