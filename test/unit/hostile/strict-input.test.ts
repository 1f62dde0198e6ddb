import { loadConfig } from '../../../src/config';
import { checkDeadline, runWithDeadline } from '../../../src/deadline';
import { escapeText, sanitizeAuditEvent } from '../../../src/http/audit-persist';
import { checkJsonBody, checkSearchCost } from '../../../src/http/limits';
import { decodeUtf8, strictQuery, textProblem } from '../../../src/strict-text';
import type { AuditEvent } from 'fhir/r4';

const limits = loadConfig({}).limits;

describe('strict text', () => {
  it('decodes valid UTF-8 and drops a byte-order mark', () => {
    expect(decodeUtf8(Buffer.from('\ufeff{"a":"é😀"}'))).toBe('{"a":"é😀"}');
  });
  it.each([
    [[0x61, 0xff], 1],
    [[0x61, 0x62, 0xc3, 0x28], 2],
    [[0xc0, 0xaf], 0],
    [[0xed, 0xa0, 0x80], 0],
    [[0x61, 0xe2, 0x82], 1],
    [[0xf4, 0x90, 0x80, 0x80], 0],
  ])('refuses %j naming byte %d', (bytes, at) => {
    expect(() => decodeUtf8(Buffer.from(bytes))).toThrow(`at byte ${at}`);
  });
  it('finds lone surrogates and control characters, not pairs', () => {
    expect(textProblem('a😀b')).toBeUndefined();
    expect(textProblem('tab\tand\nnewline')).toBeUndefined();
    expect(textProblem('a\ud800b')).toMatch(/surrogate/);
    expect(textProblem('\udc00')).toMatch(/surrogate/);
    expect(textProblem('a\u0000')).toMatch(/control/);
  });
  it('decodes queries strictly', () => {
    expect([...strictQuery('a=1+2&b=%C3%A9&c').entries()]).toEqual([['a', '1 2'], ['b', 'é'], ['c', '']]);
    expect(() => strictQuery('a=%E0%A4%A')).toThrow(/percent-encoding/);
    expect(() => strictQuery('%ZZ=1')).toThrow(/percent-encoding/);
    expect(() => strictQuery('a=%00')).toThrow(/control/);
    expect([...strictQuery('u=lt96||%&v=%25', { literalPercent: true }).entries()]).toEqual([['u', 'lt96||%'], ['v', '%']]);
    expect(() => strictQuery('a=%E0%A4%A', { literalPercent: true })).toThrow(/percent-encoding/);
  });
});

describe('body limits', () => {
  const small = { arrayElements: 3, stringLength: 11, resourceElements: 6 };
  it('names the element over a limit and its setting', () => {
    expect(() => checkJsonBody({ resourceType: 'Patient', name: [{ given: ['a', 'b', 'c', 'd'] }] }, small)).toThrow(/Patient\.name\[0\]\.given .*JSON_MAX_ARRAY_LENGTH/);
    expect(() => checkJsonBody({ resourceType: 'Patient', name: [{ family: 'abcdefghijkl' }] }, small)).toThrow(/Patient\.name\[0\]\.family .*JSON_MAX_STRING_LENGTH/);
    expect(() => checkJsonBody({ resourceType: 'Binary', data: 'abcdefghijklmnop' }, small)).not.toThrow();
  });
  it('bounds the array elements of one resource in all; each Bundle entry has its own budget', () => {
    const component = { code: { coding: [{ code: 'a' }, { code: 'b' }] } };
    // 3 components of 2 codings: 3 + 6 elements.
    expect(() => checkJsonBody({ resourceType: 'Observation', component: [component, component, component] }, small)).toThrow(/RESOURCE_MAX_ELEMENTS/);
    const resource = { resourceType: 'Observation', component: [component, component] };
    const entries = Array.from({ length: 5 }, () => ({ resource, request: { method: 'POST', url: 'Observation' } }));
    expect(() => checkJsonBody({ resourceType: 'Bundle', type: 'batch', entry: entries }, small)).not.toThrow();
  });
  it('refuses prototype keys, bad text and numbers out of range', () => {
    expect(() => checkJsonBody(JSON.parse('{"__proto__":{"x":1}}'), limits)).toThrow(/__proto__/);
    expect(() => checkJsonBody({ a: { constructor: 1 } }, limits)).toThrow(/constructor/);
    expect(() => checkJsonBody({ a: ['\ud800'] }, limits)).toThrow(/surrogate/);
    expect(() => checkJsonBody(JSON.parse('{"n":1e999}'), limits)).toThrow(/out of range/);
  });
  it('bounds search cost', () => {
    const l = { ...limits, searchParams: 3, chainDepth: 2, includeParams: 1 };
    expect(() => checkSearchCost([['code', 'a,b\\,c']], l)).not.toThrow();
    expect(() => checkSearchCost([['code', 'a,b,c,d']], l)).toThrow(/SEARCH_MAX_PARAMS/);
    expect(() => checkSearchCost([['subject.organization.name', 'x']], l)).not.toThrow();
    expect(() => checkSearchCost([['subject.organization.partof.name', 'x']], l)).toThrow(/SEARCH_MAX_CHAIN_DEPTH/);
    expect(() => checkSearchCost([['_has:Observation:patient:_has:AuditEvent:entity:_has:X:y:z', 'x']], l)).toThrow(/SEARCH_MAX_CHAIN_DEPTH/);
    expect(() => checkSearchCost([['_include', 'a'], ['_revinclude', 'b']], l)).toThrow(/SEARCH_MAX_INCLUDE_PARAMS/);
  });
});

describe('deadline', () => {
  it('throws once the clock has passed it, and not before', async () => {
    let now = 1000;
    await runWithDeadline(
      50,
      async () => {
        expect(() => checkDeadline()).not.toThrow();
        now = 1051;
        expect(() => checkDeadline()).toThrow(/REQUEST_DEADLINE_MS/);
      },
      () => now,
    );
    expect(() => checkDeadline()).not.toThrow(); // outside a request
  });
});

describe('audit sanitising', () => {
  it('escapes what cannot be stored and keeps invalid references as details', () => {
    expect(escapeText('a\u0000b\ud800😀')).toBe('a\\u0000b\\ud800😀');
    const e: AuditEvent = {
      resourceType: 'AuditEvent',
      type: { code: 'rest' },
      recorded: '2026-01-01T00:00:00Z',
      agent: [{ requestor: true }],
      source: { observer: { display: 'x' } },
      entity: [{ what: { reference: 'Patient/\u0000' }, name: 'Pat\u0000' }],
    };
    const s = sanitizeAuditEvent(e);
    expect(s.entity?.[0].what).toBeUndefined();
    expect(s.entity?.[0].name).toBe('Pat\\u0000');
    expect(JSON.stringify(s.entity?.[0].detail)).toContain('unstorable-reference');
    expect(JSON.stringify(s.entity?.[0].detail)).toContain('sanitized');
    expect(sanitizeAuditEvent({ ...e, entity: [{ what: { reference: 'Patient/1' } }] }).entity?.[0].detail).toBeUndefined();
  });
});
