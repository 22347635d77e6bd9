/**
 * Auth tokens, as `--auth-token` chooses them (etcd's token providers):
 *
 * - `simple` (the default): `<16 random letters>.<raft index>`. The proposing member draws the
 *   letters; every member registers the token for the user when it applies the Authenticate
 *   entry at that index, so any member accepts it once it has applied that far. Tokens live in
 *   memory only, for `--auth-token-ttl` seconds after their last use (a sliding TTL), and die with
 *   a user's deletion or password change, with `auth disable`, and with a restart.
 * - `jwt,pub-key=<file>,priv-key=<file>,sign-method=<alg>[,ttl=<duration>]`: a signed JWT with
 *   the claims `username`, `revision` (the auth revision at issue) and `exp` (default ttl 5m).
 *   RS*, PS* and ES* take PEM keys (PKCS#1, PKCS#8 or SEC1 private keys; SPKI or PKCS#1 public
 *   keys; a public key alone verifies only), HS* the private key file's bytes as its secret.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import type * as Jose from "jose";
import type { Clock, TimerHandle } from "../../pkg/clock.js";
import type { Logger } from "../../pkg/logger.js";
import type { AuthInfo } from "./auth-store.js";

/** What an Authenticate entry gives the provider when it is applied. */
export interface AssignContext {
  /** The entry's raft index. */
  index: number;
  /** The proposer's simple-token prefix ("" from a member using JWT). */
  simpleTokenPrefix: string;
}

export interface TokenProvider {
  /** Auth turned on (the simple provider starts its TTL sweep). */
  enable(): void;
  /** Auth turned off: every simple token is dropped. */
  disable(): void;
  /** What the proposer puts in an Authenticate entry ("" for JWT). */
  genTokenPrefix(): string;
  /** A token for `username` at auth revision `revision`. @throws TokenError (a verify-only JWT key) */
  assign(username: string, revision: number, ctx: AssignContext): Promise<string>;
  /**
   * Who a token stands for, or undefined when it is not valid. `currentRevision` is what simple
   * tokens carry (they follow the store); a JWT carries its own.
   */
  info(token: string, currentRevision: number): Promise<AuthInfo | undefined>;
  invalidateUser(username: string): void;
  /** Stops timers. */
  stop(): void;
}

/** A bad `--auth-token` option string or key file, with etcd's text. */
export class TokenOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TokenOptionsError";
  }
}

export interface TokenProviderDeps {
  clock: Clock;
  logger: Logger;
  /** Resolves once the member has applied `index` (false: gave up, e.g. the member stopped). */
  waitApplied(index: number): Promise<boolean>;
}

const LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const SIMPLE_TOKEN_LENGTH = 16;
const SIMPLE_TOKEN_SWEEP_MS = 1000;
/** Simple tokens held at most: past it the oldest is dropped (bounds memory under a login storm). */
const SIMPLE_TOKENS_MAX = 1 << 20;

class SimpleTokens implements TokenProvider {
  private tokens = new Map<string, { username: string; expiresMs: number }>();
  private sweep: TimerHandle | undefined;
  private on = false;

  constructor(private readonly ttlMs: number, private readonly deps: TokenProviderDeps) {}

  enable(): void {
    if (this.on) return;
    this.on = true;
    this.sweep = this.deps.clock.setInterval(() => {
      const now = this.deps.clock.nowMs();
      for (const [t, v] of this.tokens) if (now > v.expiresMs) this.tokens.delete(t);
    }, SIMPLE_TOKEN_SWEEP_MS);
  }

  disable(): void {
    this.on = false;
    this.tokens = new Map();
    if (this.sweep !== undefined) this.deps.clock.clearInterval(this.sweep);
    this.sweep = undefined;
  }

  stop(): void {
    this.disable();
  }

  genTokenPrefix(): string {
    let s = "";
    for (let i = 0; i < SIMPLE_TOKEN_LENGTH; i++) s += LETTERS[crypto.randomInt(LETTERS.length)];
    return s;
  }

  assign(username: string, _revision: number, ctx: AssignContext): Promise<string> {
    const token = `${ctx.simpleTokenPrefix}.${ctx.index}`;
    if (this.on) {
      if (this.tokens.has(token)) this.deps.logger.warn("failed to assign already-used simple token to a user", { "user-name": username, token });
      if (this.tokens.size >= SIMPLE_TOKENS_MAX) this.tokens.delete(this.tokens.keys().next().value!);
      this.tokens.set(token, { username, expiresMs: this.deps.clock.nowMs() + this.ttlMs });
    }
    return Promise.resolve(token);
  }

  async info(token: string, currentRevision: number): Promise<AuthInfo | undefined> {
    const parts = token.split(".");
    if (parts.length !== 2 || !/^-?\d+$/.test(parts[1]!)) return undefined;
    // The token exists here once this member has applied its Authenticate entry.
    if (!(await this.deps.waitApplied(Number(parts[1])))) return undefined;
    const t = this.tokens.get(token);
    if (t === undefined) return undefined;
    t.expiresMs = this.deps.clock.nowMs() + this.ttlMs;
    return { username: t.username, revision: currentRevision };
  }

  invalidateUser(username: string): void {
    for (const [t, v] of this.tokens) if (v.username === username) this.tokens.delete(t);
  }
}

type JwtKey = crypto.KeyObject | Uint8Array;

/** jose, loaded at the first JWT signed or checked: a member with simple tokens never pays for it. */
let jose: Promise<typeof Jose> | undefined;
function loadJose(): Promise<typeof Jose> {
  return (jose ??= import("jose"));
}

class JwtTokens implements TokenProvider {
  constructor(
    private readonly alg: string,
    private readonly signKey: JwtKey | undefined,
    private readonly verifyKey: JwtKey,
    private readonly ttlMs: number,
    private readonly deps: TokenProviderDeps,
  ) {}

  enable(): void {}
  disable(): void {}
  stop(): void {}
  invalidateUser(): void {}
  genTokenPrefix(): string {
    return "";
  }

  async assign(username: string, revision: number): Promise<string> {
    if (this.signKey === undefined) throw new TokenOptionsError("auth: token signing attempted with verify-only key");
    const exp = Math.floor((this.deps.clock.nowMs() + this.ttlMs) / 1000);
    const { SignJWT } = await loadJose();
    return new SignJWT({ revision, username }).setProtectedHeader({ alg: this.alg, typ: "JWT" }).setExpirationTime(exp).sign(this.signKey);
  }

  async info(token: string): Promise<AuthInfo | undefined> {
    const { jwtVerify } = await loadJose();
    try {
      const { payload } = await jwtVerify(token, this.verifyKey, { algorithms: [this.alg], currentDate: new Date(this.deps.clock.nowMs()) });
      if (typeof payload.username !== "string" || typeof payload.revision !== "number") return undefined;
      return { username: payload.username, revision: payload.revision };
    } catch (err) {
      this.deps.logger.warn("failed to parse a JWT token", { error: String(err) });
      return undefined;
    }
  }
}

/** The no-op provider of `--auth-token ""`: no token is ever valid. */
class NoTokens implements TokenProvider {
  enable(): void {}
  disable(): void {}
  stop(): void {}
  invalidateUser(): void {}
  genTokenPrefix(): string {
    return "";
  }
  assign(): Promise<string> {
    return Promise.reject(new TokenOptionsError("auth: invalid auth options"));
  }
  info(): Promise<AuthInfo | undefined> {
    return Promise.resolve(undefined);
  }
}

const JWT_METHODS = new Set(["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]);

/** Go's time.ParseDuration for the forms a ttl takes ("5m", "1h30m", "300s", "1.5h", "100ms"). */
export function parseGoDurationMs(s: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (s === "0") return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * units[m[2]!]!;
    pos = re.lastIndex;
  }
  if (pos !== s.length || s.length === 0) throw new TokenOptionsError(`time: invalid duration "${s}"`);
  return total;
}

/**
 * The provider `--auth-token` names.
 * @param ttlSeconds --auth-token-ttl (simple tokens)
 * @throws TokenOptionsError "auth: invalid auth options", "auth: invalid auth signature method",
 *   "auth: missing key data", or a key file's read or parse error
 */
export function tokenProvider(option: string, ttlSeconds: number, deps: TokenProviderDeps): TokenProvider {
  const [type, ...rest] = option.split(",");
  const opts = new Map<string, string>();
  for (const kv of rest) {
    const pair = kv.split("=");
    if (pair.length !== 2 || opts.has(pair[0]!)) throw new TokenOptionsError("auth: invalid auth options");
    opts.set(pair[0]!, pair[1]!);
  }
  switch (type) {
    case "simple":
      deps.logger.warn("simple token is not cryptographically signed");
      return new SimpleTokens((ttlSeconds > 0 ? ttlSeconds : 300) * 1000, deps);
    case "jwt":
      return jwtProvider(opts, deps);
    case "":
      return new NoTokens();
    default:
      deps.logger.warn("unknown token type", { type });
      throw new TokenOptionsError("auth: invalid auth options");
  }
}

function jwtProvider(opts: Map<string, string>, deps: TokenProviderDeps): TokenProvider {
  const ttl = opts.get("ttl");
  const ttlMs = ttl === undefined || ttl === "" ? 5 * 60_000 : parseGoDurationMs(ttl);
  const alg = opts.get("sign-method") ?? "";
  if (!JWT_METHODS.has(alg)) throw new TokenOptionsError("auth: invalid auth signature method");
  const read = (name: string): Buffer | undefined => {
    const file = opts.get(name);
    return file === undefined || file === "" ? undefined : fs.readFileSync(file);
  };
  const pub = read("pub-key");
  const priv = read("priv-key");
  if (alg.startsWith("HS")) {
    if (priv === undefined || priv.length === 0) throw new TokenOptionsError("auth: missing key data");
    return new JwtTokens(alg, priv, priv, ttlMs, deps);
  }
  const privKey = priv === undefined ? undefined : crypto.createPrivateKey(priv);
  const pubKey = pub === undefined ? undefined : crypto.createPublicKey(pub);
  const verifyKey = privKey !== undefined ? crypto.createPublicKey(privKey) : pubKey;
  if (verifyKey === undefined) throw new TokenOptionsError("auth: missing key data");
  const kind = alg.startsWith("ES") ? "ec" : "rsa";
  if (verifyKey.asymmetricKeyType !== kind && !(kind === "rsa" && verifyKey.asymmetricKeyType === "rsa-pss")) {
    throw new TokenOptionsError(`auth: the key does not suit ${alg}`);
  }
  if (privKey !== undefined && pubKey !== undefined && !pubKey.equals(verifyKey)) throw new TokenOptionsError("auth: public and private keys don't match");
  return new JwtTokens(alg, privKey, verifyKey, ttlMs, deps);
}

/** A provider that accepts no token (a member without `--auth-token`, and tests). */
export function noTokenProvider(): TokenProvider {
  return new NoTokens();
}
