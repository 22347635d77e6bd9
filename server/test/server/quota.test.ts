/**
 * The backend quota between two samples of the backend's size: what was admitted since the last
 * sample counts, so a burst stops at the quota instead of a sample later.
 */
import { AlarmType } from "@etcd-ts/proto/etcdserverpb/rpc";
import { expect, it } from "vitest";
import { ManualClock } from "../../src/pkg/clock.js";
import { nullLogger } from "../../src/pkg/logger.js";
import { BackendQuota, putCostBytes } from "../../src/server/quota.js";
import { ServerError } from "../../src/server/errors.js";

const MiB = 1024 * 1024;

function quota(diskBytes: () => number): { q: BackendQuota; raised: number[] } {
  const raised: number[] = [];
  const q = new BackendQuota(
    { quotaBackendBytes: 4 * MiB },
    { sizeBytes: async () => diskBytes(), isRaised: (a) => a === AlarmType.NOSPACE && raised.length > 0, raiseNoSpace: () => raised.push(1), clock: new ManualClock(), logger: nullLogger },
  );
  return { q, raised };
}

it("counts what it admitted since the last sample of the backend's size", async () => {
  let disk = MiB;
  const { q, raised } = quota(() => disk);
  await q.refresh();
  const cost = putCostBytes(new Uint8Array(8), new Uint8Array(MiB - 72));
  for (let i = 0; i < 3; i++) q.check(cost); // 1 MiB on disk + 3 admitted = 4 MiB
  expect(q.sizeBytes).toBe(4 * MiB);
  expect(() => q.check(cost)).toThrow(ServerError);
  expect(raised).toHaveLength(1);
});

it("a new sample replaces what was admitted before it", async () => {
  let disk = 0;
  const { q } = quota(() => disk);
  await q.refresh();
  const cost = putCostBytes(new Uint8Array(8), new Uint8Array(MiB - 72));
  q.check(cost);
  q.check(cost);
  disk = MiB; // the two puts were overwrites: the backend grew by one
  await q.refresh();
  expect(q.sizeBytes).toBe(MiB);
  for (let i = 0; i < 3; i++) q.check(cost);
  expect(() => q.check(cost)).toThrow(ServerError);
});
