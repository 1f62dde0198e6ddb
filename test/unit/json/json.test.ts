import { FhirError } from '../../../src/errors';
import { attachDecimals, cloneJson, decimalsOf, parseJson, stringifyJson } from '../../../src/json';

const TEXTS = ['1.00', '6.0', '66.899999999999991', '1E-22', '0.0', '-0.5', '100', '12345678901234567890', '-0', '1.000000000000000000E-245', '-1.000000000000000000E+245', '1e-400'];

function errorOf(text: string): FhirError {
  try {
    parseJson(text);
  } catch (e) {
    expect(e).toBeInstanceOf(FhirError);
    return e as FhirError;
  }
  throw new Error(`parsed: ${text}`);
}

describe('src/json: numbers keep their text', () => {
  it.each(TEXTS)('round-trips %s exactly, inside objects and arrays, while code sees a number', (t) => {
    const text = `{"resourceType":"Observation","valueQuantity":{"value":${t}},"component":[{"valueQuantity":{"value":${t}}}],"x":[${t},2]}`;
    const v = parseJson(text) as { valueQuantity: { value: unknown } };
    expect(typeof v.valueQuantity.value).toBe('number');
    expect(v.valueQuantity.value).toBe(Number(t));
    expect(stringifyJson(v)).toBe(text);
  });

  it('survives the stored form: (pointer, text) pairs put back on a plain copy', () => {
    const text = '{"a":{"b":1.50,"c":[2.0,{"d/e~f":3.10}]},"g":7}';
    const v = parseJson(text);
    const dec = decimalsOf(v);
    expect(dec).toEqual([
      { p: '/a/b', t: '1.50' },
      { p: '/a/c/0', t: '2.0' },
      { p: '/a/c/1/d~1e~0f', t: '3.10' },
    ]);
    const plain = JSON.parse(JSON.stringify(v)) as unknown; // what the database hands back
    expect(stringifyJson(plain)).toBe('{"a":{"b":1.5,"c":[2,{"d/e~f":3.1}]},"g":7}');
    attachDecimals(plain, dec);
    expect(stringifyJson(plain)).toBe(text);
    expect(stringifyJson(cloneJson(v))).toBe(text);
    expect(stringifyJson({ ...(v as object) })).toBe(text);
  });

  it('never applies a text to a number that changed', () => {
    const v = parseJson('{"a":{"b":1.50}}') as { a: { b: number } };
    v.a.b = 2;
    expect(stringifyJson(v)).toBe('{"a":{"b":2}}');
    v.a.b = 1.5;
    expect(stringifyJson(v)).toBe('{"a":{"b":1.50}}');
    expect(attachDecimals({ a: { b: 3 } }, [{ p: '/a/b', t: '1.50' }, { p: '/x/y', t: '1.0' }])).toBeUndefined();
  });

  it('pretty-prints with the same texts', () => {
    const v = parseJson('{"a":[1.0]}');
    expect(stringifyJson(v, true)).toBe('{\n  "a": [\n    1.0\n  ]\n}');
    expect(stringifyJson(JSON.parse('{"a":[1.0]}'), true)).toBe('{\n  "a": [\n    1\n  ]\n}');
  });
});

describe('src/json: what the parser refuses (400, naming the element)', () => {
  it.each([
    ['{"resourceType":"Patient","name":[{"family":"x","__proto__":{"polluted":true}}]}', 'MSG_JSON_FORBIDDEN_KEY', 'Patient.name[0].__proto__'],
    ['{"resourceType":"Patient","constructor":{"prototype":{"polluted":true}}}', 'MSG_JSON_FORBIDDEN_KEY', 'Patient.constructor'],
    ['{"resourceType":"Patient","extension":[{"prototype":1}]}', 'MSG_JSON_FORBIDDEN_KEY', 'Patient.extension[0].prototype'],
    ['[{"op":"add","path":"/a","value":{"__proto__":{"polluted":true}}}]', 'MSG_JSON_FORBIDDEN_KEY', '[0].value.__proto__'],
    ['{"resourceType":"Patient","name":[{"family":"a","family":"b"}]}', 'MSG_JSON_DUPLICATE_KEY', 'Patient.name[0].family'],
    ['{"resourceType":"Observation","component":[{},{"valueQuantity":{"value":1.0,"value":1.00}}]}', 'MSG_JSON_DUPLICATE_KEY', 'Observation.component[1].valueQuantity.value'],
    ['{"resourceType":"Patient","name":[{"family":"Fuzz\\ud800base"}]}', 'MSG_JSON_INVALID_TEXT', 'Patient.name[0].family'],
    ['{"resourceType":"Patient","name":[{"family":"Fuzz\\udc00"}]}', 'MSG_JSON_INVALID_TEXT', 'Patient.name[0].family'],
    ['{"resourceType":"Observation","valueQuantity":{"value":1e999}}', 'MSG_JSON_NUMBER_RANGE', 'Observation.valueQuantity.value'],
    ['{"resourceType":"Observation","valueQuantity":{"value":-1e999}}', 'MSG_JSON_NUMBER_RANGE', 'Observation.valueQuantity.value'],
  ])('%s', (text, code, path) => {
    const e = errorOf(text);
    expect(e.status).toBe(400);
    expect(e.messageCode).toBe(code);
    expect(e.expression).toEqual([path]);
    expect(e.message).toContain(path);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('accepts what is well-formed: surrogate pairs, repeated identical keys, empty containers', () => {
    expect(parseJson('{"a":"\\ud83d\\ude00","b":[],"c":{}}')).toEqual({ a: '😀', b: [], c: {} });
    expect(parseJson('{"a":1,"a":1}')).toEqual({ a: 1 });
    expect(parseJson('1.50')).toBe(1.5);
    expect(parseJson('"x"')).toBe('x');
    expect(errorOf('1e999').messageCode).toBe('MSG_JSON_NUMBER_RANGE');
  });

  it('throws nothing but 400 FhirErrors for any prefix or corruption of a valid body', () => {
    const body = '{"resourceType":"Observation","valueQuantity":{"value":1.50,"unit":"g"},"note":[{"text":"a\\"b\\u00e9"}],"x":[true,false,null]}';
    const garbage = ['', '\u0000', '\\', '"', '}', ']', ',', ':', '-', 'e', '.', '\\u', 'tru', '\ud800'];
    for (let i = 0; i < body.length; i++) {
      for (const g of [undefined, ...garbage]) {
        const text = g === undefined ? body.slice(0, i) : body.slice(0, i) + g + body.slice(i + 1);
        try {
          parseJson(text);
        } catch (e) {
          expect(e).toBeInstanceOf(FhirError);
          expect((e as FhirError).status).toBe(400);
        }
      }
    }
  });

  it('refuses nesting too deep for the stack as a 400', () => {
    const e = errorOf(`${'['.repeat(200_000)}${']'.repeat(200_000)}`);
    expect(e.status).toBe(400);
  });
});
