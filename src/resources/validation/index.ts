import type { OperationOutcome, Parameters, Resource } from 'fhir/r4';
import { Errors, FhirError, isFhirError } from '../../errors';
import { SchemaValidators } from './compile';
import { errorOfIssues, issueFromAjv, issueOfError, outcome, toOutcomeIssue, type ValidationIssue } from './issues';
import { checkLocalReferences } from './invariants';
import { checkJsonRules } from './json-rules';
import { loadR4Schema, type R4Schema } from './schema';

export type { ValidationIssue } from './issues';

export interface ValidateOptions {
  /** The type named by the URL, when there is one. */
  expectedType?: string;
  /** Types the server serves; others are refused with 404. Default: every R4 resource type. */
  allowedTypes?: readonly string[];
  mode: 'create' | 'update' | 'validate';
  /** The id from the URL (update, instance-level $validate). */
  id?: string;
}

/** Most issues one 422 (or one $validate outcome) reports. */
export const MAX_ISSUES = 20;

const ID = /^[A-Za-z0-9\-.]{1,64}$/;

interface Engine {
  r4: R4Schema;
  firstError: SchemaValidators;
  allErrors: SchemaValidators;
}

let engine: Engine | undefined;

function getEngine(): Engine {
  if (!engine) {
    const r4 = loadR4Schema();
    engine = { r4, firstError: new SchemaValidators(r4, false), allErrors: new SchemaValidators(r4, true) };
  }
  return engine;
}

/**
 * Loads the schema and compiles the validators of `types` (both sets) so that no request pays for
 * it. Call once at start-up with the served types; returns the time it took in milliseconds.
 */
export function prepareValidation(types: readonly string[]): number {
  const start = process.hrtime.bigint();
  const e = getEngine();
  for (const t of types) {
    if (!e.r4.resourceTypes.has(t)) continue; // server-only types outside R4 (e.g. SubscriptionTopic)
    e.firstError.forType(t);
    e.allErrors.forType(t);
  }
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** Whether `type` is an R4 resource type. */
export function isR4ResourceType(type: string): boolean {
  return getEngine().r4.resourceTypes.has(type);
}

/**
 * Structural validation of one resource about to be written, against the official R4 JSON schema
 * plus the rules the schema cannot say (see json-rules.ts, element-rules.json). Returns the resource
 * to store: on create without `id`, and without client `meta.versionId`/`meta.lastUpdated` in
 * every mode but validate (the server assigns them; they are ignored, not judged).
 * Throws FhirError: 400 for a body that is not a resource of the URL's type or whose id does not
 * fit the URL, 404 for an R4 type the server does not serve, 422 for invalid content.
 */
export function validateResource(resource: unknown, opts: ValidateOptions): Resource {
  const { type, body } = checkEnvelope(resource, opts);
  const first = collectIssues(type, body, false);
  if (first.length > 0) {
    // Only the failure path pays for a full report: the client gets every problem at once.
    const all = collectIssues(type, body, true);
    throw errorOfIssues((all.length > 0 ? all : first).slice(0, MAX_ISSUES));
  }
  return body as unknown as Resource;
}

/**
 * `$validate`: never throws for invalid content; returns the OperationOutcome ("All OK" when valid).
 * Accepts the resource itself or a Parameters with `resource` (and optional `mode`) parameters.
 */
export function validateOperation(input: unknown, opts: ValidateOptions): OperationOutcome {
  let resource = input;
  let mode = opts.mode;
  if (isObject(input) && input.resourceType === 'Parameters' && opts.expectedType !== 'Parameters') {
    const raw = (input as unknown as Parameters).parameter;
    const params = (Array.isArray(raw) ? raw : []).filter(isObject) as NonNullable<Parameters['parameter']>;
    resource = params.find((p) => p.name === 'resource')?.resource;
    const m = params.find((p) => p.name === 'mode')?.valueCode;
    if (m === 'create' || m === 'update') mode = m;
    if (resource === undefined) {
      return outcome([issueOfError(Errors.badRequest("Parameters has no 'resource' parameter", 'MSG_RESOURCE_REQUIRED'))]);
    }
  }
  try {
    const { type, body } = checkEnvelope(resource, { ...opts, mode });
    const issues = collectIssues(type, body, true).slice(0, MAX_ISSUES);
    if (issues.length === 0) {
      return outcome([{ severity: 'information', code: 'informational', diagnostics: 'All OK' }]);
    }
    return outcome(issues.map(toOutcomeIssue));
  } catch (e) {
    if (isFhirError(e)) return outcome([issueOfError(e)]);
    throw e;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** resourceType, id and meta: the 400/404-class checks, and the copy that drops what the server assigns. */
function checkEnvelope(resource: unknown, opts: ValidateOptions): { type: string; body: Record<string, unknown> } {
  if (!isObject(resource)) {
    throw Errors.badRequest('The body must be a FHIR resource: a JSON object with a resourceType', 'MSG_RESOURCE_REQUIRED');
  }
  const type = resource.resourceType;
  if (typeof type !== 'string' || type.length === 0) {
    throw Errors.badRequest('The resource has no resourceType', 'MSG_RESOURCE_TYPE_MISSING');
  }
  if (opts.expectedType !== undefined && type !== opts.expectedType) {
    throw Errors.badRequest(
      `Resource type '${type}' does not match the type '${opts.expectedType}' of the URL`,
      'MSG_RESOURCE_TYPE_MISMATCH',
    );
  }
  const e = getEngine();
  if (!e.r4.resourceTypes.has(type)) {
    // Not FHIR R4 at all: the content is wrong, the endpoint is fine.
    throw new FhirError(422, 'structure', 'MSG_UNKNOWN_TYPE', `Unknown resource type '${type}' (not a FHIR R4 resource)`);
  }
  if (opts.allowedTypes && !opts.allowedTypes.includes(type)) {
    // A real R4 type this server does not serve: the spec's 404 for unsupported resource types.
    throw new FhirError(404, 'not-supported', 'MSG_RESOURCE_TYPE_NOT_SUPPORTED', `Resource type '${type}' is not supported by this server`);
  }

  const body: Record<string, unknown> = { ...resource };
  if (opts.mode === 'update' || (opts.mode === 'validate' && opts.id !== undefined)) {
    if (opts.id === undefined) throw Errors.badRequest('Update needs the id from the URL', 'MSG_RESOURCE_ID_MISSING');
    if (!ID.test(opts.id)) {
      throw Errors.badRequest(`Invalid id '${opts.id}': ids are 1 to 64 of A-Z, a-z, 0-9, '-' and '.'`, 'MSG_ID_INVALID');
    }
    if (body.id === undefined) {
      if (opts.mode === 'update') {
        throw Errors.badRequest('The resource has no id; an update must carry the id of the URL', 'MSG_RESOURCE_ID_MISSING', [`${type}.id`]);
      }
    } else if (body.id !== opts.id) {
      throw Errors.badRequest(
        `The resource id ${JSON.stringify(body.id)} does not match the id "${opts.id}" of the URL`,
        'MSG_RESOURCE_ID_MISMATCH',
        [`${type}.id`],
      );
    }
  }
  if (opts.mode === 'create') delete body.id;
  if (opts.mode !== 'validate' && isObject(body.meta)) {
    const { versionId: _v, lastUpdated: _l, ...meta } = body.meta;
    if (Object.keys(meta).length > 0) body.meta = meta;
    else delete body.meta;
  }
  return { type, body };
}

/** JSON rules and local references first (cheap, and their messages are the clearest), then the schema. */
function collectIssues(type: string, body: Record<string, unknown>, all: boolean): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const report = (i: ValidationIssue): boolean => {
    issues.push(i);
    return all && issues.length < MAX_ISSUES;
  };
  const localRefs = checkJsonRules(body, type, report);
  if (all || issues.length === 0) checkLocalReferences(body, type, localRefs, report);
  // A body too deep for the JSON rules is not handed to the (recursive) schema validator either.
  if (issues.length > 0 && (!all || issues.some((i) => i.messageCode === 'MSG_TOO_DEEP'))) return issues;
  const e = getEngine();
  const validate = (all ? e.allErrors : e.firstError).forType(type);
  if (!validate(body)) {
    const seen = new Set(issues.map((i) => i.expression));
    for (const err of validate.errors ?? []) {
      const issue = issueFromAjv(type, body, err);
      // The JSON rules already explained this element (an empty string also fails `pattern`).
      if (seen.has(issue.expression)) continue;
      seen.add(issue.expression);
      issues.push(issue);
    }
  }
  return issues;
}
