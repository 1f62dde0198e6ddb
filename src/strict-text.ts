import { isUtf8 } from 'node:buffer';
import { Errors } from './errors';

/**
 * Decoding of what clients send (bodies, paths, queries) that refuses instead of repairing:
 * invalid UTF-8, malformed percent-encoding, lone surrogates and control characters are a 400
 * naming the problem, never silently turned into U+FFFD.
 */

const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Byte offset of the first invalid UTF-8 sequence (for the message only). */
function firstInvalidByte(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    const n = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
    if (n < 0) return i;
    if (n > 0 && i + n >= b.length) return i;
    for (let k = 1; k <= n; k++) if ((b[i + k] & 0xc0) !== 0x80) return i;
    const cp = n === 2 ? ((c & 0x0f) << 12) | ((b[i + 1] & 0x3f) << 6) : n === 3 ? ((c & 0x07) << 18) | ((b[i + 1] & 0x3f) << 12) : 0x800;
    if ((n === 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n === 3 && (cp < 0x10000 || cp > 0x10ffff))) return i;
    i += n + 1;
  }
  return b.length;
}

/** The body as text; 400 when it is not valid UTF-8. */
export function decodeUtf8(raw: Uint8Array, what = 'The body'): string {
  if (!isUtf8(raw)) {
    throw Errors.badRequest(`${what} is not valid UTF-8 (invalid byte sequence at byte ${firstInvalidByte(raw)}); nothing was changed`, 'MSG_UTF8_INVALID');
  }
  // A leading byte-order mark is legal UTF-8 but not JSON: drop it rather than fail the parse.
  const text = fatal.decode(raw);
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

// Lone surrogates: a high surrogate not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
// FHIR strings: no control characters but tab, carriage return and line feed.
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f]/;

/** Why a string cannot be a FHIR string, or undefined when it can. */
export function textProblem(s: string): string | undefined {
  if (LONE_SURROGATE.test(s)) return 'contains a lone surrogate (not a Unicode character)';
  if (CONTROL.test(s)) return 'contains a control character';
  return undefined;
}

/** decodeURIComponent that answers 400 instead of throwing URIError. */
export function decodeComponent(s: string, where: string): string {
  let out: string;
  try {
    out = decodeURIComponent(s);
  } catch {
    throw Errors.badRequest(`Malformed percent-encoding in ${where}`, 'MSG_PERCENT_ENCODING');
  }
  const problem = textProblem(out);
  if (problem) throw Errors.badRequest(`${where[0].toUpperCase()}${where.slice(1)} ${problem}`, 'MSG_PERCENT_ENCODING');
  return out;
}

/** Decoded, non-empty segments of a URL path. */
export function pathSegments(path: string): string[] {
  return path
    .split('/')
    .filter(Boolean)
    .map((s) => decodeComponent(s, 'the URL path'));
}

/**
 * A query string (without `?`) or form body decoded strictly: `+` is a space, every `%xx` must
 * form valid UTF-8. URLSearchParams alone would replace bad sequences with U+FFFD.
 */
export function strictQuery(raw: string, opts: { literalPercent?: boolean } = {}): URLSearchParams {
  const out = new URLSearchParams();
  if (!raw) return out;
  // Query strings written by hand (criteria, If-None-Exist) may hold a bare `%` (the UCUM unit):
  // taken literally there; escapes that decode to invalid UTF-8 are refused all the same.
  const text = opts.literalPercent ? raw.replace(/%(?![0-9A-Fa-f]{2})/g, '%25') : raw;
  for (const part of text.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const k = eq < 0 ? part : part.slice(0, eq);
    const v = eq < 0 ? '' : part.slice(eq + 1);
    const name = decodeComponent(k.replace(/\+/g, ' '), 'a query parameter name');
    out.append(name, decodeComponent(v.replace(/\+/g, ' '), `the value of query parameter "${name.slice(0, 64)}"`));
  }
  return out;
}
