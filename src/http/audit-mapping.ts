import type { AuditRecord } from '../auth';
import type { AccessRecord } from './edge';

/** Maps an HTTP access to what the audit trail records: interaction, action, target, patients. */
export function accessAudit(r: AccessRecord): AuditRecord {
  const [type, id, third, vid] = r.segments;
  let interaction: string;
  let action: AuditRecord['action'];
  const isType = type !== undefined && /^[A-Z]/.test(type);
  const op = r.segments.find((s) => s.startsWith('$'));
  if (op) {
    interaction = 'operation';
    action = 'E';
  } else if (r.method === 'POST' && !type) {
    interaction = 'transaction';
    action = 'E';
  } else if (r.method === 'POST' && (id === '_search' || type === '_search')) {
    interaction = isType ? 'search-type' : 'search-system';
    action = 'E';
  } else if (r.method === 'POST') {
    interaction = 'create';
    action = 'C';
  } else if (r.method === 'PUT') {
    interaction = 'update';
    action = 'U';
  } else if (r.method === 'PATCH') {
    interaction = 'patch';
    action = 'U';
  } else if (r.method === 'DELETE') {
    interaction = 'delete';
    action = 'D';
  } else if (third === '_history' && vid) {
    interaction = 'vread';
    action = 'R';
  } else if (third === '_history' || id === '_history' || type === '_history') {
    interaction = type === '_history' ? 'history-system' : id === '_history' ? 'history-type' : 'history-instance';
    action = 'R';
  } else if (id) {
    interaction = 'read';
    action = 'R';
  } else {
    interaction = isType ? 'search-type' : 'search-system';
    action = 'E';
  }
  return {
    principal: r.principal,
    action,
    interaction,
    type: isType ? type : undefined,
    id: id && !id.startsWith('_') && !id.startsWith('$') ? id : undefined,
    patients: [...new Set(r.patients.filter((p) => p.startsWith('Patient/')).map((p) => p.slice(8)))],
    outcome: r.status,
    ip: r.ip,
    requestId: r.requestId,
    at: r.at,
  };
}
