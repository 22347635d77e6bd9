/** The differential normalisation must hide only what diff-suite.ts says it hides. */
import { describe, expect, it } from "vitest";
import type { Member } from "../harness/member.js";
import { normalise } from "./diff-suite.js";

const member = { clientUrl: "http://127.0.0.1:34567", clientPort: 34567, baseDir: "/tmp/etcd-test-x" } as unknown as Member;
const lease = 0x694d7d3a5a4e1d04n;

function norm(text: string): string {
  return normalise(text, { member, leaseIds: [lease], memberIds: [] });
}

describe("differential normalisation", () => {
  it("replaces endpoints, lease IDs in every form, and scratch paths", () => {
    expect(norm("http://127.0.0.1:34567 127.0.0.1:34567 /tmp/etcd-test-x/snap.db")).toBe("<endpoint> <endpoint-host> <member-dir>/snap.db");
    expect(norm(`lease 694d7d3a5a4e1d04 granted with TTL(60s)\n"ID":${lease}\n"lease" : ${lease}`)).toBe(
      `lease <lease-1> granted with TTL(60s)\n"ID":<lease-1>\n"lease" : <lease-1>`,
    );
  });

  it("keeps revisions, member and cluster IDs, hashes and other numbers", () => {
    const text = '{"header":{"cluster_id":6878750039025194678,"member_id":16142149176449103983,"revision":12,"raft_term":2},"hash":1084519789}';
    expect(norm(text)).toBe(text);
    expect(norm("e0046f26b59cf86f, started, etcd-diff")).toBe("e0046f26b59cf86f, started, etcd-diff");
  });

  it("hides a remaining TTL only when it is at most 3 s below the granted one", () => {
    expect(norm("lease 694d7d3a5a4e1d04 granted with TTL(60s), remaining(58s)")).toBe("lease <lease-1> granted with TTL(60s), remaining(<remaining>)");
    expect(norm("lease 694d7d3a5a4e1d04 granted with TTL(60s), remaining(40s)")).toBe("lease <lease-1> granted with TTL(60s), remaining(40s)");
    expect(norm('"ttl":59,"granted-ttl":60')).toBe('"ttl":<remaining>,"granted-ttl":60');
    expect(norm('"ttl":61,"granted-ttl":60')).toBe('"ttl":61,"granted-ttl":60');
  });

  it("hides sizes and durations only where etcd prints them", () => {
    expect(norm("http://127.0.0.1:34567, e0046f26b59cf86f, 3.4.23, 20 kB, true, false, 2, 4, 4, ")).toBe(
      "<endpoint>, e0046f26b59cf86f, 3.4.23, <db-size>, true, false, 2, 4, 4, ",
    );
    expect(norm('"dbSize":20480,"leader":1,"raftIndex":4')).toBe('"dbSize":<db-size>,"leader":1,"raftIndex":4');
    expect(norm("127.0.0.1:34567 is healthy: successfully committed proposal: took = 1.2ms")).toBe(
      "<endpoint-host> is healthy: successfully committed proposal: took = <duration>",
    );
    expect(norm("20 kB of values")).toBe("20 kB of values");
  });

  it("sorts marked blocks after normalising", () => {
    expect(norm("[stdout, lines sorted]\nb\na\n[exit 0]")).toBe("[stdout, lines sorted]\na\nb\n[exit 0]");
    expect(norm("[stdout]\nb\na\n[exit 0]")).toBe("[stdout]\nb\na\n[exit 0]");
  });
});
