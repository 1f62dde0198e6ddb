/**
 * Raw JSON text, read as text: decimal tests compare what went over the wire character for
 * character, so they never re-parse (which would lose `1.00` or `1E-22`).
 */

/** JSON text without insignificant whitespace, every number token kept as written. */
export function minify(text: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      out += c;
      if (c === '\\') out += text[++i];
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (!/\s/.test(c)) out += c;
  }
  return out;
}

/** The end (exclusive) of the JSON object that starts at `start`, matched by braces outside strings. */
function objectEnd(text: string, start: number): number | undefined {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return i + 1;
  }
  return undefined;
}

/** The raw texts of every resource object of this type and id inside `text` (matched by braces). */
export function resourceTexts(text: string, type: string, id: string): string[] {
  const out: string[] = [];
  for (let from = 0; ; ) {
    const start = text.indexOf(`{"resourceType":"${type}","id":"${id}"`, from);
    const end = start < 0 ? undefined : objectEnd(text, start);
    if (end === undefined) return out;
    out.push(text.slice(start, end));
    from = end;
  }
}

/** The raw text of the (first) resource object of this type and id inside `text`, if there. */
export function resourceText(text: string, type: string, id: string): string | undefined {
  return resourceTexts(text, type, id)[0];
}
