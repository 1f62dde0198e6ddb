import fhirpath from 'fhirpath';
import r4Model from 'fhirpath/fhir-context/r4';

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

/** Compiles an expression once (R4 model); the evaluator returns plain JSON values with their types. */
export function compileExpression(expression: string, base?: string): Evaluator {
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
