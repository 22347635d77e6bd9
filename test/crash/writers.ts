/**
 * The load of the crash tests: sequential put/delete loops over gRPC whose acknowledged
 * operations are recorded for the history check, and whose failed ones are remembered as
 * attempted (they may or may not have been applied).
 */
import { GrpcLiteClient } from "../harness/grpc-lite.js";
import { sleep } from "../harness/processes.js";
import { attemptId, type Ack } from "./history-check.js";

/** A positive integer from the environment, or `fallback`. */
export function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer`);
  return n;
}

export interface WriterOptions {
  /** Client URLs; writer w starts on urls[w % n] and moves to the next one after an error. */
  urls: string[];
  writers: number;
  cycle: number;
  prefix: string;
  keysPerWriter: number;
  /** Every `deleteEvery`-th operation deletes instead (a delete that removed nothing is not recorded). */
  deleteEvery: number;
  retryDelayMs: number;
}

/** Starts the loops; `stop()` ends them and returns how many operations failed. */
export function startWriters(o: WriterOptions, acks: Ack[], attempted: Set<string>): { stop(): Promise<number> } {
  let stopping = false;
  let errors = 0;
  const loops = Array.from({ length: o.writers }, async (_, w) => {
    let target = w % o.urls.length;
    let client = new GrpcLiteClient({ url: o.urls[target]!, callTimeoutMs: 3_000 });
    try {
      for (let i = 0; !stopping && i < 1_000_000; i++) {
        const key = `${o.prefix}w${w}/k${i % o.keysPerWriter}`;
        const value = `c${o.cycle}-w${w}-n${i}`;
        const del = i % o.deleteEvery === o.deleteEvery - 1;
        attempted.add(attemptId(del ? "DELETE" : "PUT", key, value));
        try {
          if (del) {
            const res = await client.deleteRange(key);
            if (res.deleted > 0n) acks.push({ key, value: "", type: "DELETE", revision: Number(res.header.revision), writer: w });
          } else {
            const header = await client.put(key, value);
            acks.push({ key, value, type: "PUT", revision: Number(header.revision), writer: w });
          }
        } catch {
          errors++;
          client.close();
          target = (target + 1) % o.urls.length;
          client = new GrpcLiteClient({ url: o.urls[target]!, callTimeoutMs: 3_000 });
          if (!stopping) await sleep(o.retryDelayMs);
        }
      }
    } finally {
      client.close();
    }
  });
  return {
    async stop(): Promise<number> {
      stopping = true;
      await Promise.all(loops);
      return errors;
    },
  };
}
