import { Errors } from '../../errors';
import { parseHistoryDate, readHistory } from '../../resources/history';
import { SERVED_TYPES } from '../../resources/registry';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';
import { knownType, validId } from './common';

const ALLOWED = new Set(['_since', '_at', '_count', '_page', '_format', '_pretty', '_summary', '_elements']);

/** GET [type]/[id]/_history, [type]/_history, /_history */
export async function history(s: Services, req: FhirRequest, type?: string, id?: string): Promise<FhirResponse> {
  if (type) knownType(type);
  if (id) validId(id);
  for (const t of type ? [type] : SERVED_TYPES) {
    if (type) req.principal.policy.assertAllowed('history', t);
  }
  for (const k of req.query.keys()) {
    if (!ALLOWED.has(k)) throw Errors.badRequest(`Unknown history parameter "${k}"`, 'MSG_PARAM_UNKNOWN');
  }
  if (type && id) {
    const cur = await s.store.repository.read(type, id);
    if (!cur) throw Errors.notFound(`${type}/${id} is not known`, 'MSG_NO_EXIST', [type]);
  }
  const countRaw = req.query.get('_count');
  let count = s.config.defaultCount;
  if (countRaw !== null) {
    if (!/^\d+$/.test(countRaw)) throw Errors.badRequest(`Invalid _count "${countRaw}"`, 'MSG_PARAM_INVALID');
    count = Math.min(Number(countRaw), s.config.maxCount);
  }
  const since = req.query.get('_since');
  const at = req.query.get('_at');
  const page = req.query.get('_page') ?? undefined;
  const path = [type, id, '_history'].filter(Boolean).join('/');
  const selfQuery = new URLSearchParams([...req.query.entries()]).toString();
  const base = `${s.config.baseUrl}/${path}`;
  const policy = req.principal.policy;
  const systemPolicy = type
    ? policy
    : {
        ...policy,
        // System history only shows types the caller may see history of.
        canRead: (r: Parameters<typeof policy.canRead>[0], c: string[]) => {
          try {
            policy.assertAllowed('history', r.resourceType);
          } catch {
            return false;
          }
          return policy.canRead(r, c);
        },
      };
  const bundle = await readHistory(
    s.store,
    s.cursors,
    {
      type,
      id,
      since: since ? parseHistoryDate(since, '_since') : undefined,
      at: at ? parseHistoryDate(at, '_at') : undefined,
      count,
      page,
    },
    systemPolicy,
    s.config.baseUrl,
    selfQuery ? `${base}?${selfQuery}` : base,
    (p) => {
      const q = new URLSearchParams([...req.query.entries()].filter(([k]) => k !== '_page'));
      q.set('_page', p);
      return `${base}?${q.toString()}`;
    },
  );
  // Instance history of a resource the caller cannot see at all must not reveal it exists.
  if (type && id && count > 0 && !page && !since && !at && (bundle.entry ?? []).length === 0) {
    throw Errors.notFound(`${type}/${id} is not known`, 'MSG_NO_EXIST', [type]);
  }
  if (count === 0) bundle.entry = [];
  return { status: 200, body: bundle, headers: {} };
}
