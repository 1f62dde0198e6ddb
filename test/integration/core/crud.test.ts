import { createTestContext, FHIR_JSON, heartRate, patient, type TestContext } from '../../support/context';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => {
  await ctx.close();
});

const post = (path: string, body: unknown) =>
  ctx.request.post(`/fhir/${path}`).set('Content-Type', FHIR_JSON).send(JSON.stringify(body));
const put = (path: string, body: unknown) =>
  ctx.request.put(`/fhir/${path}`).set('Content-Type', FHIR_JSON).send(JSON.stringify(body));

function issue(res: { body: { resourceType?: string; issue?: { code: string; diagnostics?: string; expression?: string[]; details?: { coding?: { code?: string }[] } }[] } }) {
  expect(res.body.resourceType).toBe('OperationOutcome');
  return res.body.issue![0];
}

describe('create and read', () => {
  it('creates with a server-assigned id, ignoring client id and meta, and reads it back', async () => {
    const res = await post('Patient', { ...patient(), id: 'client-chosen', meta: { versionId: '99', lastUpdated: '2000-01-01T00:00:00Z' } });
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toMatch(/^application\/fhir\+json/);
    const id = res.body.id as string;
    expect(id).not.toBe('client-chosen');
    expect(res.body.meta.versionId).toBe('1');
    expect(res.body.meta.lastUpdated).not.toBe('2000-01-01T00:00:00Z');
    expect(res.headers.location).toBe(`http://localhost/fhir/Patient/${id}/_history/1`);
    expect(res.headers.etag).toBe('W/"1"');
    expect(res.headers['last-modified']).toBeDefined();

    const read = await ctx.request.get(`/fhir/Patient/${id}`);
    expect(read.status).toBe(200);
    expect(read.body.name[0].family).toBe('Chalmers');
    expect(read.headers.etag).toBe('W/"1"');
  });

  it('answers HEAD with headers and no body', async () => {
    const { body } = await post('Device', { resourceType: 'Device', status: 'active', deviceName: [{ name: 'Pulse oximeter', type: 'user-friendly-name' }] });
    const res = await ctx.request.head(`/fhir/Device/${body.id}`);
    expect(res.status).toBe(200);
    expect(res.headers.etag).toBe('W/"1"');
    expect(res.text ?? '').toBe('');
  });

  it('answers 404 with an OperationOutcome for unknown ids and unknown types', async () => {
    const r1 = await ctx.request.get('/fhir/Patient/does-not-exist');
    expect(r1.status).toBe(404);
    expect(issue(r1).code).toBe('not-found');
    const r2 = await ctx.request.get('/fhir/Medication/1');
    expect(r2.status).toBe(404);
    expect(issue(r2).diagnostics).toMatch(/Medication/);
  });

  it('supports _summary and _elements on read', async () => {
    const { body } = await post('Patient', { ...patient(), text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Peter</div>' } });
    const el = await ctx.request.get(`/fhir/Patient/${body.id}?_elements=gender`);
    expect(el.body.gender).toBe('male');
    expect(el.body.name).toBeUndefined();
    expect(el.body.meta.tag).toEqual(expect.arrayContaining([expect.objectContaining({ code: 'SUBSETTED' })]));
    const data = await ctx.request.get(`/fhir/Patient/${body.id}?_summary=data`);
    expect(data.body.text).toBeUndefined();
    expect(data.body.name).toBeDefined();
    const summary = await ctx.request.get(`/fhir/Patient/${body.id}?_summary=true`);
    expect(summary.body.name).toBeDefined();
    expect(summary.body.text).toBeUndefined();
    const bad = await ctx.request.get(`/fhir/Patient/${body.id}?_summary=maybe`);
    expect(bad.status).toBe(400);
  });

  it('negotiates formats: 406 for XML, JSON for _format=json', async () => {
    const { body } = await post('Patient', patient());
    expect((await ctx.request.get(`/fhir/Patient/${body.id}`).set('Accept', 'application/fhir+xml')).status).toBe(406);
    expect((await ctx.request.get(`/fhir/Patient/${body.id}?_format=xml`)).status).toBe(406);
    const j = await ctx.request.get(`/fhir/Patient/${body.id}?_format=json`);
    expect(j.status).toBe(200);
    expect(j.headers['content-type']).toMatch(/application\/fhir\+json/);
    const pretty = await ctx.request.get(`/fhir/Patient/${body.id}?_pretty=true`);
    expect(pretty.text).toContain('\n  ');
  });
});

describe('bad input', () => {
  it('rejects malformed JSON with 400', async () => {
    const res = await ctx.request.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send('{"resourceType": "Patient",');
    expect(res.status).toBe(400);
    expect(issue(res).diagnostics).toMatch(/JSON/);
  });

  it('rejects a wrong resourceType for the URL', async () => {
    const res = await post('Patient', heartRate('x', 80));
    expect(res.status).toBe(400);
    expect(issue(res).code).toBe('invalid');
  });

  it('rejects invalid element types with 422 naming the element', async () => {
    const obs = heartRate('x', 80);
    (obs.valueQuantity as Record<string, unknown>).value = 'eighty';
    const res = await post('Observation', obs);
    expect(res.status).toBe(422);
    expect(issue(res).expression?.[0]).toMatch(/Observation\.valueQuantity\.value/);
  });

  it('rejects unknown elements with 422', async () => {
    const res = await post('Patient', { ...patient(), favouriteColour: 'blue' });
    expect(res.status).toBe(422);
    expect(JSON.stringify(res.body)).toMatch(/favouriteColour/);
  });

  it('rejects an id mismatch on update', async () => {
    const res = await put('Patient/abc', { ...patient(), id: 'xyz' });
    expect(res.status).toBe(400);
    expect(issue(res).diagnostics).toMatch(/id/);
  });

  it('rejects unsupported media types with 415', async () => {
    const res = await ctx.request.post('/fhir/Patient').set('Content-Type', 'text/plain').send('hello');
    expect(res.status).toBe(415);
    expect(issue(res).code).toBe('not-supported');
  });

  it('rejects oversized bodies with 413', async () => {
    const big = { ...patient(), name: [{ family: 'x'.repeat(6 * 1024 * 1024) }] };
    const res = await post('Patient', big);
    expect(res.status).toBe(413);
    expect(issue(res).code).toBe('too-costly');
  });

  it('rejects JSON nested deeper than the limit', async () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    const res = await post('Patient', { ...patient(), extension: [{ url: 'http://x', valueString: 'y', _deep: deep }] });
    expect(res.status).toBe(400);
    expect(issue(res).diagnostics).toMatch(/nesting/);
  });

  it('answers a method that is not allowed with 405', async () => {
    const res = await ctx.request.patch('/fhir/Patient').set('Content-Type', 'application/json-patch+json').send('[]');
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('GET, HEAD, POST, PUT, DELETE');
    expect(issue(res).code).toBe('not-supported');
  });

  it('answers a known path with a wrong method with 405 and Allow, never 404', async () => {
    const meta = await ctx.request.delete('/fhir/metadata');
    expect(meta.status).toBe(405);
    expect(meta.headers.allow).toBe('GET, HEAD');
    const hist = await ctx.request.post('/fhir/Patient/_history').type('application/fhir+json').send('{}');
    expect(hist.status).toBe(405);
    expect(hist.headers.allow).toBe('GET, HEAD');
    // Types only the server writes (topics as Basic, AuditEvent) are read-only paths.
    for (const [method, url] of [['post', '/fhir/Basic'], ['put', '/fhir/Basic/abnormal-vital-sign'], ['delete', '/fhir/AuditEvent/x']] as const) {
      const r = await ctx.request[method](url).type('application/fhir+json').send(method === 'delete' ? undefined : '{"resourceType":"Basic","code":{"text":"x"}}');
      expect([url, r.status, r.headers.allow, issue(r).code]).toEqual([url, 405, 'GET, HEAD', 'not-supported']);
    }
  });

  it('never leaves a half-written resource after a rejected write', async () => {
    const { body } = await post('Patient', patient('Before'));
    const bad = await put(`Patient/${body.id}`, { ...patient('After'), id: body.id, birthDate: 'not-a-date' });
    expect(bad.status).toBe(422);
    const read = await ctx.request.get(`/fhir/Patient/${body.id}`);
    expect(read.body.name[0].family).toBe('Before');
    expect(read.body.meta.versionId).toBe('1');
    const hist = await ctx.request.get(`/fhir/Patient/${body.id}/_history`);
    expect(hist.body.entry).toHaveLength(1);
  });
});

describe('update, versions and concurrency', () => {
  it('versions updates, honours If-Match and makes no version for identical content', async () => {
    const { body } = await post('Patient', patient());
    const id = body.id as string;
    const v2 = await put(`Patient/${id}`, { ...patient('Changed'), id });
    expect(v2.status).toBe(200);
    expect(v2.body.meta.versionId).toBe('2');
    expect(v2.headers.etag).toBe('W/"2"');

    const same = await put(`Patient/${id}`, { ...patient('Changed'), id });
    expect(same.status).toBe(200);
    expect(same.body.meta.versionId).toBe('2');

    const stale = await put(`Patient/${id}`, { ...patient('Stale'), id }).set('If-Match', 'W/"1"');
    expect(stale.status).toBe(412);
    expect(issue(stale).code).toBe('conflict');
    const ok = await put(`Patient/${id}`, { ...patient('Fresh'), id }).set('If-Match', 'W/"2"');
    expect(ok.status).toBe(200);
    expect(ok.body.meta.versionId).toBe('3');

    const v1 = await ctx.request.get(`/fhir/Patient/${id}/_history/1`);
    expect(v1.status).toBe(200);
    expect(v1.body.name[0].family).toBe('Chalmers');
    expect((await ctx.request.get(`/fhir/Patient/${id}/_history/9`)).status).toBe(404);
    expect((await ctx.request.get(`/fhir/Patient/${id}/_history/x`)).status).toBe(404);
  });

  it('creates on update with a client-chosen id (201)', async () => {
    const res = await put('Device/wearable-7', { resourceType: 'Device', id: 'wearable-7', status: 'active' });
    expect(res.status).toBe(201);
    expect(res.headers.location).toBe('http://localhost/fhir/Device/wearable-7/_history/1');
  });

  it('lets exactly one of two racing If-Match updates win', async () => {
    const { body } = await post('Patient', patient());
    const id = body.id as string;
    const [a, b] = await Promise.all([
      put(`Patient/${id}`, { ...patient('A'), id }).set('If-Match', 'W/"1"'),
      put(`Patient/${id}`, { ...patient('B'), id }).set('If-Match', 'W/"1"'),
    ]);
    expect([a.status, b.status].sort()).toEqual([200, 412]);
    const hist = await ctx.request.get(`/fhir/Patient/${id}/_history`);
    expect(hist.body.entry).toHaveLength(2);
  });

  it('honours Prefer: return=minimal and return=OperationOutcome', async () => {
    const minimal = await post('Patient', patient()).set('Prefer', 'return=minimal');
    expect(minimal.status).toBe(201);
    expect(minimal.text ?? '').toBe('');
    expect(minimal.headers.location).toBeDefined();
    const oo = await post('Patient', patient()).set('Prefer', 'return=OperationOutcome');
    expect(oo.status).toBe(201);
    expect(oo.body.resourceType).toBe('OperationOutcome');
  });
});

describe('delete', () => {
  it('deletes (410 afterwards), keeps history, and a later PUT revives it', async () => {
    const { body } = await post('Observation', heartRate('p1', 72));
    const id = body.id as string;
    const del = await ctx.request.delete(`/fhir/Observation/${id}`);
    expect(del.status).toBe(204);
    const gone = await ctx.request.get(`/fhir/Observation/${id}`);
    expect(gone.status).toBe(410);
    expect(issue(gone).code).toBe('deleted');
    expect((await ctx.request.delete(`/fhir/Observation/${id}`)).status).toBe(204);

    const hist = await ctx.request.get(`/fhir/Observation/${id}/_history`);
    expect(hist.body.type).toBe('history');
    expect(hist.body.entry).toHaveLength(2);
    expect(hist.body.entry[0].request).toEqual({ method: 'DELETE', url: `Observation/${id}` });
    expect(hist.body.entry[0].resource).toBeUndefined();

    const revived = await put(`Observation/${id}`, { ...heartRate('p1', 75), id });
    expect(revived.status).toBe(201);
    expect(revived.body.meta.versionId).toBe('3');
    expect((await ctx.request.get(`/fhir/Observation/${id}`)).body.valueQuantity.value).toBe(75);
  });
});

describe('patch', () => {
  it('applies JSON Patch and checks its input', async () => {
    const { body } = await post('Patient', patient());
    const id = body.id as string;
    const ok = await ctx.request
      .patch(`/fhir/Patient/${id}`)
      .set('Content-Type', 'application/json-patch+json')
      .send(JSON.stringify([{ op: 'replace', path: '/gender', value: 'female' }]));
    expect(ok.status).toBe(200);
    expect(ok.body.gender).toBe('female');
    expect(ok.body.meta.versionId).toBe('2');

    const bad = await ctx.request
      .patch(`/fhir/Patient/${id}`)
      .set('Content-Type', 'application/json-patch+json')
      .send(JSON.stringify([{ op: 'replace', path: '/gender', value: 42 }]));
    expect(bad.status).toBe(422);

    const failedTest = await ctx.request
      .patch(`/fhir/Patient/${id}`)
      .set('Content-Type', 'application/json-patch+json')
      .send(JSON.stringify([{ op: 'test', path: '/gender', value: 'male' }]));
    expect(failedTest.status).toBe(422);

    const malformed = await ctx.request.patch(`/fhir/Patient/${id}`).set('Content-Type', 'application/json-patch+json').send('{"op":"x"}');
    expect(malformed.status).toBe(400);

    const stale = await ctx.request
      .patch(`/fhir/Patient/${id}`)
      .set('Content-Type', 'application/json-patch+json')
      .set('If-Match', 'W/"1"')
      .send(JSON.stringify([{ op: 'replace', path: '/gender', value: 'other' }]));
    expect(stale.status).toBe(412);

    const wrongType = await ctx.request.patch(`/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).send('{}');
    expect(wrongType.status).toBe(415);
  });
});

describe('history', () => {
  it('lists type and system history newest first with paging and _since', async () => {
    const t0 = new Date().toISOString();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await post('Device', { resourceType: 'Device', status: 'active', serialNumber: `SN-${i}` })).body.id);
    const page1 = await ctx.request.get(`/fhir/Device/_history?_since=${encodeURIComponent(t0)}&_count=3`);
    expect(page1.status).toBe(200);
    expect(page1.body.entry).toHaveLength(3);
    expect(page1.body.entry[0].resource.serialNumber).toBe('SN-4');
    const next = page1.body.link.find((l: { relation: string }) => l.relation === 'next').url as string;
    const page2 = await ctx.request.get(next.replace('http://localhost', ''));
    expect(page2.body.entry.map((e: { resource: { serialNumber: string } }) => e.resource.serialNumber)).toEqual(['SN-1', 'SN-0']);
    expect(page2.body.link.find((l: { relation: string }) => l.relation === 'next')).toBeUndefined();

    const tampered = await ctx.request.get(next.replace('http://localhost', '').replace(/_page=([^&]+)/, '_page=abc.def'));
    expect(tampered.status).toBe(400);
    const sys = await ctx.request.get(`/fhir/_history?_since=${encodeURIComponent(t0)}`);
    expect(sys.body.entry.length).toBeGreaterThanOrEqual(5);
    expect((await ctx.request.get('/fhir/Device/_history?_since=yesterday')).status).toBe(400);
    expect((await ctx.request.get('/fhir/Patient/nope/_history')).status).toBe(404);
  });
});

describe('capabilities and operations', () => {
  it('serves a CapabilityStatement generated from the registry', async () => {
    const res = await ctx.request.get('/fhir/metadata');
    expect(res.status).toBe(200);
    expect(res.body.resourceType).toBe('CapabilityStatement');
    expect(res.body.fhirVersion).toBe('4.0.1');
    const types = res.body.rest[0].resource.map((r: { type: string }) => r.type);
    expect(types).toEqual(expect.arrayContaining(['Patient', 'Device', 'Observation']));
    const obs = res.body.rest[0].resource.find((r: { type: string }) => r.type === 'Observation');
    expect(obs.interaction.map((i: { code: string }) => i.code)).toEqual(expect.arrayContaining(['read', 'vread', 'create', 'update', 'patch', 'delete', 'search-type']));
    expect(obs.searchParam.length).toBeGreaterThan(10);
  });

  it('$validate reports problems without storing anything', async () => {
    const good = await post('Observation/$validate', heartRate('p', 60));
    expect(good.status).toBe(200);
    expect(good.body.issue[0].severity).toBe('information');
    const bad = await post('Observation/$validate', { resourceType: 'Observation', status: 'final' });
    expect(bad.status).toBe(200);
    expect(bad.body.issue.some((i: { severity: string }) => i.severity === 'error')).toBe(true);
  });

  it('stores the shipped topics and vital-sign ranges as readable resources, once', async () => {
    // R4 has no SubscriptionTopic: topics are Basic resources with the R5 cross-version extensions (Backport IG).
    expect((await ctx.request.get('/fhir/SubscriptionTopic/abnormal-vital-sign')).status).toBe(404);
    const topic = await ctx.request.get('/fhir/Basic/abnormal-vital-sign');
    expect(topic.status).toBe(200);
    expect(topic.body.code.coding).toEqual([{ system: 'http://hl7.org/fhir/fhir-types', code: 'SubscriptionTopic' }]);
    const urlExt = 'http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.url';
    expect(topic.body.extension.find((e: { url: string }) => e.url === urlExt).valueUri).toBe('http://vigil-fhir.org/fhir/SubscriptionTopic/abnormal-vital-sign');
    expect(topic.body.modifierExtension).toEqual([{ url: 'http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.status', valueCode: 'active' }]);
    for (const q of [
      'url=http://vigil-fhir.org/fhir/SubscriptionTopic/abnormal-vital-sign',
      'code=http://hl7.org/fhir/fhir-types|SubscriptionTopic&status=active&url=http://vigil-fhir.org/fhir/SubscriptionTopic/abnormal-vital-sign',
      'identifier=urn:ietf:rfc:3986|http://vigil-fhir.org/fhir/SubscriptionTopic/abnormal-vital-sign',
    ]) {
      const found = await ctx.request.get(`/fhir/Basic?${q}`).set('Prefer', 'handling=strict');
      expect([q, found.status, found.body.entry?.map((e: { resource: { id: string } }) => e.resource.id)]).toEqual([q, 200, ['abnormal-vital-sign']]);
    }
    const all = await ctx.request.get('/fhir/Basic?code=http://hl7.org/fhir/fhir-types|SubscriptionTopic');
    expect(all.body.entry.map((e: { resource: { id: string } }) => e.resource.id).sort()).toEqual(['abnormal-vital-sign', 'alert-episode', 'observation-created']);
    const hr = await ctx.request.get('/fhir/ObservationDefinition/vital-heart-rate');
    expect(hr.status).toBe(200);
    // Start-up again (as after a restart): identical content makes no new version.
    await ctx.vigil.stop();
    await ctx.vigil.start();
    expect((await ctx.request.get('/fhir/ObservationDefinition/vital-heart-rate')).body.meta.versionId).toBe(hr.body.meta.versionId);
  });

  it('serves health and readiness', async () => {
    expect((await ctx.request.get('/healthz')).status).toBe(200);
    expect((await ctx.request.get('/readyz')).body.status).toBe('ready');
  });

  it('sets security headers', async () => {
    const res = await ctx.request.get('/fhir/metadata');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-powered-by']).toBeUndefined();
    expect(res.headers['x-request-id']).toBeDefined();
  });
});
