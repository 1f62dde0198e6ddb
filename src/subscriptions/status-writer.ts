import type { Resource, Subscription } from 'fhir/r4';
import type pino from 'pino';
import { isFhirError } from '../errors';
import type { ResourceRepository } from '../storage';
import type { StateDoc } from '../storage/state/subscriptions';
import type { SubscriptionStatusCode } from './constants';

/**
 * A server-side write of a Subscription version (no client checks, no owner change), conditional
 * on `ifMatch`, the version it was derived from: it must never overwrite a version it has not seen.
 */
export type WriteResource = (resource: Resource, ifMatch: number) => Promise<unknown>;

/** As the parsed spec holds a rest-hook endpoint (src/subscriptions/spec.ts). */
function normalisedUrl(raw: string | undefined): string | undefined {
  try {
    return new URL(raw ?? '').toString();
  } catch {
    return undefined;
  }
}

/** Attempts before a status change gives up to a stream of client writes (the next delivery tries again). */
const ATTEMPTS = 5;

/**
 * Changes Subscription.status (requested -> active after the handshake, active <-> error on
 * delivery failures) with a new version through the store. The write is conditional on the
 * version it read, so a client's concurrent PUT or DELETE always wins: on a clash the change is
 * re-read and re-applied to the client's version if it still fits (same channel, not off or
 * deleted), else dropped (a changed channel asks for its own handshake).
 */
export class StatusWriter {
  constructor(
    private readonly deps: { repository: ResourceRepository; writeResource: WriteResource; logger: pino.Logger },
  ) {}

  async set(s: StateDoc, status: SubscriptionStatusCode, reason?: string): Promise<void> {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const doc = await this.deps.repository.read('Subscription', s._id);
      if (!doc || doc.deleted) return;
      const current = doc.res as Subscription;
      if (!this.fits(current, s, status)) return;
      const next: Subscription = { ...current, status };
      if (status === 'error' && reason) next.error = reason;
      else delete next.error;
      try {
        await this.deps.writeResource(next, doc.vid);
        return;
      } catch (e) {
        if (isFhirError(e) && (e.status === 409 || e.status === 412)) continue; // a client wrote first
        this.deps.logger.warn({ err: e, subscription: s._id, status }, 'could not record the Subscription status');
        return;
      }
    }
    this.deps.logger.info({ subscription: s._id, status }, 'Subscription status not recorded: it kept changing');
  }

  /** Whether the change still applies to the current version (the channel delivery worked with). */
  private fits(current: Subscription, s: StateDoc, status: SubscriptionStatusCode): boolean {
    if (current.status === status || current.status === 'off') return false;
    if (current.channel?.type !== s.spec.channelType) return false;
    return s.spec.channelType !== 'rest-hook' || normalisedUrl(current.channel?.endpoint) === s.spec.endpoint;
  }
}
