/**
 * What the client port answers to first bytes that are neither an HTTP/2 preface nor an HTTP/1
 * request line: etcd's connection multiplexer closes such a connection without a byte; etcd-ts
 * must too (node's HTTP server would answer "400 Bad Request"). Each opening is sent to etcd-ts
 * and, when installed, to etcd 3.4, and the bytes each answered before closing are compared;
 * the member must keep serving afterwards.
 */
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { etcdTsBinary, referenceEtcdPath, serverBinaryFromSpec, startMember, type Member } from "../harness/member.js";
import { killAllChildren } from "../harness/processes.js";

/** Sends `bytes`, half-closes nothing, and returns what came back until the server closed (or `waitMs` passed: "open"). */
async function answerTo(url: string, bytes: Buffer, waitMs = 1_500): Promise<{ closed: boolean; answer: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(Number(port), hostname, () => socket.write(bytes));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ closed: false, answer: Buffer.concat(chunks).toString("latin1") });
    }, waitMs);
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code !== "ECONNRESET") reject(err);
    });
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ closed: true, answer: Buffer.concat(chunks).toString("latin1") });
    });
  });
}

const OPENINGS: Array<{ name: string; bytes: Buffer; silentClose: boolean }> = [
  { name: "h2spec's invalid preface", bytes: Buffer.from("INVALID CONNECTION PREFACE\r\n\r\n"), silentClose: true },
  { name: "one word", bytes: Buffer.from("GARBAGE\r\n\r\n"), silentClose: true },
  { name: "an HTTP/2.0 request line", bytes: Buffer.from("GET / HTTP/2.0\r\n\r\n"), silentClose: true },
  { name: "a preface gone wrong after its first line", bytes: Buffer.from("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"), silentClose: true },
  { name: "an empty first line", bytes: Buffer.from("\r\nGET /health HTTP/1.1\r\n\r\n"), silentClose: true },
  { name: "binary", bytes: Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x0a, 0x0d, 0xff, 0x00, 0x01]), silentClose: true },
  { name: "a first line past 4096 bytes", bytes: Buffer.from(`GET /${"a".repeat(5000)} HTTP/1.1\r\n\r\n`), silentClose: true },
];

describe("client port: first bytes neither HTTP/2 nor HTTP/1", () => {
  const members: Array<{ name: string; member: Member }> = [];

  beforeAll(async () => {
    members.push({ name: "etcd-ts", member: await startMember({ binary: etcdTsBinary(), name: "sniff-ts" }) });
    const reference = referenceEtcdPath();
    if (reference !== undefined) members.push({ name: "etcd 3.4", member: await startMember({ binary: serverBinaryFromSpec(reference), name: "sniff-etcd" }) });
  }, 60_000);

  afterAll(async () => {
    for (const m of members) await m.member.destroy();
    await killAllChildren();
  });

  for (const o of OPENINGS) {
    it(`${o.name}: closed without an answer, as etcd`, async () => {
      for (const { name, member } of members) {
        const got = await answerTo(member.clientUrl, o.bytes);
        expect(got, name).toEqual({ closed: true, answer: "" });
      }
    });
  }

  it("an HTTP/1.0 and an HTTP/1.1 request line are still served", async () => {
    for (const { name, member } of members) {
      for (const version of ["1.0", "1.1"]) {
        const got = await answerTo(member.clientUrl, Buffer.from(`GET /health HTTP/${version}\r\nHost: x\r\nConnection: close\r\n\r\n`));
        expect(got.answer, `${name} HTTP/${version}`).toMatch(new RegExp(`^HTTP/1\\.[01] 200 OK`));
        expect(got.answer, name).toContain(`"health":"true"`);
      }
    }
  });

  it("the members still serve gRPC", async () => {
    for (const { member } of members) {
      const c = member.grpc();
      await c.put("sniffed", "ok");
      expect((await c.range("sniffed")).kvs.map((kv) => kv.value.toString())).toEqual(["ok"]);
    }
  });
});
