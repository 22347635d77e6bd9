/**
 * Differential etcdctl tests on 3-member clusters: every case is a script of etcdctl invocations
 * that runs against a 3-member real etcd 3.4 (the reference) and a 3-member cluster of the binary
 * under test (ETCD_BIN, default etcd-ts), concurrently; each side records a transcript which,
 * normalised, must be equal. The reference transcripts are also kept as golden files
 * (golden/<suite>.txt, `UPDATE_GOLDEN=1` rewrites them), as in diff-suite.ts.
 *
 * What is normalised, and why (on top of diff-suite.ts's `normalise`: timestamps, client UUIDs,
 * durations, database sizes):
 *  - member IDs -> <m0-id>.. by member name, and the cluster ID -> <cluster-id>: etcd derives
 *    them from the advertised peer URLs, which must differ between two clusters that run side by
 *    side (a one-member diff suite can share them, a three-member cluster dials them); IDs of
 *    members added but never started -> <added-N>;
 *  - client and peer URLs (and host:port forms) -> <m0-client>, <m0-peer>..: free ports;
 *  - raft term -> <term> and raft index / applied index -> <index>: how many elections happened
 *    (and so how many empty leader entries there are) is timing; every case starts with member 0
 *    as leader so that "is leader" stays comparable;
 *  - clientv3's retry warnings on stderr: a run of them (rising attempt numbers, same error) is
 *    one line, since how many attempts fit in etcdctl's command timeout is timing;
 *  - order: etcd lists members (and `--cluster` endpoints) in member-ID order, which follows the
 *    random IDs; such output is sorted after normalisation (lines, table rows, JSON arrays of
 *    objects, or `-w fields` blocks, as the case says).
 * Revisions, versions, error texts and exit codes are compared as they are. `DIFF_DUMP_DIR=dir`
 * writes both normalised transcripts of every case there.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Cluster } from "../harness/cluster.js";
import { runEtcdctl, type EtcdctlResult } from "../harness/etcdctl.js";
import { binaryUnderTest, referenceEtcdPath, serverBinaryFromSpec, type Member, type ServerBinary } from "../harness/member.js";
import { killAllChildren, sleep } from "../harness/processes.js";
import { normalise } from "./diff-suite.js";

const goldenDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "golden");

/** How a command's stdout is put in a canonical order after normalisation. */
export type SortMode = "lines" | "table" | "json" | "fields";

export interface ClusterCtlOptions {
  /** Endpoints: a member index (default 0) or "all" (every member in the membership). */
  at?: number | "all";
  sort?: SortMode;
  stdin?: string;
}

export interface ClusterCaseContext {
  readonly side: "reference" | "candidate";
  readonly cluster: Cluster;
  ctl(args: string[], options?: ClusterCtlOptions): Promise<EtcdctlResult>;
  /** `<mN-id>` as etcdctl expects it (hex) for member `i`. */
  id(i: number): string;
  /** Peer URL of member i (as advertised). */
  peerUrl(i: number): string;
  /** Registers the ID printed by `member add` of a member that is never started (-> <added-N>). */
  addedMemberId(res: EtcdctlResult): string;
  /**
   * Adds and starts a member (etcdctl `member add`, recorded, then the process with
   * --initial-cluster-state existing) and returns its index.
   */
  addMember(options: { learner?: boolean }): Promise<number>;
  /**
   * Makes member i the leader (not recorded) and waits until every member agrees, and until etcd
   * would accept a membership change (Cluster.waitReconfigurable), so every case starts alike.
   */
  ensureLeader(i: number): Promise<void>;
  /** Waits (not recorded) until member i has applied the leader's revision. */
  waitCaughtUp(i: number): Promise<void>;
  note(text: string): void;
}

interface Side {
  name: "reference" | "candidate";
  cluster: Cluster;
  binary: ServerBinary;
  added: bigint[];
}

function formatCommand(args: string[], at: number | "all"): string {
  return `$ etcdctl ${args.map((a) => (/^[\w@%+=:,./<>-]+$/.test(a) ? a : JSON.stringify(a))).join(" ")}  # at ${at === "all" ? "all members" : `m${at}`}`;
}

/** Sorts the top-level elements of every JSON array of objects in `text` (recursively). */
export function sortJsonArrays(text: string): string {
  const out: string[] = [];
  let i = 0;
  const parseValue = (): string => {
    const start = i;
    const c = text[i];
    if (c === "[") return parseArray();
    if (c === "{") {
      let s = "{";
      i++;
      while (i < text.length && text[i] !== "}") {
        if (text[i] === "[" || text[i] === "{") s += parseValue();
        else if (text[i] === '"') s += parseString();
        else s += text[i++];
      }
      i++;
      return s + "}";
    }
    if (c === '"') return parseString();
    while (i < text.length && !",]}".includes(text[i]!)) i++;
    return text.slice(start, i);
  };
  const parseString = (): string => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return text.slice(start, i);
  };
  const parseArray = (): string => {
    i++;
    const elements: string[] = [];
    let current = "";
    while (i < text.length && text[i] !== "]") {
      if (text[i] === ",") {
        elements.push(current);
        current = "";
        i++;
      } else if (text[i] === "[" || text[i] === "{" || text[i] === '"') {
        current += parseValue();
      } else {
        current += text[i++];
      }
    }
    i++;
    if (current !== "" || elements.length > 0) elements.push(current);
    if (elements.every((e) => e.trim().startsWith("{"))) elements.sort();
    return `[${elements.join(",")}]`;
  };
  while (i < text.length) {
    if (text[i] === "[" || text[i] === "{") out.push(parseValue());
    else out.push(text[i++]!);
  }
  return out.join("");
}

/** Puts one normalised stdout in canonical order; see SortMode. */
export function sortOutput(stdout: string, mode: SortMode): string {
  const lines = stdout.replace(/\n$/, "").split("\n");
  switch (mode) {
    case "lines":
      return lines.sort().join("\n");
    case "table": {
      // Border lines and the header row stay; data rows are sorted in place.
      const rowIdx = lines.map((l, i) => (l.startsWith("|") ? i : -1)).filter((i) => i >= 0).slice(1);
      const rows = rowIdx.map((i) => lines[i]!).sort();
      rowIdx.forEach((i, k) => (lines[i] = rows[k]!));
      return lines.join("\n");
    }
    case "json":
      return lines.map(sortJsonArrays).join("\n");
    case "fields": {
      // A block starts at a line with the same key as the output's first block line ("ID" for
      // members, "ClusterID" for endpoints); a preamble before the first block stays first.
      const key = lines.find((l) => /^"ID" :/.test(l)) ? /^"ID" :/ : /^"ClusterID" :/;
      const blocks: string[][] = [];
      const preamble: string[] = [];
      let seenFirst = false;
      for (const l of lines) {
        if (key.test(l)) {
          blocks.push([]);
          seenFirst = true;
        }
        if (!seenFirst) preamble.push(l);
        else blocks.at(-1)!.push(l);
      }
      // Blocks are separated by blank lines; the last one's separator is gone with the final newline.
      const sorted = blocks.map((b) => b.join("\n").replace(/\n+$/, "")).sort();
      return [...preamble, sorted.join("\n\n")].join("\n");
    }
  }
}

/** The substitutions of the module comment, for one side (IDs and ports known at the end of a case). */
function normaliseCluster(text: string, side: Side, clusterId: bigint): string {
  let t = text;
  const members = side.cluster.members;
  const replaceId = (id: bigint, label: string): void => {
    t = t.replace(new RegExp(`\\b0*${id.toString(16)}\\b`, "g"), label);
    t = t.replace(new RegExp(`\\b${id.toString(10)}\\b`, "g"), label);
  };
  members.forEach((m, i) => {
    t = t.split(m.clientUrl).join(`<m${i}-client>`);
    t = t.split(m.advertisePeerUrl).join(`<m${i}-peer>`);
    t = t.split(`127.0.0.1:${m.clientPort}`).join(`<m${i}-client-host>`);
    t = t.split(`127.0.0.1:${m.peerPort}`).join(`<m${i}-peer-host>`);
    t = t.split(m.baseDir).join(`<m${i}-dir>`);
    try {
      replaceId(side.cluster.memberId(i), `<m${i}-id>`);
    } catch {
      /* a member whose ID was never learned */
    }
  });
  side.added.forEach((id, k) => replaceId(id, `<added-${k + 1}>`));
  replaceId(clusterId, "<cluster-id>");
  // etcdctl prints IDs with %16x in `member add/remove/update`: space-padded when short.
  t = t.replace(/ +(<(?:m\d+-id|added-\d+|cluster-id)>)/g, " $1");
  // Raft term and indexes (endpoint status: table, simple, JSON, fields; response headers).
  t = t.replace(/"raft_term":\d+/g, '"raft_term":"<term>"').replace(/"raftTerm":\d+/g, '"raftTerm":"<term>"');
  t = t.replace(/"raftIndex":\d+/g, '"raftIndex":"<index>"').replace(/"raftAppliedIndex":\d+/g, '"raftAppliedIndex":"<index>"');
  t = t.replace(/"RaftTerm" : \d+/g, '"RaftTerm" : <term>').replace(/"RaftIndex" : \d+/g, '"RaftIndex" : <index>');
  t = t.replace(/"RaftAppliedIndex" : \d+/g, '"RaftAppliedIndex" : <index>');
  // `endpoint status` simple: "<ep>, <id>, <version>, <db size>, <is leader>, <is learner>, <term>, <index>, <applied>, <errors>"
  t = t.replace(/^(<m\d+-client>, [^,]+, [^,]+, [^,]+, (?:true|false), (?:true|false)), \d+, \d+, \d+, /gm, "$1, <term>, <index>, <index>, ");
  // ... table: the three raft columns after IS LEARNER.
  t = t.replace(/^(\|[^|]*\|[^|]*\|[^|]*\|[^|]*\|[^|]*\|[^|]*\|) +\d+ \| +\d+ \| +\d+ \|/gm, "$1 <term> | <index> | <index> |");
  return t;
}

function readGolden(suite: string): Map<string, string> {
  const file = path.join(goldenDir, `${suite}.txt`);
  const sections = new Map<string, string>();
  if (!fs.existsSync(file)) return sections;
  const parts = fs.readFileSync(file, "utf8").split(/^#### case: (.*)$/m);
  for (let i = 1; i + 1 < parts.length; i += 2) sections.set(parts[i]!, parts[i + 1]!.replace(/^\n/, "").replace(/\n+$/, "\n"));
  return sections;
}

function writeGolden(suite: string, cases: Array<[string, string]>): void {
  const header =
    `# Transcripts recorded from a 3-member real etcd 3.4 by test/etcdctl/${suite}.test.ts.\n` +
    `# Placeholders are explained in test/etcdctl/cluster-diff-suite.ts and diff-suite.ts. Regenerate with UPDATE_GOLDEN=1.\n\n`;
  fs.writeFileSync(path.join(goldenDir, `${suite}.txt`), header + cases.map(([n, t]) => `#### case: ${n}\n${t}\n`).join("\n"));
}

const timingFlags = ["--heartbeat-interval=50", "--election-timeout=500"];

export interface ClusterDiffSuite {
  case(name: string, script: (ctx: ClusterCaseContext) => Promise<void>, timeoutMs?: number): void;
}

/**
 * Declares a 3-member differential suite in the current test file: starts both clusters before
 * the first case and destroys them after the last. Cases run in order on the same clusters.
 */
export function clusterDiffSuite(suite: string): ClusterDiffSuite {
  const referencePath = referenceEtcdPath();
  const updateGolden = process.env.UPDATE_GOLDEN === "1";
  const golden = readGolden(suite);
  const recorded: Array<[string, string]> = [];
  const sides: Side[] = [];
  let startError: Error | undefined;

  beforeAll(async () => {
    if (referencePath === undefined) {
      startError = new Error("no reference etcd (ETCD_REFERENCE_BIN)");
      return;
    }
    const specs: Array<[Side["name"], ServerBinary]> = [
      ["reference", serverBinaryFromSpec(referencePath)],
      ["candidate", binaryUnderTest()],
    ];
    const results = await Promise.allSettled(
      specs.map(([, binary], k) => Cluster.start({ binary, size: 3, namePrefix: "d", clusterToken: `diff3-${k}`, extraArgs: timingFlags })),
    );
    results.forEach((r, k) => {
      if (r.status === "fulfilled") sides.push({ name: specs[k]![0], cluster: r.value, binary: specs[k]![1], added: [] });
      else startError ??= new Error(`${specs[k]![0]} cluster failed to start: ${(r.reason as Error).message}`);
    });
  });

  afterAll(async () => {
    await Promise.all(sides.map((s) => s.cluster.destroy()));
    await killAllChildren();
    if (updateGolden && recorded.length > 0) writeGolden(suite, recorded);
  });

  const contextFor = (side: Side, lines: string[]): ClusterCaseContext => {
    const cluster = side.cluster;
    const endpointsOf = (at: number | "all"): string =>
      at === "all" ? cluster.clientUrls.join(",") : (cluster.members[at] as Member).clientUrl;
    const record = (args: string[], at: number | "all", res: EtcdctlResult, options: ClusterCtlOptions): void => {
      lines.push(formatCommand(args, at));
      if (options.stdin !== undefined) lines.push("[stdin]", options.stdin.replace(/\n$/, ""));
      if (res.stdout !== "") lines.push(options.sort ? `[stdout, sorted by ${options.sort}]` : "[stdout]", res.stdout.replace(/\n$/, ""), "[end stdout]");
      // `endpoint health` prints its verdicts on stderr, in the same member-ID order.
      if (res.stderr !== "") lines.push(options.sort === "lines" ? "[stderr, sorted by lines]" : "[stderr]", res.stderr.replace(/\n$/, ""), "[end stderr]");
      lines.push(res.signal !== null ? `[signal ${res.signal}]` : `[exit ${res.code}]`);
    };
    return {
      side: side.name,
      cluster,
      async ctl(args, options = {}) {
        const at = options.at ?? 0;
        let res = await runEtcdctl(endpointsOf(at), args, { stdin: options.stdin, timeoutMs: 20_000 });
        // Strict reconfiguration refuses a membership change ("unhealthy cluster") until the
        // leader has been connected to a quorum for 5 s. On a loaded machine a peer link can drop
        // and reconnect, on either side; no case here expects the refusal, and it is definite, so
        // the command is retried (bounded) and only its final answer recorded.
        const deadline = Date.now() + 20_000;
        while (args[0] === "member" && /unhealthy cluster/.test(res.stderr) && Date.now() < deadline) {
          await sleep(250);
          res = await runEtcdctl(endpointsOf(at), args, { stdin: options.stdin, timeoutMs: 20_000 });
        }
        record(args, at, res, options);
        return res;
      },
      id: (i) => cluster.memberId(i).toString(16),
      peerUrl: (i) => cluster.members[i]!.advertisePeerUrl,
      addedMemberId(res) {
        const hex = /Member +([0-9a-f]+) added/.exec(res.stdout);
        if (!hex) {
          lines.push("# (no member ID in that output)");
          return "0";
        }
        side.added.push(BigInt("0x" + hex[1]!));
        return hex[1]!;
      },
      async addMember(options) {
        let res: EtcdctlResult | undefined;
        const index = await cluster.addMember({ binary: side.binary, learner: options.learner, onMemberAdd: (r) => (res = r) });
        if (res) record(["member", "add", `d${index}`, `--peer-urls=${cluster.members[index]!.advertisePeerUrl}`, ...(options.learner ? ["--learner"] : [])], 0, res, {});
        return index;
      },
      async ensureLeader(i) {
        await cluster.waitReconfigurable();
        const deadline = Date.now() + 30_000;
        for (;;) {
          const leader = await cluster.waitLeader();
          if (leader !== i) await cluster.moveLeader(i).catch(() => undefined);
          const views = await Promise.all(
            cluster.live.map((j) => cluster.grpc(j).status().then((s) => s.leader, () => -1n)),
          );
          if (views.every((v) => v === cluster.memberId(i))) return;
          if (Date.now() > deadline) throw new Error(`member ${i} did not become the leader everyone sees`);
          await sleep(100);
        }
      },
      async waitCaughtUp(i) {
        const deadline = Date.now() + 30_000;
        // Not recorded, so a transient error here (a loaded machine's election answers a
        // linearizable read with "leader changed", on etcd as on etcd-ts) is waited out.
        let lastError: unknown;
        for (;;) {
          try {
            const head = Number((await cluster.grpc(0).range("\u0000", { limit: 1n })).header.revision);
            const status = await cluster.grpc(i).status();
            const leaderStatus = await cluster.grpc(0).status();
            const mine = Number((await cluster.grpc(i).range("\u0000", { serializable: true, limit: 1n })).header.revision);
            if (mine >= head && status.raftAppliedIndex >= leaderStatus.raftIndex) return;
          } catch (err) {
            lastError = err;
          }
          if (Date.now() > deadline) throw new Error(`member ${i} did not catch up${lastError ? `: ${(lastError as Error).message}` : ""}`);
          await sleep(100);
        }
      },
      note: (text) => lines.push(`# ${text}`),
    };
  };

  const finish = async (side: Side, lines: string[]): Promise<string> => {
    const clusterId = (await side.cluster.withAnswering((c) => c.status())).header.clusterId;
    let text = normaliseCluster(lines.join("\n") + "\n", side, clusterId);
    // diff-suite's rules (timestamps, UUIDs, durations, sizes), with no member of its own.
    const none = { clientUrl: "\u0000none", clientPort: -1, baseDir: "\u0000none" } as unknown as Member;
    text = normalise(text, { member: none, leaseIds: [] });
    // clientv3's retry warnings: how many attempts fit in etcdctl's command timeout is timing, so
    // a run of them (same error, rising attempt numbers) becomes one line.
    text = text.replace(/"attempt":\d+/g, '"attempt":"<n>"').replace(/^(.*"attempt":"<n>".*)(\n\1)+$/gm, "$1  # (repeated)");
    // Canonical order for the marked outputs.
    return text
      .replace(/\[(stdout|stderr), sorted by (\w+)\]\n([\s\S]*?)\n\[end \1\]/g, (_all, stream: string, mode: SortMode, body: string) => `[${stream}, sorted by ${mode}]\n${sortOutput(body, mode)}`)
      .replace(/\n\[end (stdout|stderr)\]/g, "");
  };

  return {
    case(name, script, timeoutMs = 120_000) {
      it(
        name,
        async () => {
          if (startError) throw startError;
          const transcripts = await Promise.allSettled(
            sides.map(async (side) => {
              const lines: string[] = [];
              try {
                await script(contextFor(side, lines));
              } catch (err) {
                lines.push(`# script failed: ${(err as Error).message}`);
              }
              return finish(side, lines);
            }),
          );
          const [ref, cand] = transcripts;
          if (ref!.status === "rejected") throw ref!.reason;
          if (cand!.status === "rejected") throw cand!.reason;
          recorded.push([name, ref!.value]);
          if (process.env.DIFF_DUMP_DIR) {
            // Both normalised transcripts, for a side-by-side diff.
            fs.mkdirSync(process.env.DIFF_DUMP_DIR, { recursive: true });
            const base = path.join(process.env.DIFF_DUMP_DIR, name.replace(/\W+/g, "-"));
            fs.writeFileSync(`${base}.reference.txt`, ref!.value);
            fs.writeFileSync(`${base}.candidate.txt`, cand!.value);
          }
          expect(cand!.value, `${sides[1]!.binary.kind} cluster differs from real etcd`).toBe(ref!.value);
          if (!updateGolden) expect(golden.get(name), `golden/${suite}.txt is stale for "${name}" (UPDATE_GOLDEN=1 regenerates)`).toBe(ref!.value);
        },
        timeoutMs,
      );
    },
  };
}
