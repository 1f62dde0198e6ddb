import { MongoClient } from 'mongodb';
import { loadConfig } from '../../../src/config';
import { SearchService } from '../../../src/search/service';

/** The real search service for in-memory matching; never touches the (unconnected) database. */
export async function realSearch(types?: string[]): Promise<SearchService> {
  const config = loadConfig({ BASE_URL: 'http://localhost/fhir', CURSOR_SECRET: 'unit-test-cursor-secret-0123456789', LOG_LEVEL: 'silent' });
  const db = new MongoClient('mongodb://127.0.0.1:1').db('unused');
  return SearchService.create({ db, config, types });
}
