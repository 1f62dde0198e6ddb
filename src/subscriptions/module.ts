import type { Resource } from 'fhir/r4';
import type http from 'node:http';
import type { Db } from 'mongodb';
import type { Logger } from 'pino';
import type { AlertingModule } from '../alerting/module';
import type { AuthModule } from '../auth/module';
import { anonymousPrincipal } from '../auth/types';
import type { Config } from '../config';
import { isFhirError } from '../errors';
import type { MetricsModule } from '../metrics/module';
import type { ModuleParts } from '../module';
import type { ResourcesModule } from '../resources/module';
import { SubscriptionService } from './service';

export interface SubscriptionsModuleDeps {
  config: Config;
  db: Db;
  logger: Logger;
  core: ResourcesModule;
  auth: AuthModule;
  alerting: AlertingModule;
  metrics: MetricsModule;
}

export interface SubscriptionsModule extends ModuleParts {
  service: SubscriptionService;
  /** Lets websockets share the HTTP server (call once the server exists). */
  attach(server: http.Server): void;
}

/** Subscriptions: checks Subscription writes, matches committed versions, delivers notifications. */
export async function createSubscriptionsModule(deps: SubscriptionsModuleDeps): Promise<SubscriptionsModule> {
  const { config, core, auth, alerting, metrics } = deps;
  const { store } = core;
  const subs = await SubscriptionService.create({
    db: deps.db,
    repository: core.storage.repository,
    executor: core.storage.executor,
    config,
    logger: deps.logger,
    criteria: core.search,
    policyFor: (p) => auth.policyFor(p),
    // A websocket bind needs a token that may read the Subscription (with auth on).
    authorizeBind: async (authorization, id) => {
      if (!auth.service) return undefined;
      try {
        const p = await auth.authenticate(authorization);
        p.policy.assertAllowed('read', 'Subscription');
        await store.read('Subscription', id, p.policy);
        return undefined;
      } catch (e) {
        if (!isFhirError(e)) throw e;
        return e.status === 401 ? `unauthorized: ${e.message}` : `no websocket Subscription ${id} readable with this token`;
      }
    },
    writeResource: (resource, ifMatch) => store.update(resource.resourceType, resource.id!, resource, { principal: anonymousPrincipal, internal: true }, ifMatch),
    rangeContext: (obs) => alerting.rangeContext(obs),
    leaseEpoch: () => core.storage.outbox.heldEpoch(),
    onAttempt: (channel, ok, committedAt, now) => metrics.metrics.delivery(channel, ok, committedAt, now),
  });
  core.addBeforeWrite((ctx, r, prev) => subs.beforeWrite(ctx, r, prev));
  // Alerting's Flags are matched in the outbox batch that wrote them (see AlertingService.onDerived).
  alerting.service.onDerived((events) => subs.onDerived(events));
  return {
    service: subs,
    attach: (server) => subs.attach(server),
    consumers: [(events, info) => subs.onCommitted(events, info)],
    gauges: [
      {
        name: 'vigil_subscriptions_active',
        help: 'Active subscriptions by channel type',
        labelNames: ['channel'],
        collect: async () => (await subs.activeByChannel()).map((c) => ({ labels: { channel: c.channel }, value: c.count })),
      },
    ],
    // The topics and default vital-sign ranges we ship (ig/) are stored like any resource,
    // so clients can read and search them; an unchanged one makes no new version.
    async prepare() {
      for (const r of [...subs.shippedTopics(), ...subs.shippedObservationDefinitions()]) await storeShipped(store, r);
    },
    start: () => subs.start(),
    stop: () => subs.stop(),
  };
}

/**
 * Stores a shipped resource. Instances starting together race on its version: the loser's
 * commit is a 409 (the unique version insert), and its next try finds the winner's identical
 * content and makes no version. Bounded: a third conflict in a row is a real problem.
 */
async function storeShipped(store: ResourcesModule['store'], r: Resource): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await store.update(r.resourceType, r.id!, r, { principal: anonymousPrincipal, internal: true });
      return;
    } catch (e) {
      if (!isFhirError(e) || e.status !== 409 || attempt >= 3) throw e;
    }
  }
}
