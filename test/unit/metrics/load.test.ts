import { LoadMonitor } from '../../../src/metrics/load';
import { interactionOf } from '../../../src/metrics/http';

describe('LoadMonitor', () => {
  test('database latency is the recent mean, or the age of a write still waiting when that is larger', () => {
    let now = 1_000_000;
    const m = new LoadMonitor(async () => undefined, () => now);
    m.command(0, true, 1);
    m.command(10, false, 1);
    m.command(0, true, 2);
    m.command(30, false, 2);
    expect(m.dbLatencyMs).toBe(20);
    m.command(0, true, 3);
    now += 4000;
    expect(m.dbLatencyMs).toBe(4000);
    m.command(4000, false, 3);
    now += 10_000;
    expect(m.dbLatencyMs).toBe(0);
  });

  test('outbox lag is the age of the oldest pending intent', async () => {
    const now = 50_000;
    let oldest: Date | undefined = new Date(now - 1234);
    const m = new LoadMonitor(async () => oldest, () => now);
    await m.sample();
    expect(m.outboxLagMs).toBe(1234);
    oldest = undefined;
    await m.sample();
    expect(m.outboxLagMs).toBe(0);
  });

  test('back-pressure counts the lag from the instance start at the earliest (a restart is no backlog)', async () => {
    let now = 100_000;
    const m = new LoadMonitor(async () => new Date(40_000), () => now);
    m.start();
    m.stop();
    await m.sample();
    expect(m.outboxLagMs).toBe(60_000);
    expect(m.pressureLagMs).toBe(0);
    now += 5000;
    expect(m.pressureLagMs).toBe(5000);
  });
});

test('interactionOf names FHIR interactions with bounded labels', () => {
  expect(interactionOf('POST', ['Observation'])).toEqual({ interaction: 'create', type: 'Observation' });
  expect(interactionOf('GET', ['Observation', 'x', '_history', '2'])).toEqual({ interaction: 'vread', type: 'Observation' });
  expect(interactionOf('GET', ['$export'])).toEqual({ interaction: '$export', type: '' });
  expect(interactionOf('GET', ['Patient', 'p', '$whatever'])).toEqual({ interaction: 'operation', type: 'Patient' });
  expect(interactionOf('GET', ['NotAType', 'x'])).toEqual({ interaction: 'unknown', type: '' });
  expect(interactionOf('POST', [])).toEqual({ interaction: 'batch', type: '' });
});
