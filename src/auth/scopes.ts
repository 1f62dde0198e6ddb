/**
 * SMART on FHIR resource scopes, v1 (`patient/Observation.read`) and v2
 * (`patient/Observation.rs?category=...`), parsed into one canonical form so that granting,
 * formatting and policy building never look at the raw strings again.
 */

export type ScopeContext = 'patient' | 'user' | 'system';
/** The SMART v2 permission letters, in their canonical order. */
export type Permission = 'c' | 'r' | 'u' | 'd' | 's';
export const PERMISSION_ORDER: readonly Permission[] = ['c', 'r', 'u', 'd', 's'];

export interface ResourceScope {
  context: ScopeContext;
  /** A resource type, or '*' for every type. */
  type: string;
  /** Granted letters, canonical order, never empty. */
  perms: Permission[];
  /** v2 restriction (`category=...|vital-signs`), without the leading '?'. Only with a concrete type. */
  query?: string;
  /** The SMART version the scope was written in; kept so that answers speak the caller's dialect. */
  version: 1 | 2;
}

/** A string that claims to be a resource scope but cannot be one. */
export class ScopeSyntaxError extends Error {
  constructor(readonly scope: string, reason: string) {
    super(`Malformed scope "${scope}": ${reason}`);
    this.name = 'ScopeSyntaxError';
  }
}

const CONTEXT_RE = /^(patient|user|system)\//;
const TYPE_RE = /^(\*|[A-Z][A-Za-z]{1,63})$/;
const V1_PERMS: Record<string, Permission[]> = {
  read: ['r', 's'],
  write: ['c', 'u', 'd'],
  '*': ['c', 'r', 'u', 'd', 's'],
};

/**
 * Parses one scope. Returns undefined for scopes that are not resource scopes at all (`openid`,
 * `launch/patient`, `offline_access`); throws ScopeSyntaxError for a `patient/`, `user/` or
 * `system/` scope that is malformed, because silently dropping it would hide a client's mistake.
 */
export function parseScope(raw: string): ResourceScope | undefined {
  const ctx = CONTEXT_RE.exec(raw);
  if (!ctx) return undefined;
  const context = ctx[1] as ScopeContext;
  const rest = raw.slice(ctx[0].length);
  const q = rest.indexOf('?');
  const main = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? undefined : rest.slice(q + 1);
  const dot = main.lastIndexOf('.');
  if (dot <= 0) throw new ScopeSyntaxError(raw, 'expected <context>/<type>.<permissions>');
  const type = main.slice(0, dot);
  const permText = main.slice(dot + 1);
  if (!TYPE_RE.test(type)) throw new ScopeSyntaxError(raw, `"${type}" is not a resource type or *`);

  let perms: Permission[];
  let version: 1 | 2;
  if (V1_PERMS[permText]) {
    if (query !== undefined) throw new ScopeSyntaxError(raw, 'restrictions (?...) need SMART v2 permissions');
    perms = V1_PERMS[permText];
    version = 1;
  } else {
    if (!/^c?r?u?d?s?$/.test(permText) || permText === '') {
      throw new ScopeSyntaxError(raw, 'permissions must be read, write, * or the letters c r u d s in that order');
    }
    perms = PERMISSION_ORDER.filter((p) => permText.includes(p));
    version = 2;
  }
  if (query !== undefined) {
    if (query === '') throw new ScopeSyntaxError(raw, 'empty restriction after ?');
    if (type === '*') throw new ScopeSyntaxError(raw, 'restrictions need a concrete resource type');
    if (/[\s#]/.test(query)) throw new ScopeSyntaxError(raw, 'restriction contains whitespace or #');
  }
  return query === undefined ? { context, type, perms, version } : { context, type, perms, query, version };
}

/** Writes a scope back in the caller's dialect: v1 when the letters map to a v1 word, else v2. */
export function formatScope(s: ResourceScope): string {
  const letters = s.perms.join('');
  if (s.version === 1 && s.query === undefined) {
    const word = letters === 'rs' ? 'read' : letters === 'cud' ? 'write' : letters === 'cruds' ? '*' : undefined;
    if (word) return `${s.context}/${s.type}.${word}`;
  }
  return `${s.context}/${s.type}.${letters}${s.query === undefined ? '' : `?${s.query}`}`;
}

/** Splits a space-delimited scope parameter, dropping duplicates. */
export function splitScopes(scope: string | undefined): string[] {
  return [...new Set((scope ?? '').split(/\s+/).filter(Boolean))];
}

/** Parses many scopes, keeping resource scopes only; malformed ones throw. */
export function parseResourceScopes(scopes: string[]): ResourceScope[] {
  return scopes.map(parseScope).filter((s): s is ResourceScope => s !== undefined);
}

/**
 * What of `requested` the `allowed` scope permits: same context, the narrower type, the common
 * letters, and both restrictions at once (joined with `&`, which search reads as AND).
 */
export function intersectScope(requested: ResourceScope, allowed: ResourceScope): ResourceScope | undefined {
  if (requested.context !== allowed.context) return undefined;
  let type: string;
  if (requested.type === allowed.type || allowed.type === '*') type = requested.type;
  else if (requested.type === '*') type = allowed.type;
  else return undefined;
  const perms = PERMISSION_ORDER.filter((p) => requested.perms.includes(p) && allowed.perms.includes(p));
  if (perms.length === 0) return undefined;
  const queries = [...new Set([requested.query, allowed.query].filter((x): x is string => x !== undefined))];
  const version = requested.version;
  return queries.length === 0
    ? { context: requested.context, type, perms, version }
    : { context: requested.context, type, perms, query: queries.join('&'), version };
}

export interface Grant {
  /** The scopes granted, in the requester's dialect, de-duplicated. */
  granted: string[];
  /** Requested resource scopes that nothing allowed (for the error message). */
  refused: string[];
}

/**
 * Requested ∩ allowed. Non-resource scopes are granted only when allowed verbatim; `patient/`
 * scopes only when the client has a fixed patient to put in the token's context.
 */
export function grantScopes(requested: string[], allowed: string[], hasPatient: boolean): Grant {
  const allowedParsed = parseResourceScopes(allowed);
  const granted: string[] = [];
  const refused: string[] = [];
  for (const raw of requested) {
    const req = parseScope(raw);
    if (!req) {
      if (allowed.includes(raw)) granted.push(raw);
      else refused.push(raw);
      continue;
    }
    if (req.context === 'patient' && !hasPatient) {
      refused.push(raw);
      continue;
    }
    const hits = allowedParsed.map((a) => intersectScope(req, a)).filter((x): x is ResourceScope => !!x);
    if (hits.length === 0) refused.push(raw);
    for (const h of hits) granted.push(formatScope(h));
  }
  return { granted: [...new Set(granted)], refused };
}

/** Letters an interaction needs; any one of them suffices. */
export function lettersFor(interaction: string): Permission[] {
  switch (interaction) {
    case 'read':
    case 'vread':
    case 'history':
      return ['r'];
    case 'search':
      return ['s'];
    case 'create':
      return ['c'];
    case 'update':
    case 'patch':
      return ['u'];
    case 'delete':
      return ['d'];
    case 'operation':
      // Operations that write must also assert the write interaction they perform.
      return ['r', 's'];
    default:
      return [];
  }
}
