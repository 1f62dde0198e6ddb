import type { Db } from 'mongodb';
import pino from 'pino';
import { createVigil } from '../app';
import type { Config } from '../config';
import { isFhirError } from '../errors';
import { SERVED_TYPES } from '../resources/registry';
import type { ErasureReport } from './eraser';

export const ERASURE_USAGE = `  admin erasure purge PATIENT_ID [--dry-run]
  admin erasure expunge TYPE/ID [--dry-run]   (a deleted resource's history)`;

function print(r: ErasureReport, out: (l: string) => void): void {
  out(`${r.dryRun ? 'would erase' : 'erased'} ${r.resources} resources (${r.versions} versions), ${r.notifications} notifications, ${r.candidates} index entries, ${r.exportLines} export lines; ${r.cancelledExports} unfinished exports ${r.dryRun ? 'would be' : 'were'} cancelled`);
  for (const ref of r.list) out(`  ${ref}`);
}

/**
 * `admin erasure ...`: the same erasure as the HTTP operations, run by an operator against the
 * database (the server may keep running; its caches hold no erased content beyond a restart).
 */
export async function runErasure(args: string[], db: Db, config: Config, out: (l: string) => void, fail: (msg: string) => never): Promise<void> {
  const [action, target, ...flags] = args;
  const unknown = flags.filter((f) => f !== '--dry-run');
  if (!target || unknown.length) fail(`erasure needs a target and takes only --dry-run\n${ERASURE_USAGE}`);
  const dryRun = flags.includes('--dry-run');
  const vigil = await createVigil({ config, db, logger: pino({ level: 'silent' }) });
  try {
    if (action === 'purge') {
      if (!/^[A-Za-z0-9\-.]{1,64}$/.test(target)) fail('purge needs a Patient id');
      print(await vigil.erasure.purge(target, { dryRun, who: 'admin CLI' }), out);
    } else if (action === 'expunge') {
      const m = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/.exec(target);
      if (!m || !SERVED_TYPES.includes(m[1])) fail('expunge needs TYPE/ID of a served type');
      print(await vigil.erasure.expunge(m![1], m![2], { dryRun, who: 'admin CLI' }), out);
    } else {
      fail(ERASURE_USAGE);
    }
  } catch (e) {
    if (isFhirError(e)) throw new Error(e.message);
    throw e;
  } finally {
    await vigil.stop();
  }
}
