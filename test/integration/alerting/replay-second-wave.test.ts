import type { Bundle, Observation } from 'fhir/r4';
import type { CommittedEvent } from '../../../src/storage';
import { getJson, post, settle, uid, useAlertingSuite, vital } from '../../support/alerting';

const NEWS2 = 'http://snomed.info/sct|1104051000000101';

/**
 * Alerting's second wave (NEWS2 Observations no Flag refers to, NEWS2 inputs) runs as an outbox
 * finisher. When a consumer after alerting fails, the outbox offers the batch again in the same
 * lease epoch, and alerting's memory has already decided it (the NEWS2 scores recorded): the
 * replay derives nothing new, so the second wave decided the first time must still be written.
 */
describe('alerting: a batch offered again still gets its second wave', () => {
  const s = useAlertingSuite({ webhook: false });
  const failFor = new Set<string>();
  const offers = new Map<string, number>();

  beforeAll(() => {
    // Registered after the app's own consumers, so it runs after alerting's in-turn consumer.
    s.ctx.vigil.outbox.addConsumer(async (events: CommittedEvent[]) => {
      for (const ev of events) {
        const subject = (ev.resource as Observation | undefined)?.subject?.reference;
        if (ev.type !== 'Observation' || !subject || !failFor.has(subject)) continue;
        offers.set(ev.historyId, (offers.get(ev.historyId) ?? 0) + 1);
        if (offers.get(ev.historyId) === 1) throw new Error('a later consumer refused this batch once (test)');
      }
    });
  });

  async function news2Of(patient: string): Promise<Observation[]> {
    const b = await getJson<Bundle>(s.ctx, `Observation?patient=Patient/${patient}&code=${NEWS2}&_count=50`);
    return (b.entry ?? []).map((e) => e.resource as Observation);
  }

  it('writes the NEWS2 Observation decided before the failure, once, and a repeat adds none', async () => {
    const p = uid('replay');
    failFor.add(`Patient/${p}`);
    const rr = await post<Observation>(s.ctx, 'Observation', vital(p, '9279-1', 16, '/min'));
    await settle(s.ctx);
    expect(offers.get(`Observation/${rr.id}/1`)).toBe(2);

    const scores = await news2Of(p);
    expect(scores).toHaveLength(1);
    expect(scores[0].status).toBe('preliminary');
    expect(scores[0].derivedFrom).toEqual([{ reference: `Observation/${rr.id}` }]);

    // The same value scores the same: the NEWS2 Observation written above stands for it.
    const rr2 = await post<Observation>(s.ctx, 'Observation', vital(p, '9279-1', 17, '/min'));
    await settle(s.ctx);
    expect(await news2Of(p)).toHaveLength(1);
    // The NEWS2 inputs, also of the second wave, were stored (the repeat alone does not store them).
    const inputs = await s.ctx.db.collection<{ _id: string; v: Record<string, { ref: string }> }>('alert_latest').findOne({ _id: `Patient/${p}` });
    expect([`Observation/${rr.id}`, `Observation/${rr2.id}`]).toContain(inputs?.v.respiratoryRate?.ref);
  });
});
