import type { Config } from '../config';
import type { QueryExecutor } from '../storage/query';
import type { Registry } from './registry';
import type { EncodeContext, SearchParam } from './types';

/** What the search modules share: definitions, configuration and the storage executor. */
export interface SearchContext {
  readonly registry: Registry;
  readonly config: Config;
  readonly ctx: EncodeContext;
  readonly executor: QueryExecutor;
  /** Signs the paging cursors. */
  readonly secret: string;
  readonly supportedTypes: string[];
  paramsOf(type: string): Map<string, SearchParam>;
}
