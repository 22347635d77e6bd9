/**
 * The auth store's rules and records (etcd 3.4's auth package): merged range permissions with
 * etcd's affine keys, the root rules and their errors, the records staged into the entry's write
 * session (etcd's buckets and encodings), and a store reloaded from those records.
 */
import bcrypt from "bcryptjs";
import { describe, expect, it } from "vitest";
import { Permission_Type, Role, User, type Permission } from "@etcd-ts/proto/authpb/auth";
import { nullLogger } from "../../../src/pkg/logger.js";
import { AuthStore, type AuthInfo, type AuthRecords } from "../../../src/server/auth/auth-store.js";
import { RangePermissions } from "../../../src/server/auth/range-permissions.js";
import { noTokenProvider } from "../../../src/server/auth/token-provider.js";
import type { RecordBucket, WriteSession } from "../../../src/server/store-port.js";

const b = (s: string): Buffer => Buffer.from(s);
const perm = (permType: Permission_Type, key: string, rangeEnd = ""): Permission => ({ permType, key: b(key), rangeEnd: b(rangeEnd) });
const { READ, WRITE, READWRITE } = Permission_Type;

describe("range permissions", () => {
  const cases: Array<{ perms: Permission[]; key: string; end?: string; type?: Permission_Type.READ | Permission_Type.WRITE; want: boolean }> = [
    { perms: [perm(READ, "a", "b")], key: "a", want: true },
    { perms: [perm(READ, "a", "b")], key: "b", want: false },
    { perms: [perm(READ, "a", "b")], key: "a", end: "b", want: true },
    { perms: [perm(READ, "a", "b")], key: "a", end: "c", want: false },
    { perms: [perm(READ, "a", "b"), perm(READ, "b", "c")], key: "a", end: "c", want: true },
    { perms: [perm(READ, "a", "b"), perm(READ, "b0", "c")], key: "a", end: "c", want: false },
    { perms: [perm(READ, "b", "c"), perm(READ, "a", "b")], key: "a", end: "c", want: true },
    { perms: [perm(READ, "k")], key: "k", want: true },
    { perms: [perm(READ, "k")], key: "k", end: "k\x00", want: true },
    { perms: [perm(READ, "k")], key: "k", end: "l", want: false },
    { perms: [perm(READ, "k")], key: "k0", want: false },
    { perms: [perm(READ, "p/", "\x00")], key: "p/", end: "\x00", want: true },
    { perms: [perm(READ, "p/", "\x00")], key: "zzz", want: true },
    { perms: [perm(READ, "p/", "\x00")], key: "a", end: "\x00", want: false },
    { perms: [perm(WRITE, "a", "z")], key: "b", want: false },
    { perms: [perm(WRITE, "a", "z")], key: "b", type: WRITE, want: true },
    { perms: [perm(READWRITE, "a", "z")], key: "b", type: WRITE, want: true },
    { perms: [perm(READWRITE, "a", "z")], key: "b", end: "c", want: true },
    { perms: [], key: "a", want: false },
  ];
  it.each(cases)("%j", ({ perms, key, end, type, want }) => {
    expect(new RangePermissions(perms).permits(type ?? READ, b(key), end === undefined ? undefined : b(end))).toBe(want);
  });
});

/** A write session that records what is staged, per bucket. */
function session(): WriteSession & { records: Map<string, Buffer | undefined> } {
  const records = new Map<string, Buffer | undefined>();
  return {
    records,
    stage: (bucket: RecordBucket, key: Buffer, value: Buffer | undefined) => records.set(`${bucket}/${key.toString("latin1")}`, value),
  } as unknown as WriteSession & { records: Map<string, Buffer | undefined> };
}

function recordsOf(staged: Map<string, Buffer | undefined>): AuthRecords {
  const out: AuthRecords = { auth: [], authUsers: [], authRoles: [] };
  for (const [k, v] of staged) {
    if (v === undefined) continue;
    const [bucket, ...rest] = k.split("/");
    out[bucket as keyof AuthRecords].push([Buffer.from(rest.join("/"), "latin1"), v]);
  }
  return out;
}

function newStore(): AuthStore {
  return new AuthStore({ bcryptCost: 4 }, { tokens: noTokenProvider(), logger: nullLogger });
}

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
};

describe("auth store", () => {
  it("applies users and roles into etcd's records, and a reloaded store sees the same", async () => {
    const s = newStore();
    const w = session();
    expect(s.revision).toBe(1);
    await s.userAdd(w, { name: "root", password: "pw", options: undefined, hashedPassword: "" });
    await s.userAdd(w, { name: "u", password: "upw", options: undefined, hashedPassword: "" });
    s.roleAdd(w, "r");
    s.roleGrantPermission(w, { name: "r", perm: perm(READ, "k", "\x00") });
    s.roleGrantPermission(w, { name: "r", perm: perm(READWRITE, "a", "b") });
    s.roleGrantPermission(w, { name: "r", perm: perm(WRITE, "k", "\x00") }); // the same range: its type changes
    s.userGrantRole(w, { user: "u", role: "r" });
    s.userGrantRole(w, { user: "root", role: "root" });
    s.enable(w);
    expect(s.revision).toBe(9);
    expect(w.records.get("auth/authRevision")).toEqual(Buffer.from([0, 0, 0, 0, 0, 0, 0, 9]));
    expect(w.records.get("auth/authEnabled")).toEqual(Buffer.from([1]));
    const user = User.decode(w.records.get("authUsers/u")!);
    expect(user.password.toString().startsWith("$2a$04$")).toBe(true);
    expect(await bcrypt.compare("upw", user.password.toString())).toBe(true);
    expect(user.roles).toEqual(["r"]);
    expect(Role.decode(w.records.get("authRoles/r")!).keyPermission.map((p) => [p.permType, p.key.toString()])).toEqual([[READWRITE, "a"], [WRITE, "k"]]);

    const t = newStore();
    t.load(recordsOf(w.records));
    expect(t.enabled).toBe(true);
    expect(t.revision).toBe(9);
    expect(t.userNames()).toEqual(["root", "u"]);
    expect(t.rolePermissions("r")).toEqual(s.rolePermissions("r"));
    expect(await t.checkPassword("u", "upw")).toBe(9);
    await expect(t.checkPassword("u", "nope")).rejects.toMatchObject({ code: "AuthFailed" });
  });

  it("checks permissions, revisions and the root rules as etcd does", async () => {
    const s = newStore();
    const w = session();
    await s.userAdd(w, { name: "root", password: "pw", options: undefined, hashedPassword: "" });
    await s.userAdd(w, { name: "u", password: "", options: { noPassword: true }, hashedPassword: "" });
    s.roleAdd(w, "r");
    s.roleGrantPermission(w, { name: "r", perm: perm(READ, "p/", "p0") });
    s.userGrantRole(w, { user: "u", role: "r" });
    // While auth is off, everything passes and root may be changed.
    expect(codeOf(() => s.checkRange({ username: "", revision: 0 }, b("x")))).toBeUndefined();
    expect(codeOf(() => s.enable(w))).toBe("RootRoleNotExist");
    s.userGrantRole(w, { user: "root", role: "root" });
    s.enable(w);
    const u: AuthInfo = { username: "u", revision: s.revision };
    expect(codeOf(() => s.checkRange(u, b("p/a")))).toBeUndefined();
    expect(codeOf(() => s.checkRange(u, b("p/"), b("p0")))).toBeUndefined();
    expect(codeOf(() => s.checkRange(u, b("q")))).toBe("PermissionDenied");
    expect(codeOf(() => s.checkWrite(u, b("p/a")))).toBe("PermissionDenied");
    expect(codeOf(() => s.checkRange({ username: "", revision: 0 }, b("p/a")))).toBe("UserEmpty");
    expect(codeOf(() => s.checkRange({ username: "u", revision: s.revision - 1 }, b("p/a")))).toBe("AuthOldRevision");
    expect(codeOf(() => s.checkRange({ username: "root", revision: s.revision }, b("anything")))).toBeUndefined();
    expect(codeOf(() => s.checkAdmin(u))).toBe("PermissionDenied");
    expect(codeOf(() => s.checkAdmin({ username: "ghost", revision: 1 }))).toBe("UserNotFound");
    expect(codeOf(() => s.checkAdmin(undefined))).toBe("UserEmpty");
    await expect(s.checkPassword("u", "")).rejects.toMatchObject({ code: "NoPasswordUser" });
    expect(codeOf(() => s.userDelete(w, "root"))).toBe("InvalidAuthMgmt");
    expect(codeOf(() => s.userRevokeRole(w, { name: "root", role: "root" }))).toBe("InvalidAuthMgmt");
    expect(codeOf(() => s.roleDelete(w, "root"))).toBe("InvalidAuthMgmt");
    expect(codeOf(() => s.userRevokeRole(w, { name: "u", role: "x" }))).toBe("RoleNotGranted");
    expect(codeOf(() => s.roleRevokePermission(w, { role: "r", key: b("p/"), rangeEnd: b("") }))).toBe("PermissionNotGranted");
    expect(codeOf(() => s.userGrantRole(w, { user: "u", role: "nope" }))).toBe("RoleNotFound");
    expect(codeOf(() => s.roleAdd(w, "r"))).toBe("RoleAlreadyExist");
    await expect(s.userAdd(w, { name: "u", password: "x", options: undefined, hashedPassword: "" })).rejects.toMatchObject({ code: "UserAlreadyExist" });
    // Deleting a role takes it from its users.
    s.roleDelete(w, "r");
    expect(s.userRoles("u")).toEqual([]);
    const rev = s.revision;
    s.disable(w);
    expect(s.revision).toBe(rev + 1);
    expect(w.records.get("auth/authEnabled")).toEqual(Buffer.from([0]));
  });
});
