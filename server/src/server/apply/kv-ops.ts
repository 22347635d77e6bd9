/**
 * The KV semantics of etcd's applier, shared by the apply loop (Put, DeleteRange, Txn, and the
 * ranges inside a Txn) and by the read path (Range outside a Txn): range options, sort and
 * limit, revision filters, compares, and the request checks etcd makes at apply time.
 * The store is reached through the small consumer-owned interfaces below.
 */
import {
  Compare, Compare_CompareResult, Compare_CompareTarget, DeleteRangeRequest, DeleteRangeResponse,
  PutRequest, PutResponse, RangeRequest, RangeRequest_SortOrder, RangeRequest_SortTarget, RangeResponse,
  RequestOp, ResponseOp, TxnRequest, TxnResponse,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import { KeyValue as PbKeyValue } from "@etcd-ts/proto/mvccpb/kv";
import { ErrCompacted, ErrFutureRev } from "../../mvcc/errors.js";
import { serverError } from "../errors.js";

/** A key-value record as the store returns it. Buffers are not to be mutated by callers. */
export interface StoreKeyValue {
  key: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
  value: Buffer;
  lease: bigint;
}

export interface StoreRangeOptions {
  revision?: number;
  limit?: number;
  countOnly?: boolean;
  keysOnly?: boolean;
}

export interface StoreRangeResult {
  kvs: StoreKeyValue[];
  count: number;
  revision: number;
}

/** Reads at a revision; `end` undefined = single key, empty/"\0" handled by the store as etcd does. */
export interface KvReader {
  range(key: Buffer, end: Buffer | undefined, options: StoreRangeOptions): Promise<StoreRangeResult>;
}

/** The single write transaction of one apply step; its reads see its own earlier writes. */
export interface KvWriter extends KvReader {
  put(key: Buffer, value: Buffer, lease: bigint): void;
  /** Deletes the live keys in the range; returns them (ascending). */
  deleteRange(key: Buffer, end: Buffer | undefined): Buffer[];
  /** Whether any write has been staged. */
  readonly changed: boolean;
  /** The store's revision when this write txn began; its writes take beginRevision + 1. */
  readonly beginRevision: number;
}

/** What the KV ops need of the lessor. */
export interface LeaseChecker {
  exists(id: bigint): boolean;
}

export function toPbKv(kv: StoreKeyValue, keysOnly = false): PbKeyValue {
  return {
    key: kv.key,
    createRevision: BigInt(kv.createRevision),
    modRevision: BigInt(kv.modRevision),
    version: BigInt(kv.version),
    value: keysOnly ? EMPTY : kv.value,
    lease: kv.lease,
  };
}

const EMPTY = Buffer.alloc(0);

function header(revision: number): { clusterId: bigint; memberId: bigint; revision: bigint; raftTerm: bigint } {
  return { clusterId: 0n, memberId: 0n, revision: BigInt(revision), raftTerm: 0n };
}

/** etcd treats a range_end of "\0" as "to the end of the keyspace". */
function rangeEnd(end: Buffer): Buffer | undefined {
  return end.length === 0 ? undefined : end;
}

function compareBytes(a: Buffer, b: Buffer): number {
  return Buffer.compare(a, b);
}

function compareNumbers(a: number | bigint, b: number | bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sortKey(target: RangeRequest_SortTarget): (a: StoreKeyValue, b: StoreKeyValue) => number {
  switch (target) {
    case RangeRequest_SortTarget.VERSION:
      return (a, b) => a.version - b.version;
    case RangeRequest_SortTarget.CREATE:
      return (a, b) => a.createRevision - b.createRevision;
    case RangeRequest_SortTarget.MOD:
      return (a, b) => a.modRevision - b.modRevision;
    case RangeRequest_SortTarget.VALUE:
      return (a, b) => compareBytes(a.value, b.value);
    default:
      return (a, b) => compareBytes(a.key, b.key);
  }
}

/**
 * Range with etcd's request semantics on top of the store's plain range.
 * @throws the store's compacted / future-revision errors.
 */
export async function applyRange(reader: KvReader, r: RangeRequest): Promise<RangeResponse> {
  const filtered = r.minModRevision !== 0n || r.maxModRevision !== 0n || r.minCreateRevision !== 0n || r.maxCreateRevision !== 0n;
  let limit = Number(r.limit);
  if (r.sortOrder !== RangeRequest_SortOrder.NONE || filtered) limit = 0; // fetch all, then sort/filter/truncate
  if (limit > 0) limit += 1; // one extra to tell "more"
  const rr = await reader.range(r.key, rangeEnd(r.rangeEnd), {
    revision: Number(r.revision),
    limit,
    countOnly: r.countOnly,
  });
  let kvs = rr.kvs;
  if (filtered) {
    const maxMod = Number(r.maxModRevision), minMod = Number(r.minModRevision);
    const maxCreate = Number(r.maxCreateRevision), minCreate = Number(r.minCreateRevision);
    kvs = kvs.filter((kv) =>
      !(maxMod !== 0 && kv.modRevision > maxMod) &&
      !(minMod !== 0 && kv.modRevision < minMod) &&
      !(maxCreate !== 0 && kv.createRevision > maxCreate) &&
      !(minCreate !== 0 && kv.createRevision < minCreate));
  }
  let order = r.sortOrder;
  // The store returns keys ascending; any other target sorts ascending unless told otherwise.
  if (r.sortTarget !== RangeRequest_SortTarget.KEY && order === RangeRequest_SortOrder.NONE) order = RangeRequest_SortOrder.ASCEND;
  // Only ASCEND and DESCEND sort (an unknown order leaves the store's key order, as in etcd).
  if (order === RangeRequest_SortOrder.ASCEND || order === RangeRequest_SortOrder.DESCEND) {
    const cmp = sortKey(r.sortTarget);
    if (kvs === rr.kvs) kvs = kvs.slice();
    if (order === RangeRequest_SortOrder.DESCEND) kvs.sort((a, b) => cmp(b, a));
    else if (r.sortTarget !== RangeRequest_SortTarget.KEY) kvs.sort(cmp);
  }
  let more = false;
  const wanted = Number(r.limit);
  if (wanted > 0 && kvs.length > wanted) {
    kvs = kvs.slice(0, wanted);
    more = true;
  }
  return {
    header: header(rr.revision),
    kvs: kvs.map((kv) => toPbKv(kv, r.keysOnly)),
    more,
    count: BigInt(rr.count),
  };
}

/** Put inside the apply step's write txn. Lease existence is checked by the caller (checkPut). */
/** Whether a put reads the key before writing it (prev_kv, ignore_value, ignore_lease); a plain one does not (applyPlainPut). */
export function putReads(p: PutRequest): boolean {
  return p.prevKv || p.ignoreValue || p.ignoreLease;
}

/** applyPut of a put that reads nothing (`putReads` false): staged at once, without a turn of the loop. */
export function applyPlainPut(w: KvWriter, p: PutRequest): PutResponse {
  w.put(p.key, p.value, p.lease);
  return { header: header(w.beginRevision + 1), prevKv: undefined };
}

export async function applyPut(w: KvWriter, p: PutRequest): Promise<{ resp: PutResponse; revision: number }> {
  let value = p.value;
  let lease = p.lease;
  let prev: StoreKeyValue | undefined;
  if (p.ignoreValue || p.ignoreLease || p.prevKv) {
    const rr = await w.range(p.key, undefined, {});
    prev = rr.kvs[0];
  }
  if (p.ignoreValue || p.ignoreLease) {
    if (prev === undefined) throw serverError("KeyNotFound");
    if (p.ignoreValue) value = prev.value;
    if (p.ignoreLease) lease = prev.lease;
  }
  w.put(p.key, value, lease);
  return {
    resp: { header: header(w.beginRevision + 1), prevKv: p.prevKv && prev ? toPbKv(prev) : undefined },
    revision: w.beginRevision + 1,
  };
}

export async function applyDeleteRange(w: KvWriter, d: DeleteRangeRequest): Promise<DeleteRangeResponse> {
  const end = rangeEnd(d.rangeEnd);
  let prevKvs: PbKeyValue[] = [];
  if (d.prevKv) {
    const rr = await w.range(d.key, end, {});
    prevKvs = rr.kvs.map((kv) => toPbKv(kv));
  }
  const deleted = w.deleteRange(d.key, end).length;
  const revision = deleted > 0 || w.changed ? w.beginRevision + 1 : w.beginRevision;
  return { header: header(revision), deleted: BigInt(deleted), prevKvs };
}

/**
 * Which member of Compare's target_union oneof the request holds. The decoded form keeps every
 * member that was on the wire; protobuf (and etcd) keep the last one, which for encoders that
 * write in field order is the one with the highest field number (lease 8, value 7, mod 6,
 * create 5, version 4). A target whose member is not the one held compares with the zero value,
 * as etcd's type switch does.
 */
function heldTarget(c: Compare): Compare_CompareTarget | undefined {
  if (c.lease !== undefined) return Compare_CompareTarget.LEASE;
  if (c.value !== undefined) return Compare_CompareTarget.VALUE;
  if (c.modRevision !== undefined) return Compare_CompareTarget.MOD;
  if (c.createRevision !== undefined) return Compare_CompareTarget.CREATE;
  if (c.version !== undefined) return Compare_CompareTarget.VERSION;
  return undefined;
}

function compareKv(c: Compare, kv: StoreKeyValue | undefined): boolean {
  let result: number;
  const held = heldTarget(c) === c.target;
  switch (c.target) {
    case Compare_CompareTarget.VALUE:
      result = compareBytes(kv?.value ?? EMPTY, (held ? c.value : undefined) ?? EMPTY);
      break;
    case Compare_CompareTarget.CREATE:
      result = compareNumbers(kv?.createRevision ?? 0, Number((held ? c.createRevision : undefined) ?? 0n));
      break;
    case Compare_CompareTarget.MOD:
      result = compareNumbers(kv?.modRevision ?? 0, Number((held ? c.modRevision : undefined) ?? 0n));
      break;
    case Compare_CompareTarget.VERSION:
      result = compareNumbers(kv?.version ?? 0, Number((held ? c.version : undefined) ?? 0n));
      break;
    case Compare_CompareTarget.LEASE:
      result = compareNumbers(kv?.lease ?? 0n, (held ? c.lease : undefined) ?? 0n);
      break;
    default:
      result = 0;
  }
  switch (c.result) {
    case Compare_CompareResult.EQUAL:
      return result === 0;
    case Compare_CompareResult.NOT_EQUAL:
      return result !== 0;
    case Compare_CompareResult.GREATER:
      return result > 0;
    case Compare_CompareResult.LESS:
      return result < 0;
    default:
      return true;
  }
}

async function applyCompare(reader: KvReader, c: Compare): Promise<boolean> {
  let rr: StoreRangeResult;
  try {
    rr = await reader.range(c.key, c.rangeEnd.length > 0 ? c.rangeEnd : undefined, {});
  } catch (err) {
    // etcd: a compare whose range fails is false. At the current revision that is only the
    // store's compacted / future-revision refusal; a failed backend read is no answer, and goes on
    // up to stop the member (see ErrStoreRead).
    if (err instanceof ErrCompacted || err instanceof ErrFutureRev) return false;
    throw err;
  }
  if (rr.kvs.length === 0) {
    // A value compare on a missing key always fails; other targets compare against zero.
    if (c.target === Compare_CompareTarget.VALUE) return false;
    return compareKv(c, undefined);
  }
  for (const kv of rr.kvs) if (!compareKv(c, kv)) return false;
  return true;
}

/**
 * The branch each (nested) txn takes, in depth-first order, all decided on the state before the
 * txn runs (etcd's compareToPath).
 */
async function comparePath(reader: KvReader, rt: TxnRequest, path: boolean[]): Promise<void> {
  let ok = true;
  for (const c of rt.compare) {
    if (!(await applyCompare(reader, c))) {
      ok = false;
      break;
    }
  }
  path.push(ok);
  for (const op of ok ? rt.success : rt.failure) {
    if (op.requestTxn) await comparePath(reader, op.requestTxn, path);
  }
}

export function isTxnReadOnly(rt: TxnRequest): boolean {
  const ops = [...rt.success, ...rt.failure];
  for (const op of ops) {
    if (op.requestPut || op.requestDeleteRange) return false;
    if (op.requestTxn && !isTxnReadOnly(op.requestTxn)) return false;
  }
  return true;
}

export interface TxnChecks {
  leases: LeaseChecker;
  currentRevision: number;
  compactRevision: number;
}

/** Checks the ops on the chosen path before anything is applied (etcd's checkRequests). */
async function checkPath(reader: KvReader, rt: TxnRequest, path: boolean[], at: { i: number }, checks: TxnChecks): Promise<void> {
  const ok = path[at.i++]!;
  for (const op of ok ? rt.success : rt.failure) {
    if (op.requestPut) {
      const p = op.requestPut;
      if (p.lease !== 0n && !checks.leases.exists(p.lease)) throw new LeaseNotFoundForPut();
      if (p.ignoreValue || p.ignoreLease) {
        const rr = await reader.range(p.key, undefined, {});
        if (rr.kvs.length === 0) throw serverError("KeyNotFound");
      }
    } else if (op.requestRange) {
      const rev = Number(op.requestRange.revision);
      if (rev > checks.currentRevision) throw new FutureRevisionInTxn();
      if (rev > 0 && rev < checks.compactRevision) throw new CompactedRevisionInTxn();
    } else if (op.requestTxn) {
      await checkPath(reader, op.requestTxn, path, at, checks);
    }
  }
}

/** Thrown by txn checks; the apply loop maps them to the lease/mvcc errors clients expect. */
export class LeaseNotFoundForPut extends Error {}
export class FutureRevisionInTxn extends Error {}
export class CompactedRevisionInTxn extends Error {}

async function runOps(w: KvWriter, rt: TxnRequest, path: boolean[], at: { i: number }, out: TxnResponse): Promise<void> {
  const ok = path[at.i++]!;
  out.succeeded = ok;
  const ops = ok ? rt.success : rt.failure;
  out.responses = [];
  for (const op of ops) {
    out.responses.push(await runOp(w, op, path, at));
  }
}

async function runOp(w: KvWriter, op: RequestOp, path: boolean[], at: { i: number }): Promise<ResponseOp> {
  if (op.requestRange) {
    return { responseRange: await applyRange(w, op.requestRange) };
  }
  if (op.requestPut) {
    const { resp } = await applyPut(w, op.requestPut);
    return { responsePut: resp };
  }
  if (op.requestDeleteRange) {
    return { responseDeleteRange: await applyDeleteRange(w, op.requestDeleteRange) };
  }
  if (op.requestTxn) {
    // etcd leaves a nested txn's header empty.
    const inner: TxnResponse = { header: header(0), succeeded: false, responses: [] };
    await runOps(w, op.requestTxn, path, at, inner);
    return { responseTxn: inner };
  }
  return {};
}

/**
 * Applies a Txn: decides every branch first, checks the chosen ops, then runs them in the
 * apply step's write txn. Headers inside carry the revision each op observed or produced.
 */
export async function applyTxn(w: KvWriter, rt: TxnRequest, checks: TxnChecks): Promise<TxnResponse> {
  const path: boolean[] = [];
  await comparePath(w, rt, path);
  await checkPath(w, rt, path, { i: 0 }, checks);
  const resp: TxnResponse = { header: undefined, succeeded: false, responses: [] };
  await runOps(w, rt, path, { i: 0 }, resp);
  return resp;
}
