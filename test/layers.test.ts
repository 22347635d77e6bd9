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
 *  - api/       never imports etcdmain/;
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
    case "api":
      return to === "etcdmain" ? "api/ never imports etcdmain/" : undefined;
    case "gen":
    case "pkg":
      return to === "<package>" ? undefined : `${from}/ imports nothing from other layers`;
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
  });
});
