export { SearchService, DEFAULT_TYPES, type SearchRequest, type CompiledCriteria } from './service';
export type { Cond } from './cond';
export type { SearchParam, ParamType, Idx } from './types';
