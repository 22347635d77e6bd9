/**
 * Renders the Helm chart without helm: builds scripts/chart-render (Go's text/template, sprig
 * and Helm's own functions, against Debian's Go packages, offline) once per source version and
 * runs it. `chartRenderMissing()` says why it cannot run (no Go toolchain or Go packages:
 * scripts/install-test-deps.sh installs them).
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const chartDir = path.join(repoRoot, "charts/etcd-ts-operator");
const src = path.join(repoRoot, "scripts/chart-render/main.go");
const GOPATH = "/usr/share/gocode";

export function chartRenderMissing(): string | undefined {
  try {
    execFileSync("go", ["version"], { stdio: "ignore" });
  } catch {
    return "no Go toolchain (apt-get install golang-go)";
  }
  for (const p of ["github.com/Masterminds/sprig", "sigs.k8s.io/yaml"]) {
    if (!existsSync(path.join(GOPATH, "src", p))) return `Go package ${p} missing (scripts/install-test-deps.sh installs it)`;
  }
  return undefined;
}

let built: string | undefined;

export function chartRenderBinary(): string {
  if (built) return built;
  const hash = createHash("sha256").update(readFileSync(src)).digest("hex").slice(0, 12);
  const dir = path.join(os.tmpdir(), "etcd-ts-chart-render");
  mkdirSync(dir, { recursive: true });
  const bin = path.join(dir, `chart-render-${hash}`);
  if (!existsSync(bin)) {
    execFileSync("go", ["build", "-o", bin, "."], {
      cwd: path.dirname(src),
      env: { ...process.env, GO111MODULE: "off", GOPATH, GOPROXY: "off", GOFLAGS: "", GOCACHE: path.join(dir, "cache") },
      stdio: ["ignore", "ignore", "inherit"],
    });
  }
  built = bin;
  return bin;
}

export interface Rendered {
  source: string;
  doc: Record<string, any>;
}

/** `helm template` of the chart: its rendered documents (CRDs not included, as helm template without --include-crds); `apiVersions` as helm's --api-versions. */
export function renderChart(opts: { valuesFiles?: string[]; namespace?: string; release?: string; apiVersions?: string[] } = {}): Rendered[] {
  const args = [...(opts.valuesFiles ?? []).flatMap((f) => ["-f", f]), ...(opts.apiVersions ?? []).flatMap((a) => ["-a", a]), "-n", opts.namespace ?? "default", "-name", opts.release ?? "etcd-ts", chartDir];
  const text = execFileSync(chartRenderBinary(), args, { encoding: "utf8" });
  const out: Rendered[] = [];
  let source = "";
  for (const d of parseAllDocuments(text)) {
    if (d.errors.length > 0) throw new Error(`rendered YAML does not parse: ${d.errors[0]!.message}`);
    const c = d.commentBefore ?? "";
    const m = /Source: (\S+)/.exec(c);
    if (m) source = m[1]!;
    const doc = d.toJS();
    if (doc) out.push({ source, doc });
  }
  return out;
}
