import type { Bundle, BundleEntry } from 'fhir/r4';
import type { AccessPolicy } from '../../auth/types';
import { Errors } from '../../errors';
import { compartmentPolicy, PATIENT_COMPARTMENT_TYPES } from '../compartment-policy';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';
import { validId } from './common';

/** Where a page of $everything starts: a type (index into the type list) and, inside it, a search cursor. */
interface PageState {
  t: number;
  /** The type's own search cursor and the _count it was issued for (the cursor is bound to its query). */
  c?: string;
  n?: number;
}

const PARAMS = new Set(['_since', '_type', '_count', '_page']);
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;

function encodePage(p: PageState): string {
  return Buffer.from(JSON.stringify(p)).toString('base64url');
}

/** The page token only says where to resume; every page is still searched under the caller's policy. */
function decodePage(raw: string, types: number): PageState {
  try {
    const p = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as PageState;
    if (Number.isInteger(p.t) && p.t >= 0 && p.t <= types && (p.c === undefined || (typeof p.c === 'string' && Number.isInteger(p.n)))) return p;
  } catch {
    // fall through
  }
  throw Errors.badRequest('Invalid _page for $everything', 'MSG_PARAM_INVALID', ['_page']);
}

interface Query {
  since?: string;
  types: string[];
  count: number;
  page: PageState;
}

function parse(s: Services, req: FhirRequest, policy: AccessPolicy): Query {
  for (const name of req.query.keys()) {
    if (!PARAMS.has(name)) throw Errors.badRequest(`Parameter "${name}" is not supported by $everything (supported: _since, _type, _count)`, 'MSG_PARAM_UNKNOWN', [name]);
  }
  const since = req.query.get('_since') ?? undefined;
  if (since !== undefined && !INSTANT.test(since)) throw Errors.badRequest(`_since must be an instant, got "${since}"`, 'MSG_PARAM_INVALID', ['_since']);
  const asked = req.query.getAll('_type').flatMap((v) => v.split(',')).map((t) => t.trim()).filter(Boolean);
  for (const t of asked) {
    if (!PATIENT_COMPARTMENT_TYPES.includes(t)) throw Errors.badRequest(`_type ${t} is not a served type of the Patient compartment`, 'MSG_PARAM_INVALID', ['_type']);
  }
  // Types the caller may not search are left out, as a search would not show them either.
  const types = (asked.length ? PATIENT_COMPARTMENT_TYPES.filter((t) => asked.includes(t)) : PATIENT_COMPARTMENT_TYPES).filter((t) => {
    try {
      policy.assertAllowed('search', t);
      return true;
    } catch {
      return false;
    }
  });
  const rawCount = req.query.get('_count');
  if (rawCount !== null && !/^[1-9]\d{0,5}$/.test(rawCount)) throw Errors.badRequest(`Invalid _count "${rawCount}" (a positive integer)`, 'MSG_PARAM_INVALID', ['_count']);
  const count = Math.min(rawCount ? Number(rawCount) : s.config.defaultCount, s.config.maxCount);
  const rawPage = req.query.get('_page');
  return { since, types, count, page: rawPage ? decodePage(rawPage, types.length) : { t: 0 } };
}

/** One page: walks the types in order, each with its own search, until the page is full. */
async function collect(s: Services, q: Query, policy: AccessPolicy): Promise<{ entries: BundleEntry[]; next?: PageState }> {
  const entries: BundleEntry[] = [];
  let state: PageState = q.page;
  while (state.t < q.types.length) {
    const want = state.n ?? q.count - entries.length;
    const params: [string, string][] = [['_count', String(want)]];
    if (q.since) params.push(['_lastUpdated', `ge${q.since}`]);
    if (state.c) params.push(['_cursor', state.c]);
    const b = await s.search.search({ type: q.types[state.t], params, policy, baseUrl: s.config.baseUrl, handling: 'strict' });
    entries.push(...(b.entry ?? []).filter((e) => e.search?.mode === 'match'));
    const nextUrl = b.link?.find((l) => l.relation === 'next')?.url;
    const cursor = nextUrl ? new URL(nextUrl).searchParams.get('_cursor') ?? undefined : undefined;
    state = cursor ? { t: state.t, c: cursor, n: want } : { t: state.t + 1 };
    if (entries.length >= q.count) break;
  }
  return { entries, next: state.t < q.types.length ? state : undefined };
}

/**
 * GET [base]/Patient/[id]/$everything and GET [base]/Patient/$everything (R4
 * OperationDefinition/Patient-everything: `_since`, `_type`, `_count`, paging): the patient(s) and
 * every resource of ours in the compartment, as a searchset, under the caller's access like search.
 */
export async function everything(s: Services, req: FhirRequest, id?: string): Promise<FhirResponse> {
  const own = req.principal.policy;
  own.assertAllowed('search', 'Patient');
  if (id !== undefined) {
    validId(id);
    // A patient the caller cannot read is not known to them: 404, as for a read.
    await s.store.read('Patient', id, own);
  }
  const policy = compartmentPolicy(own, id);
  const q = parse(s, req, own);
  const { entries, next } = await collect(s, q, policy);
  const path = `${s.config.baseUrl}/Patient/${id !== undefined ? `${id}/` : ''}$everything`;
  const pageUrl = (p?: PageState) => {
    const qs = new URLSearchParams([...req.query.entries()].filter(([n]) => n !== '_page'));
    if (p) qs.set('_page', encodePage(p));
    const text = qs.toString().replace(/%2C/gi, ','); // `_type=Patient,Device`: commas separate alternatives
    return text ? `${path}?${text}` : path;
  };
  const bundle: Bundle = {
    resourceType: 'Bundle',
    type: 'searchset',
    link: [{ relation: 'self', url: req.query.has('_page') ? pageUrl(q.page) : pageUrl() }],
  };
  if (next) bundle.link!.push({ relation: 'next', url: pageUrl(next) });
  if (entries.length) bundle.entry = entries;
  return { status: 200, body: bundle, headers: {}, patients: id !== undefined ? [id] : [] };
}
