import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Resource } from 'fhir/r4';
import { isR4ResourceType, validateOperation } from '../../../src/resources/validation';
import { topicToBasic } from '../../../src/subscriptions/topic-basic';
import type { SubscriptionTopicResource } from '../../../src/subscriptions/topics';

/** Our conformance artifacts are valid FHIR, named by type and id, and described in ig/README.md. */
const IG = join(__dirname, '..', '..', '..', 'ig');
const FILES = readdirSync(IG)
  .filter((f) => f.endsWith('.json'))
  .sort();
const README = readFileSync(join(IG, 'README.md'), 'utf8');

const load = (f: string): Resource & { url?: string } => JSON.parse(readFileSync(join(IG, f), 'utf8')) as Resource & { url?: string };

test('ig/ holds artifacts', () => {
  expect(FILES.length).toBeGreaterThan(0);
});

describe.each(FILES)('%s', (file) => {
  test('is named <resourceType>-<id>.json', () => {
    const r = load(file);
    expect(file).toBe(`${r.resourceType}-${r.id}.json`);
  });

  test('is listed in ig/README.md', () => {
    expect(README).toContain(`\`${file}\``);
  });

  test('is valid (R4 resources: the server validator; R5 topics: canonical url ends with its id)', () => {
    const r = load(file);
    if (isR4ResourceType(r.resourceType)) {
      const oo = validateOperation(r, { mode: 'validate' });
      expect(oo.issue.map((i) => i.diagnostics)).toEqual(['All OK']);
    } else {
      // Topics are authored in the R5 shape and served as Basic (src/subscriptions/topic-basic.ts).
      expect(r.resourceType).toBe('SubscriptionTopic');
      expect(r.url).toMatch(new RegExp(`/SubscriptionTopic/${r.id}$`));
      const basic = topicToBasic(r as unknown as SubscriptionTopicResource);
      const oo = validateOperation(basic, { mode: 'validate' });
      expect(oo.issue.map((i) => i.diagnostics)).toEqual(['All OK']);
    }
  });
});
