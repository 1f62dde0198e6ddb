import type { Resource } from 'fhir/r4';
import type supertest from 'supertest';

export interface Manifest {
  transactionTime: string;
  request: string;
  requiresAccessToken: boolean;
  output: { type: string; url: string; count: number }[];
  error: { type: string; url: string }[];
}

/** The path below the server of an absolute URL the server handed out (supertest takes paths). */
export function pathOf(url: string): string {
  const u = new URL(url);
  return u.pathname + u.search;
}

/** Kick-off: returns the status URL (absolute, from Content-Location). */
export async function kickoff(agent: supertest.Agent, path: string, headers: Record<string, string> = {}): Promise<string> {
  const r = await agent.get(path).set({ Accept: 'application/fhir+json', Prefer: 'respond-async', ...headers });
  if (r.status !== 202) throw new Error(`kick-off ${path}: ${r.status} ${r.text}`);
  return r.headers['content-location'] as string;
}

/** Polls a status URL until it answers 200 (bounded), checking every 202 on the way. */
export async function waitForManifest(agent: supertest.Agent, statusUrl: string, headers: Record<string, string> = {}, limitMs = 60_000): Promise<Manifest> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const r = await agent.get(pathOf(statusUrl)).set(headers);
    if (r.status === 200) {
      expect(r.headers['content-type']).toMatch(/^application\/json/);
      return JSON.parse(r.text) as Manifest;
    }
    if (r.status !== 202) throw new Error(`status ${statusUrl}: ${r.status} ${r.text}`);
    expect(r.headers['retry-after']).toMatch(/^\d+$/);
    expect(typeof r.headers['x-progress']).toBe('string');
    if (Date.now() > deadline) throw new Error(`export ${statusUrl} did not finish within ${limitMs} ms`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** Downloads one NDJSON file and parses it line by line (every line must be one JSON resource). */
export async function download(agent: supertest.Agent, url: string, headers: Record<string, string> = {}): Promise<Resource[]> {
  const r = await agent.get(pathOf(url)).set(headers).buffer(true).parse((res, cb) => {
    let text = '';
    res.on('data', (c: Buffer) => (text += c.toString('utf8')));
    res.on('end', () => cb(null, text));
  });
  if (r.status !== 200) throw new Error(`download ${url}: ${r.status} ${String(r.body)}`);
  expect(r.headers['content-type']).toMatch(/^application\/fhir\+ndjson/);
  const text = r.body as string;
  if (text === '') return [];
  expect(text.endsWith('\n')).toBe(true);
  return text.slice(0, -1).split('\n').map((l) => JSON.parse(l) as Resource);
}

/** Everything an export produced, by type. */
export async function downloadAll(agent: supertest.Agent, m: Manifest, headers: Record<string, string> = {}): Promise<Map<string, Resource[]>> {
  const out = new Map<string, Resource[]>();
  for (const o of m.output) {
    const rows = await download(agent, o.url, headers);
    expect(rows.length).toBe(o.count);
    for (const r of rows) expect(r.resourceType).toBe(o.type);
    out.set(o.type, [...(out.get(o.type) ?? []), ...rows]);
  }
  return out;
}

/** Every resource a search returns, all pages followed. */
export async function searchAll(agent: supertest.Agent, path: string, headers: Record<string, string> = {}): Promise<Resource[]> {
  const out: Resource[] = [];
  let next: string | undefined = path;
  while (next) {
    const r = await agent.get(next).set({ Accept: 'application/fhir+json', ...headers });
    if (r.status !== 200) throw new Error(`search ${next}: ${r.status} ${r.text}`);
    for (const e of r.body.entry ?? []) if ((e.search?.mode ?? 'match') === 'match') out.push(e.resource as Resource);
    const link = (r.body.link ?? []).find((l: { relation: string }) => l.relation === 'next') as { url: string } | undefined;
    next = link ? pathOf(link.url) : undefined;
  }
  return out;
}

export const byId = (a: Resource, b: Resource) => String(a.id).localeCompare(String(b.id));

/** One kick-off parameter of a POST body: `[name, value[x] name, value]`. */
export type Param = [string, string, unknown];

/** The Parameters resource of a POST kick-off. */
export function parameters(params: Param[]): Record<string, unknown> {
  return { resourceType: 'Parameters', parameter: params.map(([name, key, value]) => ({ name, [key]: value })) };
}

/** POST kick-off with a Parameters body: returns the status URL (absolute, from Content-Location). */
export async function kickoffPost(agent: supertest.Agent, path: string, params: Param[], headers: Record<string, string> = {}): Promise<string> {
  const r = await agent
    .post(path)
    .set({ Accept: 'application/fhir+json', Prefer: 'respond-async', 'Content-Type': 'application/fhir+json', ...headers })
    .send(JSON.stringify(parameters(params)));
  if (r.status !== 202) throw new Error(`POST kick-off ${path}: ${r.status} ${r.text}`);
  return r.headers['content-location'] as string;
}
