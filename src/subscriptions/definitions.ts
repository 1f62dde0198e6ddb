import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ObservationDefinition } from 'fhir/r4';
import { allowAllPolicy } from '../auth/types';
import { TRUE } from '../search/cond';
import type { ResourceRepository } from '../storage';
import type { QueryExecutor } from '../storage/query/executor';
import { DefinitionIndex } from './interpretation';

/** Stored ObservationDefinitions read per page (they are few; paging keeps any one read bounded). */
const PAGE = 500;

function loadShippedDefinitions(igDir: string): ObservationDefinition[] {
  try {
    return readdirSync(igDir)
      .filter((n) => /^ObservationDefinition-.*\.json$/.test(n))
      .sort()
      .map((n) => JSON.parse(readFileSync(path.join(igDir, n), 'utf8')) as ObservationDefinition);
  } catch {
    return [];
  }
}

/** The ranges derived interpretations use: the defaults shipped in ig/, overridden by stored ones. */
export class ObservationDefinitions {
  readonly shipped: ObservationDefinition[];
  private index: DefinitionIndex;

  constructor(
    igDir: string,
    private readonly storage: { executor: QueryExecutor; repository: ResourceRepository },
  ) {
    this.shipped = loadShippedDefinitions(igDir);
    this.index = new DefinitionIndex(this.shipped);
  }

  get lookup(): DefinitionIndex['lookup'] {
    return this.index.lookup;
  }

  async reload(): Promise<void> {
    const stored: ObservationDefinition[] = [];
    for (let after: string | undefined; ; ) {
      // Ids from the executor, bodies from the repository (the one reader of stored resources).
      const page = await this.storage.executor.page({ type: 'ObservationDefinition', cond: TRUE, policy: allowAllPolicy, limit: PAGE, fields: ['_id'], ...(after ? { after: [after] } : {}) });
      const docs = await this.storage.repository.readMany('ObservationDefinition', page.map((d) => d._id));
      for (const d of page) {
        const doc = docs.get(d._id);
        if (doc && !doc.deleted) stored.push(doc.res as ObservationDefinition);
      }
      if (page.length < PAGE) break;
      after = page[page.length - 1]._id;
    }
    // Stored definitions override the shipped defaults for the same code. The shipped ones are
    // stored too (seeded under their own ids): a stored copy of a shipped id takes its place, and
    // the others follow, oldest first, so the newest definition a client wrote wins (the index
    // lets later definitions for a code override earlier ones; `_id` order would not say that).
    const shippedIds = new Set(this.shipped.map((d) => d.id));
    const byId = new Map(stored.map((d) => [d.id, d] as const));
    const own = stored
      .filter((d) => !shippedIds.has(d.id))
      .sort((a, b) => (a.meta?.lastUpdated ?? '').localeCompare(b.meta?.lastUpdated ?? '') || (a.id ?? '').localeCompare(b.id ?? ''));
    this.index = new DefinitionIndex([...this.shipped.map((d) => byId.get(d.id) ?? d), ...own]);
  }
}
