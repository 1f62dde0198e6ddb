import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Db } from 'mongodb';
import { generateSecret } from './secrets';
import { MIN_PASSWORD_LENGTH, UserStore, validateUser } from './users';

export const USERS_USAGE = `  admin users add --username NAME --fhir-user Patient/ID|Practitioner/ID [--name "Display name"] (--password-stdin | --generate-password)
  admin users list [--json]
  admin users disable USERNAME     (sign-in refused; their tokens stop within 30 s, refresh at once)
  admin users enable USERNAME
  admin users reset-password USERNAME (--password-stdin | --generate-password)`;

export interface UsersIo {
  out: (line: string) => void;
  readStdin: () => Promise<string>;
  now: () => Date;
  usage: (message: string) => Error;
}

/** Passwords come from stdin or are generated and printed once: never from the command line (shell history). */
async function password(values: { 'password-stdin'?: boolean; 'generate-password'?: boolean }, io: UsersIo): Promise<{ value: string; generated: boolean }> {
  if (Boolean(values['password-stdin']) === Boolean(values['generate-password'])) {
    throw io.usage('give exactly one of --password-stdin, --generate-password');
  }
  if (values['generate-password']) return { value: generateSecret().slice(0, 20), generated: true };
  const value = (await io.readStdin()).replace(/\r?\n$/, '');
  if (value.length < MIN_PASSWORD_LENGTH) throw io.usage(`the password must have at least ${MIN_PASSWORD_LENGTH} characters`);
  return { value, generated: false };
}

/** `admin users ...`: people who sign in through SMART App Launch. */
export async function runUsersAdmin(action: string | undefined, rest: string[], db: Db, io: UsersIo): Promise<void> {
  const store = new UserStore(db);
  const opts = <T extends NonNullable<ParseArgsConfig['options']>>(o: T, positionals = false) => {
    try {
      return parseArgs({ args: rest, options: o, strict: true, allowPositionals: positionals });
    } catch (e) {
      throw io.usage((e as Error).message);
    }
  };
  const pwOptions = { 'password-stdin': { type: 'boolean' }, 'generate-password': { type: 'boolean' } } as const;
  switch (action) {
    case 'add': {
      const { values } = opts({ username: { type: 'string' }, 'fhir-user': { type: 'string' }, name: { type: 'string' }, ...pwOptions });
      const pw = await password(values, io);
      let reg;
      try {
        reg = validateUser(
          { username: values.username, fhirUser: values['fhir-user'], ...(values.name ? { name: values.name } : {}), password: pw.value },
          'users add',
        );
      } catch (e) {
        throw io.usage((e as Error).message.replace('fhirUser', '--fhir-user'));
      }
      await store.add(reg, io.now());
      io.out(`user ${reg.username} added (${reg.fhirUser})`);
      if (pw.generated) io.out(`password: ${pw.value}\n(shown once; only its hash is kept)`);
      return;
    }
    case 'list': {
      const { values } = opts({ json: { type: 'boolean' } });
      const view = (await store.list()).map((u) => ({ username: u._id, fhirUser: u.fhirUser, name: u.name, disabled: u.disabled, source: u.source }));
      if (values.json) io.out(JSON.stringify(view, null, 2));
      else if (view.length === 0) io.out('no users');
      else for (const u of view) io.out(`${u.username}\t${u.disabled ? 'DISABLED' : 'enabled'}\t${u.source}\t${u.fhirUser}\t${u.name ?? ''}`);
      return;
    }
    case 'disable':
    case 'enable': {
      const [username, ...more] = rest;
      if (!username || more.length) throw io.usage(`users ${action} needs exactly one username`);
      if (!(await store.setDisabled(username, action === 'disable', io.now()))) throw new Error(`no user ${username}`);
      io.out(`user ${username} ${action}d`);
      return;
    }
    case 'reset-password': {
      const { values, positionals } = opts(pwOptions, true);
      if (positionals.length !== 1) throw io.usage('users reset-password needs exactly one username');
      const pw = await password(values, io);
      if (!(await store.setPassword(positionals[0], pw.value, io.now()))) throw new Error(`no user ${positionals[0]}`);
      io.out(`password of ${positionals[0]} reset`);
      if (pw.generated) io.out(`password: ${pw.value}\n(shown once; only its hash is kept)`);
      return;
    }
  }
  throw io.usage('unknown users command');
}
