import type { Resource } from 'fhir/r4';
import type { Principal } from '../auth/types';

/** A FHIR request after the HTTP edge: parsed, authenticated, independent of Express. */
export interface FhirRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path below the FHIR base, split on '/', without empty segments (e.g. ["Patient", "1"]). */
  segments: string[];
  query: URLSearchParams;
  /** Lower-case header names. */
  headers: Record<string, string | undefined>;
  /** Parsed body: a JSON value for JSON media types, URLSearchParams for form posts. */
  body?: unknown;
  /** The media type of the body without parameters, e.g. application/fhir+json. */
  contentType?: string;
  principal: Principal;
  requestId: string;
  ip?: string;
  /** True for entries of a batch/transaction Bundle (no nested Bundles). */
  inBundle?: boolean;
}

export interface FhirResponse {
  status: number;
  body?: Resource;
  headers: Record<string, string>;
  /** For audit: the patient compartments the response touched. */
  patients?: string[];
  /** For Prefer handling: the response of a write whose body is the written resource. */
  isWrite?: boolean;
}

export interface RouteContext {
  baseUrl: string;
}
