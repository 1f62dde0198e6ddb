import type { Parameters } from 'fhir/r4';
import type { Principal } from '../../auth/types';
import { Errors } from '../../errors';
import type { ErasureReport } from '../../erasure/eraser';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';
import { knownType, validId } from './common';

/** Erasure is an operator's act: a system-level scope that may delete every type. */
export function assertSystemEraser(p: Principal): void {
  const ok = p.scopes.some((s) => {
    const m = /^system\/\*\.(.+)$/.exec(s);
    return Boolean(m && (m[1] === '*' || m[1] === 'write' || (/^c?r?u?d/.test(m[1]) && m[1].includes('d'))));
  });
  if (!ok) throw Errors.forbidden('Erasure needs a system-level token with delete on every type (system/*.cruds or system/*.*)', 'MSG_AUTH_SCOPE');
}

function dryRunOf(req: FhirRequest): boolean {
  const v = req.query.get('_dryRun') ?? req.query.get('dryRun');
  if (v !== null && v !== 'true' && v !== 'false') throw Errors.badRequest('_dryRun must be true or false', 'MSG_PARAM_INVALID');
  return v === 'true';
}

/** The report as Parameters: the counts, and the resources (for a dry run: what would go). */
export function reportParameters(r: ErasureReport): Parameters {
  const n = (name: string, v: number) => ({ name, valueInteger: v });
  return {
    resourceType: 'Parameters',
    parameter: [
      { name: 'dryRun', valueBoolean: r.dryRun },
      n('resources', r.resources),
      n('versions', r.versions),
      n('notifications', r.notifications),
      n('candidates', r.candidates),
      n('exportLines', r.exportLines),
      n('cancelledExports', r.cancelledExports),
      ...r.list.map((ref) => ({ name: 'resource', valueString: ref })),
    ],
  };
}

/** POST Patient/[id]/$purge[?_dryRun=true] */
export async function purge(s: Services, req: FhirRequest, id: string): Promise<FhirResponse> {
  validId(id);
  assertSystemEraser(req.principal);
  const report = await s.erasure.purge(id, { dryRun: dryRunOf(req), who: req.principal.clientId });
  return { status: 200, body: reportParameters(report), headers: {} };
}

/** POST [type]/[id]/$expunge[?_dryRun=true]: only a deleted resource's history can be expunged. */
export async function expunge(s: Services, req: FhirRequest, type: string, id: string): Promise<FhirResponse> {
  knownType(type);
  validId(id);
  assertSystemEraser(req.principal);
  const report = await s.erasure.expunge(type, id, { dryRun: dryRunOf(req), who: req.principal.clientId });
  return { status: 200, body: reportParameters(report), headers: {} };
}
