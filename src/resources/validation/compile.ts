import Ajv, { type ErrorObject, type SchemaValidateFunction, type ValidateFunction } from 'ajv';
import type { DataValidateFunction } from 'ajv/dist/types';
import type { IssueCode } from '../../errors';
import { containedViolation, INVARIANTS } from './invariants';
import { SCHEMA_KEY, type ElementRules, type R4Schema } from './schema';

/** A resource in `contained` (not in Bundle.entry or Parameters), by its instance path. */
const CONTAINED = /\/contained\/\d+$/;

function invariantParams(inv: { key: string; human: string }, property?: string): Record<string, unknown> {
  return { code: 'invariant', messageCode: 'MSG_INVARIANT', message: `Constraint ${inv.key} failed: ${inv.human}`, property };
}

/**
 * Compiled validators of the patched R4 schema, one per resource type, compiled on first use and kept.
 * Two sets exist: the write path stops at the first error (`allErrors: false`, fastest), `$validate`
 * reports every error.
 */
export class SchemaValidators {
  private readonly ajv: Ajv;
  private readonly byType = new Map<string, ValidateFunction>();

  constructor(
    private readonly r4: R4Schema,
    allErrors: boolean,
  ) {
    this.ajv = new Ajv({
      strict: false, // the FHIR schema uses keywords and unions strict mode refuses
      allErrors,
      allowUnionTypes: true,
      messages: false, // issues.ts writes FHIR-specific messages
      validateSchema: false, // the schema is trusted; meta-validating 3.5 MB costs start-up time
      inlineRefs: false, // FHIR types are referenced everywhere: inlining multiplies code size
      addUsedSchema: false,
      // Errors carry their schema (to name the FHIR type) and data; only the reporting set pays for it.
      verbose: allErrors,
    });
    this.ajv.addFormat('fhir-calendar', { type: 'string', validate: isCalendarDate });
    this.ajv.addKeyword({ keyword: 'fhirElementRules', schemaType: 'object', compile: elementRulesKeyword(allErrors) });
    this.ajv.addKeyword({ keyword: 'fhirInvariants', schemaType: 'string', compile: invariantsKeyword(allErrors) });
    this.ajv.addKeyword({ keyword: 'fhirXhtml', schemaType: 'boolean', validate: xhtmlKeyword as SchemaValidateFunction });
    this.ajv.addKeyword({
      keyword: 'fhirResource',
      schemaType: 'boolean',
      validate: this.nestedResourceKeyword(),
    });
    this.ajv.addSchema(r4.schema, SCHEMA_KEY);
  }

  /** The validator of one resource type (compiled once). The type must be in `resourceTypes`. */
  forType(type: string): ValidateFunction {
    let v = this.byType.get(type);
    if (!v) {
      v = this.ajv.getSchema(`${SCHEMA_KEY}#/definitions/${type}`);
      if (!v) throw new Error(`No schema definition for resource type ${type}`);
      this.byType.set(type, v);
    }
    return v;
  }

  /** Contained and other nested resources: validate against the schema of their own type. */
  private nestedResourceKeyword() {
    const self = this;
    type Ctx = { instancePath: string };
    const keyword: SchemaValidateFunction = function (_s: boolean, data: Record<string, unknown>, _p: unknown, cxt?: Ctx): boolean {
      // Not an object: the `type` keyword reports it (with allErrors, keywords still run).
      if (data === null || typeof data !== 'object' || Array.isArray(data)) return true;
      const at = cxt?.instancePath ?? '';
      const type = data.resourceType;
      const fail = (code: IssueCode, messageCode: string, message: string): boolean => {
        keyword.errors = [{ keyword: 'fhirResource', instancePath: at, schemaPath: '', params: { code, messageCode, message, property: 'resourceType' } }];
        return false;
      };
      if (typeof type !== 'string') return fail('required', 'MSG_RESOURCE_TYPE_MISSING', 'Missing resourceType');
      if (!self.r4.resourceTypes.has(type)) return fail('structure', 'MSG_UNKNOWN_TYPE', `Unknown resource type '${type}'`);
      const broken = CONTAINED.test(at) ? containedViolation(data) : undefined;
      const v = self.forType(type);
      if (v(data) && !broken) return true;
      const errors: ErrorObject[] = broken
        ? [{ keyword: 'fhirResource', instancePath: at, schemaPath: '', params: invariantParams(broken, broken.blame) }]
        : [];
      keyword.errors = errors.concat((v.errors ?? []).map(
        (nested): ErrorObject => ({
          keyword: 'fhirResource',
          instancePath: at + nested.instancePath,
          schemaPath: '',
          params: { nested },
        }),
      ));
      return false;
    } as SchemaValidateFunction;
    return keyword;
  }
}

type KeywordFn = SchemaValidateFunction;

/**
 * Choice elements (one variant at most, exactly one when required) and required primitives. Runs on
 * every object of a definition that has such rules, so the passing path only walks the object's own
 * keys against maps built once per definition, and allocates nothing.
 */
function elementRulesKeyword(allErrors: boolean) {
  return (rules: ElementRules): DataValidateFunction => {
    const choices = rules.choices ?? [];
    // JSON name (and its `_` half) -> [choice group, variant].
    const variantOf = new Map<string, [number, string]>();
    choices.forEach((group, g) => group.forEach((p) => variantOf.set(p, [g, p]).set(`_${p}`, [g, p])));
    const requiredChoices = (rules.requiredChoices ?? []).map((group) => ({
      names: group.flatMap((p) => [p, `_${p}`]),
      message: `Missing required element '${commonPrefix(group)}[x]' (one of ${group.join(', ')})`,
    }));
    const requiredPrimitives = (rules.requiredPrimitives ?? []).map((p) => [p, `_${p}`] as const);

    const fn: DataValidateFunction = function (obj: Record<string, unknown>): boolean {
      if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return true;
      let errors: Partial<ErrorObject>[] | undefined;
      const add = (code: IssueCode, messageCode: string, message: string, property?: string): boolean => {
        (errors ??= []).push({ keyword: 'fhirElementRules', params: { code, messageCode, message, property } });
        return allErrors;
      };
      check: {
        if (variantOf.size > 0) {
          let seen: (string | undefined)[] | undefined;
          for (const key in obj) {
            const v = variantOf.get(key);
            if (!v) continue;
            seen ??= new Array<string | undefined>(choices.length);
            const first = seen[v[0]];
            if (first === undefined) seen[v[0]] = v[1];
            else if (first !== v[1] && !add('structure', 'MSG_CHOICE_CONFLICT', `Only one of ${first}, ${v[1]} may be present`, v[1])) {
              break check;
            }
          }
        }
        for (const rc of requiredChoices) {
          if (rc.names.some((n) => obj[n] !== undefined)) continue;
          if (!add('required', 'MSG_REQUIRED_ELEMENT', rc.message)) break check;
        }
        for (const [p, ext] of requiredPrimitives) {
          if (obj[p] !== undefined || obj[ext] !== undefined) continue;
          if (!add('required', 'MSG_REQUIRED_ELEMENT', `Missing required element '${p}'`, p)) break check;
        }
      }
      fn.errors = errors;
      return errors === undefined;
    };
    return fn;
  };
}

/** The hand-coded invariants of one definition (invariants.ts), bound once per definition. */
function invariantsKeyword(allErrors: boolean) {
  return (defName: string): DataValidateFunction => {
    const invariants = INVARIANTS[defName] ?? [];
    const fn: DataValidateFunction = function (data: Record<string, unknown>): boolean {
      if (data === null || typeof data !== 'object' || Array.isArray(data)) return true;
      let errors: Partial<ErrorObject>[] | undefined;
      for (const inv of invariants) {
        if (inv.holds(data)) continue;
        (errors ??= []).push({ keyword: 'fhirInvariants', params: invariantParams(inv, inv.blame) });
        if (!allErrors) break;
      }
      fn.errors = errors;
      return errors === undefined;
    };
    return fn;
  };
}

function commonPrefix(names: string[]): string {
  let p = names[0] ?? '';
  for (const n of names) while (!n.startsWith(p)) p = p.slice(0, -1);
  return p;
}

/**
 * Narrative xhtml: a `<div>` in the XHTML namespace without active content (txt-1). A full XHTML
 * parse is out of proportion for the write path; this refuses what makes narrative dangerous:
 * script-like elements, event-handler attributes and javascript: URLs. Tags are scanned one by one
 * (`[^<>]*` cannot run past the next tag), so the cost stays linear in the size of the narrative.
 */
const TAG = /<[^<>]*>/g;
const ACTIVE_ELEMENT = /^<\s*\/?\s*(script|iframe|frame|object|embed|applet|form|style|link|meta|base)\b/i;
const ACTIVE_ATTRIBUTE = /\son[a-z]+\s*=|=\s*["']?\s*(javascript|vbscript):/i;
const XHTML_DIV = /^\s*<div\s[^<>]*\bxmlns\s*=\s*["']http:\/\/www\.w3\.org\/1999\/xhtml["']/;

export function narrativeProblem(div: string): string | undefined {
  if (!XHTML_DIV.test(div)) return 'Narrative must be a <div> in the XHTML namespace (xmlns="http://www.w3.org/1999/xhtml")';
  for (const [tag] of div.matchAll(TAG)) {
    if (ACTIVE_ELEMENT.test(tag) || ACTIVE_ATTRIBUTE.test(tag)) {
      return `Narrative must not contain scripts, frames, forms, styles or event handlers (${tag.slice(0, 40)})`;
    }
  }
  return undefined;
}

function xhtmlKeyword(_s: boolean, div: unknown): boolean {
  const fn = xhtmlKeyword as KeywordFn;
  if (typeof div !== 'string') return true;
  const problem = narrativeProblem(div);
  if (!problem) return true;
  fn.errors = [{ keyword: 'fhirXhtml', params: { code: 'value', messageCode: 'MSG_INVALID_NARRATIVE', message: problem } }];
  return false;
}

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** The patterns accept 2023-02-31; FHIR says dates SHALL be valid dates. (Runs on every date: no slicing.) */
export function isCalendarDate(s: string): boolean {
  if (s.length < 10 || s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45) return true; // year or year-month: the pattern decides
  const digit = (i: number): number => s.charCodeAt(i) - 48;
  const y = digit(0) * 1000 + digit(1) * 100 + digit(2) * 10 + digit(3);
  const m = digit(5) * 10 + digit(6);
  const d = digit(8) * 10 + digit(9);
  if (!(m >= 1 && m <= 12)) return true; // malformed: the pattern decides
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  const max = m === 2 && leap ? 29 : DAYS[m - 1];
  return d >= 1 && d <= max;
}
