import type { Bundle, Flag } from 'fhir/r4';
import pino from 'pino';
import { createAlerting } from '../../../src/alerting';
import { anonymousPrincipal } from '../../../src/auth/types';
import { heartRate } from '../../support/context';
import { eventOf, getJson, post, settle, uid, useAlertingSuite } from '../../support/alerting';

/**
 * The lease holder keeps its episodes in memory; another instance (without the lease) may still
 * acknowledge an episode. Whichever comes first, the holder's Flag write or its sight of the
 * other instance's Flag version, the Flag keeps the acknowledgement and tells the escalation.
 */
describe('episode memory and another instance', () => {
  const s = useAlertingSuite({ webhook: false, env: { ALERT_LATEST_REFRESH_S: '0' } });

  it('an acknowledgement made on another instance survives the holder\'s next write', async () => {
    const { ctx } = s;
    const v = ctx.vigil;
    const other = createAlerting({ db: ctx.db, config: ctx.config.alerting, logger: pino({ level: 'silent' }), store: v.store, search: v.search, clock: () => new Date() });
    const p = uid('other');
    await post(ctx, 'Observation', heartRate(p, 115, new Date().toISOString()));
    await settle(ctx);
    const flag = (await getJson<Bundle>(ctx, `Flag?patient=Patient/${p}`)).entry![0].resource as Flag;

    const acked = await other.acknowledge(flag.id!, { ...anonymousPrincipal, clientId: 'nurse-station-2' });
    expect(eventOf(acked)).toBe('acknowledged');
    // At once, before the holder may have seen that version: a repeat and then a critical reading.
    await post(ctx, 'Observation', heartRate(p, 117, new Date().toISOString()));
    await post(ctx, 'Observation', heartRate(p, 150, new Date().toISOString()));
    await settle(ctx);

    const history = await getJson<Bundle>(ctx, `Flag/${flag.id}/_history?_count=50`);
    const versions = (history.entry ?? []).map((e) => e.resource as Flag).reverse();
    const told = versions.map(eventOf).filter((e) => e !== 'updated');
    expect(told).toEqual(['raised', 'acknowledged', 'escalated']);
    const last = versions[versions.length - 1];
    const ack = last.extension?.find((e) => e.url === 'http://vigil-fhir.org/fhir/StructureDefinition/alert-acknowledgement');
    expect(ack?.extension).toContainEqual({ url: 'by', valueString: 'nurse-station-2' });
    expect(last.extension?.find((e) => e.url === 'http://vigil-fhir.org/fhir/StructureDefinition/alert-severity')?.valueCode).toBe('HH');
  });
});
