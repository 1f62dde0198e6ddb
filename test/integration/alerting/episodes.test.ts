import type { Bundle, Flag, OperationOutcome } from 'fhir/r4';
import { FHIR_JSON, heartRate } from '../../support/context';
import {
  activeSubscription, alertSubscription, eventCount, eventOf, flagsIn, getJson, hookNotifications, post, settle, uid, until, useAlertingSuite, WsClient,
} from '../../support/alerting';

/**
 * Alert episodes over HTTP: a real webhook receiver and a real websocket client subscribe to the
 * alert-episode topic; readings go in by POST; only raised, escalated, resolved and acknowledged
 * notify.
 */
describe('alert episodes (real app, webhook, websocket)', () => {
  // Every batch moves the Flag's latest triggering reading here (the default refreshes it at most once a minute).
  const s = useAlertingSuite({ env: { ALERT_LATEST_REFRESH_S: '0' } });

  it('12 high readings in a minute raise one episode; an escalation and a resolution notify once each', async () => {
    const { ctx, hook } = s;
    const p = uid('ep');
    const sub = await activeSubscription(ctx, alertSubscription(hook.url, p));
    const wsSub = await activeSubscription(ctx, { ...alertSubscription('', p), channel: { ...alertSubscription('', p).channel, type: 'websocket', endpoint: undefined } });
    const ws = await new WsClient().bind(ctx, wsSub.id!);
    try {
      // Twelve readings of 115/min (high), four at a time as a gateway would send them.
      for (let i = 0; i < 12; i += 4) await Promise.all([0, 1, 2, 3].map(() => post(ctx, 'Observation', heartRate(p, 115, new Date().toISOString()))));
      await settle(ctx);
      expect(await eventCount(ctx, sub.id!)).toBe(1);
      const raised = await until('raised on the webhook', () => (hookNotifications(hook, sub.id!).length >= 1 ? flagsIn(hookNotifications(hook, sub.id!)) : undefined));
      expect(raised.map(eventOf)).toEqual(['raised']);
      const flags = await getJson<Bundle>(ctx, `Flag?patient=Patient/${p}`);
      expect(flags.entry).toHaveLength(1);
      const flag = flags.entry![0].resource as Flag;
      expect(flag).toMatchObject({ status: 'active', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: `Patient/${p}` } });
      const details = flag.extension!.filter((e) => e.url === 'http://hl7.org/fhir/StructureDefinition/flag-detail');
      expect(details).toHaveLength(2); // first and latest triggering readings

      const crit = await post<{ id: string }>(ctx, 'Observation', heartRate(p, 140, new Date().toISOString()));
      await settle(ctx);
      expect(await eventCount(ctx, sub.id!)).toBe(2);
      for (let i = 0; i < 2; i++) await post(ctx, 'Observation', heartRate(p, 72, new Date().toISOString()));
      await settle(ctx);
      expect(await eventCount(ctx, sub.id!)).toBe(3);

      const viaHook = await until('three events on the webhook', () => {
        const f = flagsIn(hookNotifications(hook, sub.id!));
        return f.length >= 3 ? f : undefined;
      });
      expect(viaHook.map(eventOf)).toEqual(['raised', 'escalated', 'resolved']);
      expect(viaHook[1].extension).toContainEqual({ url: 'http://hl7.org/fhir/StructureDefinition/flag-detail', valueReference: { reference: `Observation/${crit.id}`, display: 'latest triggering reading' } });
      expect(viaHook[2].status).toBe('inactive');
      expect(viaHook[2].period?.end).toBeDefined();
      const viaWs = await until('three events on the websocket', () => {
        const f = flagsIn(ws.notifications());
        return f.length >= 3 ? f : undefined;
      });
      expect(viaWs.map(eventOf)).toEqual(['raised', 'escalated', 'resolved']);
      expect(await eventCount(ctx, wsSub.id!)).toBe(3);
    } finally {
      ws.close();
    }
  });

  it('acknowledgement records who and when, notifies once, silences repeats but not an escalation', async () => {
    const { ctx, hook } = s;
    const p = uid('ack');
    const sub = await activeSubscription(ctx, alertSubscription(hook.url, p));
    await post(ctx, 'Observation', heartRate(p, 115, new Date().toISOString()));
    await settle(ctx);
    const flag = (await getJson<Bundle>(ctx, `Flag?patient=Patient/${p}&status=active`)).entry![0].resource as Flag;
    const ack = await ctx.request.post(`/fhir/Flag/${flag.id}/$acknowledge`).set('Content-Type', FHIR_JSON);
    expect(ack.status).toBe(200);
    const acked = JSON.parse(ack.text) as Flag;
    const rec = acked.extension!.find((e) => e.url === 'http://vigil-fhir.org/fhir/StructureDefinition/alert-acknowledgement');
    expect(rec?.extension?.map((e) => e.url)).toEqual(['by', 'at']);
    expect(eventOf(acked)).toBe('acknowledged');
    // Again: nothing new to say.
    expect((await ctx.request.post(`/fhir/Flag/${flag.id}/$acknowledge`)).status).toBe(200);
    await post(ctx, 'Observation', heartRate(p, 118, new Date().toISOString()));
    await settle(ctx);
    expect(await eventCount(ctx, sub.id!)).toBe(2); // raised, acknowledged
    await post(ctx, 'Observation', heartRate(p, 150, new Date().toISOString()));
    await settle(ctx);
    expect(await eventCount(ctx, sub.id!)).toBe(3);
    const events = await until('three events', () => {
      const f = flagsIn(hookNotifications(hook, sub.id!));
      return f.length >= 3 ? f : undefined;
    });
    expect(events.map(eventOf)).toEqual(['raised', 'acknowledged', 'escalated']);
    // The acknowledgement stays on the Flag after the escalation.
    expect(events[2].extension!.some((e) => e.url === 'http://vigil-fhir.org/fhir/StructureDefinition/alert-acknowledgement')).toBe(true);
  });

  it('$acknowledge on an unknown Flag is a 404 OperationOutcome; Flags cannot be written by clients', async () => {
    const { ctx } = s;
    const res = await ctx.request.post('/fhir/Flag/nope/$acknowledge');
    expect(res.status).toBe(404);
    expect((JSON.parse(res.text) as OperationOutcome).resourceType).toBe('OperationOutcome');
    const put = await ctx.request.post('/fhir/Flag').set('Content-Type', FHIR_JSON).send(JSON.stringify({ resourceType: 'Flag', status: 'active', code: { text: 'x' }, subject: { reference: 'Patient/x' } }));
    expect(put.status).toBe(405);
  });

  it('the severity and event filters select episodes', async () => {
    const { ctx, hook } = s;
    const p = uid('flt');
    const sub = await activeSubscription(ctx, alertSubscription(hook.url, p, '&severity=HH'));
    await post(ctx, 'Observation', heartRate(p, 115, new Date().toISOString()));
    await settle(ctx);
    expect(await eventCount(ctx, sub.id!)).toBe(0);
    await post(ctx, 'Observation', heartRate(p, 145, new Date().toISOString()));
    await settle(ctx);
    expect(await eventCount(ctx, sub.id!)).toBe(1);
    const found = await getJson<Bundle>(ctx, `Flag?patient=Patient/${p}&event=escalated&severity=HH&code=http://loinc.org|8867-4`);
    expect(found.entry).toHaveLength(1);
  });
});
