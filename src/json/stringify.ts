import { LosslessNumber, stringify } from 'lossless-json';
import { hasTexts, textOf } from './decimals';

/**
 * The one serializer of FHIR JSON we emit (responses, Bundles, notifications, websocket payloads).
 * Numbers that arrived with a text of their own (see decimals.ts) are written with that text;
 * everything else as JSON.stringify writes it. Values without remembered texts take the native
 * serializer (the common case, and several times faster than a JS one).
 */
export function stringifyJson(value: unknown, pretty = false): string {
  const space = pretty ? 2 : undefined;
  if (!hasTexts(value)) return JSON.stringify(value, null, space);
  const out = stringify(
    value,
    function (this: unknown, key: string, v: unknown) {
      if (typeof v === 'number' && typeof this === 'object' && this !== null) {
        const t = textOf(this, key);
        if (t !== undefined) return new LosslessNumber(t);
      }
      return v;
    },
    space,
  );
  return out ?? 'null';
}
