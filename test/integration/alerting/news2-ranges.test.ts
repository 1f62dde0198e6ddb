import type { Bundle, Flag, Observation } from 'fhir/r4';
import { FHIR_JSON } from '../../support/context';
import { activeSubscription, alertSubscription, eventCount, eventOf, flagsIn, getJson, hookNotifications, post, settle, uid, until, useAlertingSuite, vital } from '../../support/alerting';

const SCT = 'http://snomed.info/sct';
const NEWS2 = '1104051000000101';
const DERIVED = 'http://vigil-fhir.org/fhir/StructureDefinition/derived-interpretation';

function consciousness(patient: string, alert: boolean): Observation {
  return {
    ...vital(patient, '67775-7', 0, '1'),
    valueQuantity: undefined,
    valueCodeableConcept: { coding: [{ system: SCT, code: alert ? '248234009' : '248236006', display: alert ? 'Alert' : 'Responds to pain' }] },
  };
}

/** The full NEWS2 parameter set, as separate Observations. */
function fullSet(p: string, v: { rr: number; spo2: number; fio2: number; sys: number; pulse: number; alert: boolean; temp: number }): Observation[] {
  return [
    vital(p, '9279-1', v.rr, '/min'),
    vital(p, '59408-5', v.spo2, '%'),
    vital(p, '3151-8', v.fio2, '%'),
    vital(p, '8480-6', v.sys, 'mm[Hg]'),
    vital(p, '8867-4', v.pulse, '/min'),
    consciousness(p, v.alert),
    vital(p, '8310-5', v.temp, 'Cel'),
  ];
}

describe('NEWS2, per-patient targets and device codes (real app)', () => {
  const s = useAlertingSuite();

  async function latestNews2(p: string): Promise<Observation[]> {
    const { ctx } = s;
    const b = await getJson<Bundle>(ctx, `Observation?patient=Patient/${p}&code=${SCT}|${NEWS2}&_count=200`);
    return (b.entry ?? []).map((e) => e.resource as Observation);
  }

  it('scores worked examples at every band; bands drive their own episode', async () => {
    const { ctx, hook } = s;
    const p = uid('news');
    const sub = await activeSubscription(ctx, alertSubscription(hook.url, p, `&code=${SCT}|${NEWS2}`));
    // Low (0): everything normal, on air.
    for (const o of fullSet(p, { rr: 16, spo2: 97, fio2: 21, sys: 120, pulse: 70, alert: true, temp: 37 })) await post(ctx, 'Observation', o);
    await settle(ctx);
    let all = await latestNews2(p);
    const incomplete = all.filter((o) => o.status === 'preliminary');
    expect(incomplete.length).toBeGreaterThan(0);
    expect(incomplete[0].dataAbsentReason?.text).toMatch(/^Incomplete: no current /);
    expect(incomplete[0].valueInteger).toBeUndefined();
    const complete = all.filter((o) => o.status === 'final');
    expect(complete).toHaveLength(1);
    expect(complete[0].valueInteger).toBe(0);
    expect(complete[0].derivedFrom).toHaveLength(7);
    expect(complete[0].component).toHaveLength(7);
    expect(await eventCount(ctx, sub.id!)).toBe(0);

    const scoreAfter = async (o: Observation) => {
      await post(ctx, 'Observation', o);
      await settle(ctx);
      all = await latestNews2(p);
      return all.filter((x) => x.status === 'final').map((x) => x.valueInteger);
    };
    // Low-medium: a single parameter scoring 3 (RR 26), total 3.
    expect(await scoreAfter(vital(p, '9279-1', 26, '/min'))).toContain(3);
    expect(await eventCount(ctx, sub.id!)).toBe(1);
    // Medium: + pulse 115 (2) + temperature 38.5 (1) = 6.
    await scoreAfter(vital(p, '8867-4', 115, '/min'));
    expect(await scoreAfter(vital(p, '8310-5', 38.5, 'Cel'))).toContain(6);
    expect(await eventCount(ctx, sub.id!)).toBe(2);
    // High: + SpO2 90 (3) = 9.
    expect(await scoreAfter(vital(p, '59408-5', 90, '%'))).toContain(9);
    expect(await eventCount(ctx, sub.id!)).toBe(3);
    const flags = await until('three NEWS2 events', () => {
      const f = flagsIn(hookNotifications(hook, sub.id!));
      return f.length >= 3 ? f : undefined;
    });
    expect(flags.map(eventOf)).toEqual(['raised', 'escalated', 'escalated']);
    const sev = (f: Flag) => f.extension?.find((e) => e.url.endsWith('/alert-severity'))?.valueCode;
    expect(flags.map(sev)).toEqual(['low-medium', 'medium', 'high']);
    expect(flags[2].code?.coding?.[0]).toMatchObject({ system: SCT, code: NEWS2 });
  });

  it('SpO2 scale 2 for a patient whose record prescribes it', async () => {
    const { ctx } = s;
    const pat = await post<{ id: string }>(ctx, 'Patient', {
      resourceType: 'Patient',
      extension: [{ url: 'http://vigil-fhir.org/fhir/StructureDefinition/news2-spo2-scale', valueInteger: 2 }],
    });
    for (const o of fullSet(pat.id, { rr: 16, spo2: 89, fio2: 21, sys: 120, pulse: 70, alert: true, temp: 37 })) await post(ctx, 'Observation', o);
    await settle(ctx);
    const final = (await latestNews2(pat.id)).filter((o) => o.status === 'final');
    expect(final.map((o) => o.valueInteger)).toEqual([0]);
    expect(final[0].component?.some((c) => c.code.coding?.[0].code === '1104321000000108')).toBe(true);
  });

  it('a patient target (Goal) wins over the defaults, and the interpretation says so', async () => {
    const { ctx } = s;
    const p = uid('goal');
    const goal = await post<{ id: string }>(ctx, 'Goal', {
      resourceType: 'Goal',
      lifecycleStatus: 'active',
      description: { text: 'Resting heart rate 45-90 for this athlete' },
      subject: { reference: `Patient/${p}` },
      target: [
        {
          measure: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
          detailRange: { low: { value: 45, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' }, high: { value: 90, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' } },
          extension: [{ url: 'http://vigil-fhir.org/fhir/StructureDefinition/goal-critical-range', valueRange: { low: { value: 35, code: '/min', system: 'http://unitsofmeasure.org' }, high: { value: 120, code: '/min', system: 'http://unitsofmeasure.org' } } }],
        },
      ],
    });
    const low = await post<Observation>(ctx, 'Observation', vital(p, '8867-4', 50, '/min'));
    expect(low.interpretation?.[0].coding?.[0].code).toBe('N'); // the default range would say L
    expect(low.interpretation?.[0].extension).toEqual([{ url: DERIVED, valueCode: 'patient-target' }]);
    expect(low.interpretation?.[0].text).toContain(`Goal/${goal.id}`);
    const high = await post<Observation>(ctx, 'Observation', vital(p, '8867-4', 95, '/min'));
    expect(high.interpretation?.[0].coding?.[0].code).toBe('H');
    // Its own referenceRange still wins over the target.
    const own = await post<Observation>(ctx, 'Observation', vital(p, '8867-4', 95, '/min', { referenceRange: [{ low: { value: 50 }, high: { value: 100 } }] }));
    expect(own.interpretation?.[0].extension?.[0].valueCode).toBe('reference-range');
  });

  it('an ObservationDefinition interval for the patient age and gender applies before the unrestricted defaults', async () => {
    const { ctx } = s;
    await post(ctx, 'ObservationDefinition', {
      resourceType: 'ObservationDefinition',
      code: { coding: [{ system: 'http://loinc.org', code: '9279-1' }] },
      qualifiedInterval: [
        { category: 'reference', gender: 'female', age: { low: { value: 0, unit: 'a', system: 'http://unitsofmeasure.org', code: 'a' }, high: { value: 12, unit: 'a', system: 'http://unitsofmeasure.org', code: 'a' } }, range: { low: { value: 18, system: 'http://unitsofmeasure.org', code: '/min' }, high: { value: 30, system: 'http://unitsofmeasure.org', code: '/min' } } },
        { category: 'reference', range: { low: { value: 12, system: 'http://unitsofmeasure.org', code: '/min' }, high: { value: 20, system: 'http://unitsofmeasure.org', code: '/min' } } },
      ],
    });
    await settle(ctx); // the subscription module reloads definitions from the committed version
    const child = await post<{ id: string }>(ctx, 'Patient', { resourceType: 'Patient', gender: 'female', birthDate: `${new Date().getUTCFullYear() - 6}-01-01` });
    const adult = await post<{ id: string }>(ctx, 'Patient', { resourceType: 'Patient', gender: 'female', birthDate: '1980-01-01' });
    const c = await post<Observation>(ctx, 'Observation', vital(child.id, '9279-1', 25, '/min'));
    const a = await post<Observation>(ctx, 'Observation', vital(adult.id, '9279-1', 25, '/min'));
    expect(c.interpretation?.[0].coding?.[0].code).toBe('N');
    expect(a.interpretation?.[0].coding?.[0].code).toBe('H');
  });

  it('IEEE 11073 MDC codes count as the LOINC vital: interpretation, episode, search and $lastn', async () => {
    const { ctx } = s;
    const p = uid('mdc');
    const mdc = await post<Observation>(ctx, 'Observation', {
      ...vital(p, '8867-4', 115, '/min'),
      code: { coding: [{ system: 'urn:iso:std:iso:11073:10101', code: '149530', display: 'MDC_PULS_OXIM_PULS_RATE' }] },
    });
    expect(mdc.code.coding).toEqual([{ system: 'urn:iso:std:iso:11073:10101', code: '149530', display: 'MDC_PULS_OXIM_PULS_RATE' }]);
    expect(mdc.interpretation?.[0].coding?.[0].code).toBe('H');
    await settle(ctx);
    const byLoinc = await getJson<Bundle>(ctx, `Observation?code=http://loinc.org|8867-4&patient=Patient/${p}`);
    expect(byLoinc.entry?.map((e) => e.resource?.id)).toEqual([mdc.id]);
    const flag = (await getJson<Bundle>(ctx, `Flag?patient=Patient/${p}&code=http://loinc.org|8867-4`)).entry?.[0].resource as Flag;
    expect(flag.status).toBe('active');
    const loinc = await post<Observation>(ctx, 'Observation', vital(p, '8867-4', 118, '/min'));
    await settle(ctx);
    expect((await getJson<Bundle>(ctx, `Flag?patient=Patient/${p}`)).entry).toHaveLength(1); // the same episode
    const lastn = await ctx.request.get(`/fhir/Observation/$lastn?patient=Patient/${p}&max=1`).set('Accept', FHIR_JSON);
    const ids = ((JSON.parse(lastn.text) as Bundle).entry ?? []).map((e) => e.resource?.id);
    expect(ids.filter((id) => id === mdc.id || id === loinc.id)).toEqual([loinc.id]);
  });
});
