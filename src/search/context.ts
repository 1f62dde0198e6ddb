import type { Config } from '../config';
import type { CursorCodec } from '../resources/cursor';
import type { QueryExecutor } from '../storage/query';
import type { Registry } from './registry';
import type { EncodeContext, SearchParam } from './types';

/** What the search modules share: definitions, configuration and the storage executor. */
export interface SearchContext {
  readonly registry: Registry;
  readonly config: Config;
  readonly ctx: EncodeContext;
  readonly executor: QueryExecutor;
  /** The server's one paging-cursor codec. */
  readonly cursors: CursorCodec;
  readonly supportedTypes: string[];
  paramsOf(type: string): Map<string, SearchParam>;
}
