import { toFhirPath, type ValidationIssue } from './issues';
import type { LocalRef } from './invariants';

/**
 * The FHIR JSON rules (http://hl7.org/fhir/R4/json.html) that hold for every element whatever its
 * type, checked in one pass before the schema:
 *  - no empty strings (or whitespace only), arrays or objects, no element carrying only an `id` (ele-1);
 *  - `null` only inside an array of primitives, where the paired `_name` array has content at the
 *    same index (and vice versa); paired arrays have the same length;
 *  - finite numbers only;
 *  - bounded nesting, so a hostile body cannot exhaust the stack.
 * Reports issues to `report`, which returns false to stop at the first one (the hot path), and
 * returns the strings starting with '#' (local references) for the contained-resource invariants.
 */
export const MAX_DEPTH = 100;

export type Report = (issue: ValidationIssue) => boolean;

/** Whitespace as R4 (and schema.ts) means it: ASCII only, so a no-break space is content. */
const BLANK = /^[ \t\n\r\x0B\x0C]*$/;

export function checkJsonRules(resource: Record<string, unknown>, rootType: string, report: Report): LocalRef[] {
  const path: (string | number)[] = [];
  const localRefs: LocalRef[] = [];
  const issue = (messageCode: string, message: string, code: ValidationIssue['code'] = 'structure'): boolean => {
    const expression = toFhirPath(rootType, path);
    return report({ code, messageCode, message: `${message} at ${expression}`, expression });
  };

  const isBlank = (s: string): boolean => BLANK.test(s);

  // Returns false when the caller should stop.
  const walkValue = (v: unknown, depth: number): boolean => {
    if (typeof v === 'string') {
      if (v.charCodeAt(0) === 35) localRefs.push({ path: [...path], value: v }); // '#': see invariants.ts
      return !isBlank(v) || issue('MSG_EMPTY_VALUE', 'Empty string (omit the element instead)', 'value');
    }
    // JSON.parse turns 1e400 into Infinity, which would be stored and read back as null.
    if (typeof v === 'number') return Number.isFinite(v) || issue('MSG_INVALID_VALUE', 'Number out of range', 'value');
    if (typeof v !== 'object' || v === null) return true; // null is judged by the container
    if (depth > MAX_DEPTH) return issue('MSG_TOO_DEEP', `Nesting deeper than ${MAX_DEPTH} levels`);
    if (Array.isArray(v)) return true; // arrays are walked by walkObject, which knows their pairing
    return walkObject(v as Record<string, unknown>, depth);
  };

  const walkObject = (obj: Record<string, unknown>, depth: number): boolean => {
    let count = 0;
    let onlyId = true;
    for (const key in obj) {
      count++;
      if (key !== 'id') onlyId = false;
      const v = obj[key];
      path.push(key);
      let ok = true;
      if (v === null) {
        ok = issue('MSG_NULL_VALUE', `null is not allowed for '${key}' (omit the element instead)`);
      } else if (Array.isArray(v)) {
        ok = walkArray(obj, key, v, depth + 1);
      } else {
        ok = walkValue(v, depth + 1);
      }
      path.pop();
      if (!ok) return false;
    }
    if (count === 0) return issue('MSG_EMPTY_VALUE', 'Empty object (omit the element instead)');
    if (onlyId) return issue('MSG_EMPTY_VALUE', 'Element has an id but no value or children (ele-1)', 'invariant');
    return true;
  };

  // Pairing is looked at from the rare side only (an `_name` array, or a null item), so plain arrays
  // cost no string building on the hot path.
  const pairOf = (obj: Record<string, unknown>, key: string): { pairKey: string; paired?: unknown[] } => {
    const pairKey = key[0] === '_' ? key.slice(1) : `_${key}`;
    const pair = obj[pairKey];
    return { pairKey, paired: Array.isArray(pair) ? pair : undefined };
  };

  const walkArray = (obj: Record<string, unknown>, key: string, arr: unknown[], depth: number): boolean => {
    if (arr.length === 0) return issue('MSG_EMPTY_VALUE', 'Empty array (omit the element instead)');
    if (key[0] === '_') {
      const { pairKey, paired } = pairOf(obj, key);
      if (paired && paired.length !== arr.length) {
        const message = `'${pairKey}' has ${paired.length} items but '${key}' has ${arr.length}; they must match`;
        if (!issue('MSG_PAIR_LENGTH', message)) return false;
      }
    }
    for (let i = 0; i < arr.length; i++) {
      const item = arr[i];
      path.push(i);
      let ok = true;
      if (item === null) {
        const { pairKey, paired } = pairOf(obj, key);
        if (!paired || paired[i] === null || paired[i] === undefined) {
          ok = issue('MSG_NULL_VALUE', `null in '${key}' without a matching value in '${pairKey}'`);
        }
      } else if (Array.isArray(item)) {
        ok = issue('MSG_WRONG_TYPE', 'Array inside an array is not FHIR JSON');
      } else {
        ok = walkValue(item, depth + 1);
      }
      path.pop();
      if (!ok) return false;
    }
    return true;
  };

  walkObject(resource, 0);
  return localRefs;
}
