/**
 * Logging as etcd's zap logger: the JSON line's shape and field names, --log-level silencing
 * lower levels at no cost, --log-outputs to files and the standard streams (the real binary), and
 * a log output etcd refuses answered with etcd's text and exit code (the real etcd 3.4 beside it).
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createLogger } from "../../server/src/pkg/logger.js";
import { LogOutputError, openLogOutputs } from "../../server/src/pkg/log-outputs.js";
import { etcdTsBinary, referenceEtcdPath, type ServerBinary } from "../harness/member.js";
import { freePorts, trackChild } from "../harness/processes.js";

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "etcd-ts-logging-"));
afterAll(() => fs.rmSync(workDir, { recursive: true, force: true }));

type Line = Record<string, unknown>;

function parseLines(text: string): Line[] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Line);
}

describe("the logger", () => {
  it("writes zap's fields in zap's order: level, ts, logger, caller, msg, then the call's", () => {
    const lines: string[] = [];
    const log = createLogger({ level: "info", write: (l) => lines.push(l) });
    log.info("starting local member", { "local-member-id": 0xbdae9bbc11dd390dn, "cluster-id": 0xd1cfaf999eb97a2an });
    log.named("raft").warn("w");
    const [first, second] = lines.map((l) => JSON.parse(l) as Line);
    expect(Object.keys(first!)).toEqual(["level", "ts", "caller", "msg", "local-member-id", "cluster-id"]);
    expect(first!.level).toBe("info");
    expect(first!.ts).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(first!.caller).toMatch(/^observability\/logging\.test\.ts:\d+$/);
    expect(first!["local-member-id"]).toBe("bdae9bbc11dd390d");
    expect(Object.keys(second!).slice(0, 5)).toEqual(["level", "ts", "logger", "caller", "msg"]);
    expect(second!.logger).toBe("raft");
  });

  it("--log-level warn silences info and debug without building their lines", () => {
    let writes = 0;
    const log = createLogger({ level: "warn", write: () => writes++ });
    const saved = Error.captureStackTrace;
    let stacks = 0;
    Error.captureStackTrace = (...args: Parameters<typeof saved>) => {
      stacks++;
      saved(...args);
    };
    try {
      for (let i = 0; i < 1000; i++) {
        log.info("silenced");
        log.debug("silenced");
      }
      expect(writes).toBe(0);
      expect(stacks).toBe(0);
      expect(log.enabled("info")).toBe(false);
      expect(log.enabled("warn")).toBe(true);
      log.warn("kept");
      log.error("kept");
    } finally {
      Error.captureStackTrace = saved;
    }
    expect(writes).toBe(2);
  });

  it("--log-outputs: a file is appended to, a target named twice is written once, a bad path fails with Go's text", () => {
    const file = path.join(workDir, "unit.log");
    fs.writeFileSync(file, "before\n");
    const out = openLogOutputs([file, file]);
    out.write("a");
    out.write("b");
    out.close();
    expect(fs.readFileSync(file, "utf8")).toBe("before\na\nb\n");
    const missing = path.join(workDir, "no-such-dir", "x.log");
    expect(() => openLogOutputs(["stderr", missing])).toThrow(LogOutputError);
    expect(() => openLogOutputs([missing])).toThrow(`open sink "${missing}": open ${missing}: no such file or directory`);
  });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a binary with a fresh data dir on free ports until `until` sees its output (then SIGTERM)
 * or it exits by itself.
 */
async function run(binary: ServerBinary | string, args: string[], until?: (r: Run, clientPort: number) => boolean, timeoutMs = 30_000): Promise<Run> {
  const [client, peer] = await freePorts(2);
  const dir = fs.mkdtempSync(path.join(workDir, "member-"));
  const base = [
    "--data-dir", path.join(dir, "data"),
    "--listen-client-urls", `http://127.0.0.1:${client}`, "--advertise-client-urls", `http://127.0.0.1:${client}`,
    "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
    "--initial-cluster", `default=http://127.0.0.1:${peer}`,
  ];
  const [command, prefix] = typeof binary === "string" ? [binary, []] : [binary.command, binary.prefixArgs];
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ETCD_")));
  const child = spawn(command, [...prefix, ...base, ...args], { stdio: ["ignore", "pipe", "pipe"], env });
  trackChild(child);
  const r: Run = { code: null, stdout: "", stderr: "" };
  return new Promise<Run>((resolve) => {
    let signalled = false;
    const check = (): void => {
      if (!signalled && until?.(r, client!)) {
        signalled = true;
        child.kill("SIGTERM");
      }
    };
    const poll = setInterval(check, 100);
    child.stdout!.on("data", (c: Buffer) => void (r.stdout += c.toString()));
    child.stderr!.on("data", (c: Buffer) => void (r.stderr += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("close", (code) => {
      clearInterval(poll);
      clearTimeout(timer);
      r.code = code;
      resolve(r);
    });
  });
}

const readyIn = (file: string) => (): boolean => fs.existsSync(file) && fs.readFileSync(file, "utf8").includes("ready to serve client requests");

describe("etcd-ts --logger zap", () => {
  it("--log-outputs <file>,stdout: the same JSON lines in both, none on stderr; etcd's start-up and election lines", async () => {
    const file = path.join(workDir, "both.log");
    const r = await run(etcdTsBinary(), ["--logger", "zap", "--log-outputs", `${file},stdout`], readyIn(file));
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    const lines = parseLines(fs.readFileSync(file, "utf8"));
    expect(parseLines(r.stdout)).toEqual(lines);
    for (const l of lines) {
      expect(typeof l.level).toBe("string");
      expect(typeof l.ts).toBe("string");
      expect(typeof l.caller).toBe("string");
      expect(typeof l.msg).toBe("string");
    }
    const byMsg = (re: RegExp): Line => {
      const found = lines.find((l) => re.test(String(l.msg)));
      if (found === undefined) throw new Error(`no line ${re}: ${lines.map((l) => l.msg).join(" | ")}`);
      return found;
    };
    expect(byMsg(/^starting an etcd server$/)).toMatchObject({ "etcd-version": "3.4.23", name: "default" });
    const local = byMsg(/^starting local member$/);
    expect(local["local-member-id"]).toMatch(/^[0-9a-f]+$/);
    expect(local["cluster-id"]).toMatch(/^[0-9a-f]+$/);
    const id = String(local["local-member-id"]);
    byMsg(new RegExp(`^${id} became leader at term 2$`));
    expect(byMsg(new RegExp(`^raft\\.node: ${id} elected leader ${id} at term 2$`))["raft-term"]).toBe(2);
    expect(byMsg(/^published local member to cluster through raft$/)["local-member-id"]).toBe(id);
    expect(byMsg(/^setting up initial cluster version$/)["cluster-version"]).toBe("3.4");
    expect(byMsg(/^serving client traffic insecurely; this is strongly discouraged!$/).address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(byMsg(/^received signal; shutting down$/).signal).toBe("terminated");
    byMsg(/^closed etcd server$/);
  });

  it("--log-level warn: no info lines reach the output", async () => {
    const file = path.join(workDir, "warn.log");
    // Readiness is seen from outside: the client port answers /health.
    const r = await run(etcdTsBinary(), ["--logger", "zap", "--log-level", "warn", "--log-outputs", file], (_r, client) => healthy(client));
    expect(r.code).toBe(0);
    const lines = parseLines(fs.readFileSync(file, "utf8"));
    expect(lines.filter((l) => l.level === "info" || l.level === "debug")).toEqual([]);
  });
});

/** Whether /health answered ok (probed in the background until it does). */
const healthState = new Map<number, boolean>();
function healthy(port: number): boolean {
  if (!healthState.has(port)) {
    healthState.set(port, false);
    const probe = (): void => {
      fetch(`http://127.0.0.1:${port}/health`)
        .then((res) => {
          healthState.set(port, res.ok);
          if (!res.ok) setTimeout(probe, 100);
        })
        .catch(() => setTimeout(probe, 100));
    };
    probe();
  }
  return healthState.get(port) === true;
}

const reference = referenceEtcdPath();

describe.skipIf(reference === undefined)("a log output etcd refuses, against etcd 3.4", () => {
  it("a file that cannot be opened: etcd's text, exit 1", async () => {
    const missing = path.join(workDir, "no-such-dir", "x.log");
    const args = ["--logger", "zap", "--log-outputs", missing];
    const [ours, theirs] = await Promise.all([run(etcdTsBinary(), args), run(reference!, args)]);
    expect(theirs.code).toBe(1);
    expect(ours.code).toBe(1);
    const expected = `error verifying flags, open sink "${missing}": open ${missing}: no such file or directory. See 'etcd --help'.`;
    // etcd falls back to capnslog for this one line: "<date> <time> E | etcdmain: <text>".
    expect(theirs.stderr).toContain(`E | etcdmain: ${expected}`);
    const line = parseLines(ours.stderr).find((l) => l.level === "error");
    expect(line?.msg).toBe(expected);
  });
});
