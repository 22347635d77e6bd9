/**
 * Differential etcdctl tests: every case is a script of etcdctl invocations that runs against a
 * fresh real etcd (the reference) and against the server under test (etcd-ts by default), each
 * side recording a transcript (command, stdin, stdout, stderr, exit status). After normalising
 * only what is inherently time- or identity-dependent (see `normalise`), the transcripts must be
 * equal.
 *
 * The reference transcripts are also checked in as golden files (golden/<suite>.txt):
 *   - with the reference etcd installed, the reference transcript must equal the golden one too
 *     (so the golden files stay current); `UPDATE_GOLDEN=1` rewrites them instead;
 *   - without it (`ETCD_REFERENCE_BIN` missing), the server under test is compared against the
 *     golden transcripts alone.
 *
 * Switches: `ETCD_BIN` picks the server under test (default etcd-ts; `ETCD_BIN=/usr/bin/etcd`
 * compares etcd with itself, which proves the harness), `ETCD_REFERENCE_BIN` the reference
 * (default /usr/bin/etcd), `ETCDCTL_BIN` the client (default /usr/bin/etcdctl).
 * `DIFF_BARE_ENDPOINTS=1` passes every endpoint as host:port instead of http://host:port (the
 * golden comparison is then meaningless for commands that print the endpoint).
 *
 * One pair of servers serves a whole suite (one test file); cases run in order and use their own
 * keys, so revisions in a golden file depend on the cases before it. Running a single case with
 * `-t` still compares the two live servers correctly, but its golden section will not match.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { BackgroundEtcdctl, runEtcdctl, spawnEtcdctl, type EtcdctlResult } from "../harness/etcdctl.js";
import { binaryUnderTest, referenceEtcdPath, serverBinaryFromSpec, startMember, type Member } from "../harness/member.js";
import { killAllChildren, sleep } from "../harness/processes.js";

const goldenDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "golden");

/**
 * Identity shared by both servers: same name, token and advertised URLs give the same member ID,
 * cluster ID and member list. Nobody dials the advertised URLs (single-member cluster); each
 * process listens on its own free ports.
 */
export const DIFF_IDENTITY = {
  name: "etcd-diff",
  clusterToken: "etcd-diff-token",
  advertiseClientUrl: "http://127.0.0.1:2379",
  advertisePeerUrl: "http://127.0.0.1:2380",
} as const;

export type SideName = "reference" | "candidate";

export interface CtlOptions {
  /** Fed to etcdctl's stdin (interactive txn). */
  stdin?: string;
  /**
   * Sort stdout lines before comparing. Only for output whose order etcd itself does not define
   * (e.g. `lease list` walks a Go map).
   */
  sortLines?: boolean;
  timeoutMs?: number;
  /**
   * Pass the endpoint as `127.0.0.1:<port>` instead of `http://127.0.0.1:<port>`. etcdctl's
   * per-endpoint commands (endpoint status/hashkv, defrag) then send a plain host:port HTTP/2
   * :authority instead of the whole URL.
   */
  bareEndpoint?: boolean;
}

export interface HttpOptions {
  /** Content-Type of a string body (default application/json). */
  contentType?: string;
  /** Response headers to record, in this order (lower case names). */
  headers?: string[];
  /** Abort after this long (default 10 s); the transcript then says so. */
  timeoutMs?: number;
  /** "manual" records a redirect instead of following it. */
  redirect?: "follow" | "manual";
}

/** What a case script gets: the same calls run against each side. */
export interface CaseContext {
  readonly side: SideName;
  /** Runs `etcdctl <args>` and records it in the transcript. */
  ctl(args: string[], options?: CtlOptions): Promise<EtcdctlResult>;
  /**
   * Starts `etcdctl <args>` in the background (watch); `stop()` records it. With
   * `omitStdout`, the transcript gets only stdout's line count (the script records what matters);
   * with `firstLines`, only that many leading lines of stdout (for output that repeats with time).
   */
  background(args: string[], options?: { omitStdout?: boolean; firstLines?: number }): BackgroundCtl;
  /**
   * Extracts the lease ID (hex) printed by `lease grant` and registers it for normalisation.
   * Without one in the output, notes that in the transcript and returns "0".
   */
  leaseId(grant: EtcdctlResult): string;
  /**
   * Extracts the ID of the member added by `member add` (hex) and registers it for
   * normalisation: etcd derives it from the peer URLs and the wall clock.
   */
  addedMemberId(add: EtcdctlResult): string;
  /**
   * Puts many keys quickly over gRPC (not through etcdctl), one request each, in order; records
   * one transcript line with the count and the revision of the last put.
   */
  bulkPut(entries: Array<[string, string]>): Promise<void>;
  /**
   * Sends an HTTP/1.1 request to the member's client URL (the JSON gateway, /version, ...) and
   * records the status line and the body (not the headers, which carry a Date).
   */
  http(method: string, path: string, body?: unknown, options?: HttpOptions): Promise<{ status: number; text: string }>;
  /**
   * Starts a GET that answers later (a v2 long poll): `finish()` waits for its answer, or its
   * first `lines` lines of body (then drops the connection), and records request and answer
   * there, so the transcript's order does not depend on when the answer arrived.
   */
  httpPending(path: string, options?: HttpOptions & { lines?: number }): { finish(): Promise<void> };
  /** An HTTP request that is not recorded (bulk load); resolves with the status (0: failed). */
  rawHttp(method: string, path: string, body?: string, contentType?: string): Promise<number>;
  /** A path in this side's scratch directory (shown as <member-dir>/... in transcripts). */
  scratchPath(name: string): string;
  /** Adds a free-form line to the transcript. */
  note(text: string): void;
  /**
   * Records the member's raft index (Maintenance/Status over gRPC, not through etcdctl): shows
   * exactly which requests go through raft, which `endpoint status` exposes.
   */
  noteRaftIndex(): Promise<void>;
}

export interface BackgroundCtl {
  write(text: string): void;
  closeStdin(): void;
  /** Waits until stdout has at least `count` lines matching `pattern` (bounded). */
  waitForLines(pattern: RegExp, count: number, timeoutMs?: number): Promise<boolean>;
  /** Waits until stdout has at least `count` matches of the global regexp `pattern` (bounded). */
  waitForMatches(pattern: RegExp, count: number, timeoutMs?: number): Promise<boolean>;
  /** Stops it (SIGTERM unless it already exited) and records its output. */
  stop(): Promise<EtcdctlResult>;
  /** Waits for it to exit by itself (bounded, then SIGKILL) and records its output. */
  wait(timeoutMs?: number): Promise<EtcdctlResult>;
}

interface SideState {
  name: SideName;
  member: Member;
  leaseIds: bigint[];
  memberIds: bigint[];
  /** Environment for every etcdctl of the suite (e.g. ETCDCTL_API=2). */
  ctlEnv?: Record<string, string>;
}

function formatCommand(args: string[]): string {
  return "$ etcdctl " + args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(" ");
}

function isProtobuf(args: string[]): boolean {
  return args.some((a, i) => a === "--write-out=protobuf" || a === "-wprotobuf" || ((a === "-w" || a === "--write-out") && args[i + 1] === "protobuf"));
}

function recordResult(lines: string[], args: string[], res: EtcdctlResult, options: CtlOptions, background = false): void {
  lines.push(formatCommand(args) + (background ? "  &" : "") + (options.bareEndpoint ? "  # --endpoints=host:port" : ""));
  if (options.stdin !== undefined) {
    const stdin = options.stdin.length <= 2_000 ? options.stdin : `<${options.stdin.length} characters starting ${JSON.stringify(options.stdin.slice(0, 60))}>`;
    lines.push("[stdin]", stdin.replace(/\n$/, ""));
  }
  let stdout = res.stdout;
  if (isProtobuf(args)) stdout = res.stdoutBytes.toString("hex").replace(/(.{64})/g, "$1\n");
  // Sorted after normalisation (see sortMarkedBlocks), so that placeholders decide the order.
  if (stdout !== "") lines.push(options.sortLines ? "[stdout, lines sorted]" : "[stdout]", stdout.replace(/\n$/, ""));
  if (res.stderr !== "") lines.push("[stderr]", res.stderr.replace(/\n$/, ""));
  lines.push(res.signal !== null ? `[signal ${res.signal}]` : `[exit ${res.code}]`);
}

/** The context a script runs with on one side; everything it records goes to `lines`. */
function makeContext(state: SideState, lines: string[]): CaseContext {
  const endpoint = state.member.clientUrl;
  return {
    side: state.name,
    async ctl(args, options = {}) {
      const bare = options.bareEndpoint ?? process.env.DIFF_BARE_ENDPOINTS === "1";
      const target = bare ? `127.0.0.1:${state.member.clientPort}` : endpoint;
      const res = await runEtcdctl(target, args, { stdin: options.stdin, timeoutMs: options.timeoutMs ?? 20_000, env: state.ctlEnv });
      recordResult(lines, args, res, options);
      return res;
    },
    background(args, bgOptions = {}) {
      const bg: BackgroundEtcdctl = spawnEtcdctl(endpoint, args, { env: state.ctlEnv });
      let recorded = false;
      const record = (res: EtcdctlResult): EtcdctlResult => {
        if (!recorded) {
          const outLines = res.stdout.split("\n").filter((l) => l !== "");
          const shown = bgOptions.omitStdout
            ? { ...res, stdout: `<${outLines.length} lines>\n` }
            : bgOptions.firstLines !== undefined
              ? { ...res, stdout: outLines.slice(0, bgOptions.firstLines).join("\n") + "\n" }
              : res;
          recordResult(lines, args, shown, {}, true);
        }
        recorded = true;
        return res;
      };
      return {
        write: (text) => bg.write(text),
        closeStdin: () => bg.closeStdin(),
        waitForLines: (pattern, count, timeoutMs = 5_000) =>
          bg.waitFor((out) => out.split("\n").filter((l) => pattern.test(l)).length >= count, timeoutMs),
        waitForMatches: (pattern, count, timeoutMs = 5_000) =>
          bg.waitFor((out) => (out.match(pattern) ?? []).length >= count, timeoutMs),
        stop: async () => {
          // the rest of an event whose first line was waited for may still be on its way
          await bg.settle();
          return record(await bg.stop("SIGTERM"));
        },
        wait: async (timeoutMs = 10_000) => record(await bg.wait(timeoutMs)),
      };
    },
    leaseId(grant) {
      const hex = /lease ([0-9a-f]+) granted/.exec(grant.stdout);
      const dec = /"ID" ?: ?(\d+)/.exec(grant.stdout);
      if (!hex && !dec) {
        // Keep going with an ID that does not exist: the transcripts will show the difference.
        lines.push("# (no lease ID in that output)");
        return "0";
      }
      const id = hex ? BigInt("0x" + hex[1]!) : BigInt(dec![1]!);
      state.leaseIds.push(id);
      return id.toString(16);
    },
    addedMemberId(add) {
      const hex = /Member +([0-9a-f]+) added/.exec(add.stdout);
      const dec = /"member":\{"ID":(\d+)/.exec(add.stdout);
      if (!hex && !dec) {
        lines.push("# (no member ID in that output)");
        return "0";
      }
      const id = hex ? BigInt("0x" + hex[1]!) : BigInt(dec![1]!);
      state.memberIds.push(id);
      return id.toString(16);
    },
    async bulkPut(entries) {
      const client = state.member.grpc();
      let revision = -1n;
      try {
        for (const [k, v] of entries) revision = (await client.put(k, v)).revision;
        lines.push(`# ${entries.length} puts over gRPC, last at revision ${revision}`);
      } catch (err) {
        lines.push(`# puts over gRPC failed after revision ${revision}: ${(err as Error).message}`);
      }
    },
    async http(method, urlPath, body, httpOptions = {}) {
      const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
      lines.push(`$ ${method} ${urlPath}${payload === undefined ? "" : " " + payload}`);
      try {
        const res = await fetch(state.member.clientUrl + urlPath, {
          method,
          body: payload,
          headers: payload === undefined ? {} : { "content-type": httpOptions.contentType ?? "application/json" },
          signal: AbortSignal.timeout(httpOptions.timeoutMs ?? 10_000),
          redirect: httpOptions.redirect ?? "follow",
        });
        const text = await res.text();
        lines.push(`[http ${res.status}]`);
        for (const h of httpOptions.headers ?? []) lines.push(`${h}: ${res.headers.get(h) ?? "<absent>"}`);
        lines.push(text.replace(/\n$/, ""));
        return { status: res.status, text };
      } catch (err) {
        lines.push(`[http error] ${(err as Error).message}`);
        return { status: 0, text: "" };
      }
    },
    httpPending(urlPath, httpOptions = {}) {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), httpOptions.timeoutMs ?? 10_000);
      const answer = (async (): Promise<string[]> => {
        const out: string[] = [];
        try {
          const res = await fetch(state.member.clientUrl + urlPath, { signal: controller.signal });
          out.push(`[http ${res.status}]`);
          for (const h of httpOptions.headers ?? []) out.push(`${h}: ${res.headers.get(h) ?? "<absent>"}`);
          let text = "";
          const decoder = new TextDecoder();
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            text += decoder.decode(chunk, { stream: true });
            if (httpOptions.lines !== undefined && text.split("\n").length > httpOptions.lines) break;
          }
          controller.abort();
          const body = httpOptions.lines === undefined ? text : text.split("\n").slice(0, httpOptions.lines).join("\n");
          out.push(body.replace(/\n$/, ""));
        } catch (err) {
          out.push(`[http error] ${(err as Error).name}`);
        } finally {
          clearTimeout(timer);
        }
        return out;
      })();
      return {
        async finish() {
          const out = await answer;
          lines.push(`$ GET ${urlPath}  (answered later)`, ...out);
        },
      };
    },
    async rawHttp(method, urlPath, body, contentType) {
      try {
        const res = await fetch(state.member.clientUrl + urlPath, {
          method, body, headers: contentType === undefined ? {} : { "content-type": contentType }, signal: AbortSignal.timeout(10_000),
        });
        await res.arrayBuffer();
        return res.status;
      } catch {
        return 0;
      }
    },
    scratchPath(name) {
      return path.join(state.member.baseDir, name);
    },
    note(text) {
      lines.push(`# ${text}`);
    },
    async noteRaftIndex() {
      try {
        const status = await state.member.grpc().status();
        lines.push(`# raft index ${status.raftIndex}, applied ${status.raftAppliedIndex}`);
      } catch (err) {
        lines.push(`# raft index unavailable: ${(err as Error).message}`);
      }
    },
  };
}

/** Sorts the lines of every "[stdout, lines sorted]" block (up to the next "[...]" marker line). */
function sortMarkedBlocks(text: string): string {
  const lines = text.split("\n");
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    out.push(lines[i]!);
    if (lines[i] !== "[stdout, lines sorted]") continue;
    const block: string[] = [];
    while (i + 1 < lines.length && !/^\[(stderr|exit \d+|signal \w+)\]$/.test(lines[i + 1]!)) block.push(lines[++i]!);
    out.push(...block.filter((l) => l !== "").sort());
  }
  return out.join("\n");
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Replaces what legitimately differs between two correct servers (or two runs of one server).
 * Each rule is the smallest we could find:
 *  1. the client URL each process listens on (free ports differ per run) -> <endpoint>, and
 *     the member's scratch directory (data dir, snapshot files) -> <member-dir>;
 *  2. etcdctl's own log lines on stderr carry a wall-clock "ts" (and clientv3's a random
 *     client UUID in "target") -> <ts>, <uuid>; snapshot logs also report "took";
 *  3. lease IDs: etcd mixes the member ID with the wall clock when generating them ->
 *     <lease-N>, numbered in grant order (hex, zero-padded hex and decimal forms); likewise
 *     the IDs of members added by `member add` (peer URLs hashed with the wall clock) ->
 *     <added-member-N>; `member add` lists the cluster in member-ID order, which the random
 *     new ID decides, so that list is sorted;
 *  4. the remaining TTL of a lease (`timetolive`) depends on when the command ran: a value at
 *     most 3 s below the granted TTL becomes <remaining>; anything else is left visible;
 *  5. `endpoint health` reports how long the health check took -> <duration>;
 *  6. `endpoint status` reports the backend file size, which depends on the storage engine
 *     (bbolt pages vs LevelDB files) -> <db-size>; so do the size of a saved snapshot file
 *     and `snapshot status`'s totalSize.
 *  For the tables holding 5 and 6, borders and padding are collapsed as well, because the column
 *  widths follow the replaced strings.
 */
export function normalise(text: string, state: { member: Member; leaseIds: bigint[]; memberIds?: bigint[] }): string {
  let t = text;
  // 1. endpoint
  t = t.split(state.member.clientUrl).join("<endpoint>");
  t = t.split(`127.0.0.1:${state.member.clientPort}`).join("<endpoint-host>");
  t = t.split(state.member.baseDir).join("<member-dir>");
  // 2. etcdctl's own log lines (clientv3 warnings, snapshot progress)
  t = t.replace(/"ts":"[^"]*"/g, '"ts":"<ts>"').replace(/"ts":[0-9.e+-]+/g, '"ts":"<ts>"');
  t = t.replace(/client-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, "client-<uuid>");
  // 3. lease IDs
  const replaceIds = (ids: bigint[], kind: string): void => {
    ids.forEach((id, i) => {
      const label = `<${kind}-${i + 1}>`;
      t = t.replace(new RegExp(`\\b0*${id.toString(16)}\\b`, "g"), label);
      t = t.replace(new RegExp(`\\b${escapeRegExp(id.toString(10))}\\b`, "g"), label);
    });
  };
  replaceIds(state.leaseIds, "lease");
  // 3b. IDs of members added with `member add` -> <added-member-N>
  replaceIds(state.memberIds ?? [], "added-member");
  // etcdctl prints member IDs in `member add/remove/update` with %16x: space-padded when short.
  t = t.replace(/ +(<added-member-\d+>)/g, " $1");
  // 3c. `member add` prints the cluster in member-ID order, and the new ID is random: sort it.
  t = t.replace(/^ETCD_INITIAL_CLUSTER="([^"]*)"$/gm, (_all, list: string) => `ETCD_INITIAL_CLUSTER="${list.split(",").sort().join(",")}"`);
  // 4. remaining TTL
  const near = (remaining: string, granted: string): boolean => {
    const r = Number(remaining);
    const g = Number(granted);
    return r <= g && r >= g - 3;
  };
  t = t.replace(/granted with TTL\((\d+)s\), remaining\((-?\d+)s\)/g, (all, g: string, r: string) =>
    near(r, g) ? `granted with TTL(${g}s), remaining(<remaining>)` : all,
  );
  t = t.replace(/"ttl":(-?\d+),"granted-ttl":(\d+)/g, (all, r: string, g: string) =>
    near(r, g) ? `"ttl":<remaining>,"granted-ttl":${g}` : all,
  );
  t = t.replace(/"TTL" : (-?\d+)\n"GrantedTTL" : (\d+)/g, (all, r: string, g: string) =>
    near(r, g) ? `"TTL" : <remaining>\n"GrantedTTL" : ${g}` : all,
  );
  // 4b. v2 API: expiry times, remaining TTLs, raft positions (the store's own index is compared)
  t = t.replace(/"expiration":"[^"]*"/g, '"expiration":"<time>"').replace(/"ttl":\d+,"modifiedIndex"/g, '"ttl":<ttl>,"modifiedIndex"');
  t = t.replace(/^(x-raft-index|x-raft-term): \d+$/gm, "$1: <$1>").replace(/^TTL: [1-9]\d*$/gm, "TTL: <ttl>");
  t = t.replace(/"startTime":"[^"]*"/g, '"startTime":"<time>"');
  // 5. health timing
  t = t.replace(/took = \S+/g, "took = <duration>");
  t = t.replace(/"took":"[^"]*"/g, '"took":"<duration>"').replace(/"took":[0-9.e+-]+/g, '"took":"<duration>"');
  // 6. backend size (endpoint status only)
  t = t.replace(/"dbSize":\d+/g, '"dbSize":<db-size>').replace(/"dbSizeInUse":\d+/g, '"dbSizeInUse":<db-size>');
  t = t.replace(/"dbSize":"\d+"/g, '"dbSize":"<db-size>"').replace(/"dbSizeInUse":"\d+"/g, '"dbSizeInUse":"<db-size>"');
  t = t.replace(/"DBSize" : \d+/g, '"DBSize" : <db-size>').replace(/"DBSizeInUse" : \d+/g, '"DBSizeInUse" : <db-size>');
  t = t.replace(/^(.*), (\d+(?:\.\d+)? (?:B|kB|MB|GB)), (true|false), /gm, "$1, <db-size>, $3, ");
  // ... and the snapshot file size (snapshot save's log, snapshot status)
  t = t.replace(/"size":"[^"]*"/g, '"size":"<db-size>"').replace(/"totalSize":\d+/g, '"totalSize":<db-size>');
  t = t.replace(/^([0-9a-f]{1,8}, \d+, \d+), \d+(?:\.\d+)? (?:B|kB|MB|GB)$/gm, "$1, <db-size>");
  const lines = t.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (!/^\|.*\| (DB SIZE|TOOK|TOTAL SIZE) \|/.test(lines[i]!.replace(/\s+/g, " "))) continue;
    // Header of a table with a size or duration column: collapse borders and padding until the
    // table ends, and replace the size/duration cells.
    for (let j = Math.max(0, i - 1); j < lines.length && /^[|+]/.test(lines[j] ?? ""); j++) {
      let l = lines[j]!;
      if (l.startsWith("+")) l = l.replace(/-+/g, "-");
      else {
        l = l.replace(/ +\|/g, " |").replace(/\| +/g, "| ");
        l = l.replace(/\| \d+(?:\.\d+)? (?:B|kB|MB|GB) \|/, "| <db-size> |");
        l = l.replace(/\| \d+(?:\.\d+)?(?:ns|µs|us|ms|s|m\d.*?s) \|/, "| <duration> |");
      }
      lines[j] = l;
    }
  }
  return sortMarkedBlocks(lines.join("\n"));
}

interface Golden {
  sections: Map<string, string>;
}

function readGolden(suite: string): Golden {
  const file = path.join(goldenDir, `${suite}.txt`);
  const sections = new Map<string, string>();
  if (!fs.existsSync(file)) return { sections };
  const text = fs.readFileSync(file, "utf8");
  const parts = text.split(/^#### case: (.*)$/m);
  for (let i = 1; i + 1 < parts.length; i += 2) sections.set(parts[i]!, parts[i + 1]!.replace(/^\n/, "").replace(/\n+$/, "\n"));
  return { sections };
}

function writeGolden(suite: string, cases: Array<[string, string]>): void {
  fs.mkdirSync(goldenDir, { recursive: true });
  const header =
    `# Transcripts recorded from real etcd 3.4 by test/etcdctl/${suite}.test.ts.\n` +
    `# Normalised placeholders (<endpoint>, <lease-N>, <remaining>, <duration>, <db-size>, <ts>,\n` +
    `# <uuid>) are explained in test/etcdctl/diff-suite.ts. Regenerate with UPDATE_GOLDEN=1.\n\n`;
  const body = cases.map(([name, t]) => `#### case: ${name}\n${t}\n`).join("\n");
  fs.writeFileSync(path.join(goldenDir, `${suite}.txt`), header + body);
}

export interface DiffSuite {
  /** Registers one differential case (a vitest test). */
  case(name: string, script: (ctx: CaseContext) => Promise<void>, timeoutMs?: number): void;
}

/**
 * Declares a differential suite in the current test file: starts the reference and the server
 * under test before the first case and kills both after the last.
 */
export function diffSuite(suite: string, options: { extraArgs?: string[]; ctlEnv?: Record<string, string>; advertiseListenedClientUrl?: boolean } = {}): DiffSuite {
  const referencePath = referenceEtcdPath();
  const updateGolden = process.env.UPDATE_GOLDEN === "1";
  const golden = readGolden(suite);
  const recorded: Array<[string, string]> = [];
  let reference: SideState | undefined;
  let candidate: SideState | undefined;
  let referenceError: Error | undefined;
  let candidateError: Error | undefined;

  beforeAll(async () => {
    const start = async (spec: string | undefined, name: SideName): Promise<SideState> => {
      const binary = spec === undefined ? binaryUnderTest() : serverBinaryFromSpec(spec);
      // With advertiseListenedClientUrl the member advertises the URL it listens on (etcdctl v2
      // syncs its endpoints from the member list); the IDs come from the peer URLs, still shared.
      const identity = options.advertiseListenedClientUrl ? { ...DIFF_IDENTITY, advertiseClientUrl: undefined } : DIFF_IDENTITY;
      const member = await startMember({ binary, ...identity, extraArgs: options.extraArgs });
      return { name, member, leaseIds: [], memberIds: [], ctlEnv: options.ctlEnv };
    };
    const [ref, cand] = await Promise.allSettled([
      referencePath !== undefined ? start(referencePath, "reference") : Promise.reject(new Error("no reference etcd")),
      start(undefined, "candidate"),
    ]);
    if (ref.status === "fulfilled") reference = ref.value;
    else if (referencePath !== undefined) referenceError = ref.reason as Error;
    if (cand.status === "fulfilled") candidate = cand.value;
    else candidateError = cand.reason as Error;
  });

  afterAll(async () => {
    await Promise.all([reference?.member.destroy(), candidate?.member.destroy()]);
    await killAllChildren();
    if (updateGolden && recorded.length > 0) writeGolden(suite, recorded);
  });

  return {
    case(name, script, timeoutMs = 120_000) {
      it(
        name,
        async () => {
          if (referenceError) throw new Error(`reference etcd failed to start: ${referenceError.message}`);
          const run = async (state: SideState | undefined): Promise<string | undefined> => {
            if (!state) return undefined;
            const lines: string[] = [];
            // A side that hangs must still leave a transcript to compare: stop waiting for it
            // after the budget (its etcdctl processes end on their own timeouts).
            const budgetMs = Math.max(10_000, timeoutMs - 20_000);
            let timer: NodeJS.Timeout | undefined;
            const outcome = await Promise.race([
              script(makeContext(state, lines)).then(() => "done" as const),
              new Promise<"timeout">((resolve) => {
                timer = setTimeout(() => resolve("timeout"), budgetMs);
              }),
            ]).finally(() => clearTimeout(timer));
            const text = lines.join("\n") + (outcome === "timeout" ? `\n# script did not finish within ${budgetMs} ms` : "");
            return normalise(text + "\n", state);
          };
          // Both sides run concurrently; a failure on the candidate side must not hide the reference transcript.
          const [refT, candT] = await Promise.allSettled([run(reference), run(candidate)]);
          if (refT.status === "rejected") throw refT.reason;
          const referenceText = refT.value;
          if (referenceText !== undefined) recorded.push([name, referenceText]);
          const goldenText = golden.sections.get(name);
          const expected = referenceText ?? goldenText;
          if (expected === undefined) throw new Error(`no reference etcd and no golden section "${name}" in golden/${suite}.txt`);
          if (candidateError) throw new Error(`server under test failed to start: ${candidateError.message}`);
          if (candidate && !candidate.member.running) {
            throw new Error(`server under test exited during this case\n${candidate.member.logTail(6_000)}`);
          }
          if (candT.status === "rejected") throw candT.reason;
          expect(candT.value, `server under test (${candidate!.member.options.binary.kind}) differs from ${referenceText !== undefined ? "real etcd" : "golden"}`).toBe(expected);
          if (referenceText !== undefined && !updateGolden && process.env.DIFF_BARE_ENDPOINTS !== "1") {
            expect(goldenText, `golden/${suite}.txt is stale for "${name}" (UPDATE_GOLDEN=1 regenerates)`).toBe(referenceText);
          }
        },
        timeoutMs,
      );
    },
  };
}

export { sleep };
