import fc from 'fast-check';
import type { Sent } from './client';

/**
 * The hostile corpus: generators (fast-check arbitraries) of malformed or abusive requests, one
 * per category of issue 12. Every case says whether the server must refuse it, carries a unique
 * marker in whatever it would store, and, when it must be accepted, the resource as sent.
 */

export interface Case {
  category: string;
  /** An HTTP request, or raw bytes on a connection of their own. */
  request?: Sent;
  raw?: Buffer | string;
  /** The server must answer 4xx. */
  refuse: boolean;
  /** The server must answer 2xx (valid but unusual input). */
  accept?: boolean;
  /** A unique value in the stored form of the request: it must exist only if it was accepted. */
  marker?: string;
  /** For a create that must be accepted: the resource as sent, to compare with what is stored. */
  sent?: Record<string, unknown>;
  /** Refused only by the number-preserving body parser (duplicate keys): see PARSER_DEPENDENT. */
  parserDependent?: boolean;
}

/** Limits the fuzz server runs with (small, so that every limit is reached quickly). */
export const FUZZ_LIMITS = { arrayElements: 200, resourceElements: 500, stringLength: 4096, bundleEntries: 50, bodyBytes: 256 * 1024, depth: 32 };

const FHIR = { 'Content-Type': 'application/fhir+json' };
let counter = 0;
const marker = () => `fuzz-${(++counter).toString(36)}-m`;

export function patientWith(m: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { resourceType: 'Patient', identifier: [{ system: 'urn:fuzz', value: m }], name: [{ family: 'Fuzz', given: ['Case'] }], ...extra };
}

const post = (path: string, body: string | Buffer, headers: Record<string, string> = FHIR): Sent => ({ method: 'POST', path, headers, body });
const get = (path: string): Sent => ({ method: 'GET', path });

const brokenJson: fc.Arbitrary<Case> = fc
  .oneof(
    fc.string({ maxLength: 40 }).map((s) => ({ text: (m: string) => `${s}${m}` })),
    fc.nat().map((n) => ({ text: (m: string) => { const t = JSON.stringify(patientWith(m)); return t.slice(0, n % (t.length - 1)); } })),
    fc.constantFrom('{"resourceType":"Patient",}', '[', 'null', '123', '"Patient"', '{"resourceType":"Patient"', "{'resourceType':'Patient'}", '{"a":NaN}', '{"a":Infinity}').map((t) => ({ text: () => t })),
  )
  .map(({ text }) => {
    const m = marker();
    return { category: 'broken-json', request: post('/fhir/Patient', text(m)), refuse: true, marker: m };
  });

const WRONG: Record<string, unknown>[] = [
  { name: 123 }, { name: 'Smith' }, { birthDate: 12 }, { birthDate: 'not-a-date' }, { birthDate: '2024-13-45' }, { gender: 'robot' },
  { active: 'yes' }, { identifier: {} }, { unknownElement: 1 }, { resourceType: 'Patent' }, { resourceType: 'Observation' },
  { telecom: [{ system: 'phone', value: 5 }] }, { extension: [{ url: 5 }] }, { multipleBirthInteger: 1.5 }, { name: [null] },
  { name: [{}] }, { contact: [{ gender: 'x' }] }, { deceasedBoolean: true, deceasedDateTime: '2020' }, { link: [{ other: 'Patient/1' }] },
];
const wrongTypes: fc.Arbitrary<Case> = fc.tuple(fc.constantFrom(...WRONG), fc.constantFrom('POST', 'PUT')).map(([w, method]) => {
  const m = marker();
  const body = JSON.stringify(patientWith(m, method === 'PUT' ? { id: m, ...w } : w));
  return { category: 'wrong-types', request: { method, path: method === 'PUT' ? `/fhir/Patient/${m}` : '/fhir/Patient', headers: FHIR, body }, refuse: true, marker: m };
});

function nested(depth: number): Record<string, unknown> {
  let e: Record<string, unknown> = { url: 'urn:x', valueString: 'deep' };
  for (let i = 0; i < depth; i++) e = { url: 'urn:x', extension: [e] };
  return e;
}
const sizes: fc.Arbitrary<Case> = fc
  .oneof(
    fc.integer({ min: FUZZ_LIMITS.arrayElements + 1, max: FUZZ_LIMITS.arrayElements * 3 }).map((n) => ({ name: [{ family: 'Big', given: Array.from({ length: n }, () => 'g') }] })),
    fc.integer({ min: FUZZ_LIMITS.stringLength + 1, max: FUZZ_LIMITS.stringLength * 4 }).map((n) => ({ name: [{ family: 'x'.repeat(n) }] })),
    fc.integer({ min: FUZZ_LIMITS.depth, max: FUZZ_LIMITS.depth * 3 }).map((d) => ({ extension: [nested(d)] })),
    fc.constant({ text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">${'x'.repeat(FUZZ_LIMITS.bodyBytes)}</div>` } }),
    fc.integer({ min: 10, max: 40 }).map((n) => ({ name: Array.from({ length: n }, () => ({ given: Array.from({ length: FUZZ_LIMITS.arrayElements + 1 }, () => 'a') })) })),
    // Nested arrays within the per-array limit but over the per-resource total.
    fc.integer({ min: 3, max: 8 }).map((n) => ({ identifier: Array.from({ length: n }, (_, i) => ({ system: 'urn:x', value: `v${i}`, type: { coding: Array.from({ length: FUZZ_LIMITS.arrayElements }, () => ({ code: 'c' })) } })) })),
  )
  .map((extra) => {
    const m = marker();
    return { category: 'sizes', request: post('/fhir/Patient', JSON.stringify(patientWith(m, extra))), refuse: true, marker: m };
  });

const INJECTIONS = ['{"$gt":""}', '$where', '.*', '^', '(a+)+$', "'; DROP TABLE Patient; --", '\\', '%00', '\u202e', '😀', 'a'.repeat(2000), '$regex', '[object Object]', '\\,\\|\\$', ',,,,', '|', '||', 'Patient/../..'];
const NAMES = ['name', 'name:exact', 'name:contains', 'family:missing', '__proto__', 'constructor', 'prototype', 'family.__proto__', 'organization.name', '_has:Observation:patient:code', '_has:Observation:__proto__:code', 'identifier:of-type', '_sort', '_include', '_revinclude', '_elements', '_summary', '_total', '_type', '_cursor', 'general-practitioner.name', '_id', '_lastUpdated', 'birthdate'];
const injectionSearch: fc.Arbitrary<Case> = fc
  .tuple(fc.constantFrom(...NAMES), fc.oneof(fc.constantFrom(...INJECTIONS), fc.string({ maxLength: 30 }), fc.string({ unit: 'binary', maxLength: 10 })), fc.constantFrom('Patient', 'Observation', ''))
  .map(([n, v, t]) => ({ category: 'injection-search', request: get(`/fhir/${t}?${encodeURIComponent(n)}=${encodeURIComponent(v)}`), refuse: false }));

const PATHS: [string, boolean][] = [
  ['/fhir/Patient/%', true], ['/fhir/Patient/%E0%A4%A', true], ['/fhir/Patient/%00', true], ['/fhir/Patient/%C0%AF', true], ['/fhir/Patient/%ED%A0%80', true],
  ['/fhir/Patient/a%', true], ['/fhir/%', true], ['/fhir/Patient?name=%E0%A4%A', true], ['/fhir/Patient?%=1', true], ['/fhir/Patient?name=%FF', true],
  ['/fhir/Patient/..%2F..%2Fetc%2Fpasswd', false], ['/fhir/%2e%2e/Patient', false], [`/fhir/Patient/${'a'.repeat(65)}`, true], ['/fhir/Patient/a/b/c/d/e', false],
  ['/fhir/Patient/x/_history/abc', false], ['/fhir/Patient/x/_history/99999999999999999999', false], ['/fhir/$foo', false], ['/fhir/Patient/$everything', false],
  ['/fhir/__proto__', false], ['/fhir/constructor/1', false], ['/fhir/Patient/__proto__', false], ['/fhir/prototype/_history', false], ['/fhir/Patient/_history/1', false],
  ['/fhir/Patient?_id=%ZZ', true], ['/fhir/Patient/%2F', true], ['/fhir//Patient//', false], ['/fhir/Patient/x%20y', true], ['/fhir/Patient/%01', true],
];
const badPaths: fc.Arbitrary<Case> = fc.tuple(fc.constantFrom(...PATHS), fc.constantFrom('GET', 'HEAD')).map(([[path, refuse], method]) => ({ category: 'bad-paths', request: { method, path }, refuse }));

const badHeaders: fc.Arbitrary<Case> = fc
  .constantFrom<[Record<string, string>, boolean, boolean]>(
    [{ 'Content-Type': 'application/json-patch+json' }, true, false],
    [{ 'Content-Type': 'text/plain' }, true, false],
    [{ 'Content-Type': 'application/xml' }, true, false],
    [{ 'Content-Type': 'application/x-www-form-urlencoded' }, true, false],
    [{ 'Content-Type': 'multipart/form-data; boundary=x' }, true, false],
    [{ 'Content-Type': '' }, true, false],
    [{ 'Content-Type': 'application/fhir+json', 'Content-Encoding': 'gzip' }, true, false],
    [{ 'Content-Type': 'application/fhir+json', 'Content-Encoding': 'br0tli' }, true, false],
    [{ 'Content-Type': 'application/fhir+json', Accept: 'text/html' }, true, false],
    [{ 'Content-Type': 'application/fhir+json', Accept: '*/*;q=abc' }, false, false],
    [{ 'Content-Type': 'application/fhir+json', 'If-None-Exist': 'name=%E0%A4%A' }, true, false],
    [{ 'Content-Type': 'application/fhir+json', 'If-None-Exist': 'name=%ZZ' }, false, false],
    [{ 'Content-Type': 'application/fhir+json', 'If-None-Exist': '__proto__=1' }, false, false],
    [{ 'Content-Type': 'application/fhir+json', 'If-None-Exist': 'value-quantity=1e999' }, true, false],
    [{ 'Content-Type': 'application/fhir+json', Prefer: 'return=%%%; handling=evil' }, false, true],
    [{ 'Content-Type': 'application/fhir+json', 'X-Request-Id': '../../etc' }, false, true],
    [{ 'Content-Type': 'application/fhir+json; charset=utf-8', 'If-Match': 'W/"abc"' }, false, true],
  )
  .map(([headers, refuse, accept]) => {
    const m = marker();
    const sent = patientWith(m);
    return { category: 'bad-headers', request: post('/fhir/Patient', JSON.stringify(sent), headers), refuse, accept, marker: m, sent: accept ? sent : undefined };
  });

function entry(m: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { fullUrl: `urn:uuid:${m}`, resource: patientWith(m), request: { method: 'POST', url: 'Patient' }, ...over };
}
const BUNDLE_FAULTS: ((m: string) => unknown[])[] = [
  (m) => [entry(m, { fullUrl: 123 })],
  (m) => [entry(m), entry(`${m}b`, { fullUrl: `urn:uuid:${m}` })],
  (m) => [entry(m, { fullUrl: 'http://x/fhir/Patient/1/_history/1' })],
  (m) => [entry(m, { resource: { ...patientWith(m), id: 'p1' }, request: { method: 'PUT', url: 'Patient/p1/_history/1' } })],
  (m) => [entry(m, { request: { method: 'PUT', url: `Patient/${m}` } })],
  (m) => [entry(m, { resource: { ...patientWith(m), id: 'other' }, request: { method: 'PUT', url: `Patient/${m}` } })],
  (m) => Array.from({ length: FUZZ_LIMITS.bundleEntries + 1 }, (_, i) => entry(`${m}-${i}`)),
  (m) => [entry(m), 'not an entry'],
  (m) => [entry(m), entry(`${m}b`, { request: { method: 'FOO', url: 'Patient' } })],
  (m) => [entry(m), entry(`${m}b`, { request: { method: 'POST', url: 'http://evil.example/fhir/Patient' } })],
  (m) => [entry(m), entry(`${m}b`, { request: { method: 'GET', url: 'Patient/%E0' } })],
  (m) => [entry(m), entry(`${m}b`, { request: { method: 'POST', url: 'Observation' } })],
  (m) => [entry(m), { request: { method: 'POST', url: '' }, resource: { resourceType: 'Bundle', type: 'transaction' } }],
  (m) => [entry(m), entry(`${m}b`, { request: { method: 'PATCH', url: 'Patient/nope' }, resource: { resourceType: 'Binary', contentType: 'application/json-patch+json', data: Buffer.from('[{"op":"add","path":"/__proto__/x","value":1}]').toString('base64') } })],
  (m) => [entry(m), entry(`${m}b`, { resource: { ...patientWith(`${m}b`), birthDate: 'nope' } })],
];
const bundles: fc.Arbitrary<Case> = fc.constantFrom(...BUNDLE_FAULTS).map((fault) => {
  const m = marker();
  return { category: 'bundles', request: post('/fhir', JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry: fault(m) })), refuse: true, marker: m };
});

/** Patches of the one patient the fuzz owns for patching (`{target}` is replaced by its id); all must be refused. */
const JSON_PATCHES: unknown[] = [
  [{ op: 'add', path: '/__proto__/polluted', value: 1 }],
  [{ op: 'add', path: '/constructor/prototype/polluted', value: 1 }],
  [{ op: 'add', path: '/name/0/__proto__', value: { polluted: 1 } }],
  [{ op: 'copy', from: '/__proto__', path: '/name/0/family' }],
  [{ op: 'move', from: '/constructor', path: '/x' }],
  [{ op: 'evil', path: '/name' }],
  [{ op: 'add', value: 1 }],
  [{ op: 'add', path: 'name', value: 1 }],
  { op: 'add', path: '/name', value: [] },
  [{ op: 'test', path: '/gender', value: 'never' }],
  [{ op: 'replace', path: '/id', value: 'hijack' }],
  [{ op: 'add', path: '/name/999999999', value: { family: 'x' } }],
  [{ op: 'add', path: '/birthDate', value: 'not-a-date' }],
  [{ op: 'add', path: '/name/0/given', value: Array.from({ length: FUZZ_LIMITS.arrayElements + 1 }, () => 'g') }],
];
const op = (parts: Record<string, unknown>[]) => ({ resourceType: 'Parameters', parameter: [{ name: 'operation', part: parts }] });
const FHIRPATH_PATCHES: unknown[] = [
  op([{ name: 'type', valueCode: 'add' }, { name: 'path', valueString: 'Patient' }, { name: 'name', valueString: '__proto__' }, { name: 'value', valueString: 'x' }]),
  op([{ name: 'type', valueCode: 'replace' }, { name: 'path', valueString: 'Patient.__proto__' }, { name: 'value', valueString: 'x' }]),
  op([{ name: 'type', valueCode: 'replace' }, { name: 'path', valueString: 'Patient.constructor' }, { name: 'value', valueString: 'x' }]),
  op([{ name: 'type', valueCode: 'add' }, { name: 'path', valueString: 'Patient' }, { name: 'name', valueString: 'contact' }, { name: 'value', part: [{ name: '__proto__', valueString: 'x' }] }]),
  op([{ name: 'type', valueCode: 'evil' }, { name: 'path', valueString: 'Patient' }]),
  op([{ name: 'type', valueCode: 'delete' }, { name: 'path', valueString: 'Patient.(' }]),
  op([{ name: 'type', valueCode: 'insert' }, { name: 'path', valueString: 'Patient.name' }, { name: 'index', valueInteger: 99 }, { name: 'value', valueString: 'x' }]),
  { resourceType: 'Parameters' },
];
const patches: fc.Arbitrary<Case> = fc
  .oneof(
    fc.constantFrom(...JSON_PATCHES).map((p) => ({ body: JSON.stringify(p), ct: 'application/json-patch+json' })),
    fc.constantFrom(...FHIRPATH_PATCHES).map((p) => ({ body: JSON.stringify(p), ct: 'application/fhir+json' })),
    fc.constantFrom(...JSON_PATCHES).map((p) => ({ body: JSON.stringify(p), ct: 'application/fhir+json' })),
  )
  .map(({ body, ct }) => ({ category: 'patches', request: { method: 'PATCH', path: '/fhir/Patient/{target}', headers: { 'Content-Type': ct }, body }, refuse: true }));

const NUMBERS: [string, boolean][] = [
  ['1e999', true], ['-1e999', true], ['1e-999', true], ['gt1e999', true], ['NaN', true], ['Infinity', true], ['-Infinity', true], ['0x10', true], ['1_000', true],
  ['', false], ['1e', true], ['.5', true], ['5.', true], ['-0', false], ['ap-0', false], ['9'.repeat(400), true], ['1e308', false], ['ge1e308|http://unitsofmeasure.org|km', true],
  ['1e-320', false], ['120|http://unitsofmeasure.org|mm[Hg]', false], ['120|http://unitsofmeasure.org|bogus', true], ['lt-1e308|http://unitsofmeasure.org|Tm', true],
];
const numbers: fc.Arbitrary<Case> = fc
  .tuple(fc.constantFrom(...NUMBERS), fc.constantFrom('Observation?value-quantity=', 'Observation?component-value-quantity=', 'Observation?value-quantity:missing=', 'Patient?_count=', 'Observation?date=', 'Patient/_history?_since=', 'Patient?birthdate=ge'))
  .map(([[v, bad], prefix]) => ({
    category: 'numbers',
    request: get(`/fhir/${prefix}${encodeURIComponent(v)}`),
    // Only value-quantity decides the refusal; the other parameters may take or refuse the text.
    refuse: bad && prefix === 'Observation?value-quantity=' && v !== '',
  }));

const BAD_BYTES = [Buffer.from([0xff]), Buffer.from([0xc3, 0x28]), Buffer.from([0xc0, 0xaf]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xe2, 0x82]), Buffer.from([0xf4, 0x90, 0x80, 0x80]), Buffer.from([0x80])];
const text: fc.Arbitrary<Case> = fc
  .oneof(
    fc.constantFrom(...BAD_BYTES).map((b) => (m: string) => {
      const [head, tail] = JSON.stringify(patientWith(m, { name: [{ family: 'Fuzz@@base' }] })).split('@@');
      return { body: Buffer.concat([Buffer.from(head), b, Buffer.from(tail)]), parserDependent: false };
    }),
    fc.constantFrom('\\ud800', '\\udfff', '\\udc00\\ud800', '\\u0001', '\\u0000', '\\u001f').map((esc) => (m: string) => ({
      body: JSON.stringify(patientWith(m, { name: [{ family: 'Fuzz@@base' }] })).replace('@@', esc),
      parserDependent: false,
    })),
    fc.constantFrom('"__proto__":{"polluted":1}', '"constructor":{"prototype":{"polluted":1}}', '"multipleBirthInteger":1e999', '"prototype":1').map((kv) => (m: string) => ({
      body: JSON.stringify(patientWith(m)).replace(/^\{/, `{${kv},`),
      parserDependent: false,
    })),
    fc.constantFrom('"gender":"male","gender":"female"', '"resourceType":"Patient","resourceType":"Observation"').map((kv) => (m: string) => ({
      body: JSON.stringify(patientWith(m)).replace(/^\{/, `{${kv},`),
      parserDependent: true,
    })),
  )
  .map((make) => {
    const m = marker();
    const { body, parserDependent } = make(m);
    return { category: 'text', request: post('/fhir/Patient', body), refuse: true, marker: m, parserDependent };
  });

const protocol: fc.Arbitrary<Case> = fc
  .constantFrom(
    'FOO /fhir/Patient HTTP/1.1\r\nHost: x\r\n\r\n',
    'PROPFIND /fhir/Patient HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    'OPTIONS /fhir/Patient HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    'TRACE /fhir/Patient HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    'CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x\r\n\r\n',
    'GET /fhir/Patient HTTP/9.9\r\nHost: x\r\n\r\n',
    'GET /fhir/Patient\x01 HTTP/1.1\r\nHost: x\r\n\r\n',
    'GET /fhir/Patient HTTP/1.1\r\nBad Header: x\r\n\r\n',
    `GET /fhir/Patient HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    'GET /fhir/Patient HTTP/1.1\r\nHost: x\r\nExpect: garbage\r\nConnection: close\r\n\r\n',
    'POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n',
    'POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
    'GET /fhir/Patient/\xff HTTP/1.1\r\nHost: x\r\n\r\n',
  )
  .map((raw) => ({ category: 'protocol', raw: Buffer.from(raw, 'latin1'), refuse: true }));

/** Valid but unusual resources: must be accepted and stored exactly as sent. */
const unusual: fc.Arbitrary<Case> = fc
  .oneof(
    // FHIR strings: non-whitespace characters plus space, tab, CR, LF; no control characters.
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }).filter((s) => /^[ \S]+$/u.test(s) && !/[\u0000-\u001f\u007f-\u009f]/.test(s) && s.trim() === s),
    fc.constantFrom('😀 Smith', 'Ünïcödé', 'مرحبا', 'e\u0301', 'x'.repeat(FUZZ_LIMITS.stringLength), '$where', '{"$gt":""}', 'a.b.c'),
  )
  .map((family) => {
    const m = marker();
    const sent = patientWith(m, { name: [{ family, given: Array.from({ length: 3 }, (_, i) => `g${i}`) }], multipleBirthInteger: 2147483647 });
    return { category: 'unusual-valid', request: post('/fhir/Patient', JSON.stringify(sent)), refuse: false, accept: true, marker: m, sent };
  });

/** Searches over the work limits (SEARCH_MAX_PARAMS 50, chain depth 3, 10 includes, 8 KB forms): refused before they run. */
const searchLimits: fc.Arbitrary<Case> = fc
  .oneof(
    fc.integer({ min: 51, max: 300 }).map((n) => get(`/fhir/Patient?family=${Array.from({ length: n }, (_, i) => `f${i}`).join(',')}`)),
    fc.integer({ min: 51, max: 120 }).map((n) => get(`/fhir/Patient?${Array.from({ length: n }, (_, i) => `family=f${i}`).join('&')}`)),
    fc.integer({ min: 4, max: 12 }).map((d) => get(`/fhir/Observation?${Array.from({ length: d }, () => 'subject').join('.')}.name=x`)),
    fc.integer({ min: 4, max: 8 }).map((d) => get(`/fhir/Patient?${Array.from({ length: d }, () => '_has:Observation:patient:').join('')}code=x`)),
    fc.integer({ min: 11, max: 40 }).map((n) => get(`/fhir/Observation?${Array.from({ length: n }, () => '_include=Observation:subject').join('&')}`)),
    fc.integer({ min: 9, max: 64 }).map((kb) => post('/fhir/Patient/_search', `family=${'x'.repeat(kb * 1024)}`, { 'Content-Type': 'application/x-www-form-urlencoded' })),
    fc.constant(post('/fhir/Patient/_search', 'family=%E0%A4%A', { 'Content-Type': 'application/x-www-form-urlencoded' })),
    fc.constant(post('/fhir/Patient/_search', Buffer.from([0x66, 0x3d, 0xff]), { 'Content-Type': 'application/x-www-form-urlencoded' })),
    fc.constant(post('/fhir/Patient/_search', '{"family":"x"}', FHIR)),
  )
  .map((request) => ({ category: 'search-limits', request, refuse: true }));

export const CATEGORIES: Record<string, fc.Arbitrary<Case>> = {
  searchLimits,
  brokenJson, wrongTypes, sizes, injectionSearch, badPaths, badHeaders, bundles, patches, numbers, text, protocol, unusual,
};
