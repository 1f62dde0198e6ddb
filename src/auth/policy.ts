import type { Resource } from 'fhir/r4';
import { Errors, isFhirError } from '../errors';
import { type Cond, FALSE, and, or } from '../search/cond';
import { formatScope, lettersFor, type Permission, type ResourceScope } from './scopes';
import type { AccessPolicy, CriteriaPort, Interaction } from './types';

/** A scope ready for use: its restriction compiled once. */
interface CompiledScope {
  scope: ResourceScope;
  criteria?: unknown;
}

/** Matches no document: used for types the caller may not read at all. */
export const MATCH_NOTHING: Cond = FALSE;

const READ_LETTERS: Permission[] = ['r', 's'];
const WRITE_LETTERS: Permission[] = ['c', 'u', 'd'];

/**
 * The access policy of one token: its resource scopes folded into "which interactions on which
 * types" plus "which documents" (patient compartment AND v2 restriction, OR across scopes).
 *
 * Patient rule: a `patient/` scope reaches a Patient by its id, and any other resource through
 * `comp` (the patient compartment computed at write time from the official
 * CompartmentDefinition: Observation by subject/performer, Device by Device.patient, ...).
 * Types outside the patient compartment are unreachable through `patient/` scopes.
 * `user/` scopes are applied like `system/` ones: we know no fhirUser to narrow them further.
 */
export class ScopePolicy implements AccessPolicy {
  private readonly scopes: CompiledScope[];

  /**
   * Scopes that cannot apply are dropped rather than widened: a `patient/` scope without a
   * patient, or a restriction the search engine refuses (`strict` makes the latter throw).
   */
  constructor(
    scopes: ResourceScope[],
    private readonly patient: string | undefined,
    private readonly criteria: CriteriaPort,
    opts: { strict?: boolean } = {},
  ) {
    this.scopes = [];
    for (const scope of scopes) {
      if (scope.context === 'patient' && !patient) continue;
      if (scope.query === undefined) {
        this.scopes.push({ scope });
        continue;
      }
      try {
        const compiled = criteria.compileCriteria(scope.type, scope.query);
        // A restriction the database can only approximate (a superset filter) would grant
        // more than it says; such restrictions are refused rather than enforced loosely.
        if ((compiled as { exact?: boolean }).exact === false) {
          throw Errors.badRequest(
            `The scope restriction "${scope.query}" on ${scope.type} cannot be enforced exactly; use token or reference restrictions such as category=...`,
            'MSG_SCOPE_RESTRICTION_INEXACT',
          );
        }
        this.scopes.push({ scope, criteria: compiled });
      } catch (e) {
        if (opts.strict) throw e;
        if (!isFhirError(e)) throw e;
      }
    }
  }

  assertAllowed(interaction: Interaction, type: string): void {
    if (this.granting(type, lettersFor(interaction)).length > 0) return;
    const needed = lettersFor(interaction).join(' or ');
    const held = this.scopes.map((s) => formatScope(s.scope)).join(' ') || '(none)';
    throw Errors.forbidden(
      `The access token does not permit ${interaction} on ${type}: it needs a scope with ${needed} on ${type} (granted: ${held})`,
      'MSG_AUTH_SCOPE',
    );
  }

  readCond(type: string, interaction?: Interaction): Cond | undefined {
    return this.condFor(type, interaction ? lettersFor(interaction) : READ_LETTERS);
  }

  canRead(resource: Resource, comp: string[], interaction?: Interaction): boolean {
    return this.allows(resource, comp, interaction ? lettersFor(interaction) : READ_LETTERS);
  }

  canWrite(resource: Resource, comp: string[], interaction?: Interaction): boolean {
    return this.allows(resource, comp, interaction ? lettersFor(interaction) : WRITE_LETTERS);
  }

  private granting(type: string, letters: Permission[]): CompiledScope[] {
    return this.scopes.filter(
      (s) => (s.scope.type === '*' || s.scope.type === type) && s.scope.perms.some((p) => letters.includes(p)),
    );
  }

  private condFor(type: string, letters: Permission[]): Cond | undefined {
    const branches: Cond[] = [];
    for (const s of this.granting(type, letters)) {
      const parts: Cond[] = [];
      if (s.scope.context === 'patient') parts.push(this.compartmentCond(type));
      if (s.criteria !== undefined) parts.push(this.criteria.criteriaCond(s.criteria));
      // One unrestricted scope makes the whole type readable: no condition at all.
      if (parts.length === 0) return undefined;
      branches.push(and(parts));
    }
    return branches.length === 0 ? MATCH_NOTHING : or(branches);
  }

  private compartmentCond(type: string): Cond {
    return type === 'Patient' ? { k: 'eq', f: '_id', v: this.patient ?? null } : { k: 'eq', f: 'comp', v: `Patient/${this.patient}` };
  }

  private allows(resource: Resource, comp: string[], letters: Permission[]): boolean {
    const type = resource.resourceType;
    return this.granting(type, letters).some((s) => {
      if (s.scope.context === 'patient') {
        const inCompartment = type === 'Patient' ? resource.id === this.patient : comp.includes(`Patient/${this.patient}`);
        if (!inCompartment) return false;
      }
      return s.criteria === undefined || this.criteria.matches(s.criteria, resource);
    });
  }
}
