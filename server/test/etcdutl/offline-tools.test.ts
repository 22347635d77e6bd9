/**
 * The offline tools' pure parts: etcdutl's command-line parsing, go-humanize's sizes and
 * tablewriter's table as etcdctl prints a snapshot status.
 */
import { describe, expect, it } from "vitest";
import { boolValue, parseCommand, UsageError, type FlagDef } from "../../src/etcdutl/command-line.js";
import { formatSnapshotStatus, humanizeBytes } from "../../src/etcdutl/snapshot-status.js";

const FLAGS: FlagDef[] = [
  { name: "data-dir", kind: "string", defaultValue: "", usage: "" },
  { name: "skip-hash-check", kind: "bool", defaultValue: "false", usage: "" },
  { name: "bump-revision", kind: "uint", defaultValue: "0", usage: "" },
  { name: "write-out", shorthand: "w", kind: "string", defaultValue: "simple", usage: "" },
];

describe("parseCommand (pflag's rules)", () => {
  it("takes flags and arguments in any order", () => {
    const p = parseCommand(FLAGS, ["--data-dir", "d", "file.db", "--skip-hash-check", "-w", "json", "--bump-revision=7"]);
    expect(p.args).toEqual(["file.db"]);
    expect(p.values.get("data-dir")).toBe("d");
    expect(boolValue(p, "skip-hash-check")).toBe(true);
    expect(p.values.get("bump-revision")).toBe("7");
    expect(p.values.get("write-out")).toBe("json");
    expect(boolValue(parseCommand(FLAGS, ["--skip-hash-check=false"]), "skip-hash-check")).toBe(false);
    expect(parseCommand(FLAGS, ["--", "--data-dir"]).args).toEqual(["--data-dir"]);
  });

  it("refuses what pflag refuses", () => {
    expect(() => parseCommand(FLAGS, ["--nope"])).toThrow(new UsageError("unknown flag: --nope"));
    expect(() => parseCommand(FLAGS, ["--data-dir"])).toThrow(UsageError);
    expect(() => parseCommand(FLAGS, ["--bump-revision", "-1"])).toThrow(/strconv.ParseUint/);
  });
});

describe("snapshot status formatting", () => {
  it("sizes as go-humanize's Bytes", () => {
    expect(humanizeBytes(0)).toBe("0 B");
    expect(humanizeBytes(9)).toBe("9 B");
    expect(humanizeBytes(10)).toBe("10 B");
    expect(humanizeBytes(999)).toBe("999 B");
    expect(humanizeBytes(1000)).toBe("1.0 kB");
    expect(humanizeBytes(20480)).toBe("20 kB");
    expect(humanizeBytes(24500)).toBe("24 kB"); // an exact half rounds to even, as Go's %.0f
    expect(humanizeBytes(25500)).toBe("26 kB");
    expect(humanizeBytes(1_234_567)).toBe("1.2 MB");
  });

  it("prints etcdctl's three formats", () => {
    const s = { hash: 0x0abc, revision: 12, totalKey: 7, totalSize: 20480 };
    expect(formatSnapshotStatus(s, "simple")).toBe("abc, 12, 7, 20 kB\n");
    expect(formatSnapshotStatus(s, "json")).toBe('{"hash":2748,"revision":12,"totalKey":7,"totalSize":20480}\n');
    expect(formatSnapshotStatus(s, "table")).toBe(
      [
        "+------+----------+------------+------------+",
        "| HASH | REVISION | TOTAL KEYS | TOTAL SIZE |",
        "+------+----------+------------+------------+",
        "|  abc |       12 |          7 |      20 kB |",
        "+------+----------+------------+------------+",
        "",
      ].join("\n"),
    );
  });
});
