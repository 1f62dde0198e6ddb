/**
 * The National Early Warning Score 2 (Royal College of Physicians, 2017): the scoring chart and
 * the clinical response bands, as pure functions. Thresholds are the chart's; a value between two
 * printed rows (e.g. a respiration rate of 11.5) scores with the row below the next threshold.
 */

export type News2Param = 'respiratoryRate' | 'spo2' | 'airOrOxygen' | 'systolic' | 'pulse' | 'consciousness' | 'temperature';

export const NEWS2_PARAMS: readonly News2Param[] = ['respiratoryRate', 'spo2', 'airOrOxygen', 'systolic', 'pulse', 'consciousness', 'temperature'];

export interface News2Inputs {
  respiratoryRate?: number;
  /** Oxygen saturation, %. */
  spo2?: number;
  /** True on supplemental oxygen, false on air. */
  onOxygen?: boolean;
  /** Systolic blood pressure, mmHg. */
  systolic?: number;
  /** Pulse, /min. */
  pulse?: number;
  /** ACVPU: 'A' (alert) scores 0; new confusion, voice, pain or unresponsive ('CVPU') score 3. */
  consciousness?: 'A' | 'CVPU';
  /** Temperature, degrees Celsius. */
  temperature?: number;
}

/** 0-4 without a 3: low; any single parameter 3 (total <= 4): low-medium; 5-6: medium; 7+: high. */
export type News2Band = 'low' | 'low-medium' | 'medium' | 'high';

export interface News2Result {
  complete: boolean;
  missing: News2Param[];
  scores: Partial<Record<News2Param, number>>;
  /** Sum of the sub-scores (present only when complete). */
  total?: number;
  band?: News2Band;
  /** Which SpO2 scale was used. */
  scale: 1 | 2;
}

/** Scores by ascending upper bounds: the first row whose bound the value does not exceed. */
function byRows(v: number, rows: ReadonlyArray<readonly [number, number]>, above: number): number {
  for (const [upTo, score] of rows) if (v <= upTo) return score;
  return above;
}

export const scoreRespiratoryRate = (v: number): number => byRows(v, [[8, 3], [11, 1], [20, 0], [24, 2]], 3);
export const scoreSpo2Scale1 = (v: number): number => byRows(v, [[91, 3], [93, 2], [95, 1]], 0);

/**
 * Scale 2 (hypercapnic respiratory failure, target 88-92%): below 88 as on the chart; 88-92, and
 * 93 or more on air, score 0; on oxygen 93-94 scores 1, 95-96 scores 2, 97 or more scores 3.
 */
export function scoreSpo2Scale2(v: number, onOxygen: boolean): number {
  if (v <= 83) return 3;
  if (v <= 85) return 2;
  if (v <= 87) return 1;
  if (v <= 92 || !onOxygen) return 0;
  return byRows(v, [[94, 1], [96, 2]], 3);
}

export const scoreAirOrOxygen = (onOxygen: boolean): number => (onOxygen ? 2 : 0);
export const scoreSystolic = (v: number): number => byRows(v, [[90, 3], [100, 2], [110, 1], [219, 0]], 3);
export const scorePulse = (v: number): number => byRows(v, [[40, 3], [50, 1], [90, 0], [110, 1], [130, 2]], 3);
export const scoreConsciousness = (c: 'A' | 'CVPU'): number => (c === 'A' ? 0 : 3);
export const scoreTemperature = (v: number): number => byRows(v, [[35.0, 3], [36.0, 1], [38.0, 0], [39.0, 1]], 2);

export function bandOf(total: number, scores: readonly number[]): News2Band {
  if (total >= 7) return 'high';
  if (total >= 5) return 'medium';
  return scores.some((s) => s >= 3) ? 'low-medium' : 'low';
}

/** Severity rank of a band for alert episodes: low 0 (nothing to alert), then up to high 3. */
export const BAND_RANK: Readonly<Record<News2Band, number>> = { low: 0, 'low-medium': 1, medium: 2, high: 3 };

export function news2(inputs: News2Inputs, scale: 1 | 2 = 1): News2Result {
  const scores: Partial<Record<News2Param, number>> = {};
  const i = inputs;
  if (i.respiratoryRate !== undefined) scores.respiratoryRate = scoreRespiratoryRate(i.respiratoryRate);
  if (i.spo2 !== undefined) {
    if (scale === 1) scores.spo2 = scoreSpo2Scale1(i.spo2);
    else if (i.onOxygen !== undefined) scores.spo2 = scoreSpo2Scale2(i.spo2, i.onOxygen);
  }
  if (i.onOxygen !== undefined) scores.airOrOxygen = scoreAirOrOxygen(i.onOxygen);
  if (i.systolic !== undefined) scores.systolic = scoreSystolic(i.systolic);
  if (i.pulse !== undefined) scores.pulse = scorePulse(i.pulse);
  if (i.consciousness !== undefined) scores.consciousness = scoreConsciousness(i.consciousness);
  if (i.temperature !== undefined) scores.temperature = scoreTemperature(i.temperature);
  const missing = NEWS2_PARAMS.filter((p) => scores[p] === undefined);
  if (missing.length > 0) return { complete: false, missing, scores, scale };
  const values = Object.values(scores);
  const total = values.reduce((a, b) => a + b, 0);
  return { complete: true, missing, scores, total, band: bandOf(total, values), scale };
}
