/**
 * Users, roles and their key permissions, and whether authentication is on (etcd's auth store),
 * kept in the backend in etcd 3.4's buckets and records so that snapshots, restarts and a real
 * etcd member all see the same state:
 *
 *   auth        authEnabled  = 0x01 (on) or 0x00 (off)
 *               authRevision = uint64 big-endian; bumped by every change of users or roles, and
 *                              by disabling (absent: 1, what etcd writes when it first opens)
 *   authUsers   <user name>  = authpb.User (bcrypt hash `$2a$…`, roles sorted, options)
 *   authRoles   <role name>  = authpb.Role (permissions sorted by key)
 *
 * Every change is applied from the log (etcd's InternalRaftRequest auth fields) into the entry's
 * write session, so it lands in one batch with the consistent index; this object keeps the
 * decoded view in memory, changed as the session is staged (the apply path is serial and a staged
 * session always commits or stops the member).
 */
import bcrypt from "bcryptjs";
import { Permission_Type, Role, User, type Permission } from "@etcd-ts/proto/authpb/auth";
import type {
  AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserChangePasswordRequest,
  AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import type { Logger } from "../../pkg/logger.js";
import { serverError } from "../errors.js";
import type { RecordBucket, WriteSession } from "../store-port.js";
import { RangePermissions } from "./range-permissions.js";
import type { TokenProvider } from "./token-provider.js";

export const ROOT_USER = "root";
export const ROOT_ROLE = "root";

const ENABLED_KEY = Buffer.from("authEnabled");
const REVISION_KEY = Buffer.from("authRevision");
const BCRYPT_COST_MIN = 4;
const BCRYPT_COST_MAX = 31;
export const BCRYPT_COST_DEFAULT = 10;

/** Who a request acts as: a user name and the auth revision its credentials were issued at. */
export interface AuthInfo {
  readonly username: string;
  /** 0: no credentials (only passes while auth is off). */
  readonly revision: number;
}

export const NO_AUTH_INFO: AuthInfo = Object.freeze({ username: "", revision: 0 });

export interface AuthStoreOptions {
  /** bcrypt cost for new passwords; outside [4, 31] etcd's default 10 is used (with a warning). */
  bcryptCost: number;
}

export interface AuthStoreDeps {
  tokens: TokenProvider;
  logger: Logger;
}

/** The auth records of a backend (what loadRecords returns for the three buckets). */
export interface AuthRecords {
  auth: [Buffer, Buffer][];
  authUsers: [Buffer, Buffer][];
  authRoles: [Buffer, Buffer][];
}

export class AuthStore {
  private enabledFlag = false;
  private rev = 1;
  private users = new Map<string, User>();
  private roles = new Map<string, Role>();
  private permCache = new Map<string, RangePermissions>();
  readonly bcryptCost: number;

  constructor(options: AuthStoreOptions, private readonly deps: AuthStoreDeps) {
    let cost = options.bcryptCost;
    if (!Number.isInteger(cost) || cost < BCRYPT_COST_MIN || cost > BCRYPT_COST_MAX) {
      deps.logger.warn("use default bcrypt cost instead of the invalid given cost", { "min-cost": BCRYPT_COST_MIN, "max-cost": BCRYPT_COST_MAX, "default-cost": BCRYPT_COST_DEFAULT, "given-cost": cost });
      cost = BCRYPT_COST_DEFAULT;
    }
    this.bcryptCost = cost;
  }

  get tokens(): TokenProvider {
    return this.deps.tokens;
  }

  /** Replaces the in-memory view with the backend's records (start-up, an installed snapshot). */
  load(records: AuthRecords): void {
    let enabled = false;
    let rev = 1;
    for (const [k, v] of records.auth) {
      if (k.equals(ENABLED_KEY)) enabled = v.length === 1 && v[0] === 1;
      else if (k.equals(REVISION_KEY) && v.length === 8) rev = Number(v.readBigUInt64BE(0));
    }
    this.users = new Map(records.authUsers.map(([k, v]) => [k.toString("utf8"), User.decode(v)]));
    this.roles = new Map(records.authRoles.map(([k, v]) => [k.toString("utf8"), Role.decode(v)]));
    this.permCache.clear();
    this.rev = rev;
    const was = this.enabledFlag;
    this.enabledFlag = enabled;
    if (enabled && !was) this.deps.tokens.enable();
    if (!enabled && was) this.deps.tokens.disable();
  }

  /** Reads the three buckets through `loadRecords` and loads them. */
  async loadFrom(store: { loadRecords(bucket: RecordBucket): Promise<[Buffer, Buffer][]> }): Promise<void> {
    this.load({ auth: await store.loadRecords("auth"), authUsers: await store.loadRecords("authUsers"), authRoles: await store.loadRecords("authRoles") });
  }

  get enabled(): boolean {
    return this.enabledFlag;
  }

  /** The auth revision: credentials issued before it are stale for permission checks. */
  get revision(): number {
    return this.rev;
  }

  // ---- reads ---------------------------------------------------------------------------------

  /** User names in key order (as etcd lists them from its bucket). */
  userNames(): string[] {
    return [...this.users.keys()].sort(byBytes);
  }

  roleNames(): string[] {
    return [...this.roles.keys()].sort(byBytes);
  }

  /** The roles of `name`. @throws ServerError UserNotFound */
  userRoles(name: string): string[] {
    const u = this.users.get(name);
    if (u === undefined) throw serverError("UserNotFound");
    return [...u.roles];
  }

  /** The permissions of `name`. @throws ServerError RoleNotFound */
  rolePermissions(name: string): Permission[] {
    const r = this.roles.get(name);
    if (r === undefined) throw serverError("RoleNotFound");
    return r.keyPermission.map((p) => ({ ...p }));
  }

  hasRole(user: string, role: string): boolean {
    return this.users.get(user)?.roles.includes(role) === true;
  }

  /**
   * Checks a password (etcd's CheckPassword) and returns the revision it was checked at.
   * @throws ServerError AuthNotEnabled, AuthFailed, NoPasswordUser
   */
  async checkPassword(name: string, password: string): Promise<number> {
    if (!this.enabledFlag) throw serverError("AuthNotEnabled");
    const u = this.users.get(name);
    if (u === undefined) throw serverError("AuthFailed");
    if (u.options?.noPassword === true) throw serverError("NoPasswordUser");
    const revision = this.rev;
    if (!(await bcrypt.compare(password, u.password.toString("latin1")))) {
      this.deps.logger.info("invalid password", { "user-name": name });
      throw serverError("AuthFailed");
    }
    return revision;
  }

  // ---- permission checks (etcd's isOpPermitted, IsAdminPermitted) ---------------------------

  /**
   * Whether `ai` may do `type` on [key, rangeEnd) (an empty or absent end: the one key).
   * @throws ServerError UserEmpty (no credentials), AuthOldRevision, PermissionDenied
   */
  checkPermitted(ai: AuthInfo, type: Permission_Type.READ | Permission_Type.WRITE, key: Buffer, rangeEnd?: Buffer): void {
    if (!this.enabledFlag) return;
    if (ai.revision === 0) throw serverError("UserEmpty");
    if (ai.revision < this.rev) {
      this.deps.logger.warn("request auth revision is less than current node auth revision", { "current node auth revision": this.rev, "request auth revision": ai.revision });
      throw serverError("AuthOldRevision");
    }
    const user = this.users.get(ai.username);
    if (user === undefined) throw serverError("PermissionDenied");
    if (user.roles.includes(ROOT_ROLE)) return;
    if (!this.permissionsOf(user).permits(type, key, rangeEnd)) throw serverError("PermissionDenied");
  }

  checkRange(ai: AuthInfo, key: Buffer, rangeEnd?: Buffer): void {
    this.checkPermitted(ai, Permission_Type.READ, key, rangeEnd);
  }

  checkWrite(ai: AuthInfo, key: Buffer, rangeEnd?: Buffer): void {
    this.checkPermitted(ai, Permission_Type.WRITE, key, rangeEnd);
  }

  /** @throws ServerError UserEmpty, UserNotFound, PermissionDenied (not root) */
  checkAdmin(ai: AuthInfo | undefined): void {
    if (!this.enabledFlag) return;
    if (ai === undefined || ai.username === "") throw serverError("UserEmpty");
    const u = this.users.get(ai.username);
    if (u === undefined) throw serverError("UserNotFound");
    if (!u.roles.includes(ROOT_ROLE)) throw serverError("PermissionDenied");
  }

  private permissionsOf(user: User): RangePermissions {
    const name = user.name.toString("utf8");
    let p = this.permCache.get(name);
    if (p === undefined) {
      const perms: Permission[] = [];
      for (const r of user.roles) perms.push(...(this.roles.get(r)?.keyPermission ?? []));
      p = new RangePermissions(perms);
      this.permCache.set(name, p);
    }
    return p;
  }

  // ---- changes, applied from the log --------------------------------------------------------

  /** @throws ServerError RootUserNotExist, RootRoleNotExist. Enabling twice is a no-op. */
  enable(w: WriteSession): void {
    if (this.enabledFlag) {
      this.deps.logger.info("authentication is already enabled; ignored auth enable request");
      return;
    }
    const root = this.users.get(ROOT_USER);
    if (root === undefined) throw serverError("RootUserNotExist");
    if (!root.roles.includes(ROOT_ROLE)) throw serverError("RootRoleNotExist");
    w.stage("auth", ENABLED_KEY, Buffer.from([1]));
    this.enabledFlag = true;
    this.deps.tokens.enable();
    this.deps.logger.info("enabled authentication");
  }

  disable(w: WriteSession): void {
    if (!this.enabledFlag) return;
    w.stage("auth", ENABLED_KEY, Buffer.from([0]));
    this.commitRevision(w);
    this.enabledFlag = false;
    this.deps.tokens.disable();
    this.deps.logger.info("disabled authentication");
  }

  /**
   * Issues a token for `name` (etcd's Authenticate at apply: the password was checked by the
   * member that proposed it). `index` is the entry's index, `simpleToken` the proposer's prefix.
   * @throws ServerError AuthNotEnabled, AuthFailed
   */
  async authenticate(name: string, simpleToken: string, index: number): Promise<string> {
    if (!this.enabledFlag) throw serverError("AuthNotEnabled");
    const u = this.users.get(name);
    if (u === undefined || u.options?.noPassword === true) throw serverError("AuthFailed");
    return this.deps.tokens.assign(name, this.rev, { index, simpleTokenPrefix: simpleToken });
  }

  /** @throws ServerError UserEmpty, UserAlreadyExist */
  async userAdd(w: WriteSession, r: AuthUserAddRequest): Promise<void> {
    if (r.name.length === 0) throw serverError("UserEmpty");
    const noPassword = r.options?.noPassword === true;
    let hash: Buffer = Buffer.alloc(0);
    // As etcd 3.4, the password is hashed here, at apply (each member salts its own hash);
    // `hashedPassword` (a 3.5 field) is ignored, as a 3.4 member ignores it.
    if (!noPassword) hash = await this.hash(r.password);
    if (this.users.has(r.name)) throw serverError("UserAlreadyExist");
    this.putUser(w, { name: Buffer.from(r.name), password: hash, roles: [], options: { noPassword: r.options?.noPassword ?? false } });
    this.commitRevision(w);
    this.deps.logger.info("added a user", { "user-name": r.name });
  }

  /** @throws ServerError InvalidAuthMgmt (root while enabled), UserNotFound */
  userDelete(w: WriteSession, name: string): void {
    if (this.enabledFlag && name === ROOT_USER) throw serverError("InvalidAuthMgmt");
    if (!this.users.has(name)) throw serverError("UserNotFound");
    this.users.delete(name);
    w.stage("authUsers", Buffer.from(name), undefined);
    this.commitRevision(w);
    this.deps.tokens.invalidateUser(name);
    this.deps.logger.info("deleted a user", { "user-name": name });
  }

  /** @throws ServerError UserNotFound */
  async userChangePassword(w: WriteSession, r: AuthUserChangePasswordRequest): Promise<void> {
    const hash = await this.hash(r.password);
    const u = this.users.get(r.name);
    if (u === undefined) throw serverError("UserNotFound");
    this.putUser(w, { ...u, password: hash });
    this.commitRevision(w);
    this.deps.tokens.invalidateUser(r.name);
    this.deps.logger.info("changed a password of a user", { "user-name": r.name });
  }

  /** @throws ServerError UserNotFound, RoleNotFound (any role but root must exist). Granting twice is a no-op. */
  userGrantRole(w: WriteSession, r: AuthUserGrantRoleRequest): void {
    const u = this.users.get(r.user);
    if (u === undefined) throw serverError("UserNotFound");
    if (r.role !== ROOT_ROLE && !this.roles.has(r.role)) throw serverError("RoleNotFound");
    if (u.roles.includes(r.role)) return;
    this.putUser(w, { ...u, roles: [...u.roles, r.role].sort(byBytes) });
    this.commitRevision(w);
    this.deps.logger.info("granted a role to a user", { "user-name": r.user, "added-role-name": r.role });
  }

  /** @throws ServerError InvalidAuthMgmt (root's root role while enabled), UserNotFound, RoleNotGranted */
  userRevokeRole(w: WriteSession, r: AuthUserRevokeRoleRequest): void {
    if (this.enabledFlag && r.name === ROOT_USER && r.role === ROOT_ROLE) throw serverError("InvalidAuthMgmt");
    const u = this.users.get(r.name);
    if (u === undefined) throw serverError("UserNotFound");
    const roles = u.roles.filter((x) => x !== r.role);
    if (roles.length === u.roles.length) throw serverError("RoleNotGranted");
    this.putUser(w, { ...u, roles });
    this.commitRevision(w);
    this.deps.logger.info("revoked a role from a user", { "user-name": r.name, "revoked-role-name": r.role });
  }

  /** @throws ServerError RoleEmpty, RoleAlreadyExist */
  roleAdd(w: WriteSession, name: string): void {
    if (name.length === 0) throw serverError("RoleEmpty");
    if (this.roles.has(name)) throw serverError("RoleAlreadyExist");
    this.putRole(w, { name: Buffer.from(name), keyPermission: [] });
    this.commitRevision(w);
    this.deps.logger.info("created a role", { "role-name": name });
  }

  /** Removes the role and takes it from every user. @throws ServerError InvalidAuthMgmt (root while enabled), RoleNotFound */
  roleDelete(w: WriteSession, name: string): void {
    if (this.enabledFlag && name === ROOT_ROLE) throw serverError("InvalidAuthMgmt");
    if (!this.roles.has(name)) throw serverError("RoleNotFound");
    this.roles.delete(name);
    w.stage("authRoles", Buffer.from(name), undefined);
    for (const u of [...this.users.values()]) {
      if (u.roles.includes(name)) this.putUser(w, { ...u, roles: u.roles.filter((x) => x !== name) });
    }
    this.commitRevision(w);
    this.deps.logger.info("deleted a role", { "role-name": name });
  }

  /** Adds the permission, or changes the type of one on the same range. @throws ServerError RoleNotFound */
  roleGrantPermission(w: WriteSession, r: AuthRoleGrantPermissionRequest): void {
    const role = this.roles.get(r.name);
    if (role === undefined) throw serverError("RoleNotFound");
    const perm = r.perm ?? { permType: Permission_Type.READ, key: Buffer.alloc(0), rangeEnd: Buffer.alloc(0) };
    const perms = role.keyPermission.map((p) => ({ ...p }));
    // As etcd: the first permission whose key is not below the new one's decides.
    const idx = perms.findIndex((p) => Buffer.compare(p.key, perm.key) >= 0);
    if (idx >= 0 && perms[idx]!.key.equals(perm.key) && perms[idx]!.rangeEnd.equals(perm.rangeEnd)) {
      perms[idx]!.permType = perm.permType;
    } else {
      perms.push({ permType: perm.permType, key: Buffer.from(perm.key), rangeEnd: Buffer.from(perm.rangeEnd) });
      stableSortByKey(perms);
    }
    this.putRole(w, { name: role.name, keyPermission: perms });
    this.commitRevision(w);
    this.deps.logger.info("granted/updated a permission to a user", { "user-name": r.name, "permission-name": Permission_Type[perm.permType] });
  }

  /** @throws ServerError RoleNotFound, PermissionNotGranted */
  roleRevokePermission(w: WriteSession, r: AuthRoleRevokePermissionRequest): void {
    const role = this.roles.get(r.role);
    if (role === undefined) throw serverError("RoleNotFound");
    const perms = role.keyPermission.filter((p) => !p.key.equals(r.key) || !p.rangeEnd.equals(r.rangeEnd));
    if (perms.length === role.keyPermission.length) throw serverError("PermissionNotGranted");
    this.putRole(w, { name: role.name, keyPermission: perms });
    this.commitRevision(w);
    this.deps.logger.info("revoked a permission on range", { "role-name": r.role, key: r.key.toString(), "range-end": r.rangeEnd.toString() });
  }

  private hash(password: string): Promise<Buffer> {
    // bcryptjs writes $2b$ hashes; etcd's Go bcrypt writes $2a$ (the same algorithm for every
    // password Go accepts), and compares either.
    return bcrypt.hash(password, this.bcryptCost).then((h) => Buffer.from("$2a$" + h.slice(4), "latin1"));
  }

  private putUser(w: WriteSession, u: User): void {
    this.users.set(u.name.toString("utf8"), u);
    w.stage("authUsers", u.name, Buffer.from(User.encode(u).finish()));
  }

  private putRole(w: WriteSession, r: Role): void {
    this.roles.set(r.name.toString("utf8"), r);
    w.stage("authRoles", r.name, Buffer.from(Role.encode(r).finish()));
  }

  private commitRevision(w: WriteSession): void {
    this.rev += 1;
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(this.rev));
    w.stage("auth", REVISION_KEY, b);
    this.permCache.clear();
  }
}

function byBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Sorts permissions by key (permissions on the same key keep their order). */
function stableSortByKey(perms: Permission[]): void {
  perms.sort((a, b) => Buffer.compare(a.key, b.key));
}
