import type { Collection } from 'mongodb';
import { isDuplicateKey } from './collections';
import { GroupInserter } from './group-insert';

/** One link of a lease chain: `_id` = `<name>:<n>`, written once by the instance that claimed it. */
export interface LeaseLinkDoc {
  _id: string;
  name: string;
  n: number;
  owner: string;
  until: Date;
  released?: boolean;
}

/** Hint of the newest link number per chain (only a hint: the links are the truth). */
export interface LeaseTopDoc {
  _id: string;
  n: number;
}

/** A lease this instance holds: link `n` of chain `name`, valid until `until` (epoch ms). */
export interface HeldLease {
  name: string;
  n: number;
  until: number;
}

/** Links older than this many steps behind the newest (and an hour old) are swept now and then. */
const KEEP_LINKS = 100;
/**
 * The hint is written at every this many links only: `newest` probes forward from it anyway, and
 * a chain's first links (most chains never get further) then cost no hint write at all.
 */
const HINT_EVERY = 8;

/**
 * Leases built only on unique `_id` inserts, atomic on MongoDB and on FerretDB alike (conditional
 * updates are not atomic on FerretDB). A lease is a chain of links `<name>:1`, `<name>:2`, ...;
 * the newest link holds the lease until its `until`. Every change of the lease, taking it over
 * after expiry and the holder's own renewal too, is the insert of the next link, so exactly one
 * contender wins each step, and a holder that was paused can tell it lost by the existence of
 * the link after its own (`stillHeld`). Links are never updated except `released`, which only
 * the holder sets, on its own newest link.
 */
export class LeaseChain {
  /** Claims of many chains at once (a wave of subscriptions) go to the database as one insert. */
  private readonly inserts: GroupInserter<LeaseLinkDoc>;

  constructor(
    private readonly links: Collection<LeaseLinkDoc>,
    private readonly tops: Collection<LeaseTopDoc>,
    private readonly owner: string,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.inserts = new GroupInserter(links);
  }

  /** The newest link of a chain, found by key from the hint and a forward probe (no scans). */
  async newest(name: string): Promise<LeaseLinkDoc | null> {
    const hint = (await this.tops.findOne({ _id: name }))?.n ?? 0;
    let top = hint > 0 ? await this.links.findOne({ _id: `${name}:${hint}` }) : null;
    for (let n = hint + 1; ; n++) {
      const next = await this.links.findOne({ _id: `${name}:${n}` });
      if (!next) return top ?? (hint > 0 ? this.placeholder(name, hint) : null);
      top = next;
    }
  }

  /** Takes the lease if nobody (this instance included) holds an unexpired, unreleased link. */
  async acquire(name: string): Promise<HeldLease | undefined> {
    const top = await this.newest(name);
    if (top && !top.released && top.until.getTime() > this.now()) return undefined;
    return this.claim(name, (top?.n ?? 0) + 1);
  }

  /**
   * Extends a lease this instance holds by claiming the next link; undefined when the lease was
   * lost meanwhile (another link followed ours, or ours expired).
   */
  async renew(l: HeldLease): Promise<HeldLease | undefined> {
    if (l.until <= this.now()) return undefined;
    return this.claim(l.name, l.n + 1);
  }

  /**
   * Whether `l` is still the newest link with at least `marginMs` left. The fence: a holder
   * checks it before each step of side effects, so a paused holder stops once another took over.
   */
  async stillHeld(l: HeldLease, marginMs = 0): Promise<boolean> {
    if (l.until - this.now() <= marginMs) return false;
    return !(await this.links.findOne({ _id: `${l.name}:${l.n + 1}` }, { projection: { _id: 1 } }));
  }

  /**
   * Gives the lease up early (the link stays; a contender's next link follows it at once). By
   * bare `_id`: the link `l` names was inserted by this instance (links are written once by their
   * claimer), and any other filter makes FerretDB scan every link (about 20 ms at 1,000 links).
   */
  async release(l: HeldLease): Promise<void> {
    await this.links.updateOne({ _id: `${l.name}:${l.n}` }, { $set: { released: true } });
  }

  private async claim(name: string, n: number): Promise<HeldLease | undefined> {
    const until = this.now() + this.ttlMs;
    try {
      await this.inserts.insert({ _id: `${name}:${n}`, name, n, owner: this.owner, until: new Date(until) });
    } catch (e) {
      if (isDuplicateKey(e)) return undefined; // another contender claimed link n
      throw e;
    }
    if (n % HINT_EVERY === 0) {
      await this.tops.replaceOne({ _id: name }, { n }, { upsert: true }).catch((e: unknown) => {
        if (!isDuplicateKey(e)) throw e; // a racing first upsert: the hint is only a hint
      });
    }
    if (n % 500 === 0) {
      const old = new Date(this.now() - 3600_000);
      void this.links.deleteMany({ name, n: { $lt: n - KEEP_LINKS }, until: { $lt: old } }).catch(() => undefined);
    }
    return { name, n, until };
  }

  /** The hint names a link already swept: stand in for it as an expired one. */
  private placeholder(name: string, n: number): LeaseLinkDoc {
    return { _id: `${name}:${n}`, name, n, owner: '', until: new Date(0), released: true };
  }
}
