/**
 * The server's layering (docs/architecture.md, house style rule 1): imports point down only.
 * Scans every .ts file under server/src, resolves its relative imports to a layer (the first
 * folder under server/src) and checks:
 *  - raft/      imports nothing outside raft/ (no packages either) and uses no async code, timers,
 *               Date, Math.random, fs or net: the Raft core is pure;
 *  - wal/, snap/ import only raft/types and pkg/ (besides themselves);
 *  - v2store/   (etcd's v2 store) imports only pkg/ (besides itself), no package;
 *  - mvcc/, lease/ (and auth/, transport/ when they come) import nothing from server/, api/,
 *               etcdmain/;
 *  - server/    never imports api/, etcdmain/ or rafthttp/;
 *  - rafthttp/  (etcd's peer protocol: codecs, snapshot transfer) imports raft/ only for
 *               raft/types, mvcc/ only its backend/ (the image type and the bbolt files),
 *               server/ only server/transport-port (the port it serves), besides pkg/ and
 *               the proto package;
 *  - api/       never imports etcdmain/, and keeps to its rooms:
 *      v3rpc/    (the gRPC services and their registry) imports nothing from the other rooms;
 *      gateway/  (the JSON gateway) takes from v3rpc/ only the service registry and the error
 *                translation, and nothing from server/, mvcc/, lease/ (it reaches the member only
 *                through the registry's services);
 *      listener/ (the client port) imports nothing from the other rooms and no layer but pkg/;
 *      http/     (/health, /version, /metrics) takes from v3rpc/ only the service registry, from
 *                gateway/ only its entry (gateway/gateway.ts), nothing from listener/;
 *      v2http/   (etcd's v2 HTTP API, --enable-v2) imports nothing from the other rooms;
 *  - etcdutl/ (the offline tools: snapshot restore/status, defrag, migrate) never imports api/
 *               or rafthttp/ (it works on files, with the server's own storage code), and takes
 *               from etcdmain/ only config (the initial-cluster checks);
 *  - pkg/     imports nothing from other layers;
 *  - the generated protobuf code is the @etcd-ts/proto package (proto/gen, built to proto/dist):
 *               server/src imports it by name ("@etcd-ts/proto/<pkg>/<file>"), which counts as
 *               the layer "proto" for the rules above (so raft/, wal/, snap/, pkg/ and
 *               api/listener/ may not use it); no relative import leaves server/src but the
 *               one for the server package's own package.json (other packages are reached by
 *               name only);
 *  - proto/gen imports nothing from the server: only itself (relative paths inside proto/gen)
 *               and the proto package's own dependencies;
 *  - server/src and proto/gen import only packages their package.json declares (or node:).
 * Every violation is printed as "file → import" before the test fails.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const srcRoot = path.join(repoRoot, "server", "src");
/** The generated code: the source of the @etcd-ts/proto package. */
const protoGenRoot = path.join(repoRoot, "proto", "gen");
const PROTO_PACKAGE = "@etcd-ts/proto";

/** The npm package a bare specifier names ("@scope/name/sub" → "@scope/name", "a/b" → "a"). */
function packageOf(spec: string): string {
  const parts = spec.split("/");
  return spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
}

/** The dependencies a workspace package declares (dir relative to the repository root). */
function declaredDependencies(dir: string): Set<string> {
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, dir, "package.json"), "utf8")) as { dependencies?: Record<string, string> };
  return new Set(Object.keys(pkg.dependencies ?? {}));
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...tsFiles(full));
    else if (entry.isFile() && entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) out.push(full);
  }
  return out.sort();
}

/** The source without comments (so prose may mention forbidden words); strings are kept. */
function stripComments(src: string): string {
  let out = "";
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    const next = src[i + 1];
    if (c === "/" && next === "*") {
      const end = src.indexOf("*/", i + 2);
      i = end < 0 ? src.length : end + 2;
    } else if (c === "/" && next === "/") {
      const end = src.indexOf("\n", i);
      i = end < 0 ? src.length : end;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < src.length && src[j] !== c) j += src[j] === "\\" ? 2 : 1;
      out += src.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Module specifiers of static imports/re-exports, side-effect imports and dynamic imports. */
function importsOf(src: string): string[] {
  const specs: string[] = [];
  const patterns = [
    /\b(?:import|export)\s+(?:type\s+)?[^;'"`]*?\bfrom\s*["']([^"']+)["']/g,
    /\bimport\s*["']([^"']+)["']/g,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
    /\brequire\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const re of patterns) for (const m of src.matchAll(re)) specs.push(m[1]!);
  return specs;
}

interface Import {
  /** File, relative to server/src. */
  file: string;
  spec: string;
  /** Layer of the importing file. */
  from: string;
  /**
   * Layer imported (first folder under server/src), "proto" (the @etcd-ts/proto package), another
   * "<package>", or "<outside>" (a relative path out of server/src).
   */
  to: string;
  /** Imported path relative to server/src (relative imports only; "../x" when outside). */
  target?: string;
}

function collect(): { imports: Import[]; sources: Map<string, string> } {
  const imports: Import[] = [];
  const sources = new Map<string, string>();
  for (const full of tsFiles(srcRoot)) {
    const file = path.relative(srcRoot, full).split(path.sep).join("/");
    const from = file.split("/")[0]!;
    const src = stripComments(readFileSync(full, "utf8"));
    sources.set(file, src);
    for (const spec of importsOf(src)) {
      if (!spec.startsWith(".")) {
        imports.push({ file, spec, from, to: packageOf(spec) === PROTO_PACKAGE ? "proto" : "<package>" });
        continue;
      }
      const target = path.relative(srcRoot, path.resolve(path.dirname(full), spec)).split(path.sep).join("/");
      if (target.startsWith("..")) imports.push({ file, spec, from, to: "<outside>", target });
      else imports.push({ file, spec, from, to: target.split("/")[0]!, target });
    }
  }
  return { imports, sources };
}

/** Why an import breaks the layering, or undefined. */
function violation(imp: Import): string | undefined {
  const { from, to, target } = imp;
  if (to === "<outside>") {
    // The one file of its own package outside src/ it reads: package.json (for its version).
    return target === "../package.json" ? undefined : "server/src reaches other packages by name, never by a relative path";
  }
  if (from === "api") return to === "etcdmain" ? "api/ never imports etcdmain/" : apiRoomViolation(imp);
  if (to === from) return undefined;
  switch (from) {
    case "raft":
      return "raft/ imports nothing outside raft/";
    case "wal":
    case "snap":
      if (to === "<package>") return undefined;
      if (to === "pkg") return undefined;
      if (to === "raft" && /^raft\/types(\.js|\.ts)?$/.test(target ?? "")) return undefined;
      return `${from}/ imports only raft/types and pkg/`;
    case "v2store":
      return to === "pkg" ? undefined : "v2store/ imports only pkg/";
    case "mvcc":
    case "lease":
    case "auth":
    case "transport":
      return ["server", "api", "etcdmain"].includes(to) ? `${from}/ imports nothing from server/, api/, etcdmain/` : undefined;
    case "server":
      return ["api", "etcdmain", "rafthttp"].includes(to) ? "server/ never imports api/, etcdmain/ or rafthttp/" : undefined;
    case "rafthttp": {
      const t = target?.replace(/\.(js|ts)$/, "");
      if (["<package>", "proto", "pkg"].includes(to)) return undefined;
      if (to === "raft" && t === "raft/types") return undefined;
      if (to === "mvcc" && t?.startsWith("mvcc/backend/")) return undefined;
      if (to === "server" && t === "server/transport-port") return undefined;
      return "rafthttp/ imports only raft/types, mvcc/backend/, server/transport-port, pkg/ and the proto package";
    }
    case "etcdutl":
      if (to === "etcdmain") return /^etcdmain\/config(\.js|\.ts)?$/.test(target ?? "") ? undefined : "etcdutl/ takes from etcdmain/ only config (the initial-cluster checks)";
      return ["api", "rafthttp"].includes(to) ? "etcdutl/ (the offline tools) never imports api/ or rafthttp/" : undefined;
    case "pkg":
      return to === "<package>" ? undefined : `${from}/ imports nothing from other layers`;
    default:
      return undefined;
  }
}

/** The rooms of api/ (server/src/api/<room>/). */
const API_ROOMS = ["v3rpc", "gateway", "listener", "http", "v2http"];

/** Why an import from a file of api/ breaks the rooms' rules, or undefined. */
function apiRoomViolation(imp: Import): string | undefined {
  const room = imp.file.split("/")[1];
  const target = imp.target?.replace(/\.(js|ts)$/, "");
  const toRoom = imp.to === "api" ? target!.split("/")[1] : undefined;
  if (toRoom === room) return undefined;
  switch (room) {
    case "v3rpc":
      return toRoom === undefined ? undefined : "api/v3rpc/ imports nothing from the other rooms of api/";
    case "gateway":
      if (["server", "mvcc", "lease"].includes(imp.to)) return "api/gateway/ reaches the member only through the service registry";
      if (toRoom === undefined || ["api/v3rpc/service-registry", "api/v3rpc/errors"].includes(target!)) return undefined;
      return "api/gateway/ takes from api/ only v3rpc/service-registry and v3rpc/errors";
    case "listener":
      return ["<package>", "pkg"].includes(imp.to) ? undefined : "api/listener/ imports nothing from the other rooms of api/ and no layer but pkg/";
    case "http":
      if (toRoom === undefined || ["api/v3rpc/service-registry", "api/gateway/gateway"].includes(target!)) return undefined;
      return "api/http/ takes from api/ only v3rpc/service-registry and gateway/gateway";
    case "v2http":
      return toRoom === undefined ? undefined : "api/v2http/ imports nothing from the other rooms of api/";
    default:
      return undefined;
  }
}

/** What the Raft core may not use (house style rule 2). */
const RAFT_FORBIDDEN: [RegExp, string][] = [
  [/\basync\b/, "async"],
  [/\bsetTimeout\b|\bsetInterval\b/, "setTimeout/setInterval"],
  [/\bDate\b/, "Date"],
  [/\bMath\.random\b/, "Math.random"],
  [/["'](node:)?fs(\/promises)?["']/, "node:fs"],
  [/["'](node:)?net["']/, "node:net"],
];

describe("layering of server/src (imports point down only)", () => {
  const { imports, sources } = collect();

  it("finds the layers it checks", () => {
    const layers = new Set([...sources.keys()].map((f) => f.split("/")[0]));
    for (const layer of ["raft", "wal", "snap", "v2store", "mvcc", "lease", "server", "rafthttp", "api", "etcdmain", "pkg"]) {
      expect(layers.has(layer), `server/src/${layer}/ has .ts files`).toBe(true);
    }
    expect(imports.length).toBeGreaterThan(50);
    expect(imports.some((i) => i.to === "proto"), `server/src imports ${PROTO_PACKAGE}`).toBe(true);
  });

  it("every file of api/ lives in one of its rooms", () => {
    const apiFiles = [...sources.keys()].filter((f) => f.startsWith("api/"));
    const outside = apiFiles.filter((f) => !API_ROOMS.includes(f.split("/")[1]!) || f.split("/").length < 3);
    expect(outside, `rooms: ${API_ROOMS.join(", ")}`).toEqual([]);
    for (const room of API_ROOMS) expect(apiFiles.some((f) => f.startsWith(`api/${room}/`)), `server/src/api/${room}/ has .ts files`).toBe(true);
  });

  it("no import points up or sideways", () => {
    const found: string[] = [];
    for (const imp of imports) {
      const why = violation(imp);
      if (why !== undefined) found.push(`server/src/${imp.file} → ${imp.spec}   (${why})`);
    }
    for (const line of found) console.log(`layering violation: ${line}`);
    expect(found, found.join("\n")).toEqual([]);
  });

  it("imports only packages server/package.json declares", () => {
    const declared = declaredDependencies("server");
    const found = imports
      .filter((i) => (i.to === "<package>" || i.to === "proto") && !i.spec.startsWith("node:") && !declared.has(packageOf(i.spec)))
      .map((i) => `server/src/${i.file} → ${i.spec}   (not a dependency in server/package.json)`);
    for (const line of found) console.log(`dependency violation: ${line}`);
    expect(found, found.join("\n")).toEqual([]);
  });

  it("the Raft core is pure: no async, timers, Date, Math.random, fs or net", () => {
    const found: string[] = [];
    for (const [file, src] of sources) {
      if (!file.startsWith("raft/")) continue;
      for (const [re, what] of RAFT_FORBIDDEN) {
        const m = re.exec(src);
        if (m !== null) {
          const line = src.slice(0, m.index).split("\n").length;
          found.push(`server/src/${file} → ${what} (near stripped line ${line})`);
        }
      }
    }
    for (const line of found) console.log(`purity violation: ${line}`);
    expect(found, found.join("\n")).toEqual([]);
  });

  it("catches what it claims to (self-check of the scanner)", () => {
    const src = stripComments(`// import x from "../api/y.js"\nimport { a } from "../server/a.js";\nexport * from "./b.js";\nconst m = await import("../etcdmain/c.js");\nimport type { T } from "../raft/types.js";\n`);
    expect(importsOf(src).sort()).toEqual(["../etcdmain/c.js", "../raft/types.js", "../server/a.js", "./b.js"]);
    expect(violation({ file: "wal/x.ts", spec: "../raft/types.js", from: "wal", to: "raft", target: "raft/types.js" })).toBeUndefined();
    expect(violation({ file: "wal/x.ts", spec: "../raft/raft.js", from: "wal", to: "raft", target: "raft/raft.js" })).toBeDefined();
    expect(violation({ file: "v2store/x.ts", spec: "../pkg/go-json.js", from: "v2store", to: "pkg", target: "pkg/go-json.js" })).toBeUndefined();
    expect(violation({ file: "v2store/x.ts", spec: "../raft/types.js", from: "v2store", to: "raft", target: "raft/types.js" })).toBeDefined();
    expect(violation({ file: "server/x.ts", spec: "../api/y.js", from: "server", to: "api", target: "api/y.js" })).toBeDefined();
    expect(violation({ file: "raft/x.ts", spec: "node:fs", from: "raft", to: "<package>" })).toBeDefined();
    expect(violation({ file: "server/x.ts", spec: "../rafthttp/y.js", from: "server", to: "rafthttp", target: "rafthttp/y.js" })).toBeDefined();
    expect(violation({ file: "rafthttp/x.ts", spec: "../server/transport-port.js", from: "rafthttp", to: "server", target: "server/transport-port.js" })).toBeUndefined();
    expect(violation({ file: "rafthttp/x.ts", spec: "../server/etcd-server.js", from: "rafthttp", to: "server", target: "server/etcd-server.js" })).toBeDefined();
    expect(violation({ file: "rafthttp/x.ts", spec: "../raft/raft.js", from: "rafthttp", to: "raft", target: "raft/raft.js" })).toBeDefined();
    expect(violation({ file: "rafthttp/x.ts", spec: "../mvcc/backend/bbolt-reader.js", from: "rafthttp", to: "mvcc", target: "mvcc/backend/bbolt-reader.js" })).toBeUndefined();
    expect(violation({ file: "rafthttp/x.ts", spec: "../mvcc/kv-store.js", from: "rafthttp", to: "mvcc", target: "mvcc/kv-store.js" })).toBeDefined();
    const api = (file: string, spec: string, to: string, target?: string): Import => ({ file, spec, from: "api", to, target });
    expect(violation(api("api/gateway/gateway.ts", "../v3rpc/service-registry.js", "api", "api/v3rpc/service-registry.js"))).toBeUndefined();
    expect(violation(api("api/gateway/gateway.ts", "../v3rpc/kv-service.js", "api", "api/v3rpc/kv-service.js"))).toBeDefined();
    expect(violation(api("api/gateway/gateway.ts", "../../server/etcd-server.js", "server", "server/etcd-server.js"))).toBeDefined();
    expect(violation(api("api/http/http-handler.ts", "../gateway/gateway.js", "api", "api/gateway/gateway.js"))).toBeUndefined();
    expect(violation(api("api/http/http-handler.ts", "../gateway/json-mapping.js", "api", "api/gateway/json-mapping.js"))).toBeDefined();
    expect(violation(api("api/listener/client-listener.ts", "../gateway/gateway.js", "api", "api/gateway/gateway.js"))).toBeDefined();
    expect(violation(api("api/listener/client-listener.ts", "../../server/etcd-server.js", "server", "server/etcd-server.js"))).toBeDefined();
    expect(violation(api("api/v3rpc/kv-service.ts", "../http/metrics.js", "api", "api/http/metrics.js"))).toBeDefined();
    expect(violation(api("api/v3rpc/kv-service.ts", "../../etcdmain/config.js", "etcdmain", "etcdmain/config.js"))).toBeDefined();
    const rpc = `${PROTO_PACKAGE}/etcdserverpb/rpc`;
    expect(violation({ file: "server/x.ts", spec: rpc, from: "server", to: "proto" })).toBeUndefined();
    expect(violation({ file: "mvcc/x.ts", spec: rpc, from: "mvcc", to: "proto" })).toBeUndefined();
    expect(violation({ file: "wal/x.ts", spec: rpc, from: "wal", to: "proto" })).toBeDefined();
    expect(violation({ file: "raft/x.ts", spec: rpc, from: "raft", to: "proto" })).toBeDefined();
    expect(violation({ file: "pkg/x.ts", spec: rpc, from: "pkg", to: "proto" })).toBeDefined();
    expect(violation(api("api/listener/client-listener.ts", rpc, "proto"))).toBeDefined();
    expect(violation(api("api/v3rpc/kv-service.ts", rpc, "proto"))).toBeUndefined();
    expect(violation({ file: "server/x.ts", spec: "../../../proto/gen/etcdserverpb/rpc.js", from: "server", to: "<outside>", target: "../../proto/gen/etcdserverpb/rpc.js" })).toBeDefined();
    expect(violation({ file: "etcdmain/x.ts", spec: "../../../package.json", from: "etcdmain", to: "<outside>", target: "../../package.json" })).toBeDefined();
    expect(violation({ file: "etcdmain/x.ts", spec: "../../package.json", from: "etcdmain", to: "<outside>", target: "../package.json" })).toBeUndefined();
    expect(packageOf("@etcd-ts/proto/etcdserverpb/rpc")).toBe(PROTO_PACKAGE);
    expect(packageOf("@bufbuild/protobuf/wire")).toBe("@bufbuild/protobuf");
    expect(packageOf("sorted-btree")).toBe("sorted-btree");
  });
});

describe(`the ${PROTO_PACKAGE} package (proto/gen) imports nothing from the server`, () => {
  const files = tsFiles(protoGenRoot);
  const declared = declaredDependencies("proto");

  it("finds the generated code", () => {
    expect(files.length).toBeGreaterThan(0);
  });

  it("imports only itself and the proto package's own dependencies", () => {
    const found: string[] = [];
    for (const full of files) {
      const file = path.relative(repoRoot, full).split(path.sep).join("/");
      for (const spec of importsOf(stripComments(readFileSync(full, "utf8")))) {
        if (spec.startsWith(".")) {
          const target = path.relative(protoGenRoot, path.resolve(path.dirname(full), spec));
          if (target.startsWith("..") || path.isAbsolute(target)) found.push(`${file} → ${spec}   (outside proto/gen)`);
        } else if (!spec.startsWith("node:") && !declared.has(packageOf(spec))) {
          found.push(`${file} → ${spec}   (not a dependency in proto/package.json)`);
        }
      }
    }
    for (const line of found) console.log(`proto package violation: ${line}`);
    expect(found, found.join("\n")).toEqual([]);
    expect(declared.has("etcd-ts"), "proto/package.json does not depend on the server").toBe(false);
  });
});

describe("layering of operator/src", () => {
  const opRoot = path.join(repoRoot, "operator", "src");
  const declared = declaredDependencies("operator");
  const files = tsFiles(opRoot);

  it("reaches other packages by name only, declared ones, never the server's source", () => {
    const problems: string[] = [];
    for (const file of files) {
      const rel = path.relative(opRoot, file);
      for (const spec of importsOf(stripComments(readFileSync(file, "utf8")))) {
        if (spec.startsWith(".")) {
          const target = path.relative(opRoot, path.resolve(path.dirname(file), spec));
          if (target.startsWith("..")) problems.push(`${rel}: ${spec} leaves operator/src`);
        } else if (!spec.startsWith("node:") && !declared.has(packageOf(spec))) {
          problems.push(`${rel}: ${spec} is not declared in operator/package.json`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it("cluster/ is the pure core: it imports only itself and api/, no package and no node: module", () => {
    const problems: string[] = [];
    const core = files.filter((f) => path.relative(opRoot, f).startsWith(`cluster${path.sep}`));
    expect(core.length).toBeGreaterThan(3);
    for (const file of core) {
      const rel = path.relative(opRoot, file);
      for (const spec of importsOf(stripComments(readFileSync(file, "utf8")))) {
        if (!spec.startsWith(".")) {
          problems.push(`${rel}: ${spec}`);
          continue;
        }
        const layer = path.relative(opRoot, path.resolve(path.dirname(file), spec)).split(path.sep)[0];
        if (layer !== "cluster" && layer !== "api") problems.push(`${rel}: ${spec}`);
      }
    }
    expect(problems).toEqual([]);
  });
});
