import type { Resource } from 'fhir/r4';
import type { Cond } from './cond';
import type { Evaluator, TypedValue } from './fhirpath';

export type ParamType = 'number' | 'date' | 'string' | 'token' | 'reference' | 'composite' | 'quantity' | 'uri' | 'special';

/** A search parameter of one resource type, compiled once at start-up. */
export interface SearchParam {
  code: string;
  type: ParamType;
  /** Resource type this instance serves. */
  resourceType: string;
  url: string;
  description?: string;
  /** The part of the (multi-type) expression that applies to this resource type. */
  expression?: string;
  evaluate?: Evaluator;
  /** Whether the expression yields at most one value per resource (lets idx keys stay scalar). */
  single: boolean;
  /** Reference target types. */
  targets: string[];
  composite?: CompositeDef;
  /** Why the parameter cannot be searched here, if it cannot (no expression, special type...). */
  unsupported?: string;
}

/** A composite: its component parameters, and per expression part the nodes and the component evaluators relative to them. */
export interface CompositeDef {
  params: SearchParam[];
  parts: { nodes: Evaluator; components: Evaluator[] }[];
}

/** Index entries of a resource: field name (param code, or code plus suffix) -> stored value. */
export type Idx = Record<string, unknown>;

export interface EncodeContext {
  /** This server's base URL, so absolute references to it are stored as relative ones. */
  baseUrl: string;
}

/** One parsed search value: modifier and raw (still escaped) text. */
export interface QueryValue {
  modifier?: string;
  raw: string;
}

export interface Encoder {
  /** Write-time: index values -> idx entries under `field` (the param code, or a composite bucket). */
  index(param: SearchParam, values: TypedValue[], idx: Idx, field: string, ctx: EncodeContext): void;
  /** Query-time: one (comma-separated) value -> condition over `idx.<field>`. Throws FhirError 400 when malformed. */
  toCond(param: SearchParam, value: QueryValue, field: string, ctx: EncodeContext): Cond;
  /** Modifiers this type supports (besides `missing`). */
  modifiers: readonly string[];
  /** Whether `param` writes something at `idx.<field>` whenever it has a value (for :missing). */
  presenceField(field: string): string;
  /** Scalar field to sort on. */
  sortField(param: SearchParam, field: string): string;
}

export type { Resource, TypedValue };
