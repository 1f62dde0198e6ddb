import { WriteGate } from '../../../src/storage/write-gate';

/** A write that ends when the test says so, recording when it started. */
function controlled(log: string[], name: string) {
  let end!: () => void;
  const ended = new Promise<void>((r) => (end = r));
  return {
    run: async () => {
      log.push(`start ${name}`);
      await ended;
      log.push(`end ${name}`);
      return name;
    },
    end: () => end(),
  };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('write gate', () => {
  it('admits at most its limit at once, the others in arrival order', async () => {
    const gate = new WriteGate(2);
    const log: string[] = [];
    const ws = ['a', 'b', 'c', 'd'].map((n) => controlled(log, n));
    const results = ws.map((w) => gate.run(w.run));
    await tick();
    expect(log).toEqual(['start a', 'start b']);
    ws[1].end();
    await tick();
    expect(log).toEqual(['start a', 'start b', 'end b', 'start c']);
    ws[0].end();
    ws[2].end();
    ws[3].end();
    expect(await Promise.all(results)).toEqual(['a', 'b', 'c', 'd']);
    expect(log.filter((l) => l.startsWith('start'))).toEqual(['start a', 'start b', 'start c', 'start d']);
  });

  it('lets background writes go only when no other write waits', async () => {
    const gate = new WriteGate(1);
    const log: string[] = [];
    const first = controlled(log, 'first');
    const bg = controlled(log, 'bg');
    const fg = controlled(log, 'fg');
    const p1 = gate.run(first.run);
    const p2 = gate.run(bg.run, true);
    const p3 = gate.run(fg.run);
    await tick();
    first.end();
    await tick();
    expect(log).toEqual(['start first', 'end first', 'start fg']);
    fg.end();
    await tick();
    bg.end();
    await Promise.all([p1, p2, p3]);
    expect(log).toEqual(['start first', 'end first', 'start fg', 'end fg', 'start bg', 'end bg']);
  });

  it('frees the slot when a write fails', async () => {
    const gate = new WriteGate(1);
    await expect(gate.run(async () => Promise.reject(new Error('refused')))).rejects.toThrow('refused');
    expect(await gate.run(async () => 'next')).toBe('next');
  });
});
