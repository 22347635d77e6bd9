/**
 * The etcdctl auth scripts (user, role, auth commands; KV, lease, watch and maintenance commands
 * as allowed and refused users), shared by the suites that run them with each token kind
 * (auth.test.ts: simple tokens; auth-jwt.test.ts: JWT). Every case leaves auth disabled and
 * removes its users and roles, so the cases of one file do not depend on each other's auth state.
 */
import { sleep, type CaseContext, type DiffSuite } from "./diff-suite.js";

const ROOT = ["--user", "root:rootpw"];
const as = (user: string): string[] => ["--user", user];

/** root with the root role, auth enabled (etcdctl's auth enable adds the root role itself). */
async function enableAuth(c: CaseContext): Promise<void> {
  await c.ctl(["user", "add", "root:rootpw"]);
  await c.ctl(["auth", "enable"]);
}

async function disableAuth(c: CaseContext): Promise<void> {
  await c.ctl([...ROOT, "auth", "disable"]);
  await c.ctl(["user", "delete", "root"]);
  await c.ctl(["role", "delete", "root"]);
}

export function authCases(s: DiffSuite): void {
  s.case("users and roles before auth is enabled, in every format", async (c) => {
    await c.ctl(["user", "list"]);
    await c.ctl(["role", "list"]);
    await c.ctl(["user", "add", "alice:apw"]);
    await c.ctl(["user", "add", "alice:other"]);
    await c.ctl(["user", "add", "bob:bpw", "-w", "json"]);
    await c.ctl(["user", "add", "carol", "--no-password"]);
    await c.ctl(["user", "add", ":x"]);
    await c.ctl(["user", "list"]);
    await c.ctl(["user", "list", "-w", "json"]);
    await c.ctl(["user", "get", "alice"]);
    await c.ctl(["user", "get", "nobody"]);
    await c.ctl(["role", "add", "reader"]);
    await c.ctl(["role", "add", "reader"]);
    await c.ctl(["role", "add", "writer", "-w", "json"]);
    await c.ctl(["role", "add", ""]);
    await c.ctl(["role", "grant-permission", "reader", "read", "k1"]);
    await c.ctl(["role", "grant-permission", "reader", "read", "dir/", "--prefix"]);
    await c.ctl(["role", "grant-permission", "reader", "readwrite", "a", "c"]);
    await c.ctl(["role", "grant-permission", "reader", "write", "z", "--from-key"]);
    await c.ctl(["role", "grant-permission", "reader", "write", "k1"]);
    await c.ctl(["role", "grant-permission", "nobody", "read", "k1"]);
    await c.ctl(["role", "grant-permission", "reader", "bogus", "k1"]);
    await c.ctl(["role", "get", "reader"]);
    await c.ctl(["role", "get", "reader", "-w", "json"]);
    await c.ctl(["role", "get", "nobody"]);
    await c.ctl(["role", "list"]);
    await c.ctl(["role", "list", "-w", "json"]);
    await c.ctl(["role", "revoke-permission", "reader", "a", "c"]);
    await c.ctl(["role", "revoke-permission", "reader", "a", "c"]);
    await c.ctl(["role", "revoke-permission", "reader", "dir/", "--prefix"]);
    await c.ctl(["role", "revoke-permission", "nobody", "k1"]);
    await c.ctl(["role", "get", "reader"]);
    await c.ctl(["user", "grant-role", "alice", "reader"]);
    await c.ctl(["user", "grant-role", "alice", "writer", "-w", "json"]);
    await c.ctl(["user", "grant-role", "alice", "reader"]);
    await c.ctl(["user", "grant-role", "alice", "nobody"]);
    await c.ctl(["user", "grant-role", "nobody", "reader"]);
    await c.ctl(["user", "get", "alice"]);
    await c.ctl(["user", "get", "alice", "--detail"]);
    await c.ctl(["user", "get", "alice", "-w", "json"]);
    await c.ctl(["user", "revoke-role", "alice", "writer"]);
    await c.ctl(["user", "revoke-role", "alice", "writer"]);
    await c.ctl(["user", "revoke-role", "nobody", "writer"]);
    await c.ctl(["role", "delete", "reader"]);
    await c.ctl(["role", "delete", "reader"]);
    await c.ctl(["user", "get", "alice"]);
    await c.ctl(["user", "passwd", "bob", "--interactive=false"], { stdin: "newpw\n" });
    await c.ctl(["user", "passwd", "nobody", "--interactive=false"], { stdin: "newpw\n" });
    for (const u of ["alice", "bob", "carol"]) await c.ctl(["user", "delete", u]);
    await c.ctl(["user", "delete", "alice"]);
    await c.ctl(["role", "delete", "writer"]);
    await c.ctl(["user", "list"]);
    await c.ctl(["role", "list"]);
  });

  s.case("auth enable and disable, the root rules", async (c) => {
    await c.ctl(["auth", "disable"]);
    await c.ctl(["auth", "enable"]);
    await c.ctl(["user", "add", "root:rootpw"]);
    await c.ctl(["auth", "enable"]);
    await c.ctl(["role", "get", "root"]);
    await c.ctl(["auth", "enable"]);
    await c.ctl(["user", "list"]);
    await c.ctl(["--user", "root:wrong", "user", "list"]);
    await c.ctl(["--user", "nobody:x", "user", "list"]);
    await c.ctl([...ROOT, "user", "list"]);
    await c.ctl([...ROOT, "user", "get", "root"]);
    await c.ctl([...ROOT, "role", "list"]);
    await c.ctl([...ROOT, "auth", "enable"]);
    await c.ctl([...ROOT, "user", "delete", "root"]);
    await c.ctl([...ROOT, "user", "revoke-role", "root", "root"]);
    await c.ctl([...ROOT, "role", "delete", "root"]);
    await c.ctl([...ROOT, "user", "add", "dave", "--no-password"]);
    await c.ctl(["--user", "dave:", "get", "k"]);
    await c.ctl([...ROOT, "user", "add", "erin:epw"]);
    await c.ctl(["--user", "erin:epw", "auth", "disable"]);
    await c.ctl(["--user", "erin:epw", "user", "add", "x:y"]);
    await c.ctl(["--user", "erin:epw", "role", "add", "x"]);
    await c.ctl(["--user", "erin:epw", "user", "get", "erin"]);
    await c.ctl(["--user", "erin:epw", "user", "get", "root"]);
    await c.ctl(["--user", "erin:epw", "role", "get", "root"]);
    await c.ctl([...ROOT, "user", "passwd", "erin", "--interactive=false"], { stdin: "epw2\n" });
    await c.ctl(["--user", "erin:epw", "get", "k"]);
    await c.ctl(["--user", "erin:epw2", "get", "k"]);
    await c.ctl(["--user", "erin", "--password", "epw2", "get", "k"]);
    await c.ctl([...ROOT, "user", "delete", "erin"]);
    await c.ctl(["--user", "erin:epw2", "get", "k"]);
    await c.ctl([...ROOT, "user", "delete", "dave"]);
    await disableAuth(c);
    await c.ctl(["user", "list"]);
    await c.ctl(["role", "list"]);
  });

  s.case("KV under auth: allowed and refused", async (c) => {
    await c.ctl(["put", "kv/open", "1"]);
    await c.ctl(["put", "kv/secret", "s"]);
    await c.ctl(["user", "add", "u1:p1"]);
    await c.ctl(["role", "add", "r1"]);
    await c.ctl(["role", "grant-permission", "r1", "read", "kv/open"]);
    await c.ctl(["role", "grant-permission", "r1", "readwrite", "kv/rw/", "--prefix"]);
    await c.ctl(["role", "grant-permission", "r1", "write", "kv/wo"]);
    await c.ctl(["role", "grant-permission", "r1", "read", "kv/r/", "kv/r0"]);
    await c.ctl(["user", "grant-role", "u1", "r1"]);
    await enableAuth(c);
    const u1 = as("u1:p1");
    await c.ctl(["get", "kv/open"]);
    await c.ctl([...u1, "get", "kv/open"]);
    await c.ctl([...u1, "get", "kv/open", "--consistency=s"]);
    await c.ctl([...u1, "get", "kv/secret"]);
    await c.ctl([...u1, "get", "kv/secret", "--consistency=s"]);
    await c.ctl([...u1, "get", "kv/", "--prefix"]);
    await c.ctl([...u1, "get", "kv/r/", "kv/r0"]);
    await c.ctl([...u1, "get", "kv/r/a", "kv/r/b"]);
    await c.ctl([...u1, "get", "kv/r/a", "kv/s"]);
    await c.ctl([...u1, "get", "kv/r/", "--from-key"]);
    await c.ctl([...u1, "put", "kv/rw/a", "1"]);
    await c.ctl([...u1, "put", "kv/rw/b", "2", "--prev-kv"]);
    await c.ctl([...u1, "put", "kv/rw/a", "3", "--prev-kv", "-w", "json"]);
    await c.ctl([...u1, "put", "kv/open", "x"]);
    await c.ctl([...u1, "put", "kv/wo", "w"]);
    await c.ctl([...u1, "put", "kv/wo", "w2", "--prev-kv"]);
    await c.ctl([...u1, "get", "kv/wo"]);
    await c.ctl([...u1, "get", "kv/rw/", "--prefix", "-w", "json"]);
    await c.ctl([...u1, "del", "kv/rw/b", "--prev-kv"]);
    await c.ctl([...u1, "del", "kv/wo"]);
    await c.ctl([...u1, "del", "kv/wo", "--prev-kv"]);
    await c.ctl([...u1, "del", "kv/open"]);
    await c.ctl([...u1, "del", "kv/", "--prefix"]);
    await c.ctl([...u1, "txn"], { stdin: 'value("kv/open") = "1"\n\nput kv/rw/t yes\n\nput kv/rw/t no\n\n' });
    await c.ctl([...u1, "txn"], { stdin: 'value("kv/secret") = "s"\n\nput kv/rw/t yes\n\n\n' });
    await c.ctl([...u1, "txn"], { stdin: 'value("kv/open") = "1"\n\nput kv/rw/t yes\n\nput kv/open no\n\n' });
    await c.ctl([...u1, "txn"], { stdin: '\nget kv/open\nget kv/rw/t\n\n\n' });
    await c.ctl([...u1, "txn"], { stdin: '\nget kv/secret\n\n\n' });
    await c.ctl([...u1, "txn"], { stdin: '\ndel kv/rw/t --prev-kv\n\n\n' });
    await c.ctl([...u1, "compaction", "1"]);
    await c.ctl([...ROOT, "get", "kv/", "--prefix"]);
    // a permission revoked while the user is at work
    await c.ctl([...ROOT, "role", "revoke-permission", "r1", "kv/open"]);
    await c.ctl([...u1, "get", "kv/open"]);
    await c.ctl([...ROOT, "user", "revoke-role", "u1", "r1"]);
    await c.ctl([...u1, "put", "kv/rw/a", "4"]);
    await disableAuth(c);
    await c.ctl(["user", "delete", "u1"]);
    await c.ctl(["role", "delete", "r1"]);
    await c.ctl(["get", "kv/", "--prefix"]);
  });

  s.case("leases under auth", async (c) => {
    await c.ctl(["user", "add", "u2:p2"]);
    await c.ctl(["role", "add", "r2"]);
    await c.ctl(["role", "grant-permission", "r2", "readwrite", "ls/mine/", "--prefix"]);
    await c.ctl(["user", "grant-role", "u2", "r2"]);
    await enableAuth(c);
    const u2 = as("u2:p2");
    const a = c.leaseId(await c.ctl([...u2, "lease", "grant", "600"]));
    const b = c.leaseId(await c.ctl([...ROOT, "lease", "grant", "600"]));
    await c.ctl([...u2, "put", "ls/mine/a", "1", `--lease=${a}`]);
    await c.ctl([...ROOT, "put", "ls/other", "1", `--lease=${b}`]);
    await c.ctl([...u2, "put", "ls/mine/b", "1", `--lease=${b}`]);
    await c.ctl([...u2, "lease", "timetolive", a, "--keys"]);
    await c.ctl([...u2, "lease", "keep-alive", "--once", a]);
    await c.ctl([...u2, "lease", "list"], { sortLines: true });
    await c.ctl([...u2, "lease", "revoke", b]);
    await c.ctl([...u2, "lease", "revoke", a]);
    await c.ctl([...ROOT, "lease", "revoke", b]);
    await c.ctl([...ROOT, "get", "ls/", "--prefix"]);
    // a lease that expires under auth is revoked by the member itself
    const e = c.leaseId(await c.ctl([...u2, "lease", "grant", "2"]));
    await c.ctl([...u2, "put", "ls/mine/e", "1", `--lease=${e}`]);
    await sleep(6000); // TTL 2 s, revoked within the lessor's 500 ms tick: room for a loaded machine
    await c.ctl([...u2, "get", "ls/mine/", "--prefix"]);
    await disableAuth(c);
    await c.ctl(["user", "delete", "u2"]);
    await c.ctl(["role", "delete", "r2"]);
  });

  s.case("watch under auth", async (c) => {
    await c.ctl(["user", "add", "u3:p3"]);
    await c.ctl(["role", "add", "r3"]);
    await c.ctl(["role", "grant-permission", "r3", "read", "wa/ok/", "--prefix"]);
    await c.ctl(["user", "grant-role", "u3", "r3"]);
    await enableAuth(c);
    const u3 = as("u3:p3");
    const head = JSON.parse((await c.ctl([...ROOT, "put", "wa/ok/a", "1", "-w", "json"])).stdout) as { header: { revision: number } };
    await c.ctl([...ROOT, "put", "wa/no", "1"]);
    await c.ctl([...ROOT, "put", "wa/ok/b", "2"]);
    const ok = c.background([...u3, "watch", "wa/ok/", "--prefix", `--rev=${head.header.revision}`]);
    await ok.waitForLines(/^PUT$/, 2);
    await ok.stop();
    const refused = c.background([...u3, "watch", "wa/", "--prefix", `--rev=${head.header.revision}`]);
    await refused.wait(10_000);
    const single = c.background([...u3, "watch", "wa/no"]);
    await single.wait(10_000);
    const anon = c.background(["watch", "wa/ok/a"]);
    await anon.wait(10_000);
    await disableAuth(c);
    await c.ctl(["user", "delete", "u3"]);
    await c.ctl(["role", "delete", "r3"]);
  });

  s.case("lock as the caller's user", async (c) => {
    await c.ctl(["user", "add", "u5:p5"]);
    await c.ctl(["role", "add", "r5"]);
    await c.ctl(["role", "grant-permission", "r5", "readwrite", "lk/", "--prefix"]);
    await c.ctl(["user", "grant-role", "u5", "r5"]);
    await c.ctl(["user", "add", "u6:p6"]);
    await enableAuth(c);
    await c.ctl([...as("u5:p5"), "lock", "lk/a", "echo", "locked"]);
    await c.ctl([...as("u6:p6"), "lock", "lk/a", "echo", "locked"], { timeoutMs: 10_000 });
    await c.ctl(["lock", "lk/a", "echo", "locked"], { timeoutMs: 10_000 });
    await c.ctl([...ROOT, "get", "lk/", "--prefix", "--keys-only"]);
    await disableAuth(c);
    await c.ctl(["user", "delete", "u5"]);
    await c.ctl(["user", "delete", "u6"]);
    await c.ctl(["role", "delete", "r5"]);
  });

  s.case("maintenance and cluster commands under auth", async (c) => {
    await c.ctl(["user", "add", "u4:p4"]);
    await enableAuth(c);
    const u4 = as("u4:p4");
    await c.ctl([...u4, "member", "list"]);
    await c.ctl([...u4, "endpoint", "health"]);
    await c.ctl([...u4, "endpoint", "hashkv"]);
    await c.ctl([...u4, "defrag"]);
    await c.ctl([...ROOT, "defrag"]);
    await c.ctl([...u4, "alarm", "list"]);
    // (A refused `snapshot save` is checked in test/snapshot/auth-snapshot.test.ts: etcdctl's own
    // log lines race with the refusal, so its stderr order is not stable.)
    await c.ctl([...u4, "member", "add", "m2", "--peer-urls=http://127.0.0.1:1"]);
    await c.ctl([...u4, "member", "remove", "1"]);
    await c.ctl([...u4, "member", "update", "1", "--peer-urls=http://127.0.0.1:1"]);
    await c.ctl([...u4, "member", "promote", "1"]);
    await c.ctl(["member", "add", "m2", "--peer-urls=http://127.0.0.1:1"]);
    await disableAuth(c);
    await c.ctl(["user", "delete", "u4"]);
  });
}
