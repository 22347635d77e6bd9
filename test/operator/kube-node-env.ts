/**
 * The shared set-up of the end-to-end scenarios on a real node (node mode of ../shared/tools/kube:
 * pods in containerd, cluster DNS, PVCs): bring the node up, build the images from this checkout
 * as the Dockerfile lays them out (`images.sh app`), install the CRDs, make the scenario's
 * namespace, start the operator in process; and the reads every scenario makes (status, pod IPs,
 * etcdctl against pod IPs, which the host routes to).
 *
 * `npm run test:kube-e2e` (scripts/kube-e2e.sh) brings the node up once and builds the images
 * once for every scenario: it sets KUBE_NODE_KUBECONFIG and KUBE_NODE_IMAGES, and the scenarios
 * then only make their namespaces. Run alone (`KUBE_E2E=1 npx vitest run <file>`) a scenario
 * brings the node up and down itself. Either way the node is the whole machine's: one run at a
 * time (the script takes /tmp/etcd-ts-kube-node.lock).
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { startOperator, type RunningOperator } from "../../operator/src/main.js";
import { chartDir } from "./chart-render.js";
import { appCmd, assembleImage } from "./image.js";
import { kubeBin, kubeMissing, kubeTools, kubectl, kubectlJson, waitFor } from "./kube.js";

const run = promisify(execFile);

/** The image every scenario uses unless it builds its own tags. */
export const DEV_IMAGE = "localhost/etcd-ts:dev";

/** Why a node scenario does not run here, or undefined. Prints the reason once per file. */
export function nodeSkipReason(file: string, what: string): string | undefined {
  if (process.env.KUBE_E2E !== "1") {
    console.warn(`${file} skipped: set KUBE_E2E=1 to run ${what} on a real node`);
    return "KUBE_E2E is not 1";
  }
  const missing = kubeMissing();
  if (missing) console.warn(`${file} skipped: ${missing}`);
  return missing;
}

/** Images already built by scripts/kube-e2e.sh for this run. */
function prebuilt(): Set<string> {
  return new Set((process.env.KUBE_NODE_IMAGES ?? "").split(",").filter(Boolean));
}

/** Builds `images` (tags) from this checkout, all with the same layout, skipping ones already built for this run. */
export function buildImages(images: string[]): void {
  const todo = images.filter((i) => !prebuilt().has(i));
  if (todo.length === 0) return;
  const dir = mkdtempSync(path.join(os.tmpdir(), "etcd-ts-image-"));
  assembleImage(dir);
  for (const image of todo) {
    execFileSync("bash", [path.join(kubeTools, "images.sh"), "app", image, dir], {
      env: { ...process.env, APP_CMD: JSON.stringify(appCmd("etcd")) },
      stdio: "ignore",
      timeout: 300_000,
    });
  }
}

export interface NodeEnvOptions {
  /** The scenario's namespace (made here, deleted at the end). */
  namespace: string;
  /** Image tags to build; the first is the operator's default member image. */
  images?: string[];
  /** Extra operator flags. */
  operatorArgs?: string[];
  /** Start the operator in process (default true). */
  operator?: boolean;
}

/** One scenario's view of the node. Call `up()` in beforeAll and `down()` in afterAll. */
export class NodeEnv {
  kc = "";
  op: RunningOperator | undefined;
  readonly timings: Record<string, number> = {};
  private ownsNode = false;

  constructor(readonly opts: NodeEnvOptions) {}

  get ns(): string {
    return this.opts.namespace;
  }

  get images(): string[] {
    return this.opts.images ?? [DEV_IMAGE];
  }

  async timed<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    try {
      return await fn();
    } finally {
      this.timings[name] = (Date.now() - t0) / 1000;
    }
  }

  async up(): Promise<void> {
    const shared = process.env.KUBE_NODE_KUBECONFIG;
    if (shared) {
      this.kc = shared;
    } else {
      await this.timed("node up", async () => {
        const out = execFileSync("bash", [path.join(kubeTools, "node.sh"), "up"], { encoding: "utf8", env: { ...process.env, KUBE_BIN_DIR: kubeBin }, timeout: 300_000 });
        this.kc = out.trim().split("\n").at(-1)!;
        this.ownsNode = true;
      });
    }
    await this.timed("images", async () => buildImages(this.images));
    await kubectl(this.kc, ["apply", "-f", path.join(chartDir, "crds")]);
    await kubectl(this.kc, ["wait", "--for=condition=Established", "--timeout=60s", "crd/etcdclusters.etcd.etcd-ts.io", "crd/etcdbackups.etcd.etcd-ts.io"]);
    await kubectl(this.kc, ["create", "namespace", this.ns]);
    if (this.opts.operator !== false) await this.startOperator();
  }

  async startOperator(extra: string[] = []): Promise<RunningOperator> {
    this.op = await startOperator([
      "--kubeconfig",
      this.kc,
      "--lease-namespace",
      this.ns,
      "--image",
      this.images[0]!,
      "--log-level",
      process.env.OPERATOR_LOG ?? "warn",
      "--metrics-address",
      "127.0.0.1:0",
      ...(this.opts.operatorArgs ?? []),
      ...extra,
    ]);
    return this.op;
  }

  async down(label: string): Promise<void> {
    await this.op?.stop();
    if (this.kc) {
      await kubectl(this.kc, ["delete", "namespace", this.ns, "--wait=false"]).catch(() => {});
      if (this.ownsNode) {
        await this.timed("node down", async () => {
          execFileSync("bash", [path.join(kubeTools, "node.sh"), "down"], { stdio: "ignore", timeout: 300_000 });
        });
      }
    }
    console.log(`${label} timings (s): ${JSON.stringify(this.timings)}`);
  }

  /** kubectl in the scenario's namespace. */
  kubectl(args: string[], input?: string): Promise<string> {
    return kubectl(this.kc, ["-n", this.ns, ...args], input);
  }

  get<T = any>(what: string): Promise<T> {
    return kubectlJson<T>(this.kc, ["-n", this.ns, "get", ...what.split(" ")]);
  }

  apply(obj: Record<string, unknown>): Promise<string> {
    return this.kubectl(["apply", "-f", "-"], stringify(obj));
  }

  /** Applies an etcd.etcd-ts.io/v1alpha1 object. */
  applyEtcd(kind: string, name: string, spec: Record<string, unknown>): Promise<string> {
    return this.apply({ apiVersion: "etcd.etcd-ts.io/v1alpha1", kind, metadata: { name }, spec });
  }

  async podIP(name: string): Promise<string> {
    return (await this.get(`pod ${name}`)).status.podIP as string;
  }

  async podsOf(cluster: string): Promise<any[]> {
    return (await kubectlJson(this.kc, ["-n", this.ns, "get", "pods", "-l", `etcd.etcd-ts.io/cluster=${cluster}`])).items as any[];
  }

  /**
   * Waits until the cluster's status shows exactly `names` as healthy voters, phase Running,
   * Available (and `extra`, when given); returns the status.
   */
  waitMembers(cluster: string, names: string[], timeoutMs: number, extra: (s: any) => boolean = () => true): Promise<any> {
    return waitFor<any>(
      `${cluster}: members ${names.join(",")}`,
      async () => {
        const s = (await this.get(`etcdcluster ${cluster}`)).status;
        const ok =
          s?.phase === "Running" &&
          s.conditions?.some((c: any) => c.type === "Available" && c.status === "True") &&
          s.members?.length === names.length &&
          s.members.every((m: any, i: number) => m.name === names[i] && m.healthy && m.role !== "learner") &&
          extra(s);
        return ok ? s : undefined;
      },
      timeoutMs,
      1000,
    );
  }

  /** The reasons of the events recorded on objects of `kind`. */
  async eventReasons(kind = "EtcdCluster"): Promise<Set<string>> {
    const events = await this.get(`events --field-selector involvedObject.kind=${kind}`);
    return new Set(events.items.map((e: any) => e.reason));
  }
}

/** etcdctl (v3) against `endpoints` (host:port pairs or URLs), with short timeouts. */
export async function etcdctlAt(endpoints: string | string[], args: string[], extra: string[] = []): Promise<string> {
  const list = (Array.isArray(endpoints) ? endpoints : [endpoints]).map((e) => (e.includes("://") ? e : `http://${e}:2379`));
  const { stdout } = await run("etcdctl", ["--endpoints", list.join(","), "--command-timeout=10s", "--dial-timeout=2s", ...extra, ...args], {
    env: { ...process.env, ETCDCTL_API: "3" },
  });
  return stdout;
}

export { waitFor };

/**
 * A client that keeps writing `w/NNNNNN` keys, one sequential etcdctl put at a time, to whichever
 * member pods of `cluster` exist now (their IPs change as pods are recreated). It counts failed
 * attempts and the longest run of failures, and `lost()` reads back every acknowledged key.
 */
export class ClientWriter {
  readonly acked: number[] = [];
  failures = 0;
  longestOutageMs = 0;
  private endpoints: string[] = [];
  private writing = true;
  private failingSince = 0;
  private refresher: NodeJS.Timeout | undefined;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly env: NodeEnv,
    private readonly cluster: string,
  ) {}

  static key(i: number): string {
    return `w/${String(i).padStart(6, "0")}`;
  }

  async start(): Promise<this> {
    await this.refresh();
    this.refresher = setInterval(() => void this.refresh().catch(() => {}), 1000);
    this.loop = (async () => {
      for (let i = 0; this.writing; i++) {
        try {
          await etcdctlAt(this.endpoints, ["put", ClientWriter.key(i), String(i)], ["--command-timeout=5s"]);
          this.acked.push(i);
          this.endOutage();
        } catch {
          this.failures++;
          if (!this.failingSince) this.failingSince = Date.now();
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    })();
    return this;
  }

  async stop(): Promise<void> {
    this.writing = false;
    clearInterval(this.refresher);
    await this.loop;
    this.endOutage();
  }

  /** Acknowledged writes missing from the cluster now. */
  async lost(): Promise<number[]> {
    await this.refresh();
    const keys = new Set((await etcdctlAt(this.endpoints, ["get", "w/", "--prefix", "--keys-only"])).split("\n").filter((l) => l !== ""));
    return this.acked.filter((i) => !keys.has(ClientWriter.key(i)));
  }

  summary(): string {
    return `${this.acked.length} writes acknowledged, ${this.failures} failed attempts, longest outage ${this.longestOutageMs} ms`;
  }

  private endOutage(): void {
    if (this.failingSince) this.longestOutageMs = Math.max(this.longestOutageMs, Date.now() - this.failingSince);
    this.failingSince = 0;
  }

  private async refresh(): Promise<void> {
    this.endpoints = (await this.env.podsOf(this.cluster))
      .filter((p) => p.status?.podIP && !p.metadata.deletionTimestamp)
      .map((p) => `http://${p.status.podIP}:2379`);
  }
}

/**
 * Samples how many member pods are Ready (and not being deleted) while something disrupts a
 * cluster. `sample()` reads the pods once: a read that fails counts as a failed sample, never as
 * zero pods. It keeps the lowest count with the sample it came from, and every member container
 * that restarted inside its pod, with its last exit. A rolled pod is deleted and recreated (a new
 * UID, restart count 0), and the member pods have no liveness probe, so a restart in place is
 * not the operator's or the kubelet's doing: the member crashed, or something else on the host
 * stopped it (exit 0 Completed: a SIGTERM it handled; exit 137 Error: a SIGKILL, from the OOM
 * killer or another process, e.g. a `pkill -f etcd-ts.js`, which sees the pods' processes too).
 */
export class ReadySampler {
  minReady = Number.POSITIVE_INFINITY;
  samples = 0;
  failed = 0;
  private worst = "";
  private lastError = "";
  private readonly restarts = new Map<string, string>();

  constructor(private readonly list: () => Promise<any[]>) {}

  async sample(): Promise<void> {
    const at = new Date().toISOString();
    let pods: any[];
    try {
      pods = await this.list();
    } catch (err) {
      this.failed++;
      this.lastError = String((err as Error)?.message ?? err).slice(0, 200);
      return;
    }
    this.samples++;
    const ready = pods.filter((p) => !p.metadata.deletionTimestamp && readyCondition(p)?.status === "True").length;
    if (ready < this.minReady) {
      this.minReady = ready;
      this.worst = `${ready} Ready at ${at}: ${pods.map(describeMemberPod).join("; ") || "no pods"}`;
    }
    for (const p of pods) {
      const cs = p.status?.containerStatuses?.find((c: any) => c.name === "etcd");
      const t = cs?.lastState?.terminated;
      if (!cs || cs.restartCount === 0 || !t) continue;
      this.restarts.set(`${p.metadata.uid}#${cs.restartCount}`, `${p.metadata.name} restarted in place (restart ${cs.restartCount}): exit ${t.exitCode} (${t.reason}) at ${t.finishedAt}`);
    }
  }

  summary(): string {
    return `${this.samples} samples, ${this.failed} failed reads, at least ${this.minReady} Ready, ${this.restarts.size} member restarts in place`;
  }

  /** The worst sample and the restarts: what an assertion on minReady should say when it fails. */
  explain(): string {
    const restarts = [...this.restarts.values()];
    return [
      `worst sample: ${this.worst || "none"}`,
      restarts.length > 0
        ? `member containers restarted in place, which a roll never does (it recreates pods): the member crashed or was signalled from outside Kubernetes: ${restarts.join("; ")}`
        : "no member container restarted in place",
      `${this.samples} samples, ${this.failed} failed reads${this.lastError ? ` (last: ${this.lastError})` : ""}`,
    ].join("\n");
  }
}

function readyCondition(p: any): any {
  return p.status?.conditions?.find((c: any) => c.type === "Ready");
}

function describeMemberPod(p: any): string {
  const r = readyCondition(p);
  const cs = p.status?.containerStatuses?.find((c: any) => c.name === "etcd");
  const last = cs?.lastState?.terminated;
  return [
    `${p.metadata.name} (${String(p.metadata.uid).slice(0, 8)})`,
    p.status?.phase ?? "?",
    p.metadata.deletionTimestamp ? "deleting" : undefined,
    `Ready=${r?.status ?? "?"} since ${r?.lastTransitionTime ?? "?"}`,
    cs ? `restarts ${cs.restartCount}${last ? ` (last exit ${last.exitCode} ${last.reason} at ${last.finishedAt})` : ""}` : undefined,
  ]
    .filter((x) => x !== undefined)
    .join(" ");
}

/** Each key's value, create and mod revisions, and the header revision, as etcdctl reads them at `ip`. */
export async function readKeys(ip: string, keys: string[]): Promise<{ kvs: Record<string, [string, number, number]>; header: number }> {
  const out: Record<string, [string, number, number]> = {};
  let header = 0;
  for (const k of keys) {
    const r = JSON.parse(await etcdctlAt(ip, ["get", k, "-w", "json"]));
    header = Number(r.header.revision);
    const kv = r.kvs?.[0];
    out[k] = kv ? [Buffer.from(kv.value, "base64").toString(), Number(kv.create_revision), Number(kv.mod_revision)] : ["<missing>", 0, 0];
  }
  return { kvs: out, header };
}
