/**
 * The raft wire codecs' speed: `npx tsx test/bench/raft-wire-codec.ts`.
 *
 * Encodes and decodes a MsgApp of BENCH_ENTRIES entries (default 100) of BENCH_ENTRY_BYTES
 * bytes each (default 256) with full-width member IDs, through message-codec.ts, the message
 * stream framing and msgappv2's compact frames, and, for comparison, through the generated
 * raftpb code (@etcd-ts/proto/raftpb/raft). Reports the median over BENCH_RUNS runs (default 5)
 * of BENCH_SECONDS (default 1) each: operations per second, µs per message, MB/s.
 */
import { Message as PbMessage } from "@etcd-ts/proto/raftpb/raft";
import { decodeMessage, encodeMessage } from "../../server/src/rafthttp/message-codec.js";
import { MessageStreamDecoder, encodeMessageFrame } from "../../server/src/rafthttp/message-stream.js";
import { MsgAppV2Decoder, MsgAppV2Encoder } from "../../server/src/rafthttp/msgapp-v2.js";
import { EntryType, MessageType, type Message } from "../../server/src/raft/types.js";

const entriesPerMessage = Number(process.env.BENCH_ENTRIES ?? 100);
const entryBytes = Number(process.env.BENCH_ENTRY_BYTES ?? 256);
const runs = Number(process.env.BENCH_RUNS ?? 5);
const seconds = Number(process.env.BENCH_SECONDS ?? 1);

const local = 0x8e9e05c52164694dn;
const remote = 0x91bc3c398fb3c146n;
const term = 7;
const base = 1_000_000;

function msgApp(index: number): Message {
  const entries = [];
  for (let i = 1; i <= entriesPerMessage; i++) {
    entries.push({ type: EntryType.Normal, term, index: index + i, data: new Uint8Array(entryBytes).fill(i & 0xff) });
  }
  return {
    type: MessageType.App, to: remote, from: local, term, logTerm: term, index, entries, commit: index,
    reject: false, rejectHint: 0, context: new Uint8Array(0),
  };
}

function measure(name: string, bytesPerOp: number, op: () => void): void {
  const rates: number[] = [];
  for (let r = 0; r < runs; r++) {
    let n = 0;
    const start = performance.now();
    const end = start + seconds * 1000;
    let now = start;
    while (now < end) {
      for (let k = 0; k < 50; k++) op();
      n += 50;
      now = performance.now();
    }
    rates.push((n * 1000) / (now - start));
  }
  rates.sort((a, b) => a - b);
  const rate = rates[Math.floor(rates.length / 2)]!;
  console.log(
    `${name.padEnd(44)} ${rate.toFixed(0).padStart(8)} msg/s ${(1e6 / rate).toFixed(1).padStart(8)} µs/msg ${((rate * bytesPerOp) / 1e6).toFixed(0).padStart(6)} MB/s`,
  );
}

const m = msgApp(base);
const bytes = encodeMessage(m);
const frame = encodeMessageFrame(m);
console.log(`MsgApp: ${entriesPerMessage} entries × ${entryBytes} B, ${bytes.length} B marshalled; median of ${runs} × ${seconds}s`);
measure("message-codec encodeMessage", bytes.length, () => encodeMessage(m));
measure("message-codec decodeMessage", bytes.length, () => decodeMessage(bytes));
const streamDec = new MessageStreamDecoder();
measure("message stream: frame + decoder.push", frame.length, () => streamDec.push(encodeMessageFrame(m)));
{
  // consecutive MsgApps, so that all but the first go out as compact frames
  const count = 2000;
  const msgs: Message[] = [];
  for (let k = 0; k < count; k++) {
    const index = base + k * entriesPerMessage;
    msgs.push({ ...m, index, entries: m.entries.map((e, i) => ({ ...e, index: index + i + 1 })) });
  }
  let enc = new MsgAppV2Encoder();
  let k = 0;
  measure("msgappv2 compact frames: encode", bytes.length, () => {
    if (k === count) {
      enc = new MsgAppV2Encoder();
      k = 0;
    }
    enc.encode(msgs[k++]!);
  });
  const enc2 = new MsgAppV2Encoder();
  const frames = msgs.map((msg) => enc2.encode(msg));
  let dec = new MsgAppV2Decoder({ local: remote, remote: local });
  k = 0;
  measure("msgappv2 compact frames: decoder.push", bytes.length, () => {
    if (k === count) {
      dec = new MsgAppV2Decoder({ local: remote, remote: local });
      k = 0;
    }
    dec.push(frames[k++]!);
  });
}
const pb = PbMessage.decode(bytes);
measure("generated raftpb Message.encode (comparison)", bytes.length, () => PbMessage.encode(pb).finish());
measure("generated raftpb Message.decode (comparison)", bytes.length, () => PbMessage.decode(bytes));
