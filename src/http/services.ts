import type { Bundle, CapabilityStatement, OperationOutcome } from 'fhir/r4';
import type { AccessPolicy } from '../auth/types';
import type { Config } from '../config';
import type { CursorCodec } from '../resources/cursor';
import type { ResourceStore } from '../resources/store';

/** A search as the HTTP layer asks for it. */
export interface SearchQuery {
  type?: string;
  params: [string, string][];
  policy: AccessPolicy;
  baseUrl: string;
  handling: 'strict' | 'lenient';
}

/** The search engine as the HTTP layer uses it (implemented by src/search). */
export interface SearchPort {
  search(req: SearchQuery): Promise<Bundle>;
  lastn(req: SearchQuery): Promise<Bundle>;
}

/** Everything an interaction handler may use. */
export interface Services {
  config: Config;
  store: ResourceStore;
  search: SearchPort;
  cursors: CursorCodec;
  capabilityStatement(): CapabilityStatement;
  validateOperation(resource: unknown, type: string, mode: 'create' | 'update', id?: string): OperationOutcome;
}
