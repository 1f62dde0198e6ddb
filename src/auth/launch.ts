import express from 'express';
import { Errors } from '../errors';
import type { PatientDirectory } from './authorize';
import type { AuthUrls } from './discovery';
import { LAUNCH_TTL_MS, randomToken, sha256, type GrantStore } from './grants';
import type { Principal } from './types';

const ID_RE = /^[A-Za-z0-9\-.]{1,64}$/;

/**
 * POST /auth/launch: an EHR, authenticated with a Backend Services token that may read the
 * patient, obtains an opaque `launch` value carrying patient (and optional encounter) context,
 * then opens the app with `launch=<value>&iss=<FHIR base>`. Errors are OperationOutcomes.
 */
export function launchRouter(d: {
  urls: AuthUrls;
  grants: GrantStore;
  patients: PatientDirectory;
  authenticate: (authorization: string | undefined) => Promise<Principal>;
  now: () => Date;
}): express.Router {
  const r = express.Router();
  const parse = [express.urlencoded({ extended: false, limit: '4kb', parameterLimit: 10 }), express.json({ limit: '4kb' })];
  r.post('/auth/launch', ...parse, (req, res, next) => {
    (async () => {
      const principal = await d.authenticate(req.get('authorization'));
      if (principal.user) throw Errors.forbidden('EHR launches are created by the EHR system (a Backend Services client), not by a user token', 'MSG_AUTH_LAUNCH');
      const b = (req.body ?? {}) as Record<string, unknown>;
      const patient = b.patient;
      const encounter = b.encounter;
      if (typeof patient !== 'string' || !ID_RE.test(patient)) throw Errors.badRequest('patient (a Patient id) is required', 'MSG_AUTH_LAUNCH');
      if (encounter !== undefined && (typeof encounter !== 'string' || !ID_RE.test(encounter))) {
        throw Errors.badRequest('encounter must be an Encounter id', 'MSG_AUTH_LAUNCH');
      }
      principal.policy.assertAllowed('read', 'Patient');
      const found = await d.patients.get(patient);
      if (!found || !principal.policy.canRead({ resourceType: 'Patient', id: patient }, [`Patient/${patient}`], 'read')) {
        throw Errors.notFound(`Patient/${patient} is not known`, 'MSG_AUTH_LAUNCH');
      }
      const launch = randomToken();
      await d.grants.rows.addLaunch({
        _id: sha256(launch),
        patient,
        ...(typeof encounter === 'string' ? { encounter } : {}),
        clientId: principal.clientId,
        expiresAt: new Date(d.now().getTime() + LAUNCH_TTL_MS),
      });
      res.set('Cache-Control', 'no-store').status(201).json({ launch, expires_in: LAUNCH_TTL_MS / 1000, iss: d.urls.fhirBase });
    })().catch(next);
  });
  return r;
}
