import type {
  CapabilityStatement,
  CapabilityStatementRestResource,
  CapabilityStatementRestResourceSearchParam,
  CapabilityStatementRestSecurity,
  Extension,
} from 'fhir/r4';
import { RESOURCE_TYPES } from '../resources/registry';

const BACKPORT_IG = 'http://hl7.org/fhir/uv/subscriptions-backport';

export interface CapabilityInputs {
  baseUrl: string;
  version: string;
  startedAt: Date;
  searchParams(type: string): CapabilityStatementRestResourceSearchParam[];
  security?: CapabilityStatementRestSecurity;
  /** Extensions contributed by subscriptions (topics, channels, websocket URL). */
  subscriptionExtensions?: { resourceExtensions: Extension[]; restExtensions: Extension[] };
  /** Bulk Data export is offered (system, Patient and Group level). */
  bulkExport?: boolean;
}

const BULK = 'http://hl7.org/fhir/uv/bulkdata';

const INTERACTION_CODES: Record<string, CapabilityStatementRestResource['interaction'] extends (infer I)[] | undefined ? I extends { code: infer C } ? C : never : never> = {
  read: 'read',
  vread: 'vread',
  update: 'update',
  patch: 'patch',
  delete: 'delete',
  history: 'history-instance',
  create: 'create',
  search: 'search-type',
};

/**
 * The CapabilityStatement, generated from the resource registry and the search registry so
 * it claims exactly what the server does.
 */
export function buildCapabilityStatement(c: CapabilityInputs): CapabilityStatement {
  const resources: CapabilityStatementRestResource[] = RESOURCE_TYPES.map((def) => {
    const interactions = def.interactions.filter((i) => i in INTERACTION_CODES).map((i) => ({ code: INTERACTION_CODES[i] }));
    if (def.interactions.includes('history')) interactions.push({ code: 'history-type' });
    const r: CapabilityStatementRestResource = {
      type: def.type,
      documentation: def.documentation,
      interaction: interactions,
      versioning: 'versioned-update',
      readHistory: true,
      updateCreate: def.clientWritable,
      conditionalCreate: def.clientWritable,
      conditionalRead: 'not-supported',
      conditionalUpdate: def.clientWritable,
      conditionalDelete: def.clientWritable ? 'single' : 'not-supported',
      referencePolicy: ['literal', 'logical', 'local'],
      searchInclude: ['*'],
      searchRevInclude: ['*'],
      searchParam: c.searchParams(def.type),
      operation: [{ name: 'validate', definition: 'http://hl7.org/fhir/OperationDefinition/Resource-validate' }],
    };
    if (def.type === 'Observation') {
      r.operation!.push({ name: 'lastn', definition: 'http://hl7.org/fhir/OperationDefinition/Observation-lastn' });
    }
    if (def.type === 'Flag') {
      r.operation!.push({ name: 'acknowledge', definition: 'http://vigil-fhir.org/fhir/OperationDefinition/Flag-acknowledge' });
    }
    if (c.bulkExport && def.type === 'Patient') r.operation!.push({ name: 'export', definition: `${BULK}/OperationDefinition/patient-export` });
    if (c.bulkExport && def.type === 'Group') r.operation!.push({ name: 'export', definition: `${BULK}/OperationDefinition/group-export` });
    if (def.type === 'Patient') {
      r.operation!.push({ name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' });
    }
    if (def.type === 'Subscription') {
      r.supportedProfile = [`${BACKPORT_IG}/StructureDefinition/backport-subscription`];
      r.operation!.push(
        { name: 'status', definition: `${BACKPORT_IG}/OperationDefinition/backport-subscription-status` },
        { name: 'events', definition: `${BACKPORT_IG}/OperationDefinition/backport-subscription-events` },
        { name: 'get-ws-binding-token', definition: `${BACKPORT_IG}/OperationDefinition/backport-subscription-get-ws-binding-token` },
      );
      if (c.subscriptionExtensions) r.extension = c.subscriptionExtensions.resourceExtensions;
    }
    return r;
  });
  const rest: CapabilityStatement['rest'] = [
    {
      mode: 'server',
      documentation: 'Vigil FHIR R4 API for connected medical devices',
      security: c.security,
      resource: resources,
      interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'search-system' }, { code: 'history-system' }],
      // GET [base]/Patient/[id]/[type] for every served type in the patient compartment.
      compartment: ['http://hl7.org/fhir/CompartmentDefinition/patient'],
      extension: c.subscriptionExtensions?.restExtensions,
      ...(c.bulkExport ? { operation: [{ name: 'export', definition: `${BULK}/OperationDefinition/export` }] } : {}),
    },
  ];
  if (!rest[0].security) delete rest[0].security;
  if (!rest[0].extension?.length) delete rest[0].extension;
  return {
    resourceType: 'CapabilityStatement',
    url: `${c.baseUrl}/metadata`,
    version: c.version,
    name: 'VigilCapabilityStatement',
    title: 'Vigil FHIR server capability statement',
    status: 'active',
    experimental: false,
    date: c.startedAt.toISOString(),
    publisher: 'Vigil',
    kind: 'instance',
    ...(c.bulkExport ? { instantiates: [`${BULK}/CapabilityStatement/bulk-data`] } : {}),
    software: { name: 'Vigil', version: c.version },
    implementation: { description: 'Vigil FHIR R4 server', url: c.baseUrl },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    patchFormat: ['application/json-patch+json', 'application/fhir+json'],
    rest,
  };
}
