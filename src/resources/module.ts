import type { AuditEvent } from 'fhir/r4';
import type { Db } from 'mongodb';
import type { Logger } from 'pino';
import { anonymousPrincipal } from '../auth/types';
import type { Config } from '../config';
import type { ModuleParts } from '../module';
import { SearchService } from '../search/service';
import { createStorage, type CrashPoint, type Engine, type PreparedWrite, type Storage } from '../storage';
import { CURSOR_SECRET_KEY, CursorCodec } from './cursor';
import { SERVED_TYPES } from './registry';
import { ResourceStore, type BeforeWrite } from './store';
import { prepareValidation, validateResource } from './validation';

export interface ResourcesDeps {
  config: Config;
  db: Db;
  /** The database kind, detected once by the composition root. */
  engine: Engine;
  logger: Logger;
  clock: () => Date;
  newId: () => string;
  crashPoint?: CrashPoint;
}

/** Storage, search and the write pipeline: the core every other module builds on. */
export interface ResourcesModule extends ModuleParts {
  storage: Storage;
  search: SearchService;
  cursors: CursorCodec;
  store: ResourceStore;
  /** Adds a step to client writes' checks (run in the order added; never for server-side writes). */
  addBeforeWrite(step: BeforeWrite): void;
  /** Prepares a server AuditEvent for the append-only trail (committed with `mode: 'trail'`). */
  prepareAudit(e: AuditEvent): Promise<PreparedWrite>;
}

export async function createResourcesModule(deps: ResourcesDeps): Promise<ResourcesModule> {
  const { config, db, engine, logger, clock, newId } = deps;
  const compileMs = prepareValidation(SERVED_TYPES);
  logger.debug({ compileMs }, 'validation schemas compiled');
  // Storage indexes versions through search (its write-time index, cached per version).
  let search: SearchService | undefined;
  const storage = await createStorage({ db, engine, logger, index: (r, only) => search!.indexOnce(r, only), crashPoint: deps.crashPoint, inlineMax: config.limits.storageInlineMax });
  const cursors = new CursorCodec(config.cursorSecret ?? (await storage.secret(CURSOR_SECRET_KEY)));
  search = await SearchService.create({ db, config, types: [...SERVED_TYPES], executor: storage.executor, cursors });
  const searchService = search;

  const steps: BeforeWrite[] = [];
  const store = new ResourceStore({
    repository: storage.repository,
    clock,
    newId,
    indexer: search,
    matcher: search,
    validate: (resource, o) => validateResource(resource, { ...o, allowedTypes: SERVED_TYPES }),
    beforeWrite: async (ctx, r, prev) => {
      let checked = r;
      for (const step of steps) checked = await step(ctx, checked, prev);
      return checked;
    },
  });
  return {
    storage,
    search: searchService,
    cursors,
    store,
    addBeforeWrite: (step) => void steps.push(step),
    gauges: [
      {
        name: 'vigil_search_entries_staged',
        help: 'Search entries of committed versions held in memory, not stored yet (embedded engine; the outbox stores them)',
        collect: () => [{ value: storage.executor.staged() }],
      },
    ],
    prepareAudit: (e) => store.prepare('AuditEvent', newId(), e, null, 'POST', { principal: anonymousPrincipal, internal: true }, clock()),
    async prepare() {
      await storage.ensureIndexes(SERVED_TYPES);
      await searchService.ensureIndexes();
      await searchService.reindexIfNeeded((msg) => logger.info(msg));
      await storage.recover();
    },
  };
}
