/**
 * FHIR JSON in and out: the one parser of request bodies and the one serializer of what we emit,
 * both keeping the sender's text of decimals (see decimals.ts for how, parse.ts for what the parser
 * refuses).
 */
export { parseJson, elementPath } from './parse';
export { stringifyJson } from './stringify';
export { attachDecimals, cloneJson, decimalsOf, restoreDecimals, sameDecimals, setText, textOf, type DecimalText } from './decimals';
