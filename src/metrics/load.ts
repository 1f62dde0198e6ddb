/**
 * How loaded the server is, for back-pressure and metrics: the outbox lag (age of the oldest
 * intent, sampled once a second) and the recent database latency (mean of the last few seconds
 * of commands, or the age of the oldest command still waiting, whichever is larger, so that a
 * database that stopped answering counts as slow rather than idle).
 */
export class LoadMonitor {
  private timer?: NodeJS.Timeout;
  private lagMs = 0;
  private oldest?: Date;
  private startedAt = 0;
  private readonly inflight = new Map<number, number>();
  /** Per-second slots of the window: [second, sum of ms, count]. */
  private readonly slots: [number, number, number][] = [];

  constructor(
    private readonly oldestIntent: () => Promise<Date | undefined>,
    private readonly now: () => number = Date.now,
    private readonly windowSeconds = 5,
    private readonly sampleMs = 500,
  ) {}

  start(): void {
    this.startedAt = this.now();
    const tick = () => {
      this.sample()
        .catch(() => undefined)
        .finally(() => {
          this.timer = setTimeout(tick, this.sampleMs);
          this.timer.unref?.();
        });
    };
    this.timer = setTimeout(tick, 0);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  async sample(): Promise<void> {
    const oldest = await this.oldestIntent();
    this.oldest = oldest;
    this.lagMs = oldest ? Math.max(0, this.now() - oldest.getTime()) : 0;
  }

  /** Command monitoring: a command started (ms unused) or ended after `ms`. */
  command(ms: number, started: boolean, id: number): void {
    if (started) {
      if (this.inflight.size < 10_000) this.inflight.set(id, this.now());
      return;
    }
    this.inflight.delete(id);
    const sec = Math.floor(this.now() / 1000);
    const last = this.slots[this.slots.length - 1];
    if (last && last[0] === sec) {
      last[1] += ms;
      last[2] += 1;
    } else {
      this.slots.push([sec, ms, 1]);
      while (this.slots.length > this.windowSeconds) this.slots.shift();
    }
  }

  /** Age of the oldest pending intent (the metric). */
  get outboxLagMs(): number {
    return this.lagMs;
  }

  /**
   * The lag back-pressure acts on: counted from this instance's start at the earliest, so the
   * downtime before a restart (intents left by the stopped process) does not refuse writes while
   * the outbox catches up; only a backlog that outlives the limit since then does.
   */
  get pressureLagMs(): number {
    if (!this.oldest) return 0;
    return Math.max(0, this.now() - Math.max(this.oldest.getTime(), this.startedAt));
  }

  get dbLatencyMs(): number {
    const from = Math.floor(this.now() / 1000) - this.windowSeconds;
    let sum = 0;
    let n = 0;
    for (const [s, ms, c] of this.slots) {
      if (s <= from) continue;
      sum += ms;
      n += c;
    }
    let oldest = 0;
    const t = this.now();
    for (const at of this.inflight.values()) oldest = Math.max(oldest, t - at);
    return Math.max(n ? sum / n : 0, oldest);
  }
}
