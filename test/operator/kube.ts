/**
 * Kubernetes for the operator's tests, from ../shared/tools/kube (see its README): the binaries
 * build.sh makes (KUBE_BIN_DIR, default /var/cache/etcd-ts-kube/bin), the fast mode
 * (apiserver.sh: API server and controller-manager on loopback) and kubectl. `kubeMissing()`
 * says why the tests that need them skip.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { repoRoot } from "./chart-render.js";

const run = promisify(execFile);

/** The shared tools beside the checkout, or at the machine's shared folder for a clone elsewhere. */
export const kubeTools =
  process.env.KUBE_TOOLS ??
  [path.resolve(repoRoot, "../shared/tools/kube"), "/work/shared/tools/kube"].find((d) => existsSync(path.join(d, "apiserver.sh"))) ??
  path.resolve(repoRoot, "../shared/tools/kube");
export const kubeBin = process.env.KUBE_BIN_DIR ?? "/var/cache/etcd-ts-kube/bin";

export function kubeMissing(): string | undefined {
  if (!existsSync(path.join(kubeTools, "apiserver.sh"))) return `no Kubernetes test tools at ${kubeTools}`;
  for (const b of ["kube-apiserver", "kube-controller-manager", "kubectl"]) {
    if (!existsSync(path.join(kubeBin, b))) return `${kubeBin}/${b} is not built (run ${kubeTools}/build.sh, ~9 min once)`;
  }
  if (process.getuid?.() !== 0) return "the Kubernetes tools need root";
  return undefined;
}

export async function kubectl(kc: string, args: string[], input?: string): Promise<string> {
  const p = run(path.join(kubeBin, "kubectl"), ["--kubeconfig", kc, ...args], { maxBuffer: 32 << 20, timeout: 60_000 });
  if (input !== undefined) {
    p.child.stdin!.end(input);
  }
  const { stdout } = await p;
  return stdout;
}

/** kubectl that returns the error text instead of throwing. */
export async function kubectlResult(kc: string, args: string[], input?: string): Promise<{ ok: boolean; out: string }> {
  try {
    return { ok: true, out: await kubectl(kc, args, input) };
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    return { ok: false, out: `${e.stdout ?? ""}${e.stderr ?? e.message}` };
  }
}

export async function kubectlJson<T = any>(kc: string, args: string[]): Promise<T> {
  return JSON.parse(await kubectl(kc, [...args, "-o", "json"])) as T;
}

/** Fast mode: API server + controller-manager against `etcdEndpoint` (RBAC authorization by default); returns the kubeconfig path. */
export function apiserverUp(etcdEndpoint: string, dir: string, port: number, authz = "RBAC"): string {
  const out = execFileSync("bash", [path.join(kubeTools, "apiserver.sh"), "up", etcdEndpoint, dir], {
    env: { ...process.env, KUBE_PORT: String(port), KUBE_BIN_DIR: kubeBin, KUBE_AUTHZ: authz },
    encoding: "utf8",
    timeout: 120_000,
    stdio: ["ignore", "pipe", "pipe"],
  });
  return out.trim().split("\n").at(-1)!;
}

export function apiserverDown(dir: string, port: number): void {
  try {
    execFileSync("bash", [path.join(kubeTools, "apiserver.sh"), "down", dir], {
      env: { ...process.env, KUBE_PORT: String(port), KUBE_BIN_DIR: kubeBin },
      stdio: "ignore",
      timeout: 60_000,
    });
  } catch {
    // best effort
  }
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs: number, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String((last as Error).message ?? last)}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
