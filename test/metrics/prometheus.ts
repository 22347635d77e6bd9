/**
 * A real Prometheus (Debian's `prometheus`) for tests: scrapes the given targets every second
 * under job "etcd", answers instant queries over its HTTP API. Owned by the test: `stop()`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort, killChild, sleep, trackChild } from "../harness/processes.js";

export interface PromSeries {
  metric: Record<string, string>;
  value: [number, string];
}

export class Prometheus {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    readonly dir: string,
  ) {}

  /** Starts Prometheus scraping `targets` (host:port, /metrics) every second. */
  static async start(targets: string[], binary = "prometheus"): Promise<Prometheus> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "etcd-test-prometheus-"));
    const config = [
      "global:",
      "  scrape_interval: 1s",
      "  scrape_timeout: 1s",
      "  evaluation_interval: 1s",
      "scrape_configs:",
      "  - job_name: etcd",
      "    static_configs:",
      `      - targets: [${targets.map((t) => JSON.stringify(t)).join(", ")}]`,
      "",
    ].join("\n");
    fs.writeFileSync(path.join(dir, "prometheus.yml"), config);
    const port = await freePort();
    const log = fs.openSync(path.join(dir, "prometheus.log"), "a");
    const child = spawn(
      binary,
      [
        `--config.file=${path.join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${path.join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--storage.tsdb.retention.time=1h",
      ],
      { stdio: ["ignore", log, log] },
    );
    fs.closeSync(log);
    trackChild(child);
    const prom = new Prometheus(child, port, dir);
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/-/ready`);
        if (res.ok) return prom;
      } catch {
        /* not up yet */
      }
      if (child.exitCode !== null || Date.now() > deadline) {
        await prom.stop();
        throw new Error(`prometheus did not start:\n${prom.logTail()}`);
      }
      await sleep(200);
    }
  }

  /** An instant query's result vector (scalars and strings come back as one series). */
  async query(expr: string): Promise<PromSeries[]> {
    const res = await fetch(`http://127.0.0.1:${this.port}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: unknown } };
    if (body.status !== "success") throw new Error(`query ${expr} failed: ${body.error}`);
    const { resultType, result } = body.data!;
    if (resultType === "vector") return result as PromSeries[];
    if (resultType === "scalar" || resultType === "string") return [{ metric: {}, value: result as [number, string] }];
    throw new Error(`query ${expr}: unexpected result type ${resultType}`);
  }

  /** Resolves once every target has been scraped successfully at least `count` more times. */
  async waitScrapes(count: number, timeoutMs = 20_000): Promise<void> {
    const scrapes = async (): Promise<number> => {
      const r = await this.query("min(count_over_time(up[1h]))");
      return r.length === 0 ? 0 : Number(r[0]!.value[1]);
    };
    const start = await scrapes();
    const deadline = Date.now() + timeoutMs;
    while ((await scrapes()) < start + count) {
      if (Date.now() > deadline) throw new Error(`prometheus: fewer than ${count} scrapes in ${timeoutMs} ms`);
      await sleep(250);
    }
  }

  logTail(bytes = 2_000): string {
    try {
      const text = fs.readFileSync(path.join(this.dir, "prometheus.log"), "utf8");
      return text.slice(-bytes);
    } catch {
      return "";
    }
  }

  async stop(): Promise<void> {
    await killChild(this.child, "SIGTERM", 5_000);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
