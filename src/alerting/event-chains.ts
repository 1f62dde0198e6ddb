import type { Device, Flag, Goal, Observation } from 'fhir/r4';
import type { CommittedEvent } from '../storage';

/** What an event touches that another event of the same batch may touch too. */
function touches(ev: CommittedEvent): string[] {
  const own = `${ev.type}/${ev.id}`;
  const r = ev.resource;
  switch (ev.type) {
    case 'Observation': {
      const o = r as Observation | undefined;
      return [own, o?.subject?.reference, o?.device?.reference].filter((x): x is string => Boolean(x));
    }
    case 'Goal':
      return [own, (r as Goal | undefined)?.subject?.reference].filter((x): x is string => Boolean(x));
    case 'Flag':
      return [own, (r as Flag | undefined)?.subject?.reference].filter((x): x is string => Boolean(x));
    case 'Device':
      return [own, (r as Device | undefined)?.patient?.reference].filter((x): x is string => Boolean(x));
    default:
      return [own];
  }
}

/**
 * A batch's events in chains that share no patient, device or resource, each chain in batch
 * order. Alerting works on chains side by side: a patient's readings stay in order (episodes
 * and NEWS2 inputs depend on it), while readings of different patients no longer wait for each
 * other's round trips (the keys they decide at once then go in one insert).
 */
export function eventChains(events: readonly CommittedEvent[]): CommittedEvent[][] {
  const parent = new Map<string, string>();
  const find = (k: string): string => {
    let root = k;
    while (parent.get(root) !== root) root = parent.get(root)!;
    for (let x = k; x !== root; ) {
      const next = parent.get(x)!;
      parent.set(x, root);
      x = next;
    }
    return root;
  };
  const keys = events.map(touches);
  for (const ks of keys) {
    for (const k of ks) if (!parent.has(k)) parent.set(k, k);
    for (const k of ks.slice(1)) {
      const a = find(ks[0]);
      const b = find(k);
      if (a !== b) parent.set(b, a);
    }
  }
  const chains = new Map<string, CommittedEvent[]>();
  events.forEach((ev, i) => {
    const root = find(keys[i][0]);
    const c = chains.get(root);
    if (c) c.push(ev);
    else chains.set(root, [ev]);
  });
  return [...chains.values()];
}
