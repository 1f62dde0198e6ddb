import type { Resource } from 'fhir/r4';
import type { WriteResult } from '../resources/store';
import type { CurrentDoc } from '../storage/types';
import type { FhirResponse } from './types';

export function versionHeaders(vid: number, ts: Date): Record<string, string> {
  return { ETag: `W/"${vid}"`, 'Last-Modified': ts.toUTCString() };
}

export function readResponse(doc: Pick<CurrentDoc, 'res' | 'vid' | 'ts' | 'comp'>, body?: Resource): FhirResponse {
  return { status: 200, body: body ?? doc.res, headers: versionHeaders(doc.vid, doc.ts), patients: doc.comp };
}

export function locationOf(baseUrl: string, r: Pick<WriteResult, 'type' | 'id' | 'vid'>): string {
  return `${baseUrl}/${r.type}/${r.id}/_history/${r.vid}`;
}

export function writeResponse(baseUrl: string, r: WriteResult): FhirResponse {
  const headers = versionHeaders(r.vid, r.ts);
  if (r.status === 201 || r.changed) headers.Location = locationOf(baseUrl, r);
  if (r.status === 200 && !r.changed) headers.Location = locationOf(baseUrl, r);
  return { status: r.status, body: r.resource, headers, patients: r.comp, isWrite: true };
}
