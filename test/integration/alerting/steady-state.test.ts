import type { Bundle, Flag, Observation } from 'fhir/r4';
import type { CommandStartedEvent } from 'mongodb';
import { heartRate } from '../../support/context';
import { getJson, post, settle, uid, until, useAlertingSuite, vital } from '../../support/alerting';

const ALERT_COLLECTIONS = ['alert_keys', 'alert_state', 'alert_heads', 'alert_flags', 'alert_latest', 'alert_deadlines', 'alert_claims'];
const DETAIL = 'http://hl7.org/fhir/StructureDefinition/flag-detail';

/**
 * What a reading costs alerting once an episode is open (this instance holds the outbox lease,
 * so episode state, NEWS2 inputs and patient inputs are in memory): a repeat reading reads and
 * writes nothing of alerting's own, no Patient and no Goal, and rewrites no Flag until the
 * refresh interval has passed. Counted from the driver's command monitoring, with the clock injected.
 */
describe('alerting in the steady state', () => {
  let now = new Date('2026-06-01T08:00:00Z');
  let seen: CommandStartedEvent[] | undefined;
  const s = useAlertingSuite({
    webhook: false,
    clock: () => now,
    // Deadlines are polled once at start-up, then not during the test.
    env: { ALERT_DEADLINE_POLL_MS: '60000', ALERT_LATEST_REFRESH_S: '60' },
    onCommand: (e) => seen?.push(e),
  });

  const collectionOf = (e: CommandStartedEvent) => String((e.command as Record<string, unknown>)[e.commandName] ?? '');
  const alertingCommands = () =>
    (seen ?? []).filter((e) => {
      const c = collectionOf(e);
      // The deadline worker's poll is no part of a reading's cost.
      const poll = c === 'alert_deadlines' && e.commandName === 'find' && 'due' in ((e.command as { filter?: object }).filter ?? {});
      return !poll && (ALERT_COLLECTIONS.includes(c) || c === 'Patient' || c === 'Goal');
    });

  const flagOf = async (p: string) => {
    const { ctx } = s;
    const b = await getJson<Bundle>(ctx, `Flag?patient=Patient/${p}&code=http://loinc.org|8867-4`);
    expect(b.entry).toHaveLength(1);
    return b.entry![0].resource as Flag;
  };

  it('a repeat abnormal reading reads and writes nothing of alerting, and moves the Flag at most once a refresh interval', async () => {
    const { ctx } = s;
    const p = uid('steady');
    await post(ctx, 'Observation', heartRate(p, 115, now.toISOString()));
    await settle(ctx);
    // A second reading warms nothing new: the episode, the patient's inputs and NEWS2 inputs are known.
    await post(ctx, 'Observation', heartRate(p, 116, now.toISOString()));
    await settle(ctx);
    const raised = await flagOf(p);
    expect(raised.meta?.versionId).toBe('1');

    seen = [];
    for (let i = 0; i < 3; i++) await post(ctx, 'Observation', heartRate(p, 117, now.toISOString()));
    await settle(ctx);
    const commands = alertingCommands();
    seen = undefined;
    expect(commands.map((e) => `${e.commandName} ${collectionOf(e)}`)).toEqual([]);
    expect((await flagOf(p)).meta?.versionId).toBe('1');

    // Past the refresh interval, the next repeat moves the latest triggering reading (one version).
    now = new Date(now.getTime() + 61_000);
    const latest = await post<Observation>(ctx, 'Observation', heartRate(p, 118, now.toISOString()));
    await settle(ctx);
    const moved = await flagOf(p);
    expect(moved.meta?.versionId).toBe('2');
    expect(moved.extension).toContainEqual({ url: DETAIL, valueReference: { reference: `Observation/${latest.id}`, display: 'latest triggering reading' } });
    expect(moved.extension?.find((e) => e.url === 'http://vigil-fhir.org/fhir/StructureDefinition/alert-event')?.valueCode).toBe('updated');
  });

  it('an escalation is written at once, whatever the refresh interval', async () => {
    const { ctx } = s;
    const p = uid('esc');
    await post(ctx, 'Observation', heartRate(p, 115, now.toISOString()));
    await settle(ctx);
    const crit = await post<Observation>(ctx, 'Observation', heartRate(p, 145, now.toISOString()));
    await settle(ctx);
    const f = await flagOf(p);
    expect(f.meta?.versionId).toBe('2');
    expect(f.extension).toContainEqual({ url: DETAIL, valueReference: { reference: `Observation/${crit.id}`, display: 'latest triggering reading' } });
  });

  it('erase(patientId) removes the patient\'s episode state, keys, NEWS2 inputs, deadlines and cached copies', async () => {
    const { ctx } = s;
    const p = uid('erase');
    const ref = `Patient/${p}`;
    await post(ctx, 'Observation', heartRate(p, 115, now.toISOString()));
    await post(ctx, 'Observation', vital(p, '9279-1', 22, '/min'));
    await settle(ctx);
    const before = await ctx.vigil.alerting.openEpisodeCount();
    const holding = async () => {
      const counts = await Promise.all([
        ctx.db.collection('alert_keys').countDocuments({ _id: { $regex: `^${ref}\\|` } } as never),
        ctx.db.collection('alert_state').countDocuments({ 'stream.subject.reference': ref }),
        ctx.db.collection('alert_flags').countDocuments({ stream: { $regex: `^${ref}\\|` } }),
        ctx.db.collection('alert_latest').countDocuments({ _id: ref } as never),
      ]);
      return counts.reduce((a, b) => a + b, 0);
    };
    expect(await holding()).toBeGreaterThan(0);
    const episodes = await ctx.db.collection('alert_flags').countDocuments({ stream: { $regex: `^${ref}\\|` } });
    expect(episodes).toBeGreaterThanOrEqual(1);

    await ctx.vigil.alerting.erase(p);
    expect(await holding()).toBe(0);
    expect(await ctx.vigil.alerting.openEpisodeCount()).toBe(before - episodes);
    // Nothing of the erased patient survives in memory either: one respiration rate alone is no complete NEWS2.
    const rr = await post<Observation>(ctx, 'Observation', vital(p, '9279-1', 24, '/min'));
    await settle(ctx);
    const news2 = await until('the NEWS2 Observation of the new reading', async () => {
      const b = await getJson<Bundle>(ctx, `Observation?patient=${ref}&code=http://snomed.info/sct|1104051000000101&_count=50`);
      return (b.entry ?? []).map((e) => e.resource as Observation).find((o) => o.derivedFrom?.some((d) => d.reference === `Observation/${rr.id}`));
    });
    expect(news2.derivedFrom).toEqual([{ reference: `Observation/${rr.id}` }]);
  });
});
