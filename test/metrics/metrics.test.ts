/**
 * etcd-ts's /metrics against etcd 3.4's, with etcd's own monitoring as the judge:
 *
 *  - a 3-member etcd 3.4 cluster and a 3-member etcd-ts cluster (both `--metrics extensive`) take
 *    the same small client load, each scraped every second by its own real Prometheus; then
 *    every expression of etcd's alert rules (`etcd3_alert.rules.yml`) and every query of etcd's
 *    Grafana dashboard (`grafana.json`), both from Documentation/op-guide/ of Debian's etcd
 *    source package (scripts/install-test-deps.sh puts them in /usr/local/share/etcd-ts-test),
 *    is evaluated on both: where etcd's returns series, etcd-ts's must too, with the same label
 *    names. Alert expressions are evaluated without their threshold (the part before the
 *    top-level comparison), which is what must have data; with the threshold they are printed.
 *  - the family list: every etcd_*, grpc_* and os_fd_* family etcd's members export is exported
 *    by etcd-ts with the same type and label names, or listed in ABSENT with the reason;
 *  - `promtool check metrics` on an etcd-ts scrape finds nothing etcd's own scrape does not
 *    (etcd's names break some of Prometheus' naming advice; those names must stay) beyond the
 *    advice for prom-client's own nodejs_* gauges.
 *  - --listen-metrics-urls serves /metrics and /health (etcd-ts member 0).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { Cluster } from "../harness/cluster.js";
import { etcdTsBinary, serverBinaryFromSpec } from "../harness/member.js";
import { freePort, killAllChildren, sleep } from "../harness/processes.js";
import { Prometheus, type PromSeries } from "./prometheus.js";

const OP_GUIDE = process.env.ETCD_OP_GUIDE_DIR ?? "/usr/local/share/etcd-ts-test/op-guide";
const ETCD_BIN = process.env.ETCD_BIN ?? "/usr/bin/etcd";
/** How long the load runs (ms); bounded by a count of rounds too. */
const LOAD_MS = Number(process.env.METRICS_LOAD_MS ?? 8_000);
const LOAD_ROUNDS_MAX = 2_000;

/** etcd 3.4 families etcd-ts does not export, and why. */
const ABSENT: Record<string, string> = {
  etcd_server_go_version: "the Go runtime's version; etcd-ts runs on Node.js (nodejs_version_info says which)",
  etcd_debugging_disk_backend_commit_rebalance_duration_seconds: "a phase of bbolt's B+tree commit; LevelDB's write has no such phase",
  etcd_debugging_disk_backend_commit_spill_duration_seconds: "a phase of bbolt's B+tree commit; LevelDB's write has no such phase",
  etcd_debugging_store_reads_total: "etcd 3.4's internal v2 store's action counters (debugging only)",
  etcd_debugging_store_writes_total: "etcd 3.4's internal v2 store's action counters (debugging only)",
  etcd_debugging_store_reads_failed_total: "etcd 3.4's internal v2 store's action counters (debugging only)",
  etcd_debugging_store_writes_failed_total: "etcd 3.4's internal v2 store's action counters (debugging only)",
  etcd_debugging_store_expires_total: "etcd 3.4's internal v2 store's TTL expiries (debugging only)",
  etcd_debugging_store_watch_requests_total: "v2 store watches, which only the v2 API makes",
  etcd_debugging_store_watchers: "v2 store watches, which only the v2 API makes",
  etcd_grpc_proxy_cache_hits_total: "the gRPC proxy (etcd grpc-proxy), not part of the server",
  etcd_grpc_proxy_cache_keys_total: "the gRPC proxy (etcd grpc-proxy), not part of the server",
  etcd_grpc_proxy_cache_misses_total: "the gRPC proxy (etcd grpc-proxy), not part of the server",
  etcd_grpc_proxy_events_coalescing_total: "the gRPC proxy (etcd grpc-proxy), not part of the server",
  etcd_grpc_proxy_watchers_coalescing_total: "the gRPC proxy (etcd grpc-proxy), not part of the server",
  etcd_http_received_total: "the v2 HTTP API's request counters",
  etcd_http_failed_total: "the v2 HTTP API's request counters",
  etcd_http_successful_duration_seconds: "the v2 HTTP API's request latencies",
};

/** promtool's naming advice for prom-client's own process metrics (not etcd's names). */
const PROM_CLIENT_ADVICE = /^nodejs_active_(handles|requests|resources)_total non-counter metrics should not have "_total" suffix$/;

interface Family {
  type: string;
  labels: Set<string>;
}

/** Families of a text exposition: TYPE, and the label names its samples carry (histograms without `le`). */
function families(text: string): Map<string, Family> {
  const out = new Map<string, Family>();
  for (const line of text.split("\n")) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) {
      out.set(t[1]!, { type: t[2]!, labels: new Set() });
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s/.exec(line);
    if (!m) continue;
    let name = m[1]!;
    let fam = out.get(name);
    if (fam === undefined) {
      name = name.replace(/_(bucket|sum|count)$/, "");
      fam = out.get(name);
    }
    if (fam === undefined || m[3] === undefined) continue;
    for (const pair of m[3].match(/([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g) ?? []) {
      const label = pair.slice(0, pair.indexOf("="));
      if (label !== "le" || fam.type !== "histogram") fam.labels.add(label);
    }
  }
  return out;
}

/**
 * The part of an expression before its top-level comparison (`a > 0.15` → `a`): outside
 * parentheses, braces, brackets and strings, a comparison operator not part of `=~`/`!~`.
 */
function withoutThreshold(expr: string): string {
  let depth = 0;
  let quote = "";
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i]!;
    if (quote) {
      if (c === "\\") i++;
      else if (c === quote) quote = "";
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if ("({[".includes(c)) depth++;
    else if (")}]".includes(c)) depth--;
    else if (depth === 0) {
      const two = expr.slice(i, i + 2);
      if (["==", "!=", ">=", "<="].includes(two) || ((c === ">" || c === "<") && two !== "=~")) return expr.slice(0, i).trim();
    }
  }
  return expr.trim();
}

interface Query {
  source: string;
  expr: string;
}

/** Every expression of etcd's alert rules (as written and without threshold) and dashboard. */
function etcdQueries(): { probes: Query[]; alerts: Query[] } {
  const rules = parseYaml(fs.readFileSync(path.join(OP_GUIDE, "etcd3_alert.rules.yml"), "utf8")) as {
    groups: Array<{ rules: Array<{ alert: string; expr: string }> }>;
  };
  const alerts: Query[] = [];
  const probes: Query[] = [];
  for (const g of rules.groups) {
    for (const r of g.rules) {
      const expr = r.expr.trim();
      alerts.push({ source: `alert ${r.alert}`, expr });
      probes.push({ source: `alert ${r.alert} (without threshold)`, expr: withoutThreshold(expr) });
    }
  }
  const dashboard = JSON.parse(fs.readFileSync(path.join(OP_GUIDE, "grafana.json"), "utf8")) as Record<string, unknown>;
  const walk = (node: unknown, where: string): void => {
    if (Array.isArray(node)) node.forEach((n) => walk(n, where));
    else if (node !== null && typeof node === "object") {
      const o = node as Record<string, unknown>;
      const title = typeof o.title === "string" ? o.title : where;
      if (typeof o.expr === "string") probes.push({ source: `dashboard panel "${title}"`, expr: o.expr.replace(/\$cluster/g, "etcd") });
      if (o.type === "query" && typeof o.query === "string") {
        // Grafana's label_values(metric, label): the label's values among the metric's series.
        const lv = /^label_values\((.+),\s*(\w+)\)$/.exec(o.query);
        if (lv) probes.push({ source: `dashboard variable ${String(o.name)}`, expr: `count by (${lv[2]}) (${lv[1]})` });
      }
      for (const v of Object.values(o)) walk(v, title);
    }
  };
  walk(dashboard, "");
  return { probes, alerts };
}

function labelNames(series: PromSeries[]): string {
  const names = new Set<string>();
  for (const s of series) for (const k of Object.keys(s.metric)) names.add(k);
  return [...names].sort().join(",");
}

/** A bounded client load on `cluster`: puts, reads, txns, deletes, errors, a health check. */
async function load(cluster: Cluster, ms: number): Promise<number> {
  const until = Date.now() + ms;
  let rounds = 0;
  const members = cluster.members.length;
  while (Date.now() < until && rounds < LOAD_ROUNDS_MAX) {
    const c = cluster.grpc(rounds % members);
    const key = `metrics/${rounds % 50}`;
    await c.put(key, `v${rounds}`);
    await c.range(key);
    if (rounds % 5 === 0) await c.txnCas(key, `v${rounds}`, `w${rounds}`);
    if (rounds % 10 === 0) await c.deleteRange(key);
    if (rounds % 10 === 0) await c.range("metrics/", { rangeEnd: "metrics0", serializable: true });
    // A failing call (a future revision: OutOfRange), for grpc_code != "OK".
    if (rounds % 20 === 0) await c.range(key, { revision: 1n << 40n }).catch(() => undefined);
    rounds++;
  }
  await Promise.all(cluster.members.map((m) => fetch(`${m.clientUrl}/health`).then((r) => r.text())));
  return rounds;
}

async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return res.text();
}

describe("metrics under etcd 3.4's names, judged by etcd's dashboard and alerts", () => {
  let etcd: Cluster;
  let ours: Cluster;
  let etcdProm: Prometheus;
  let oursProm: Prometheus;
  let metricsPort: number;

  beforeAll(async () => {
    for (const f of ["etcd3_alert.rules.yml", "grafana.json"]) {
      if (!fs.existsSync(path.join(OP_GUIDE, f))) throw new Error(`${path.join(OP_GUIDE, f)} is missing: run scripts/install-test-deps.sh`);
    }
    metricsPort = await freePort();
    const flags = ["--metrics", "extensive"];
    [etcd, ours] = await Promise.all([
      Cluster.start({ binary: serverBinaryFromSpec(ETCD_BIN), size: 3, namePrefix: "e", extraArgs: flags }),
      Cluster.start({ binary: etcdTsBinary(), size: 3, namePrefix: "t", extraArgs: flags }),
    ]);
    // --listen-metrics-urls on one etcd-ts member (a restart with the extra flag).
    const m0 = ours.members[0]!;
    (m0.options as { extraArgs?: string[] }).extraArgs = [...flags, "--listen-metrics-urls", `http://127.0.0.1:${metricsPort}`];
    await ours.restart(0);
    await ours.waitLeader();
    const targets = (c: Cluster): string[] => c.members.map((m) => new URL(m.clientUrl).host);
    [etcdProm, oursProm] = await Promise.all([Prometheus.start(targets(etcd)), Prometheus.start(targets(ours))]);
    const [etcdRounds, oursRounds] = await Promise.all([load(etcd, LOAD_MS), load(ours, LOAD_MS)]);
    console.log(`load: etcd ${etcdRounds} rounds, etcd-ts ${oursRounds} rounds in ${LOAD_MS} ms`);
    // Peers' round trips are observed every few seconds; let both sides have some, and let
    // Prometheus take a few scrapes after the load.
    await sleep(2_000);
    await Promise.all([etcdProm.waitScrapes(3), oursProm.waitScrapes(3)]);
  }, 180_000);

  afterAll(async () => {
    await Promise.allSettled([etcdProm?.stop(), oursProm?.stop()]);
    await Promise.allSettled([etcd?.destroy(), ours?.destroy()]);
    await killAllChildren();
  });

  it("every alert expression and dashboard query returns series for etcd-ts where it does for etcd", async () => {
    const { probes, alerts } = etcdQueries();
    expect(probes.length).toBeGreaterThan(25);
    const missing: string[] = [];
    const report: string[] = [];
    for (const q of probes) {
      const [theirs, mine] = await Promise.all([etcdProm.query(q.expr), oursProm.query(q.expr)]);
      report.push(`${theirs.length > 0 ? "data" : "none"}/${mine.length > 0 ? "data" : "none"}  ${q.source}: ${q.expr.replace(/\s+/g, " ")}`);
      if (theirs.length === 0) continue;
      if (mine.length === 0 || labelNames(mine) !== labelNames(theirs)) {
        missing.push(`${q.source}: ${q.expr}\n  etcd:    ${theirs.length} series {${labelNames(theirs)}}\n  etcd-ts: ${mine.length} series {${labelNames(mine)}}`);
      }
    }
    for (const q of alerts) {
      const [theirs, mine] = await Promise.all([etcdProm.query(q.expr), oursProm.query(q.expr)]);
      const show = (r: PromSeries[]): string => r.map((x) => `${JSON.stringify(x.metric)}=${x.value[1]}`).join(" ");
      report.push(`firing etcd ${theirs.length}, etcd-ts ${mine.length}  ${q.source}${mine.length + theirs.length > 0 ? `\n    etcd: ${show(theirs)}\n    etcd-ts: ${show(mine)}` : ""}`);
    }
    console.log(`etcd/etcd-ts:\n${report.join("\n")}`);
    expect(missing, `queries without etcd-ts data:\n${missing.join("\n")}\n${oursProm.logTail()}`).toEqual([]);
    // The load reaches the families the dashboard's main panels read.
    for (const expr of ['sum(rate(grpc_server_started_total{grpc_type="unary"}[5m]))', "etcd_network_peer_round_trip_time_seconds_count"]) {
      expect((await oursProm.query(expr)).length, expr).toBeGreaterThan(0);
    }
  });

  it("exports every etcd_*/grpc_*/os_fd_* family etcd 3.4 does, with its type and label names, or says why not", async () => {
    const theirs = new Map<string, Family>();
    const mine = new Map<string, Family>();
    const merge = (into: Map<string, Family>, text: string): void => {
      for (const [name, f] of families(text)) {
        const known = into.get(name);
        if (known === undefined) into.set(name, { type: f.type, labels: new Set(f.labels) });
        else for (const l of f.labels) known.labels.add(l);
      }
    };
    for (const m of etcd.members) merge(theirs, await scrape(`${m.clientUrl}/metrics`));
    for (const m of ours.members) merge(mine, await scrape(`${m.clientUrl}/metrics`));
    const problems: string[] = [];
    let compared = 0;
    for (const [name, f] of theirs) {
      if (!/^(etcd_|grpc_|os_fd_)/.test(name)) continue;
      compared++;
      const reason = ABSENT[name];
      const ours_ = mine.get(name);
      if (reason !== undefined) {
        if (ours_ !== undefined) problems.push(`${name}: listed as absent (${reason}) but exported`);
        continue;
      }
      if (ours_ === undefined) {
        problems.push(`${name} (${f.type} {${[...f.labels].sort()}}): not exported`);
        continue;
      }
      const a = [...f.labels].sort().join(",");
      const b = [...ours_.labels].sort().join(",");
      if (ours_.type !== f.type || a !== b) problems.push(`${name}: etcd ${f.type} {${a}}, etcd-ts ${ours_.type} {${b}}`);
    }
    // Families etcd-ts adds under etcd's prefixes must be etcd's too (seen in this scrape or not).
    for (const name of mine.keys()) {
      if (/^(etcd_|grpc_)/.test(name) && !theirs.has(name) && !EVENT_ONLY.has(name)) problems.push(`${name}: etcd-ts exports it, etcd 3.4 did not here`);
    }
    console.log(`families: ${compared} of etcd's compared, ${Object.keys(ABSENT).length} listed absent, etcd-ts exports ${mine.size} in all`);
    expect(problems).toEqual([]);
    expect(compared).toBeGreaterThan(80);
  });

  it("promtool finds nothing in an etcd-ts scrape that it does not find in etcd's", async () => {
    const lint = (text: string): string[] => {
      const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
      expect(r.error).toBeUndefined();
      return `${r.stdout}${r.stderr}`.split("\n").filter((l) => l.trim() !== "");
    };
    const theirs = new Set(lint(await scrape(`${etcd.members[0]!.clientUrl}/metrics`)));
    const mine = lint(await scrape(`${ours.members[0]!.clientUrl}/metrics`));
    expect(mine.filter((l) => /error|parse|invalid/i.test(l))).toEqual([]);
    expect(mine.filter((l) => !theirs.has(l) && !PROM_CLIENT_ADVICE.test(l))).toEqual([]);
  });

  it("--listen-metrics-urls serves /metrics and /health", async () => {
    const base = `http://127.0.0.1:${metricsPort}`;
    const text = await scrape(`${base}/metrics`);
    expect(text).toMatch(/^etcd_server_has_leader 1$/m);
    expect(text).toMatch(/^grpc_server_handling_seconds_bucket\{/m);
    expect(text).toMatch(/^process_resident_memory_bytes /m);
    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ health: "true" });
    expect((await fetch(`${base}/v3/kv/range`, { method: "POST", body: "{}" })).status).toBe(404);
  });
});

/**
 * etcd 3.4 families whose series appear only after events this test's load does not cause
 * (snapshots sent or received, learners refused, disconnections, stream failures); etcd-ts
 * may show them earlier (a histogram with no observations yet).
 */
const EVENT_ONLY = new Set([
  "etcd_network_snapshot_send_success",
  "etcd_network_snapshot_send_failures",
  "etcd_network_snapshot_send_inflights_total",
  "etcd_network_snapshot_send_total_duration_seconds",
  "etcd_network_snapshot_receive_success",
  "etcd_network_snapshot_receive_failures",
  "etcd_network_snapshot_receive_inflights_total",
  "etcd_network_snapshot_receive_total_duration_seconds",
  "etcd_network_disconnected_peers_total",
  "etcd_network_peer_sent_failures_total",
  "etcd_network_peer_received_failures_total",
  "etcd_network_server_stream_failures_total",
  "etcd_server_learner_promote_failures",
]);
