import type { Encoder, ParamType, SearchParam } from '../types';
import { compositeEncoder } from './composite';
import { dateEncoder } from './date';
import { numberEncoder } from './number';
import { quantityEncoder } from './quantity';
import { referenceEncoder } from './reference';
import { stringEncoder } from './string';
import { tokenEncoder } from './token';
import { uriEncoder } from './uri';

const BY_TYPE: Partial<Record<ParamType, Encoder>> = {
  token: tokenEncoder,
  string: stringEncoder,
  date: dateEncoder,
  number: numberEncoder,
  quantity: quantityEncoder,
  reference: referenceEncoder,
  uri: uriEncoder,
};

/** The encoder of a parameter type; `special` has none (no searchable expression in R4 for our types). */
export function encoderFor(p: SearchParam): Encoder | undefined {
  if (p.type === 'composite') return composite;
  return BY_TYPE[p.type];
}

const composite: Encoder = compositeEncoder((p) => {
  const e = BY_TYPE[p.type];
  if (!e) throw new Error(`composite component of type ${p.type} is not supported`);
  return e;
});
