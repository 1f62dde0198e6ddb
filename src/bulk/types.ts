/** The stored shapes live behind the storage wall (src/storage/state/bulk.ts). */
export type { ChunkDoc, ExportFile, ExportJobDoc, ExportLevel, ExportSpec, JobPrincipal, JobState } from '../storage/state/bulk';

/** The error file of a job is numbered after every output file. */
export const ERROR_FILE = 'errors';
