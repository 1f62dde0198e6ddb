import type { Bundle } from 'fhir/r4';
import pino from 'pino';
import { createAlerting } from '../../../src/alerting';
import { getJson, settle, uid, useAlertingSuite } from '../../support/alerting';

/**
 * Two alerting instances on one database (as two server processes would have) judge racing
 * readings of the same patient and vital: one episode, raised once; one escalation.
 */
describe('episode opening across instances', () => {
  const s = useAlertingSuite({ webhook: false });

  it('never opens two episodes for one patient and vital', async () => {
    const { ctx } = s;
    const v = ctx.vigil;
    const make = () => createAlerting({ db: ctx.db, config: ctx.config.alerting, logger: pino({ level: 'silent' }), store: v.store, search: v.search, clock: () => new Date() });
    const a = make();
    const b = make();
    const p = uid('race');
    const stream = { key: `Patient/${p}|8867-4`, subject: { reference: `Patient/${p}` }, code: { system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' } };
    const events = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        (i % 2 ? a : b).episodes.apply(stream, { level: i === 15 ? 2 : 1, severity: i === 15 ? 'HH' : 'H', ref: `Observation/r${i}`, at: new Date() }, 2),
      ),
    );
    expect(events.filter((e) => e === 'raised')).toHaveLength(1);
    expect(await a.episodes.current(stream.key)).toEqual({ stream: stream.key, n: 1, open: true });
    await settle(ctx);
    const flags = await getJson<Bundle>(ctx, `Flag?patient=Patient/${p}`);
    expect(flags.entry).toHaveLength(1);
  });
});
