import type { OperationOutcome, OperationOutcomeIssue } from 'fhir/r4';
import type { ErrorObject } from 'ajv';
import { FhirError, type IssueCode } from '../../errors';

/** One problem found in a resource; becomes one OperationOutcome issue. */
export interface ValidationIssue {
  code: IssueCode;
  /** Stable message code (OperationOutcome.issue.details.coding.code). */
  messageCode: string;
  message: string;
  /** FHIRPath of the offending element, e.g. `Patient.name[0].given[1]`. */
  expression: string;
}

/** A JSON location as a list of property names and array indexes. */
export type JsonPath = readonly (string | number)[];

/**
 * FHIRPath of a JSON location. `_given` (the extension half of a primitive) names the same FHIRPath
 * node as `given`, so the underscore is dropped.
 */
export function toFhirPath(rootType: string, path: JsonPath): string {
  let out = rootType;
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += `.${seg.length > 1 && seg[0] === '_' ? seg.slice(1) : seg}`;
  }
  return out;
}

/** `/name/0/given/1` -> ['name', 0, 'given', 1]. FHIR JSON has no numeric property names. */
export function parsePointer(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => (/^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : s.replace(/~1/g, '/').replace(/~0/g, '~')));
}

function valueAt(root: unknown, path: JsonPath): unknown {
  let cur = root;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

function jsonTypeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'number') return Number.isInteger(v) ? `the number ${v}` : `the decimal ${v}`;
  if (typeof v === 'string') return `the string ${quote(v)}`;
  return `${typeof v} ${String(v)}`;
}

function quote(v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 57)}...` : s);
}

/** The FHIR type whose schema raised the error (schema.ts tags every definition with `fhirType`). */
function typeOf(e: ErrorObject): string {
  const t = (e.parentSchema as { fhirType?: unknown } | undefined)?.fhirType;
  return typeof t === 'string' ? t : '';
}

const article = (t: string): string => (/^[aeiouAEIOU]/.test(t) ? `an ${t}` : `a ${t}`);

const JSON_FORM: Record<string, string> = {
  boolean: 'JSON true or false',
  decimal: 'JSON number',
  integer: 'JSON integer',
  positiveInt: 'JSON integer',
  unsignedInt: 'JSON integer',
};

/** Turns one ajv error on `root` into an issue with a FHIRPath expression. */
export function issueFromAjv(rootType: string, root: unknown, e: ErrorObject): ValidationIssue {
  // Errors of nested resources (contained, ...) arrive wrapped by the fhirResource keyword.
  const nested = (e.params as { nested?: ErrorObject }).nested;
  if (e.keyword === 'fhirResource' && nested) return issueFromAjv(rootType, root, { ...nested, instancePath: e.instancePath });

  const path = parsePointer(e.instancePath);
  const at = toFhirPath(rootType, path);
  const value = valueAt(root, path);
  const def = typeOf(e);
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': {
      const name = String(params.additionalProperty);
      return {
        code: 'structure',
        messageCode: 'MSG_UNKNOWN_ELEMENT',
        message: `Unknown element '${name}' at ${toFhirPath(rootType, [...path, name])} (${def || 'the type'} has no such element in FHIR R4)`,
        expression: toFhirPath(rootType, [...path, name]),
      };
    }
    case 'required': {
      const name = String(params.missingProperty);
      return {
        code: 'required',
        messageCode: 'MSG_REQUIRED_ELEMENT',
        message: `Missing required element '${name}' at ${toFhirPath(rootType, [...path, name])}`,
        expression: toFhirPath(rootType, [...path, name]),
      };
    }
    case 'type': {
      const expected =
        def === ''
          ? `${article(String(e.params.type))}`
          : JSON_FORM[def]
            ? `${article(def)} (${JSON_FORM[def]})`
            : /^[a-z]/.test(def)
              ? `${article(def)} (JSON string)`
              : `${article(def)} (JSON object)`;
      return {
        code: 'structure',
        messageCode: 'MSG_WRONG_TYPE',
        message: `Wrong type at ${at}: expected ${expected}, got ${jsonTypeOf(value)}`,
        expression: at,
      };
    }
    case 'pattern':
    case 'format':
      return {
        code: 'value',
        messageCode: 'MSG_INVALID_VALUE',
        message: `Invalid ${def || 'primitive'} value ${quote(value)} at ${at}${e.keyword === 'format' ? ' (no such date)' : ''}`,
        expression: at,
      };
    case 'minimum':
    case 'maximum':
      return {
        code: 'value',
        messageCode: 'MSG_INVALID_VALUE',
        message: `Value ${String(value)} at ${at} is out of range for ${def} (${e.keyword} ${String(params.limit)})`,
        expression: at,
      };
    case 'enum': {
      const allowed = (params.allowedValues as unknown[]).filter((v) => v !== null);
      return {
        code: 'code-invalid',
        messageCode: 'MSG_INVALID_CODE',
        message: `Invalid code ${quote(value)} at ${at}; allowed: ${allowed.join(', ')}`,
        expression: at,
      };
    }
    case 'const':
      return {
        code: 'value',
        messageCode: 'MSG_INVALID_VALUE',
        message: `Invalid value ${quote(value)} at ${at}; expected ${quote(params.allowedValue)}`,
        expression: at,
      };
    case 'fhirElementRules':
    case 'fhirInvariants':
    case 'fhirResource':
    case 'fhirXhtml': {
      const p = params as { code: IssueCode; messageCode: string; message: string; property?: string };
      const target = p.property ? toFhirPath(rootType, [...path, p.property]) : at;
      return { code: p.code, messageCode: p.messageCode, message: `${p.message} at ${target}`, expression: target };
    }
    default:
      return {
        code: 'invalid',
        messageCode: 'MSG_INVALID',
        message: `Invalid content at ${at} (${e.keyword})`,
        expression: at,
      };
  }
}

export function toOutcomeIssue(i: ValidationIssue): OperationOutcomeIssue {
  return {
    severity: 'error',
    code: i.code,
    details: { coding: [{ system: 'urn:vigil:message-codes', code: i.messageCode }], text: i.message },
    diagnostics: i.message,
    expression: [i.expression],
  };
}

export function issueOfError(e: FhirError): OperationOutcomeIssue {
  const issue: OperationOutcomeIssue = {
    severity: 'error',
    code: e.code,
    details: { coding: [{ system: 'urn:vigil:message-codes', code: e.messageCode }], text: e.message },
    diagnostics: e.message,
  };
  if (e.expression?.length) issue.expression = e.expression;
  return issue;
}

export function outcome(issues: OperationOutcomeIssue[]): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: issues };
}

/**
 * One FhirError for a list of issues (422): code and message code of the first, every expression,
 * and a message that names them all (FhirError carries one OperationOutcome issue).
 */
export function errorOfIssues(issues: readonly ValidationIssue[]): FhirError {
  const [first, ...more] = issues;
  const message =
    more.length === 0
      ? first.message
      : `${first.message}; and ${more.length} more: ${more.map((i) => i.message).join('; ')}`;
  const expression = [...new Set(issues.map((i) => i.expression))];
  // Every problem travels as its own OperationOutcome issue; the message sums them up for logs.
  return new FhirError(422, first.code, first.messageCode, message, expression, undefined, issues.map(toOutcomeIssue));
}
