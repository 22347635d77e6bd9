/**
 * The load and the observers of the cluster fault tests, and the judge that checks what they saw:
 *
 * - history clients: sequential loops of put / linearizable get / delete / compare-and-set txn on
 *   a few keys, each client on one member and moving to the next after an error, recording every
 *   operation (call and return as one global sequence) for the linearizability checker; a write
 *   that failed has an unknown outcome (it may or may not have been applied);
 * - watchers: `etcdctl watch --rev=1 -w json` per member (the real client, which resumes after a
 *   reconnect), every response recorded;
 * - `judgeHistory`: watches ordered, gap-free, duplicate-free and agreeing with each other
 *   (test/sim/watch-check.ts), every acknowledged write in the watched history at its revision,
 *   the final state equal to the last event of each key, and the history linearizable
 *   (test/sim/etcd-model.ts and linearizability.ts).
 */
import { spawnEtcdctl, type BackgroundEtcdctl } from "../harness/etcdctl.js";
import { GrpcLiteClient } from "../harness/grpc-lite.js";
import { sleep } from "../harness/processes.js";
import { SeededRandom } from "../harness/seeded-random.js";
import { ackedWrites, checkRevisionLinearization, checkRevisionOrder, etcdModel, resolveUnknownWrites, type EtcdOperation } from "../sim/etcd-model.js";
import { checkLinearizable } from "../sim/linearizability.js";
import { checkAcknowledgedWrites, checkWatches, type SeenResponse, type WatchRecord } from "../sim/watch-check.js";

export interface HistoryClientOptions {
  clients: number;
  /** Keys the clients work on (all under one prefix, which nothing else writes). */
  keys: string[];
  /** Current client URLs; client c starts on endpoints()[c % n] and moves on after an error. */
  endpoints: () => string[];
  seed: number;
  callTimeoutMs?: number;
  /** Pause after a failed call; default 50 ms. */
  retryDelayMs?: number;
}

/** Concurrent recording clients; see the module comment. `stop()` ends them. */
export class HistoryClients {
  readonly history: EtcdOperation[] = [];
  acknowledged = 0;
  failed = 0;
  private seq = 0;
  private stopping = false;
  private loops: Promise<void>[] = [];

  constructor(private readonly options: HistoryClientOptions) {}

  start(): void {
    this.loops = Array.from({ length: this.options.clients }, (_, c) => this.loop(c));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.loops);
  }

  private async loop(c: number): Promise<void> {
    const rng = new SeededRandom((this.options.seed ^ Math.imul(c + 1, 0x9e3779b1)) >>> 0);
    let target = c;
    let url = "";
    let client: GrpcLiteClient | undefined;
    const lastSeen = new Map<string, string | null>();
    try {
      for (let n = 0; !this.stopping; n++) {
        const urls = this.options.endpoints();
        if (urls.length === 0) {
          await sleep(50);
          continue;
        }
        const want = urls[target % urls.length]!;
        if (!client || url !== want) {
          client?.close();
          url = want;
          client = new GrpcLiteClient({ url, callTimeoutMs: this.options.callTimeoutMs ?? 2_000 });
        }
        const key = this.options.keys[rng.int(0, this.options.keys.length - 1)]!;
        const value = `c${c}-${n}`;
        const dice = rng.next();
        const op: EtcdOperation = { clientId: c, input: { kind: "get", key }, output: undefined, call: ++this.seq, ret: Infinity };
        try {
          if (dice < 0.4) {
            op.input = { kind: "put", key, value };
            this.history.push(op);
            const h = await client.put(key, value);
            op.output = { kind: "put", revision: Number(h.revision) };
            lastSeen.set(key, value);
          } else if (dice < 0.7) {
            const r = await client.range(key);
            const kv = r.kvs[0];
            op.output = { kind: "get", value: kv ? kv.value : null, modRevision: kv ? Number(kv.modRevision) : 0, revision: Number(r.header.revision) };
            this.history.push(op);
            lastSeen.set(key, kv ? kv.value : null);
          } else if (dice < 0.9) {
            const expected = lastSeen.get(key) ?? null;
            op.input = { kind: "cas", key, expected, value };
            this.history.push(op);
            const r = await client.txnCas(key, expected ?? undefined, value);
            op.output = {
              kind: "cas",
              succeeded: r.succeeded,
              revision: Number(r.header.revision),
              value: r.succeeded ? null : (r.current?.value ?? null),
              modRevision: r.succeeded ? 0 : Number(r.current?.modRevision ?? 0),
            };
            lastSeen.set(key, r.succeeded ? value : (r.current?.value ?? null));
          } else {
            op.input = { kind: "delete", key };
            this.history.push(op);
            const r = await client.deleteRange(key);
            op.output = { kind: "delete", deleted: Number(r.deleted), revision: Number(r.header.revision) };
            lastSeen.set(key, null);
          }
          op.ret = ++this.seq;
          this.acknowledged++;
        } catch {
          // A write's outcome is now unknown (ret stays Infinity); a failed read changes nothing
          // and leaves the history (it was pushed only on success).
          this.failed++;
          client.close();
          client = undefined;
          target++;
          if (!this.stopping) await sleep(this.options.retryDelayMs ?? 50);
        }
      }
    } finally {
      client?.close();
    }
  }
}

/**
 * `etcdctl watch <prefix> --prefix --rev=1 -w json` on one member, recording every response.
 * etcdctl watches with "require leader": a member that loses its leader cancels the watch ("no
 * leader") and etcdctl exits; the watcher then starts a new etcdctl from the revision after the
 * last it saw, so its record stays one continuous watch (gaps or repeats across the restart are
 * caught like any other).
 */
export class Watcher {
  private proc: BackgroundEtcdctl;
  private parsedUpTo = 0;
  private stopped = false;
  private readonly loop: Promise<void>;
  readonly responses: SeenResponse[] = [];
  maxRevision = 0;
  restarts = 0;
  private stderrTail = "";

  constructor(
    readonly label: string,
    readonly endpoint: string,
    private readonly prefix: string,
  ) {
    this.proc = this.spawn();
    this.loop = this.keepWatching();
  }

  private spawn(): BackgroundEtcdctl {
    this.parsedUpTo = 0;
    return spawnEtcdctl(this.endpoint, ["watch", this.prefix, "--prefix", `--rev=${this.maxRevision + 1}`, "-w", "json"]);
  }

  private async keepWatching(): Promise<void> {
    while (!this.stopped) {
      const res = await this.proc.wait(24 * 3_600_000);
      this.parse();
      this.stderrTail = (this.stderrTail + res.stderr).slice(-2_000);
      if (this.stopped) return;
      await sleep(100);
      if (this.stopped) return;
      this.restarts++;
      this.proc = this.spawn();
    }
  }

  private parse(): void {
    const out = this.proc.stdout;
    const end = out.lastIndexOf("\n") + 1;
    if (end <= this.parsedUpTo) return;
    for (const line of out.slice(this.parsedUpTo, end).split("\n")) {
      if (line.trim() === "") continue;
      const resp = JSON.parse(line) as {
        Events?: Array<{ type?: number; kv: { key: string; value?: string; mod_revision: number } }> | null;
        CompactRevision?: number;
      };
      const events = (resp.Events ?? []).map((e) => ({
        type: e.type === 1 ? ("DELETE" as const) : ("PUT" as const),
        key: Buffer.from(e.kv.key, "base64").toString("utf8"),
        value: e.type === 1 ? "" : Buffer.from(e.kv.value ?? "", "base64").toString("utf8"),
        modRevision: e.kv.mod_revision,
      }));
      for (const e of events) this.maxRevision = Math.max(this.maxRevision, e.modRevision);
      this.responses.push({ events, compactRevision: resp.CompactRevision ?? 0 });
    }
    this.parsedUpTo = end;
  }

  /** Waits (bounded) until the watcher has seen `revision`; returns whether it did. */
  async waitFor(revision: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      this.parse();
      if (this.maxRevision >= revision) return true;
      await sleep(20);
    }
    this.parse();
    return this.maxRevision >= revision;
  }

  async stop(): Promise<WatchRecord> {
    if (!this.stopped) {
      this.stopped = true;
      await this.proc.stop("SIGTERM");
      await this.loop;
      this.parse();
    }
    // The tests never compact, so a watch from revision 1 is never refused.
    return { label: this.label, startRevision: 1, compactRevisionAtStart: 0, responses: this.responses };
  }

  /** What etcdctl printed on stderr lately (all incarnations). */
  get stderr(): string {
    return this.stderrTail + this.proc.stderr;
  }
}

export interface JudgeInput {
  history: EtcdOperation[];
  watches: WatchRecord[];
  /** The converged revision of every member. */
  finalRevision: number;
  /** The final key-values under the prefix (from a linearizable read). */
  finalState: Array<{ key: string; value: string; modRevision: number }>;
  /** Search bound per key for histories with writes of unknown outcome; default 2,000,000. */
  maxStepsPerPartition?: number;
}

export interface Judgement {
  problems: string[];
  /** How linearizability was decided. */
  linearizability: "revisions" | "search" | "undecided";
  unknown: number;
}

/** See the module comment. Empty `problems` means all is well. */
export function judgeHistory(input: JudgeInput): Judgement {
  const problems: string[] = [];
  const watched = checkWatches(input.watches);
  if ("violation" in watched) return { problems: [`watch: ${watched.violation}`], linearizability: "undecided", unknown: 0 };
  const revisions = watched.history;
  for (let r = 2; r <= input.finalRevision; r++) {
    if (!revisions.has(r)) {
      problems.push(`no watcher saw revision ${r} (final revision ${input.finalRevision})`);
      break;
    }
  }
  // The final state is the last event of every key.
  const latest = new Map<string, { value: string; modRevision: number }>();
  for (const r of [...revisions.keys()].sort((a, b) => a - b)) {
    for (const e of revisions.get(r)!) {
      if (e.type === "DELETE") latest.delete(e.key);
      else latest.set(e.key, { value: e.value, modRevision: e.modRevision });
    }
  }
  const finalKeys = new Set<string>();
  for (const kv of input.finalState) {
    finalKeys.add(kv.key);
    const l = latest.get(kv.key);
    if (!l || l.value !== kv.value || l.modRevision !== kv.modRevision) {
      problems.push(`final ${kv.key}=${kv.value}@${kv.modRevision}, watched history ends with ${l ? `${l.value}@${l.modRevision}` : "no value"}`);
    }
  }
  for (const [k, l] of latest) if (!finalKeys.has(k)) problems.push(`${k} (${l.value}@${l.modRevision} in the watched history) is missing from the final state`);

  const checked = resolveUnknownWrites(input.history, revisions, input.finalRevision);
  const unknown = checked.filter((o) => o.output === undefined).length;
  const acked = checked.flatMap((op) => ackedWrites(op));
  const why = checkAcknowledgedWrites(revisions, acked);
  if (why) problems.push(`watch history: ${why}`);
  // checkAcknowledgedWrites skips revisions no watcher saw; here every revision up to the final
  // one must have been seen (checked above), so an acknowledged write elsewhere is lost.
  for (const w of acked) {
    if (w.revision > input.finalRevision || !revisions.has(w.revision)) {
      problems.push(`${w.what} acknowledged at revision ${w.revision}, which is not in the history (final revision ${input.finalRevision}): lost`);
      break;
    }
  }
  const open = checked.some((op) => op.output === undefined && op.input.kind !== "get");
  let linearizability: Judgement["linearizability"] = "revisions";
  if (!open) {
    const w = checkRevisionLinearization(checked);
    if (w) problems.push(`linearizability: ${w}`);
  } else {
    const w = checkRevisionOrder(checked);
    if (w) problems.push(`revision order: ${w}`);
    linearizability = "search";
    const r = checkLinearizable(etcdModel, checked, { maxStepsPerPartition: input.maxStepsPerPartition ?? 2_000_000 });
    if (r.outcome === "illegal") {
      const prefix = new Set(r.failed!.longestPrefix);
      problems.push(
        `linearizability: key history not linearizable (longest linearizable prefix ${prefix.size} of ${r.failed!.ops.length}; ✗ marks the rest):\n  ` +
          r.failed!.ops.map((o) => `${prefix.has(o) ? "  " : "✗ "}${etcdModel.describe!(o)}`).join("\n  "),
      );
    } else if (r.outcome === "timeout") {
      linearizability = "undecided";
    }
  }
  return { problems, linearizability, unknown };
}
