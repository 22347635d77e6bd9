/**
 * The server's layering (docs/architecture.md, house style rule 1): imports point down only.
 * Scans every .ts file under server/src, resolves its relative imports to a layer (the first
 * folder under server/src) and checks:
 *  - raft/      imports nothing outside raft/ (no packages either) and uses no async code, timers,
 *               Date, Math.random, fs or net: the Raft core is pure;
 *  - wal/, snap/ import only raft/types and pkg/ (besides themselves);
 *  - mvcc/, lease/ (and auth/, transport/ when they come) import nothing from server/, api/,
 *               etcdmain/;
 *  - server/    never imports api/ or etcdmain/;
 *  - api/       never imports etcdmain/, and keeps to its rooms:
 *      v3rpc/    (the gRPC services and their registry) imports nothing from the other rooms;
 *      gateway/  (the JSON gateway) takes from v3rpc/ only the service registry and the error
 *                translation, and nothing from server/, mvcc/, lease/ (it reaches the member only
 *                through the registry's services);
 *      listener/ (the client port) imports nothing from the other rooms and no layer but pkg/;
 *      http/     (/health, /version, /metrics) takes from v3rpc/ only the service registry, from
 *                gateway/ only its entry (gateway/gateway.ts), nothing from listener/;
 *  - gen/, pkg/ import nothing from other layers.
 * Every violation is printed as "file → import" before the test fails.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const srcRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "server", "src");

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
  /** Layer imported (first folder under server/src), "<package>" or "<outside>". */
  to: string;
  /** Imported path relative to server/src (relative imports inside server/src only). */
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
        imports.push({ file, spec, from, to: "<package>" });
        continue;
      }
      const target = path.relative(srcRoot, path.resolve(path.dirname(full), spec)).split(path.sep).join("/");
      if (target.startsWith("..")) imports.push({ file, spec, from, to: "<outside>" });
      else imports.push({ file, spec, from, to: target.split("/")[0]!, target });
    }
  }
  return { imports, sources };
}

/** Why an import breaks the layering, or undefined. */
function violation(imp: Import): string | undefined {
  const { from, to, target } = imp;
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
    case "mvcc":
    case "lease":
    case "auth":
    case "transport":
      return ["server", "api", "etcdmain"].includes(to) ? `${from}/ imports nothing from server/, api/, etcdmain/` : undefined;
    case "server":
      return ["api", "etcdmain"].includes(to) ? "server/ never imports api/ or etcdmain/" : undefined;
    case "gen":
    case "pkg":
      return to === "<package>" ? undefined : `${from}/ imports nothing from other layers`;
    default:
      return undefined;
  }
}

/** The rooms of api/ (server/src/api/<room>/). */
const API_ROOMS = ["v3rpc", "gateway", "listener", "http"];

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
    for (const layer of ["raft", "wal", "snap", "mvcc", "lease", "server", "api", "etcdmain", "pkg"]) {
      expect(layers.has(layer), `server/src/${layer}/ has .ts files`).toBe(true);
    }
    expect(imports.length).toBeGreaterThan(50);
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
    expect(violation({ file: "server/x.ts", spec: "../api/y.js", from: "server", to: "api", target: "api/y.js" })).toBeDefined();
    expect(violation({ file: "raft/x.ts", spec: "node:fs", from: "raft", to: "<package>" })).toBeDefined();
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
  });
});
