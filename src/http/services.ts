import type { Bundle, CapabilityStatement, Flag, OperationOutcome } from 'fhir/r4';
import type { AccessPolicy, Principal } from '../auth/types';
import type { Config } from '../config';
import type { CursorCodec } from '../resources/cursor';
import type { ResourceStore } from '../resources/store';
import type { Eraser } from '../erasure/eraser';

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

/** Alert episodes as the HTTP layer uses them (implemented by src/alerting). */
export interface AlertsPort {
  acknowledge(flagId: string, principal: Principal): Promise<Flag>;
}

/** Everything an interaction handler may use. */
export interface Services {
  config: Config;
  store: ResourceStore;
  search: SearchPort;
  cursors: CursorCodec;
  /** Absent when alerting is switched off. */
  alerts?: AlertsPort;
  /** $purge and $expunge. */
  erasure: Eraser;
  capabilityStatement(): CapabilityStatement;
  validateOperation(resource: unknown, type: string, mode: 'create' | 'update', id?: string): OperationOutcome;
}
