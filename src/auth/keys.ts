import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { Db } from 'mongodb';
import { AUTH_COLLECTIONS, KeyRows, type SigningKeyDoc } from '../storage/state/auth';
import type { Jwks } from './jwks';

/**
 * The authorization server's signing keys live in MongoDB (collection `auth_keys`), not in files:
 * every server instance must sign and verify with the same keys, and the database is the one
 * thing they all share. Whoever can read that database can read every patient's data already,
 * so the keys add no new trust boundary; they are never in the repository and never logged.
 */
export type { SigningKeyDoc } from '../storage/state/auth';

export interface SigningKey {
  kid: string;
  alg: 'RS384';
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicJwk: JsonWebKey;
  createdAt: Date;
}

export const KEYS_COLLECTION = AUTH_COLLECTIONS.keys;
/** The kid of the key a fresh database gets: instances starting together all try it, one insert wins. */
export const FIRST_KID = 'initial';

export function newSigningKeyDoc(now: Date, kid = `${now.toISOString().slice(0, 10)}-${randomUUID().slice(0, 8)}`): SigningKeyDoc {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    _id: kid,
    alg: 'RS384',
    privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS384', use: 'sig' },
    createdAt: now,
  };
}

function toKey(d: SigningKeyDoc): SigningKey {
  const privateKey = createPrivateKey(d.privatePem);
  return {
    kid: d._id,
    alg: d.alg,
    privateKey,
    publicKey: createPublicKey(privateKey),
    publicJwk: d.publicJwk,
    createdAt: d.createdAt,
  };
}

/**
 * The key ring: the newest key signs, every key still present verifies. Rotation = add a key
 * (`admin keys rotate`); instances pick it up on their next reload. Removing a key ends the
 * tokens it signed (at most one token lifetime after rotation is the safe moment).
 */
export class KeyRing {
  private keys: SigningKey[] = [];
  private loadedAt = 0;
  private lastMissReload = 0;
  private readonly rows: KeyRows;

  constructor(
    db: Db,
    private readonly now: () => Date,
    private readonly reloadMs = 60_000,
  ) {
    this.rows = new KeyRows(db);
  }

  /**
   * Loads the keys, generating the first one when the database has none. Its kid is fixed, so of
   * instances starting together on a fresh database one insert wins and all use that key.
   */
  async init(): Promise<void> {
    await this.reload();
    if (this.keys.length === 0) {
      await this.rows.insert(newSigningKeyDoc(this.now(), FIRST_KID));
      await this.reload();
    }
  }

  async reload(): Promise<void> {
    const docs = await this.rows.all();
    this.keys = docs.map(toKey);
    this.loadedAt = this.now().getTime();
  }

  private async maybeReload(): Promise<void> {
    if (this.now().getTime() - this.loadedAt > this.reloadMs) await this.reload();
  }

  async signingKey(): Promise<SigningKey> {
    await this.maybeReload();
    const key = this.keys[0];
    if (!key) throw new Error('no signing key (was auth_keys emptied?)');
    return key;
  }

  /** The verification key for a kid; an unknown kid triggers one reload at most every 5 s. */
  async verificationKey(kid: string): Promise<SigningKey | undefined> {
    await this.maybeReload();
    let key = this.keys.find((k) => k.kid === kid);
    const t = this.now().getTime();
    if (!key && t - this.lastMissReload > 5000) {
      this.lastMissReload = t;
      await this.reload();
      key = this.keys.find((k) => k.kid === kid);
    }
    return key;
  }

  async jwks(): Promise<Jwks> {
    await this.maybeReload();
    // Without `alg`: the same RSA key verifies our RS384 access tokens and RS256 id_tokens.
    return { keys: this.keys.map(({ publicJwk: { alg: _alg, ...jwk } }) => jwk) };
  }
}

/** Admin operations on the key ring. */
export async function rotateKey(db: Db, now = new Date()): Promise<string> {
  const doc = newSigningKeyDoc(now);
  if (!(await new KeyRows(db).insert(doc))) throw new Error(`signing key ${doc._id} exists already`);
  return doc._id;
}

export async function listKeys(db: Db): Promise<{ kid: string; alg: string; createdAt: Date }[]> {
  const docs = await new KeyRows(db).all();
  return docs.map((d) => ({ kid: d._id, alg: d.alg, createdAt: d.createdAt }));
}

export async function removeKey(db: Db, kid: string): Promise<boolean> {
  const rows = new KeyRows(db);
  if ((await rows.count()) <= 1) throw new Error('refusing to remove the only signing key; rotate first');
  return rows.remove(kid);
}
