import type { Bundle, Device, Flag } from 'fhir/r4';
import pino from 'pino';
import { createAlerting } from '../../../src/alerting';
import { heartRate } from '../../support/context';
import { activeSubscription, alertSubscription, eventCount, eventOf, flagsIn, getJson, hookNotifications, post, settle, uid, until, useAlertingSuite } from '../../support/alerting';

const INTERVAL = 'http://vigil-fhir.org/fhir/StructureDefinition/device-expected-reporting-interval';
const SILENT = 'http://vigil-fhir.org/fhir/CodeSystem/alert-episode|device-silent';

function device(patient: string, seconds: number): Device {
  return {
    resourceType: 'Device',
    extension: [{ url: INTERVAL, valueDuration: { value: seconds, unit: 's', system: 'http://unitsofmeasure.org', code: 's' } }],
    status: 'active',
    patient: { reference: `Patient/${patient}` },
  };
}

function reading(patient: string, deviceId: string) {
  return { ...heartRate(patient, 72, new Date().toISOString()), device: { reference: `Device/${deviceId}` } };
}

describe('silent devices with an injected clock', () => {
  let now = new Date('2026-03-01T10:00:00Z');
  // Deadlines are polled by hand here (fireDueDeadlines), at clock times the test sets; the quiet period is on (60 min).
  const s = useAlertingSuite({ webhook: false, clock: () => now, env: { ALERT_DEADLINE_POLL_MS: '60000', ALERT_QUIET_PERIOD_MIN: '60' } });

  const silentFlags = async (p: string) => ((await getJson<Bundle>(s.ctx, `Flag?patient=Patient/${p}&code=${SILENT}`)).entry ?? []).map((e) => e.resource as Flag);

  it('refuses an interval under 10 seconds', async () => {
    const { ctx } = s;
    const res = await ctx.request.post('/fhir/Device').set('Content-Type', 'application/fhir+json').send(JSON.stringify(device('x', 5)));
    expect(res.status).toBe(422);
    expect(JSON.parse(res.text).issue[0].details.coding[0].code).toBe('MSG_REPORTING_INTERVAL');
  });

  it('opens a device-silent episode after the interval, once, even across restarts and two instances; data resumes it', async () => {
    const { ctx } = s;
    const p = uid('dev');
    const dev = await post<Device>(ctx, 'Device', device(p, 60));
    await post(ctx, 'Observation', reading(p, dev.id!));
    await settle(ctx);
    now = new Date(now.getTime() + 59_000);
    expect(await ctx.vigil.alerting.fireDueDeadlines()).toBe(0);
    expect(await silentFlags(p)).toHaveLength(0);

    now = new Date(now.getTime() + 2_000); // 61 s after the reading: overdue
    // A second instance's alerting on the same database, built after the deadline passed (as after a
    // restart), races this one for the overdue deadline: it fires once.
    const v = ctx.vigil;
    const other = createAlerting({ db: ctx.db, config: ctx.config.alerting, logger: pino({ level: 'silent' }), store: v.store, search: v.search, clock: () => now });
    const fired = await Promise.all([v.alerting.fireDueDeadlines(), other.fireDueDeadlines()]);
    expect(fired[0] + fired[1]).toBe(1);
    expect(await v.alerting.fireDueDeadlines()).toBe(0);
    await settle(ctx);
    const open = await silentFlags(p);
    expect(open).toHaveLength(1);
    expect(open[0]).toMatchObject({ status: 'active', subject: { reference: `Patient/${p}` } });
    expect(eventOf(open[0])).toBe('raised');
    expect(await ctx.vigil.alerting.openEpisodeCount()).toBeGreaterThanOrEqual(1);

    now = new Date(now.getTime() + 5_000);
    await post(ctx, 'Observation', reading(p, dev.id!));
    await settle(ctx);
    const after = await silentFlags(p);
    expect(after).toHaveLength(1);
    expect(after[0].status).toBe('inactive');
    expect(eventOf(after[0])).toBe('resolved');
  });

  it('a quiet period without abnormal readings resolves an episode', async () => {
    const { ctx } = s;
    const p = uid('quiet');
    await post(ctx, 'Observation', heartRate(p, 115, now.toISOString()));
    await settle(ctx);
    const flags = async () => ((await getJson<Bundle>(ctx, `Flag?patient=Patient/${p}&code=http://loinc.org|8867-4`)).entry ?? []).map((e) => e.resource as Flag);
    expect((await flags()).map((f) => f.status)).toEqual(['active']);
    now = new Date(now.getTime() + 59 * 60_000);
    await ctx.vigil.alerting.fireDueDeadlines();
    expect((await flags()).map((f) => f.status)).toEqual(['active']);
    now = new Date(now.getTime() + 2 * 60_000);
    expect(await ctx.vigil.alerting.fireDueDeadlines()).toBeGreaterThanOrEqual(1);
    await settle(ctx);
    const after = await flags();
    expect(after.map((f) => [f.status, eventOf(f)])).toEqual([['inactive', 'resolved']]);
  });

  it('a device that never reports goes silent too', async () => {
    const { ctx } = s;
    const p = uid('mute');
    await post<Device>(ctx, 'Device', device(p, 30));
    await settle(ctx);
    now = new Date(now.getTime() + 31_000);
    expect(await ctx.vigil.alerting.fireDueDeadlines()).toBeGreaterThanOrEqual(1);
    await settle(ctx);
    expect(await silentFlags(p)).toHaveLength(1);
  });
});

describe('silent device in real time (10-second interval)', () => {
  const s = useAlertingSuite({ env: { ALERT_DEADLINE_POLL_MS: '500', ALERT_QUIET_PERIOD_MIN: '60' } });

  it('notifies device-silent after 10 s without data, and resolved when data resumes', async () => {
    const { ctx, hook } = s;
    const p = uid('rt');
    const sub = await activeSubscription(ctx, alertSubscription(hook.url, p, `&code=${SILENT}`));
    const dev = await post<Device>(ctx, 'Device', device(p, 10));
    const sent = Date.now();
    await post(ctx, 'Observation', reading(p, dev.id!));
    // Bounded wait well beyond the interval: the shared machine may be slow, never too fast.
    const raised = await until('device-silent raised', () => (flagsIn(hookNotifications(hook, sub.id!)).length >= 1 ? flagsIn(hookNotifications(hook, sub.id!)) : undefined), 60_000);
    expect(Date.now() - sent).toBeGreaterThanOrEqual(10_000);
    expect(raised.map(eventOf)).toEqual(['raised']);
    await post(ctx, 'Observation', reading(p, dev.id!));
    const both = await until('resolved', () => (flagsIn(hookNotifications(hook, sub.id!)).length >= 2 ? flagsIn(hookNotifications(hook, sub.id!)) : undefined), 30_000);
    expect(both.map(eventOf)).toEqual(['raised', 'resolved']);
    expect(await eventCount(ctx, sub.id!)).toBe(2);
  }, 120_000);
});
