import type { Bundle, BundleEntry } from 'fhir/r4';
import type { CommandStartedEvent } from 'mongodb';
import { randomBytes } from 'node:crypto';
import { createTestContext, FHIR_JSON, heartRate, type TestContext } from '../../support/context';

/**
 * A 100-entry transaction costs a bounded number of write commands, not one per entry, and
 * at most one point read per updated resource (read in one concurrent wave), counted by the
 * driver's command monitoring (a count, not a timing). Background work (the
 * outbox, the audit trail's timer, the subscription sweeps) is stopped or left out, so only the request's own commands
 * are counted.
 */
describe('transaction round trips', () => {
  let ctx: TestContext;
  let counting = false;
  const commands: CommandStartedEvent[] = [];
  beforeAll(async () => {
    // Alerting off: its post-commit reads would be counted with the transaction's own commands.
    ctx = await createTestContext({ env: { ALERTING_ENABLED: 'false', NEWS2_ENABLED: 'false' }, onCommand: (e) => counting && commands.push(e) });
  });
  afterAll(async () => ctx.close());

  const collectionOf = (e: CommandStartedEvent) => String((e.command as Record<string, unknown>)[e.commandName] ?? '');

  it('commits 50 creates and 50 updates in a bounded number of commands', async () => {
    const patient = `rt-${randomBytes(3).toString('hex')}`;
    const seed: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: Array.from({ length: 50 }, (_, i) => ({ resource: heartRate(patient, 60 + i), request: { method: 'POST', url: 'Observation' } }) as unknown as BundleEntry),
    };
    const first = await ctx.request.post('/fhir').set('Content-Type', FHIR_JSON).send(seed);
    expect(first.status).toBe(200);
    const ids = (first.body as Bundle).entry!.map((e) => /Observation\/([^/]+)/.exec(e.response!.location!)![1]);
    await ctx.vigil.outbox.drainNow();
    await ctx.vigil.outbox.stop();
    // The audit trail writes on its own timer (its versions and their history time entries):
    // flushed and stopped here, so none of the seed's audit writes lands inside the count.
    await ctx.vigil.audit.close();

    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        ...Array.from({ length: 50 }, (_, i) => ({ resource: heartRate(patient, 100 + i), request: { method: 'POST', url: 'Observation' } }) as unknown as BundleEntry),
        ...ids.map((id, i) => ({ resource: { ...heartRate(patient, 120 + i), id }, request: { method: 'PUT', url: `Observation/${id}` } }) as unknown as BundleEntry),
      ],
    };
    counting = true;
    const r = await ctx.request.post('/fhir').set('Content-Type', FHIR_JSON).send(bundle);
    counting = false;
    expect({ status: r.status, issue: r.status === 200 ? undefined : r.body.issue }).toEqual({ status: 200, issue: undefined });
    expect((r.body as Bundle).entry).toHaveLength(100);

    // Background pollers (subscription delivery, bulk export jobs, the back-pressure monitor's look
    // at the outbox) run beside the request; only the transaction's own commands are counted.
    const own = commands.filter((e) => !/^(sub_|bulk_)/.test(collectionOf(e)) && !(e.commandName === 'find' && collectionOf(e) === 'outbox'));
    const summary = own.map((e) => `${e.commandName} ${collectionOf(e)}`);
    // Writes: a handful of bulk commands whatever the entry count.
    expect(summary.filter((c) => !c.startsWith('find ')).length).toBeLessThanOrEqual(10);
    // Reads: two concurrent waves of point reads by `_id` per updated resource at most (`$in` on
    // `_id` scans on the embedded engine): the targets before the commit, and on the embedded
    // engine the version guard before each current document is replaced (src/storage/versions.ts;
    // a `vid` filter there scans the collection); plus at most one read of the erased-compartment
    // marks (re-read when older than its trust window, src/storage/erased-marks.ts); no other.
    const finds = summary.filter((c) => c.startsWith('find '));
    expect(finds.filter((c) => c === 'find erased_compartments').length).toBeLessThanOrEqual(1);
    expect(finds.filter((c) => c !== 'find erased_compartments').length).toBeLessThanOrEqual(ctx.vigil.search.executor.engine === 'ferretdb' ? 100 : 50);

    // Everything landed: the updates are current, the creates readable.
    for (const id of ids.slice(0, 3)) {
      const got = await ctx.request.get(`/fhir/Observation/${id}`);
      expect(got.body.meta.versionId).toBe('2');
    }
  });

  it('commits a single POST with three writes (intent, version, current) and no read of its own', async () => {
    const patient = `rt1-${randomBytes(3).toString('hex')}`;
    // As above (and so the test also stands alone): no background writes inside the count.
    await ctx.vigil.outbox.stop();
    await ctx.vigil.audit.close();
    commands.length = 0;
    counting = true;
    const n = 5;
    for (let i = 0; i < n; i++) {
      // One at a time, so group commit cannot merge them: each POST's own commands are counted.
      const r = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(heartRate(patient, 60 + i));
      expect(r.status).toBe(201);
    }
    counting = false;
    const own = commands.filter((e) => !/^(sub_|bulk_)/.test(collectionOf(e)) && !(e.commandName === 'find' && collectionOf(e) === 'outbox'));
    const summary = own.map((e) => `${e.commandName} ${collectionOf(e)}`);
    expect(summary.filter((c) => !c.startsWith('find ')).sort()).toEqual(
      [...Array(n).fill('insert Observation'), ...Array(n).fill('insert history'), ...Array(n).fill('insert outbox')].sort(),
    );
    // The erased-compartment marks come from the process's copy: at most one read per POST (one
    // per trust window in practice), and no other read.
    const finds = summary.filter((c) => c.startsWith('find '));
    expect(finds.filter((c) => c !== 'find erased_compartments')).toEqual([]);
    expect(finds.length).toBeLessThanOrEqual(n);
  });
});
