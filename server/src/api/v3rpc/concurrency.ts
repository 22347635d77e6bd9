/**
 * The distributed mutex and leader election that the Lock and Election services serve, as etcd
 * 3.4's client-side recipes define them, run through the member's local client.
 *
 * Key layout (shared with every etcd client using the recipes, e.g. `etcdctl lock`/`elect`): a
 * participant owns the key `<name>/<lease in lower-case hex>` under its lease; among the keys
 * under `<name>/`, the one with the smallest create revision holds the lock (or is the leader).
 * A waiting participant watches only the next older key (the largest create revision below its
 * own) until it is deleted, then looks again.
 *
 * Sessions: a request naming lease 0 gets a fresh lease of 60 s (which nobody keeps alive), as
 * etcd's session does; a named lease is used as it is (its existence is only checked by the put).
 *
 * Failures are LocalClientErrors (gRPC code Unknown, etcd's texts); a caller that goes away ends
 * any wait with CallAbortedError. Deliberately as in etcd 3.4: a participant whose own key
 * disappears while it waits (its lease expired) still acquires once the older keys are gone.
 */
import {
  Compare_CompareResult, Compare_CompareTarget, RangeRequest_SortOrder, RangeRequest_SortTarget,
  type DeepPartial, type RangeRequest, type RequestOp, type ResponseHeader,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import type { KeyValue as PbKeyValue } from "@etcd-ts/proto/mvccpb/kv";
import type { LeaderKey } from "@etcd-ts/proto/v3electionpb/v3election";
import { ErrCompacted } from "../../mvcc/errors.js";
import type { KeyValue } from "../../mvcc/key-value.js";
import { toPbKv } from "../../server/apply/kv-ops.js";
import type { RequestContext } from "../../server/request-context.js";
import { statusOf } from "./errors.js";
import { CallAbortedError, LocalClientError, prefixRangeEnd, type LocalClient } from "./local-client.js";

/** TTL of the lease a request without one gets (etcd's default session TTL). */
export const SESSION_TTL_SECONDS = 60;

export const ERR_NOT_LEADER = "election: not leader";
export const ERR_NO_LEADER = "election: no leader";
export const ERR_MISSING_LEADER_KEY = '"leader" field must be provided';

/** The request's lease, or a fresh session lease when it names none. */
async function sessionLease(client: LocalClient, lease: bigint, ctx: RequestContext): Promise<bigint> {
  return lease === 0n ? client.leaseGrant(SESSION_TTL_SECONDS, ctx) : lease;
}

/** `<prefix><lease in hex>`, the hex as Go's %x prints an int64 (a minus sign for negatives). */
export function participantKey(prefix: Buffer, lease: bigint): Buffer {
  const hex = lease < 0n ? `-${(-lease).toString(16)}` : lease.toString(16);
  return Buffer.concat([prefix, Buffer.from(hex)]);
}

function keyPrefix(name: Buffer): Buffer {
  return Buffer.concat([name, Buffer.from("/")]);
}

/** The oldest key under `prefix` (by create revision). */
function firstCreated(prefix: Buffer): DeepPartial<RangeRequest> {
  return {
    key: prefix, rangeEnd: prefixRangeEnd(prefix), limit: 1n,
    sortOrder: RangeRequest_SortOrder.ASCEND, sortTarget: RangeRequest_SortTarget.CREATE,
  };
}

/** A compare: `key`'s create revision equals `rev` (0 = the key does not exist). */
function createdAt(key: Buffer, rev: bigint) {
  return { key, target: Compare_CompareTarget.CREATE, result: Compare_CompareResult.EQUAL, createRevision: rev };
}

function put(key: Buffer, value: Buffer, lease: bigint): DeepPartial<RequestOp> {
  return { requestPut: { key, value, lease } };
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw new CallAbortedError();
}

/**
 * Resolves at the first deletion of `key` at or after `revision`.
 * @throws LocalClientError when the revision is compacted, CallAbortedError on abort.
 */
async function waitDelete(client: LocalClient, key: Buffer, revision: number, signal: AbortSignal): Promise<void> {
  const queue = client.watch(key, undefined, revision);
  try {
    for (;;) {
      const m = await queue.next(signal);
      if ("compactRevision" in m) throw new LocalClientError(statusOf(new ErrCompacted(m.compactRevision))[1]);
      if (m.events.some((e) => e.type === "DELETE")) return;
    }
  } finally {
    queue.close();
  }
}

/**
 * Waits until no key under `prefix` has a create revision at or below `maxCreateRevision`; returns
 * the header of the read that found none. Each round waits for one deletion (the youngest such key),
 * so the rounds are bounded by the keys that were older than the caller's.
 */
async function waitDeletes(
  client: LocalClient, prefix: Buffer, maxCreateRevision: bigint, ctx: RequestContext, signal: AbortSignal,
): Promise<ResponseHeader> {
  for (;;) {
    throwIfAborted(signal);
    const resp = await client.range({
      key: prefix, rangeEnd: prefixRangeEnd(prefix), limit: 1n, maxCreateRevision,
      sortOrder: RangeRequest_SortOrder.DESCEND, sortTarget: RangeRequest_SortTarget.CREATE,
    }, ctx);
    const youngest = resp.kvs[0];
    if (youngest === undefined) return resp.header!;
    await waitDelete(client, youngest.key, Number(resp.header!.revision), signal);
  }
}

// ---- mutex -----------------------------------------------------------------------------------

export interface Acquired {
  header: ResponseHeader;
  /** The caller's key: it holds the lock while this key exists. */
  key: Buffer;
}

/**
 * Takes the lock `name` for `lease` (0: a fresh 60 s lease): puts the caller's key unless it
 * exists (a lease may take a lock it holds again), then waits for every older key to go. If the
 * wait fails (the caller went away), the caller's key is deleted, whether or not this call
 * created it, as etcd does.
 */
export async function lock(
  client: LocalClient, name: Buffer, lease: bigint, ctx: RequestContext, signal: AbortSignal,
): Promise<Acquired> {
  const id = await sessionLease(client, lease, ctx);
  const prefix = keyPrefix(name);
  const key = participantKey(prefix, id);
  const resp = await client.txn({
    compare: [createdAt(key, 0n)],
    success: [put(key, Buffer.alloc(0), id), { requestRange: firstCreated(prefix) }],
    failure: [{ requestRange: { key } }, { requestRange: firstCreated(prefix) }],
  }, ctx);
  const own = resp.succeeded ? resp.header!.revision : resp.responses[0]!.responseRange!.kvs[0]!.createRevision;
  const owner = resp.responses[1]!.responseRange!.kvs[0];
  if (owner === undefined || owner.createRevision === own) return { header: resp.header!, key };
  try {
    return { header: await waitDeletes(client, prefix, own - 1n, ctx, signal), key };
  } catch (err) {
    await client.delete(key, ctx).catch(() => undefined);
    throw err;
  }
}

// ---- election --------------------------------------------------------------------------------

export interface Elected {
  /** The header of the campaign's write (not of the wait that followed it). */
  header: ResponseHeader;
  leader: LeaderKey;
}

/**
 * Campaigns in election `name` with `value` under `lease` (0: a fresh 60 s lease) and resolves
 * once the caller leads. A lease that already campaigns keeps its place (and proclaims `value` if
 * its value differs). If the caller goes away while waiting, its candidacy is withdrawn.
 */
export async function campaign(
  client: LocalClient, name: Buffer, lease: bigint, value: Buffer, ctx: RequestContext, signal: AbortSignal,
): Promise<Elected> {
  const id = await sessionLease(client, lease, ctx);
  const prefix = keyPrefix(name);
  const key = participantKey(prefix, id);
  const resp = await client.txn({
    compare: [createdAt(key, 0n)],
    success: [put(key, value, id)],
    failure: [{ requestRange: { key } }],
  }, ctx);
  let rev = resp.header!.revision;
  if (!resp.succeeded) {
    const kv = resp.responses[0]!.responseRange!.kvs[0]!;
    rev = kv.createRevision;
    if (!kv.value.equals(value)) {
      try {
        await proclaimAs(client, key, rev, id, value, ctx);
      } catch (err) {
        // Not the leader any more: the key is gone or another, nothing of ours to withdraw.
        if (!(err instanceof LocalClientError && err.details === ERR_NOT_LEADER)) {
          await withdraw(client, key, rev, ctx).catch(() => undefined);
        }
        throw err;
      }
    }
  }
  try {
    await waitDeletes(client, prefix, rev - 1n, ctx, signal);
  } catch (err) {
    if (signal.aborted) await withdraw(client, key, rev, ctx).catch(() => undefined);
    throw err;
  }
  return { header: resp.header!, leader: { name, key, rev, lease: id } };
}

/** Puts `value` on `key` if it is still the one created at `rev`. @throws not leader */
async function proclaimAs(
  client: LocalClient, key: Buffer, rev: bigint, lease: bigint, value: Buffer, ctx: RequestContext,
): Promise<ResponseHeader> {
  const resp = await client.txn({ compare: [createdAt(key, rev)], success: [put(key, value, lease)] }, ctx);
  if (!resp.succeeded) throw new LocalClientError(ERR_NOT_LEADER);
  return resp.header!;
}

/** Deletes `key` if it is still the one created at `rev`. */
async function withdraw(client: LocalClient, key: Buffer, rev: bigint, ctx: RequestContext): Promise<ResponseHeader> {
  const resp = await client.txn({ compare: [createdAt(key, rev)], success: [{ requestDeleteRange: { key } }] }, ctx);
  return resp.header!;
}

/**
 * A new value from the holder of `leader` (compared on the key's create revision, so any
 * candidate, elected or still waiting, may change its own value). The put carries the lease the
 * request names (0: a fresh session lease, as etcd's session gives).
 */
export async function proclaim(client: LocalClient, leader: LeaderKey | undefined, value: Buffer, ctx: RequestContext): Promise<ResponseHeader> {
  if (leader === undefined) throw new LocalClientError(ERR_MISSING_LEADER_KEY);
  const lease = await sessionLease(client, leader.lease, ctx);
  return proclaimAs(client, leader.key, leader.rev, lease, value, ctx);
}

/** Withdraws `leader`'s key if it still owns it; answers without error when it does not. */
export async function resign(client: LocalClient, leader: LeaderKey | undefined, ctx: RequestContext): Promise<ResponseHeader> {
  if (leader === undefined) throw new LocalClientError(ERR_MISSING_LEADER_KEY);
  await sessionLease(client, leader.lease, ctx);
  return withdraw(client, leader.key, leader.rev, ctx);
}

export interface LeaderValue {
  header: ResponseHeader;
  kv: PbKeyValue;
}

/** The current leader's key-value of election `name`. @throws "election: no leader" */
export async function leader(client: LocalClient, name: Buffer, ctx: RequestContext): Promise<LeaderValue> {
  const resp = await client.range(firstCreated(keyPrefix(name)), ctx);
  const kv = resp.kvs[0];
  if (kv === undefined) throw new LocalClientError(ERR_NO_LEADER);
  return { header: resp.header!, kv };
}

/**
 * The leaders of election `name` and every value they proclaim, in order: the current leader
 * first (or, with none, the first key put under the name), then each put on that key until it is
 * deleted, then the next leader. It need not yield every historical value, but always the latest.
 * Ends (returns) when a read fails or a watch is compacted; throws CallAbortedError on abort.
 */
export async function* observe(
  client: LocalClient, name: Buffer, ctx: RequestContext, signal: AbortSignal,
): AsyncGenerator<LeaderValue, void, undefined> {
  const prefix = keyPrefix(name);
  for (;;) {
    throwIfAborted(signal);
    let current: LeaderValue;
    try {
      const resp = await client.range(firstCreated(prefix), ctx);
      const kv = resp.kvs[0];
      if (kv !== undefined) current = { header: resp.header!, kv };
      else {
        const first = await firstPut(client, prefix, Number(resp.header!.revision), signal);
        if (first === undefined) return;
        current = first;
      }
    } catch (err) {
      if (err instanceof LocalClientError) return;
      throw err;
    }
    yield current;
    const queue = client.watch(current.kv.key, undefined, Number(current.header.revision) + 1);
    try {
      watching: for (;;) {
        const m = await queue.next(signal);
        if ("compactRevision" in m) return;
        for (const e of m.events) {
          if (e.type === "DELETE") break watching;
          yield { header: client.header(m.revision), kv: toPbKv(e.kv as KeyValue) };
        }
      }
    } finally {
      queue.close();
    }
  }
}

/** The first key put under `prefix` at or after `revision`; undefined if the watch is compacted. */
async function firstPut(client: LocalClient, prefix: Buffer, revision: number, signal: AbortSignal): Promise<LeaderValue | undefined> {
  const queue = client.watch(prefix, prefixRangeEnd(prefix), revision);
  try {
    for (;;) {
      const m = await queue.next(signal);
      if ("compactRevision" in m) return undefined;
      const created = m.events.find((e) => e.type === "PUT");
      if (created !== undefined) return { header: client.header(created.kv.modRevision), kv: toPbKv(created.kv as KeyValue) };
    }
  } finally {
    queue.close();
  }
}
