/**
 * The sender's text of JSON numbers, kept beside ordinary JS numbers.
 *
 * Internal code (validation, indexing, FHIRPath) sees plain numbers. The text of a number whose
 * sender spelling differs from JS's canonical form (`1.00`, `6.0`, `1E-22`, `66.899999999999991`)
 * is remembered per holding object: a WeakMap from the object or array to `key -> text`. Copies
 * that keep nested objects (spreads, `_elements` shaping) keep the texts of those objects; an
 * entry only applies while the number it names still has the same value, so a stale entry can
 * never change a number, only fail to restore its spelling.
 *
 * At rest the texts travel as a list of (JSON pointer, text) beside the FHIR JSON (`dec` in the
 * stored document, never inside `res`): `decimalsOf` computes it, `attachDecimals` restores it.
 */

/** One number whose text differs from JS's canonical form, by JSON pointer from the root. */
export interface DecimalText {
  p: string;
  t: string;
}

type Holder = object;
const texts = new WeakMap<Holder, Map<string, string>>();

/** Whether `text` is what JS itself writes for the number (then nothing need be remembered). */
export function isCanonical(text: string, value: number): boolean {
  return String(value) === text;
}

/** Sets (or with `undefined`, forgets) the text of the number at `holder[key]`. */
export function setText(holder: Holder, key: string | number, text: string | undefined): void {
  const k = String(key);
  let m = texts.get(holder);
  if (text === undefined) {
    m?.delete(k);
    return;
  }
  if (!m) texts.set(holder, (m = new Map()));
  m.set(k, text);
}

/** The sender's text of the number at `holder[key]`, when it still holds that number. */
export function textOf(holder: Holder, key: string | number): string | undefined {
  const t = texts.get(holder)?.get(String(key));
  if (t === undefined) return undefined;
  const v = (holder as Record<string, unknown>)[key];
  return typeof v === 'number' && Number(t) === v ? t : undefined;
}

/** Whether any number under `value` carries a remembered text (a cheap walk, no strings built). */
export function hasTexts(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (texts.get(value)?.size) return true;
  if (Array.isArray(value)) return value.some(hasTexts);
  for (const k in value) if (hasTexts((value as Record<string, unknown>)[k])) return true;
  return false;
}

const escapeKey = (k: string): string => k.replace(/~/g, '~0').replace(/\//g, '~1');
const unescapeKey = (k: string): string => k.replace(/~1/g, '/').replace(/~0/g, '~');

/** The remembered texts under `value`, as (pointer, text); undefined when there are none. */
export function decimalsOf(value: unknown): DecimalText[] | undefined {
  const out: DecimalText[] = [];
  const walk = (v: unknown, at: string): void => {
    if (typeof v !== 'object' || v === null) return;
    const m = texts.get(v);
    const keys = Array.isArray(v) ? v.keys() : Object.keys(v);
    for (const k of keys) {
      const child = (v as Record<string, unknown>)[k];
      const p = `${at}/${escapeKey(String(k))}`;
      if (typeof child === 'number') {
        const t = m && textOf(v, k);
        if (t !== undefined) out.push({ p, t });
      } else walk(child, p);
    }
  };
  walk(value, '');
  return out.length > 0 ? out : undefined;
}

/**
 * Puts stored texts back on `root` (a resource just read, or rebuilt by the server). Entries whose
 * pointer no longer names the same number are skipped. Returns the entries that applied.
 */
export function attachDecimals(root: unknown, list: readonly DecimalText[] | undefined): DecimalText[] | undefined {
  if (!list?.length) return undefined;
  const applied: DecimalText[] = [];
  for (const d of list) {
    const parts = d.p.split('/').slice(1).map(unescapeKey);
    let holder: unknown = root;
    for (const part of parts.slice(0, -1)) {
      holder = typeof holder === 'object' && holder !== null && Object.hasOwn(holder, part) ? (holder as Record<string, unknown>)[part] : undefined;
    }
    const key = parts[parts.length - 1];
    if (typeof holder !== 'object' || holder === null || key === undefined || !Object.hasOwn(holder, key)) continue;
    const v = (holder as Record<string, unknown>)[key];
    if (typeof v !== 'number' || Number(d.t) !== v) continue;
    setText(holder, key, d.t);
    applied.push(d);
  }
  return applied.length > 0 ? applied : undefined;
}

/** A stored document's resource with its decimal texts restored (`dec` sits beside `res`). */
export function restoreDecimals<D extends object | null | undefined>(doc: D): D {
  const d = doc as { res?: unknown; dec?: DecimalText[] } | null | undefined;
  if (d?.dec && d.res) attachDecimals(d.res, d.dec);
  return doc;
}

/** A deep copy of a JSON value that keeps the remembered texts (structuredClone would drop them). */
export function cloneJson<T>(value: T): T {
  if (typeof value !== 'object' || value === null) return value;
  const copy = (Array.isArray(value) ? value.map((v: unknown) => cloneJson(v)) : {}) as Record<string, unknown>;
  if (!Array.isArray(value)) for (const k of Object.keys(value)) copy[k] = cloneJson((value as Record<string, unknown>)[k]);
  const m = texts.get(value);
  if (m?.size) texts.set(copy, new Map(m));
  return copy as T;
}

/** Whether two stored lists name the same texts (order aside). */
export function sameDecimals(a: readonly DecimalText[] | undefined, b: readonly DecimalText[] | undefined): boolean {
  const key = (l: readonly DecimalText[] | undefined) => (l ?? []).map((d) => `${d.p} ${d.t}`).sort().join('\n');
  return key(a) === key(b);
}
