import { createHmac } from 'node:crypto';
import { signatureHeader, verifySignature } from '../../../src/subscriptions/signature';

describe('webhook signatures', () => {
  const body = '{"resourceType":"Bundle"}';
  const t = 1_700_000_000;

  it('is HMAC-SHA256 over "<t>.<body>" in hex, as the recipe in README.md says', () => {
    const h = signatureHeader(t, body, ['s3cret-value-for-tests']);
    const expected = createHmac('sha256', 's3cret-value-for-tests').update(`${t}.${body}`).digest('hex');
    expect(h).toBe(`t=${t},v1=${expected}`);
  });

  it('verifies with the right secret within the tolerance, and not otherwise', () => {
    const h = signatureHeader(t, body, ['right-secret-0000000']);
    expect(verifySignature(h, body, ['right-secret-0000000'], { nowSeconds: t + 10 })).toBe(true);
    expect(verifySignature(h, body, ['wrong-secret-0000000'], { nowSeconds: t + 10 })).toBe(false);
    expect(verifySignature(h, `${body} `, ['right-secret-0000000'], { nowSeconds: t + 10 })).toBe(false);
    expect(verifySignature(h, body, ['right-secret-0000000'], { nowSeconds: t + 301 })).toBe(false);
  });

  it('signs with both secrets during a rotation so either verifies', () => {
    const h = signatureHeader(t, body, ['new-secret-000000000', 'old-secret-000000000']);
    expect(h.split(',').filter((p) => p.startsWith('v1='))).toHaveLength(2);
    expect(verifySignature(h, body, ['old-secret-000000000'], { nowSeconds: t })).toBe(true);
    expect(verifySignature(h, body, ['new-secret-000000000'], { nowSeconds: t })).toBe(true);
  });

  it('rejects malformed headers', () => {
    for (const bad of ['', 'v1=abc', 't=x,v1=00', `t=${t}`, `t=${t},v1=zz`]) {
      expect(verifySignature(bad, body, ['any-secret-000000000'], { nowSeconds: t })).toBe(false);
    }
  });
});
