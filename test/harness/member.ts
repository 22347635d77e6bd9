/**
 * Starting, stopping, killing and restarting one etcd member process (the real etcd or etcd-ts)
 * for cross-process tests.
 *
 * Every member gets its own temporary directory holding the data dir and a log file, listens on
 * free loopback ports (client + peer), and is "ready" once its Cluster/MemberList shows it as
 * published (name and client URLs set) and a linearizable Range succeeds. The readiness probe
 * never calls GET /health: etcd 3.4 answers /health with a quorum read that goes through raft and
 * bumps the raft index, which would make `endpoint status` output depend on how often we polled.
 *
 * Identity: etcd derives the member ID from sha1(sorted advertised peer URLs + cluster token) and
 * the cluster ID from the member IDs. Differential tests therefore start both servers with the
 * same name, token and *advertised* URLs (a fixed string that nobody dials, since a single-member
 * cluster never connects to its own peer URL), while each process *listens* on its own free ports.
 * Both servers thus report identical member and cluster IDs and identical member lists.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { GrpcLiteClient } from "./grpc-lite.js";
import { freePorts, isRunning, killChild, sleep, trackChild } from "./processes.js";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** How to launch a server. */
export interface ServerBinary {
  /** "etcd" for a real etcd binary, "etcd-ts" for our server. Only used in messages. */
  kind: "etcd" | "etcd-ts";
  command: string;
  /** Arguments placed before the etcd flags (e.g. the script path for node). */
  prefixArgs: string[];
}

/** The etcd-ts binary of this checkout (`node server/bin/etcd-ts.js`). */
export function etcdTsBinary(): ServerBinary {
  return { kind: "etcd-ts", command: process.execPath, prefixArgs: [path.join(repoRoot, "server", "bin", "etcd-ts.js")] };
}

/** Interprets a binary spec: undefined/""/"etcd-ts" means our server, anything else is a path to an etcd binary. */
export function serverBinaryFromSpec(spec: string | undefined): ServerBinary {
  if (spec === undefined || spec === "" || spec === "etcd-ts") return etcdTsBinary();
  if (spec.endsWith(".js")) return { kind: "etcd-ts", command: process.execPath, prefixArgs: [path.resolve(spec)] };
  return { kind: "etcd", command: spec, prefixArgs: [] };
}

/** The server under test: `ETCD_BIN` (default: etcd-ts). `ETCD_BIN=/usr/bin/etcd` runs the suites against real etcd. */
export function binaryUnderTest(): ServerBinary {
  return serverBinaryFromSpec(process.env.ETCD_BIN);
}

/** Path of the reference etcd (`ETCD_REFERENCE_BIN`, default /usr/bin/etcd), or undefined if not installed. */
export function referenceEtcdPath(): string | undefined {
  const p = process.env.ETCD_REFERENCE_BIN ?? "/usr/bin/etcd";
  return fs.existsSync(p) ? p : undefined;
}

export interface MemberOptions {
  binary: ServerBinary;
  /** --name; default "etcd-test". */
  name?: string;
  /** --initial-cluster-token; default "etcd-test-cluster". */
  clusterToken?: string;
  /** Advertised client URL; default: the URL the member listens on. */
  advertiseClientUrl?: string;
  /** Advertised peer URL; default: the URL the member listens on. */
  advertisePeerUrl?: string;
  /**
   * --initial-cluster; default `<name>=<advertised peer URL>` (a one-member cluster). For a
   * multi-member cluster pass the whole list and preassigned `ports`.
   */
  initialCluster?: string;
  /** Scheme of the peer URLs; default "http" ("https" needs the peer TLS flags in `extraArgs`). */
  peerScheme?: "http" | "https";
  /** Ports to listen on; default: free ports picked on the first start. */
  ports?: { client: number; peer: number };
  /**
   * Readiness also requires the member list to show this many published members (default 1:
   * only this member). Members of a new multi-member cluster become ready together.
   */
  readyMembers?: number;
  /**
   * --initial-cluster-state; default "new". A member added to a running cluster (`member add`)
   * starts with "existing" and the initial cluster `member add` printed.
   */
  initialClusterState?: "new" | "existing";
  /**
   * Readiness is Status plus a serializable read instead of the member list plus a linearizable
   * read: a learner (etcd 3.4) refuses everything else, the member list included.
   */
  readySerializable?: boolean;
  /** Extra flags appended after the generated ones. */
  extraArgs?: string[];
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Bound on start + readiness; default 30 s. */
  readyTimeoutMs?: number;
}

/** One member process; see the module comment. Owned by the test that created it: call `destroy()`. */
export class Member {
  readonly name: string;
  readonly baseDir: string;
  readonly dataDir: string;
  readonly logPath: string;
  clientPort = 0;
  peerPort = 0;
  /** Wall-clock time (ms) of the last start; 0 before the first. */
  startedAt = 0;
  private child: ChildProcess | undefined;
  private client: GrpcLiteClient | undefined;
  private starts = 0;

  constructor(readonly options: MemberOptions) {
    this.name = options.name ?? "etcd-test";
    this.baseDir = fs.mkdtempSync(path.join(os.tmpdir(), `etcd-test-${options.binary.kind}-`));
    this.dataDir = path.join(this.baseDir, "data");
    this.logPath = path.join(this.baseDir, "member.log");
  }

  /** The URL this member listens on for clients (what etcdctl's --endpoints gets). */
  get clientUrl(): string {
    return `http://127.0.0.1:${this.clientPort}`;
  }

  get listenPeerUrl(): string {
    return `${this.options.peerScheme ?? "http"}://127.0.0.1:${this.peerPort}`;
  }

  get advertisePeerUrl(): string {
    return this.options.advertisePeerUrl ?? this.listenPeerUrl;
  }

  get advertiseClientUrl(): string {
    return this.options.advertiseClientUrl ?? this.clientUrl;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && isRunning(this.child);
  }

  /** The flags this member is started with (same on every start, so restarts reuse the data dir). */
  args(): string[] {
    const token = this.options.clusterToken ?? "etcd-test-cluster";
    return [
      "--name", this.name,
      "--data-dir", this.dataDir,
      "--listen-client-urls", this.clientUrl,
      "--advertise-client-urls", this.advertiseClientUrl,
      "--listen-peer-urls", this.listenPeerUrl,
      "--initial-advertise-peer-urls", this.advertisePeerUrl,
      "--initial-cluster", this.options.initialCluster ?? `${this.name}=${this.advertisePeerUrl}`,
      "--initial-cluster-token", token,
      "--initial-cluster-state", this.options.initialClusterState ?? "new",
      ...(this.options.extraArgs ?? []),
    ];
  }

  /**
   * Starts the process (picking ports on the first start; later starts reuse them and the data
   * dir) and waits until it is ready. Throws, with the tail of the member's log, if the process
   * exits or the bound passes first.
   */
  async start(): Promise<void> {
    if (this.running) throw new Error(`member ${this.name} is already running`);
    if (this.starts === 0) {
      if (this.options.ports) {
        this.clientPort = this.options.ports.client;
        this.peerPort = this.options.ports.peer;
      } else {
        [this.clientPort, this.peerPort] = await freePorts(2);
      }
    }
    this.starts++;
    this.startedAt = Date.now();
    const log = fs.openSync(this.logPath, "a");
    fs.writeSync(log, `\n===== start #${this.starts}: ${this.options.binary.command} ${[...this.options.binary.prefixArgs, ...this.args()].join(" ")}\n`);
    const child = spawn(this.options.binary.command, [...this.options.binary.prefixArgs, ...this.args()], {
      stdio: ["ignore", log, log],
      env: { ...process.env, ...(this.options.env ?? {}) },
    });
    fs.closeSync(log);
    trackChild(child);
    this.child = child;
    await this.waitReady(this.options.readyTimeoutMs ?? 30_000);
  }

  /** A gRPC client bound to this member (shared; closed by `kill`/`destroy`). */
  grpc(): GrpcLiteClient {
    this.client ??= new GrpcLiteClient({ url: this.clientUrl, callTimeoutMs: 5_000 });
    return this.client;
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastError = "";
    const probe = new GrpcLiteClient({ url: this.clientUrl, callTimeoutMs: 1_000 });
    try {
      while (Date.now() < deadline) {
        if (!this.running) {
          throw new Error(`${this.options.binary.kind} member ${this.name} exited (code ${this.child?.exitCode}, signal ${this.child?.signalCode}) before becoming ready\n${this.logTail()}`);
        }
        try {
          if (this.options.readySerializable) {
            // A learner answers only Status and serializable reads (not even the member list).
            await probe.status();
            await probe.range("health-probe", { serializable: true });
            return;
          }
          const list = await probe.memberList();
          const self = list.members.find((m) => m.name === this.name);
          const published = list.members.filter((m) => m.name !== "" && m.clientUrls.length > 0).length;
          if (self && self.clientUrls.length > 0 && published >= (this.options.readyMembers ?? 1)) {
            await probe.range("health-probe");
            return;
          }
          lastError = "member not yet published";
        } catch (err) {
          lastError = (err as Error).message;
          // With auth enabled the probe has no user: a refusal is an answer given after the read's
          // ReadIndex round (the permission check comes after it), so the member serves.
          if (/user name is empty|permission denied/.test(lastError)) return;
          probe.close();
        }
        await sleep(50);
      }
    } finally {
      probe.close();
    }
    throw new Error(`${this.options.binary.kind} member ${this.name} not ready after ${timeoutMs}ms (last: ${lastError})\n${this.logTail()}`);
  }

  /** Sends `signal` (default SIGKILL) and waits for the process to exit. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    this.client?.close();
    this.client = undefined;
    if (this.child) await killChild(this.child, signal, 10_000);
  }

  /** Sends `signal` without waiting (SIGSTOP / SIGCONT to freeze and thaw the process). */
  signal(signal: NodeJS.Signals): void {
    if (this.child && isRunning(this.child)) this.child.kill(signal);
  }

  /** Graceful stop: SIGTERM, escalating to SIGKILL after 10 s. */
  async stop(): Promise<void> {
    await this.kill("SIGTERM");
  }

  /** Restarts on the same data dir and ports. */
  async restart(): Promise<void> {
    if (this.running) await this.stop();
    await this.start();
  }

  /** Kills the process and removes its directory. Safe to call twice. */
  async destroy(): Promise<void> {
    await this.kill("SIGKILL");
    if (process.env.KEEP_DATA_DIRS !== "1") fs.rmSync(this.baseDir, { recursive: true, force: true });
  }

  /** The last `bytes` of the member's log (for failure messages). */
  logTail(bytes = 4_000): string {
    try {
      const text = fs.readFileSync(this.logPath, "utf8");
      return `--- ${this.logPath} (tail) ---\n${text.slice(-bytes)}`;
    } catch {
      return `--- ${this.logPath}: no log ---`;
    }
  }
}

/** Creates and starts a member; on failure the member is destroyed and the error rethrown. */
export async function startMember(options: MemberOptions): Promise<Member> {
  const member = new Member(options);
  try {
    await member.start();
  } catch (err) {
    const tail = member.logTail();
    await member.destroy();
    throw Object.assign(err as Error, { logTail: tail });
  }
  return member;
}
