/** Canonical URLs the subscription module speaks (Backport IG STU 1.1 and our own). */

/** Base of the canonical URLs we define ourselves (topics, extensions). */
export const VIGIL_CANONICAL_BASE = 'http://vigil-fhir.org/fhir';

export const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';
export const EXT = {
  filterCriteria: `${BACKPORT}/backport-filter-criteria`,
  heartbeatPeriod: `${BACKPORT}/backport-heartbeat-period`,
  timeout: `${BACKPORT}/backport-timeout`,
  maxCount: `${BACKPORT}/backport-max-count`,
  payloadContent: `${BACKPORT}/backport-payload-content`,
  channelType: `${BACKPORT}/backport-channel-type`,
  topicCanonical: `${BACKPORT}/capabilitystatement-subscriptiontopic-canonical`,
  websocketUrl: 'http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket',
  /** Our extension on Subscription.channel carrying the webhook signing secret (write-only, stripped before storage). */
  signingSecret: `${VIGIL_CANONICAL_BASE}/StructureDefinition/subscription-signing-secret`,
  /** Our extension on Observation.interpretation marking a server-derived interpretation. */
  derivedInterpretation: `${VIGIL_CANONICAL_BASE}/StructureDefinition/derived-interpretation`,
  /** Our extension on CapabilityStatement.rest.resource (Subscription) listing supported channel types. */
  channelTypes: `${VIGIL_CANONICAL_BASE}/StructureDefinition/subscription-channel-types`,
} as const;

export const PROFILE = {
  subscription: `${BACKPORT}/backport-subscription`,
  status: `${BACKPORT}/backport-subscription-status-r4`,
} as const;

export const TOPIC = {
  abnormalVitalSign: `${VIGIL_CANONICAL_BASE}/SubscriptionTopic/abnormal-vital-sign`,
  observationCreated: `${VIGIL_CANONICAL_BASE}/SubscriptionTopic/observation-created`,
} as const;

export const V3_INTERPRETATION = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';

/** Interpretation codes the abnormal-vital-sign topic fires on. */
export const ABNORMAL_CODES = ['H', 'L', 'HH', 'LL', 'A', 'AA', 'HU', 'LU', '>', '<'] as const;

/** Signature header on every rest-hook delivery (see README.md in this folder). */
export const SIGNATURE_HEADER = 'X-Vigil-Signature';

export type PayloadContent = 'empty' | 'id-only' | 'full-resource';
export type ChannelType = 'rest-hook' | 'websocket';
export type SubscriptionStatusCode = 'requested' | 'active' | 'error' | 'off';
export type NotificationType = 'handshake' | 'heartbeat' | 'event-notification' | 'query-status' | 'query-event';

/** "Never" / "at once" for the runtime's next-attempt and heartbeat times. */
export const EPOCH = new Date(0);
