import { isLosslessNumber, parse, type LosslessNumber } from 'lossless-json';
import { Errors, FhirError } from '../errors';
import { isCanonical, setText } from './decimals';

/**
 * Parses a FHIR JSON body: numbers keep their text (see decimals.ts), and everything a client can
 * get wrong is a 400 naming the element, never another kind of error. Refused: keys that could
 * reach an object prototype (`__proto__`, `constructor`, `prototype`), two different values for
 * one key in an object, lone UTF-16 surrogates (a `\ud800` escape; JSON allows it, FHIR strings
 * are Unicode), and numbers JS cannot hold (`1e999`). Identical repeated keys are harmless and
 * are taken once (the parser's own rule).
 */

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

type Segment = string | number;

/** An element path for messages: `Patient.name[0].family`, `[2].value` for a JSON Patch document. */
export function elementPath(rootName: string | undefined, segments: readonly Segment[]): string {
  let out = rootName ?? '$';
  for (const s of segments) out += typeof s === 'number' ? `[${s}]` : `.${s}`;
  return out;
}

function rootNameOf(root: unknown): string | undefined {
  if (Array.isArray(root)) return '';
  const t = (root as { resourceType?: unknown } | null)?.resourceType;
  return typeof t === 'string' && /^[A-Za-z]{1,64}$/.test(t) ? t : undefined;
}

class DuplicateKey extends Error {
  constructor(
    readonly key: string,
    readonly position: number,
  ) {
    super('duplicate key');
  }
}

/** Refuses what the walk finds; converts numbers in place (the parser's LosslessNumbers -> numbers). */
function checkAndConvert(root: unknown): unknown {
  const name = rootNameOf(root);
  const at: Segment[] = []; // the path of the value being looked at, built into a string only to report
  const fail = (message: string, code: string): never => {
    const path = elementPath(name, at);
    throw Errors.badRequest(`${message} at ${path}`, code, [path]);
  };
  const number = (v: LosslessNumber): number => {
    const n = Number(v.value);
    if (!Number.isFinite(n)) fail(`The number ${v.value.length > 40 ? `${v.value.slice(0, 37)}...` : v.value} is out of range`, 'MSG_JSON_NUMBER_RANGE');
    return n;
  };
  const walk = (v: unknown): void => {
    if (typeof v === 'string') {
      if (LONE_SURROGATE.test(v)) fail('The string holds a lone UTF-16 surrogate (not valid Unicode text)', 'MSG_JSON_INVALID_TEXT');
      return;
    }
    if (typeof v !== 'object' || v === null) return;
    const holder = v as Record<string | number, unknown>;
    const keys: (string | number)[] = Array.isArray(v) ? [...v.keys()] : Object.keys(v);
    for (const k of keys) {
      at.push(k);
      if (typeof k === 'string') {
        if (FORBIDDEN_KEYS.has(k)) fail(`The key "${k}" is not accepted`, 'MSG_JSON_FORBIDDEN_KEY');
        if (LONE_SURROGATE.test(k)) fail('The key holds a lone UTF-16 surrogate (not valid Unicode text)', 'MSG_JSON_INVALID_TEXT');
      }
      const child = holder[k];
      if (isLosslessNumber(child)) {
        const n = number(child as LosslessNumber);
        holder[k] = n;
        const text = (child as LosslessNumber).value;
        if (!isCanonical(text, n)) setText(holder, k, text);
      } else walk(child);
      at.pop();
    }
  };
  if (isLosslessNumber(root)) return number(root as LosslessNumber); // a bare number as the whole body
  walk(root);
  return root;
}

/** The path of the object that holds character `position` of `text` (for duplicate-key messages). */
function segmentsAt(text: string, position: number): Segment[] {
  const stack: { key?: string; index?: number; expectKey?: boolean }[] = [];
  for (let i = 0; i < position && i < text.length; i++) {
    const c = text[i];
    const top = stack[stack.length - 1];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (top?.expectKey && j < position) {
        try {
          top.key = JSON.parse(text.slice(i, j + 1)) as string;
        } catch {
          top.key = '?';
        }
      }
      i = j;
    } else if (c === '{') stack.push({ expectKey: true });
    else if (c === '[') stack.push({ index: 0 });
    else if (c === '}' || c === ']') stack.pop();
    else if (c === ':' && top) top.expectKey = false;
    else if (c === ',' && top) {
      if (top.index !== undefined) top.index++;
      else top.expectKey = true;
    }
  }
  return stack.slice(0, -1).map((f) => (f.index !== undefined ? f.index : (f.key ?? '?')));
}

function duplicateKeyError(text: string, e: DuplicateKey): FhirError {
  let name: string | undefined;
  try {
    name = rootNameOf(parse(text, undefined, { onDuplicateKey: () => undefined }));
  } catch {
    name = undefined;
  }
  const path = elementPath(name, [...segmentsAt(text, e.position - 1), e.key]);
  return Errors.badRequest(`The key "${e.key}" appears more than once in one object, at ${path}`, 'MSG_JSON_DUPLICATE_KEY', [path]);
}

/** Parses JSON text as described above; throws only FhirErrors (400). */
export function parseJson(text: string): unknown {
  try {
    const value = parse(text, undefined, {
      onDuplicateKey: ({ key, position }) => {
        throw new DuplicateKey(key, position);
      },
    });
    return checkAndConvert(value);
  } catch (e) {
    if (e instanceof FhirError) throw e;
    if (e instanceof DuplicateKey) throw duplicateKeyError(text, e);
    if (e instanceof RangeError) throw Errors.badRequest('The body is nested too deeply to be read', 'MSG_JSON_TOO_DEEP');
    const detail = e instanceof Error ? e.message : 'unreadable';
    throw Errors.badRequest(`The body is not valid JSON: ${detail}`, 'MSG_JSON_INVALID');
  }
}
