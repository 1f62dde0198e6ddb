import type { Db } from 'mongodb';
import { AUTH_COLLECTIONS, UserRows, type UserDoc } from '../storage/state/auth';
import { hashSecret, isSecretHash, verifySecret } from './secrets';
import { readRegistrationFile } from './registration-file';

/**
 * People who sign in at the authorization endpoint (SMART App Launch), stored in MongoDB
 * (collection `auth_users`) so every instance sees the same accounts. Passwords only as scrypt
 * hashes; neither passwords nor hashes are ever logged.
 */
export type { UserDoc } from '../storage/state/auth';

/** One entry of SMART_USERS_FILE, or what `admin users add` receives. */
export interface UserRegistration {
  username: string;
  fhirUser: string;
  name?: string;
  /** A hash printed by `admin secret-hash`; files should hold this, never a password. */
  password_hash?: string;
  /** A plain password (hashed before storing). Only for the admin command and local experiments. */
  password?: string;
  disabled?: boolean;
}

export const USERS_COLLECTION = AUTH_COLLECTIONS.users;
const USERNAME_RE = /^[A-Za-z0-9._@+-]{1,128}$/;
const FHIR_USER_RE = /^(Patient|Practitioner)\/[A-Za-z0-9\-.]{1,64}$/;
export const MIN_PASSWORD_LENGTH = 10;

/** The kind and id of a fhirUser reference. */
export function fhirUserParts(fhirUser: string): { type: 'Patient' | 'Practitioner'; id: string } {
  const [type, id] = fhirUser.split('/');
  return { type: type as 'Patient' | 'Practitioner', id };
}

export function validateUser(input: unknown, where: string): UserRegistration {
  const fail = (msg: string): never => {
    throw new Error(`${where}: ${msg}`);
  };
  if (!input || typeof input !== 'object' || Array.isArray(input)) fail('a user must be a JSON object');
  const r = input as Record<string, unknown>;
  const known = ['username', 'fhirUser', 'name', 'password_hash', 'password', 'disabled'];
  for (const k of Object.keys(r)) if (!known.includes(k)) fail(`unknown field "${k}" (known: ${known.join(', ')})`);
  if (typeof r.username !== 'string' || !USERNAME_RE.test(r.username)) fail('username must be 1-128 letters, digits or ._@+-');
  if (typeof r.fhirUser !== 'string' || !FHIR_USER_RE.test(r.fhirUser)) fail('fhirUser must be Patient/<id> or Practitioner/<id>');
  if (r.name !== undefined && (typeof r.name !== 'string' || r.name.length > 200)) fail('name must be a short string');
  const creds = ['password_hash', 'password'].filter((k) => r[k] !== undefined);
  if (creds.length !== 1) fail('exactly one of password_hash, password is required');
  if (r.password_hash !== undefined && (typeof r.password_hash !== 'string' || !isSecretHash(r.password_hash))) {
    fail('password_hash must be a hash printed by `admin secret-hash`');
  }
  if (r.password !== undefined && (typeof r.password !== 'string' || r.password.length < MIN_PASSWORD_LENGTH)) {
    fail(`password must have at least ${MIN_PASSWORD_LENGTH} characters`);
  }
  if (r.disabled !== undefined && typeof r.disabled !== 'boolean') fail('disabled must be true or false');
  return r as unknown as UserRegistration;
}

/** Reads and validates SMART_USERS_FILE. */
export function readUsersFile(file: string): UserRegistration[] {
  return readRegistrationFile(file, 'SMART_USERS_FILE', validateUser, { name: 'username', of: (r) => r.username });
}

export class UserStore {
  private readonly rows: UserRows;

  constructor(db: Db) {
    this.rows = new UserRows(db);
  }

  ensureIndexes(): Promise<void> {
    return this.rows.ensureIndexes();
  }

  async get(username: string): Promise<UserDoc | undefined> {
    if (!USERNAME_RE.test(username)) return undefined;
    return this.rows.get(username);
  }

  list(): Promise<UserDoc[]> {
    return this.rows.list();
  }

  /**
   * The user whose password this is, or undefined. One scrypt is always paid, so the response
   * time does not reveal which usernames exist. Disabled users are refused like wrong passwords.
   */
  async verify(username: string, password: string): Promise<UserDoc | undefined> {
    const user = await this.get(username);
    const ok = await verifySecret(password, user?.passwordHash);
    return user && ok && !user.disabled ? user : undefined;
  }

  async add(reg: UserRegistration, now: Date): Promise<UserDoc> {
    const doc: UserDoc = {
      _id: reg.username,
      fhirUser: reg.fhirUser,
      passwordHash: reg.password_hash ?? (await hashSecret(reg.password as string)),
      ...(reg.name ? { name: reg.name } : {}),
      disabled: reg.disabled ?? false,
      source: 'admin',
      createdAt: now,
      updatedAt: now,
    };
    if (!(await this.rows.insert(doc))) throw new Error(`user ${reg.username} already exists`);
    return doc;
  }

  /** Like clients: the file is the source of truth for its users; a disable by the admin command sticks. */
  async loadFileUsers(regs: UserRegistration[], now: Date): Promise<void> {
    for (const reg of regs) {
      const set: Partial<UserDoc> = {
        fhirUser: reg.fhirUser,
        passwordHash: reg.password_hash ?? (await hashSecret(reg.password as string)),
        source: 'file',
        updatedAt: now,
        ...(reg.name ? { name: reg.name } : {}),
      };
      if (reg.disabled !== undefined) set.disabled = reg.disabled;
      await this.rows.saveFromFile(reg.username, { set, onInsert: reg.disabled === undefined ? { createdAt: now, disabled: false } : { createdAt: now } });
    }
  }

  setDisabled(username: string, disabled: boolean, now: Date): Promise<boolean> {
    return this.rows.change(username, { disabled, updatedAt: now });
  }

  async setPassword(username: string, password: string, now: Date): Promise<boolean> {
    return this.rows.change(username, { passwordHash: await hashSecret(password), updatedAt: now });
  }

  disabledIds(): Promise<Set<string>> {
    return this.rows.disabledIds();
  }
}
