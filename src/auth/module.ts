import type { CapabilityStatementRestSecurity, Resource } from 'fhir/r4';
import type { RequestHandler } from 'express';
import type { Db } from 'mongodb';
import type { Logger } from 'pino';
import type { Config } from '../config';
import { isFhirError } from '../errors';
import type { ModuleParts } from '../module';
import type { ResourcesModule } from '../resources/module';
import type { PatientDirectory } from './authorize';
import { AuthService } from './service';
import { allowAllPolicy, anonymousPrincipal, type AccessPolicy, type Principal } from './types';

export interface AuthModuleDeps {
  config: Config;
  db: Db;
  logger: Logger;
  core: ResourcesModule;
  /** Injected clock (tests); the service's own when absent. */
  clock?: () => Date;
}

/** Authentication and the authorization server, or their open stand-ins when AUTH_ENABLED=false. */
export interface AuthModule extends ModuleParts {
  /** Absent with auth off. */
  service?: AuthService;
  authenticate(authorization: string | undefined): Promise<Principal>;
  policyFor(p: { scopes: string[]; patient?: string }): AccessPolicy;
  /** The per-client request limit, if one is configured. */
  rateOf(clientId: string): Promise<number | undefined>;
  /** The authorization server's endpoints (outside the FHIR base). */
  routers: RequestHandler[];
  /** For the CapabilityStatement (absent with auth off). */
  security(): CapabilityStatementRestSecurity | undefined;
}

export async function createAuthModule(deps: AuthModuleDeps): Promise<AuthModule> {
  const { config, db, logger, core } = deps;
  if (!config.authEnabled) {
    return {
      authenticate: async () => anonymousPrincipal,
      policyFor: () => anonymousPrincipal.policy,
      rateOf: async () => undefined,
      routers: [],
      security: () => undefined,
    };
  }
  const auth = await AuthService.create({ db, config, logger, criteria: core.search, now: deps.clock, patients: patientDirectory(core) });
  return {
    service: auth,
    authenticate: (h) => auth.authenticate(h),
    policyFor: (p) => auth.policyFor(p.scopes, p.patient),
    rateOf: (clientId) => auth.clientRateLimit(clientId),
    routers: [auth.router()],
    security: () => auth.capabilitySecurity(),
    stop: () => auth.close(),
  };
}

/** The sign-in pages see patients through search and the store (called only at request time). */
function patientDirectory(core: ResourcesModule): PatientDirectory {
  return {
    find: async (name) =>
      (await core.search.findMatches('Patient', `name=${encodeURIComponent(name)}`, allowAllPolicy, 20)).map((d) => ({ id: d._id, label: patientLabel(d.res) })),
    get: async (id) => {
      try {
        const d = await core.store.read('Patient', id, allowAllPolicy);
        return { id: d._id, label: patientLabel(d.res) };
      } catch (e) {
        if (isFhirError(e)) return undefined;
        throw e;
      }
    },
  };
}

/** "Family, Given (birth date)" for the patient picker and the consent page. */
function patientLabel(r: Resource): string {
  const p = r as { name?: { family?: string; given?: string[]; text?: string }[]; birthDate?: string };
  const n = p.name?.[0];
  const name = n?.text ?? ([n?.family, (n?.given ?? []).join(' ')].filter(Boolean).join(', ') || r.id || '?');
  return p.birthDate ? `${name} (${p.birthDate})` : name;
}
