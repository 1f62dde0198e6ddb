import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * A strict R4 judge the project does not write: HAPI FHIR's strict JSON parser and instance
 * validator against the R4 core definitions, offline (tools/r4-validator, built by .ci/run or on
 * first use here). Bodies are collected into a directory and judged in ONE JVM run (its start-up
 * and the loading of the core definitions take most of the time).
 */
export interface JudgeIssue {
  severity: 'fatal' | 'error' | 'warning' | 'information';
  location: string;
  messageId: string;
  message: string;
}

const TOOL = path.resolve(__dirname, '..', '..', 'tools', 'r4-validator');
const JAR = path.join(TOOL, 'target', 'r4-validator.jar');

/**
 * Issues the judge raises only because it runs offline with R4 core alone, never because a body
 * breaks R4. Each is named with the reason; everything else of severity error or fatal counts.
 */
export const OFFLINE_ONLY: Array<{ why: string; test: (i: JudgeIssue) => boolean }> = [
  {
    // The Backport IG represents an R4 topic as Basic with R5/R4B cross-version extensions
    // (http://hl7.org/fhir/5.0/... and /4.3/...); their definitions live in the xver packages,
    // which an R4-core judge does not have, so it calls the version part of those URLs invalid.
    why: 'cross-version SubscriptionTopic extensions on Basic (Backport IG) are defined in the xver packages, not in R4 core',
    test: (i) =>
      i.messageId === 'Extension_EXT_Version_Invalid' && /http:\/\/hl7\.org\/fhir\/(5\.0|4\.3)\/StructureDefinition\/extension-SubscriptionTopic\./.test(i.message),
  },
  {
    // The Backport IG package is not loaded: its profiles (Subscription.meta.profile, supportedProfile) are unknown to the judge.
    why: 'profiles of the Subscriptions Backport IG are not loaded (R4 core only)',
    test: (i) => /subscriptions-backport/.test(i.message) && /profile/i.test(`${i.messageId} ${i.message}`),
  },
];

function ensureBuilt(): void {
  if (existsSync(JAR) && existsSync(path.join(TOOL, 'target', 'lib'))) return;
  // .ci/run builds it before the tests; a developer's first run builds it here (needs Maven Central once).
  execFileSync('mvn', ['-B', '-q', 'package', '-DskipTests'], { cwd: TOOL, stdio: 'inherit', timeout: 600_000 });
}

export class R4Judge {
  private readonly dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-r4-judge-'));
  private n = 0;
  /** File name -> label given when the body was added. */
  private readonly labels = new Map<string, string>();

  /** Adds one body (the exact text the server sent, or a parsed value) under a label. */
  add(label: string, body: unknown): void {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const file = `${String(++this.n).padStart(4, '0')}-${label.replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 80)}.json`;
    writeFileSync(path.join(this.dir, file), text);
    this.labels.set(file, label);
  }

  /** Runs the judge once over everything added: label -> every issue it raised. */
  async judge(): Promise<Map<string, JudgeIssue[]>> {
    ensureBuilt();
    const out = await new Promise<string>((resolve, reject) => {
      execFile(
        'java',
        ['-Xss4m', '-cp', `${JAR}${path.delimiter}${path.join(TOOL, 'target', 'lib', '*')}`, 'vigil.r4validator.Main', this.dir],
        { maxBuffer: 256 * 1024 * 1024, timeout: 540_000 },
        (err, stdout, stderr) => (err ? reject(new Error(`r4-validator failed: ${err.message}\n${stderr}`)) : resolve(stdout)),
      );
    });
    const result = new Map<string, JudgeIssue[]>();
    for (const line of out.split('\n').filter(Boolean)) {
      const r = JSON.parse(line) as { file: string; issues: JudgeIssue[] };
      result.set(this.labels.get(r.file) ?? r.file, r.issues);
    }
    if (result.size !== this.labels.size) throw new Error(`r4-validator judged ${result.size} of ${this.labels.size} bodies`);
    return result;
  }

  /** Removes the collected bodies (kept when VIGIL_JUDGE_KEEP is set, to look at them). */
  close(): void {
    if (process.env.VIGIL_JUDGE_KEEP) return;
    rmSync(this.dir, { recursive: true, force: true });
  }

  get directory(): string {
    return this.dir;
  }
}

/** The issues that make a body invalid R4: errors and fatals, less the offline-only ones. */
export function errorsOf(issues: JudgeIssue[]): string[] {
  return issues
    .filter((i) => i.severity === 'error' || i.severity === 'fatal')
    .filter((i) => !OFFLINE_ONLY.some((o) => o.test(i)))
    .map((i) => `${i.location}: ${i.message} [${i.messageId}]`);
}
