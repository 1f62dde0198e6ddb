import fhirpath from 'fhirpath';
import r4Model from 'fhirpath/fhir-context/r4';
import choiceTypePaths from 'fhirpath/fhir-context/r4/choiceTypePaths.json';
import path2Type from 'fhirpath/fhir-context/r4/path2Type.json';

/** One value an expression produced, with its FHIR type name (e.g. `CodeableConcept`, `dateTime`). */
export interface TypedValue {
  type: string;
  value: unknown;
}

export type Evaluator = (node: unknown) => TypedValue[];

/**
 * R4 search expressions use `x as T` on collections (e.g. `Observation.component.value as Quantity`),
 * which fhirpath.js rightly refuses on more than one item; `ofType(T)` means what the spec intends.
 * `resolve() is T` needs the target resource; the reference text tells the type without fetching it.
 */
export function normaliseExpression(expr: string): string {
  return expr
    .replace(/\.where\(resolve\(\) is (\w+)\)/g, (_m, t: string) => `.where(reference.matches('^(.*/)?${t}/[^/]+(/_history/.*)?$'))`)
    .replace(/([\w\])]+) as (\w+)/g, '$1.ofType($2)')
    .replace(/\.as\((\w+)\)/g, '.ofType($1)');
}

const JS_TYPES: Record<string, string> = {
  String: 'string',
  Boolean: 'boolean',
  Integer: 'integer',
  Decimal: 'decimal',
  Date: 'date',
  DateTime: 'dateTime',
  Time: 'time',
  Quantity: 'Quantity',
};

function inferType(v: unknown): string {
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'boolean';
  if (typeof v === 'number') return 'decimal';
  return 'Element';
}

const TYPES = path2Type as Record<string, string | { code: string }>;
const CHOICES = choiceTypePaths as Record<string, string[]>;

function typeName(t: string | { code: string }): string {
  const n = typeof t === 'string' ? t : t.code;
  return n.startsWith('System.') ? (JS_TYPES[n.slice(7)] ?? n.slice(7)) : n;
}

/** `dateTime` -> `DateTime`: the suffix of a choice element's JSON name. */
const suffix = (t: string) => t[0].toUpperCase() + t.slice(1);

/**
 * Plain paths (`Observation.code`, `Patient.name.given`, `Observation.value as Quantity`) are
 * most search expressions; walking the JSON for them is far faster than the FHIRPath engine on
 * the write path, and gives the same values. Anything else returns undefined (engine used).
 */
function compileSimplePath(part: string, base?: string): Evaluator | undefined {
  // Relative expressions (composite components) start at a node of the base path.
  const text = base ? `${base.split('.')[0]}.${part.trim()}` : part.trim();
  const m = /^\(?\s*([A-Z][A-Za-z]+)((?:\.[a-z][A-Za-z]*)*)(?:\.(?:ofType|as)\((\w+)\)|\s+as\s+(\w+)|\.where\(resolve\(\) is (\w+)\))?\s*\)?$/.exec(text);
  if (!m) return undefined;
  if (m[5]) {
    // `ref.where(resolve() is T)`: the reference text names the type.
    const inner = compileSimplePath(part.trim().replace(/\.where\(resolve\(\) is \w+\)\s*\)?$/, ''), base);
    if (!inner) return undefined;
    const re = new RegExp(`^(.*/)?${m[5]}/[^/]+(/_history/.*)?$`);
    return (node) => inner(node).filter((v) => typeof (v.value as { reference?: unknown }).reference === 'string' && re.test((v.value as { reference: string }).reference));
  }
  const root = base ? undefined : m[1];
  const segs = m[2] ? m[2].slice(1).split('.') : [];
  const ofType = m[3] ?? m[4];
  if (segs.length === 0) {
    // The resource itself (composite parts such as `Observation`).
    return root ? (node) => ((node as { resourceType?: string } | null)?.resourceType === root ? [{ type: root, value: node }] : []) : undefined;
  }
  // Resolve each step's JSON property names and the resulting type up front.
  const steps: { props: { name: string; type: string }[] }[] = [];
  let ctx = m[1];
  if (base && base.includes('.')) {
    const bt = TYPES[base];
    if (bt === undefined) return undefined;
    const n = typeName(bt);
    ctx = n === 'BackboneElement' || n === 'Element' ? base : n;
  }
  for (const [i, seg] of segs.entries()) {
    const full = `${ctx}.${seg}`;
    const last = i === segs.length - 1;
    const choice = CHOICES[full];
    if (choice) {
      if (!last) return undefined;
      const types = ofType ? choice.filter((c) => c.toLowerCase() === ofType.toLowerCase()) : choice;
      if (types.length === 0) return undefined;
      steps.push({
        props: types.map((c) => {
          const fhirType = TYPES[`${ctx}.${seg}${c}`];
          const name = fhirType ? typeName(fhirType) : c === 'String' || c === 'Boolean' || c === 'Integer' || c === 'Time' ? c.toLowerCase() : c === 'DateTime' ? 'dateTime' : c;
          return { name: `${seg}${suffix(c)}`, type: name };
        }),
      });
      return walker(root, steps);
    }
    if (ofType && last) return undefined;
    const t = TYPES[full];
    if (t === undefined) return undefined;
    const name = typeName(t);
    steps.push({ props: [{ name: seg, type: name }] });
    ctx = name === 'BackboneElement' || name === 'Element' ? full : name;
  }
  return walker(root, steps);
}

function walker(root: string | undefined, steps: { props: { name: string; type: string }[] }[]): Evaluator {
  return (node: unknown) => {
    if (!node || (root !== undefined && (node as { resourceType?: string }).resourceType !== root)) return [];
    let cur: unknown[] = [node];
    let types: string[] = [];
    for (const step of steps) {
      const next: unknown[] = [];
      const nextTypes: string[] = [];
      for (const v of cur) {
        if (!v || typeof v !== 'object') continue;
        for (const p of step.props) {
          const x = (v as Record<string, unknown>)[p.name];
          if (x === undefined || x === null) continue;
          for (const e of Array.isArray(x) ? x : [x]) {
            if (e === null || e === undefined) continue;
            next.push(e);
            nextTypes.push(p.type);
          }
        }
      }
      cur = next;
      types = nextTypes;
    }
    return cur.map((value, i) => ({ type: types[i], value }));
  };
}

/** Compiles an expression once (R4 model); the evaluator returns plain JSON values with their types. */
export function compileExpression(expression: string, base?: string): Evaluator {
  const parts = splitTopLevel(expression);
  const simple = parts.map((p) => compileSimplePath(p, base));
  if (simple.every((e): e is Evaluator => e !== undefined)) {
    return simple.length === 1 ? simple[0] : (node: unknown) => simple.flatMap((e) => e(node));
  }
  return compileWithEngine(expression, base);
}

/** The FHIRPath engine evaluator (also the reference the fast path is tested against). */
export function compileWithEngine(expression: string, base?: string): Evaluator {
  const expr = normaliseExpression(expression);
  const compiled = fhirpath.compile(base ? { base, expression: expr } : expr, r4Model, {
    resolveInternalTypes: false,
  });
  return (node: unknown) => {
    const raw = compiled(node as Record<string, unknown>) as unknown[];
    if (raw.length === 0) return [];
    const types = fhirpath.types(raw);
    const values = fhirpath.resolveInternalTypes(raw) as unknown[];
    return values.map((value, i) => {
      const t = types[i] ?? '';
      const [ns, name] = t.includes('.') ? t.split('.', 2) : ['', t];
      let type = ns === 'System' ? (JS_TYPES[name] ?? name) : name;
      if (!type || type === 'Any') type = inferType(value);
      return { type, value };
    });
  };
}

/** Evaluates sub-expressions relative to nodes an outer expression returned (composite components). */
export function compileRawNodes(expression: string): (node: unknown) => unknown[] {
  const compiled = fhirpath.compile(normaliseExpression(expression), r4Model, { resolveInternalTypes: false });
  return (node: unknown) => compiled(node as Record<string, unknown>) as unknown[];
}

/** Splits on top-level `|` (outside parentheses and quotes). */
export function splitTopLevel(expr: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quote = false;
  let cur = '';
  for (const ch of expr) {
    if (ch === "'") quote = !quote;
    if (!quote && ch === '(') depth++;
    if (!quote && ch === ')') depth--;
    if (!quote && depth === 0 && ch === '|') {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}
