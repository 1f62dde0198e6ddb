import { randomUUID } from 'node:crypto';
import type { Subscription } from 'fhir/r4';
import type { Principal } from '../auth/types';
import { Errors } from '../errors';
import { subscriptionPatient } from '../search/subscription-pins';
import type { SigningSecret, StoredPrincipal, SubscriptionState } from '../storage/state/subscriptions';
import type { SubscriptionStatusCode } from './constants';
import { fingerprint } from './fingerprint';
import type { SubscriptionRegistry } from './registry';
import { newSecret } from './signature';
import { parseSubscription, takeSigningSecret, type SubscriptionSpec } from './spec';
import type { CriteriaEvaluator } from './topics';

export interface ClientWriteDeps {
  state: SubscriptionState;
  registry: SubscriptionRegistry;
  criteria: CriteriaEvaluator;
  secretRotationMs: number;
  now(): Date;
}

export function toStored(p: Principal): StoredPrincipal {
  return p.patient ? { clientId: p.clientId, scopes: [...p.scopes], patient: p.patient } : { clientId: p.clientId, scopes: [...p.scopes] };
}

/** Clients cannot make a Subscription active themselves: that takes a handshake. */
export function statusForClientWrite(spec: SubscriptionSpec, previous?: Subscription): SubscriptionStatusCode {
  if (spec.status === 'off') return 'off';
  if (!previous || previous.status === 'off' || previous.status === 'requested') return 'requested';
  const sameChannel = previous.channel?.type === spec.channelType && (previous.channel?.endpoint ?? undefined) === spec.endpoint;
  return sameChannel && (previous.status === 'active' || previous.status === 'error') ? previous.status : 'requested';
}

/**
 * A client's create or update of a Subscription, before the store commits it: the criteria must
 * be evaluable and searchable by the writer, the status is the server's to decide, and the writer
 * and signing secrets are recorded (the secret is stripped from the stored resource).
 */
export async function checkClientWrite(d: ClientWriteDeps, principal: Principal, incoming: Subscription, previous?: Subscription): Promise<Subscription> {
  const { resource, secret } = takeSigningSecret(incoming);
  const spec = parseSubscription(resource, { criteria: d.criteria, topic: (u) => d.registry.topic(u) });
  assertMaySubscribe(principal, resource, spec, d.registry);
  const out: Subscription = { ...resource, status: statusForClientWrite(spec, previous) };
  if (out.status === 'requested') delete out.error;

  const now = d.now();
  const existing = resource.id ? await d.state.owner(resource.id) : null;
  const secrets = rotateSecrets(existing?.secrets ?? [], secret, now, d.secretRotationMs);
  if (resource.id) {
    await d.state.saveOwner({ _id: resource.id, principal: toStored(principal), secrets, updatedAt: now });
  } else {
    // A create before the store has given it an id: park the writer under the content's
    // fingerprint; the commit of the same content claims it (see state-sync.ts).
    await d.state.parkPendingOwner({ _id: randomUUID(), hash: fingerprint(out), principal: toStored(principal), secrets, createdAt: now });
  }
  return out;
}

function assertMaySubscribe(principal: Principal, resource: Subscription, spec: SubscriptionSpec, registry: SubscriptionRegistry): void {
  if (principal.patient && subscriptionPatient(resource) !== principal.patient && !principal.policy.canWrite(resource, [])) {
    throw Errors.forbidden(
      `A patient-context token may only subscribe to its own patient: the criteria (or every topic filter) must pin patient=Patient/${principal.patient}`,
      'MSG_SUBSCRIPTION_PATIENT',
    );
  }
  // A client may only subscribe to what it could search for itself.
  for (const f of spec.filters) principal.policy.assertAllowed('search', f.resourceType);
  if (spec.kind === 'topic') for (const t of registry.topic(spec.topic!)!.resourceTypes) principal.policy.assertAllowed('search', t);
}

/** Rotation: a new secret signs from now on, the old one keeps signing for a while; one is generated when none is current. */
function rotateSecrets(previous: SigningSecret[], secret: string | undefined, now: Date, rotationMs: number): SigningSecret[] {
  let secrets = previous.filter((s) => !s.notAfter || s.notAfter > now);
  if (secret && secret !== secrets.find((s) => !s.notAfter)?.value) {
    const until = new Date(now.getTime() + rotationMs);
    secrets = [{ value: secret }, ...secrets.filter((s) => s.value !== secret).map((s) => ({ value: s.value, notAfter: s.notAfter ?? until }))];
  }
  if (!secrets.some((s) => !s.notAfter)) secrets = [{ value: newSecret() }, ...secrets];
  return secrets;
}
