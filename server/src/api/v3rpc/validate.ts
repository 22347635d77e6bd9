/**
 * Request checks etcd makes in its gRPC layer before a request is proposed: empty keys, option
 * conflicts, txn size, and overlapping writes inside a txn. Each failure is a ServerError whose
 * code the error table turns into etcd's exact status and message.
 */
import { DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest } from "@etcd-ts/proto/etcdserverpb/rpc";
import { serverError } from "../../server/errors.js";

/** etcd 3.4 checks only the key here; unknown sort orders and targets simply do not sort. */
export function checkRange(r: RangeRequest): void {
  if (r.key.length === 0) throw serverError("EmptyKey");
}

export function checkPut(r: PutRequest): void {
  if (r.key.length === 0) throw serverError("EmptyKey");
  if (r.ignoreValue && r.value.length !== 0) throw serverError("ValueProvided");
  if (r.ignoreLease && r.lease !== 0n) throw serverError("LeaseProvided");
}

export function checkDelete(r: DeleteRangeRequest): void {
  if (r.key.length === 0) throw serverError("EmptyKey");
}

function checkOp(op: RequestOp, maxTxnOps: number): void {
  if (op.requestRange) checkRange(op.requestRange);
  else if (op.requestPut) checkPut(op.requestPut);
  else if (op.requestDeleteRange) checkDelete(op.requestDeleteRange);
  else if (op.requestTxn) checkTxn(op.requestTxn, maxTxnOps);
  else throw serverError("KeyNotFound"); // an empty op, as etcd reports it
}

/**
 * Keeps, in every op of `r` (nested txns too), only the member of RequestOp's `request` oneof that
 * protobuf keeps: the last on the wire, which for encoders writing in field order is the highest
 * numbered (txn 4, delete 3, put 2, range 1). The decoded form holds every member that was sent;
 * etcd sees one. Changes `r` in place.
 */
function keepLastRequestMember(r: TxnRequest): void {
  for (const op of [...r.success, ...r.failure]) {
    if (op.requestTxn !== undefined) {
      op.requestDeleteRange = op.requestPut = op.requestRange = undefined;
      keepLastRequestMember(op.requestTxn);
    } else if (op.requestDeleteRange !== undefined) op.requestPut = op.requestRange = undefined;
    else if (op.requestPut !== undefined) op.requestRange = undefined;
  }
}

/**
 * Size and shape checks; nested txns share the parent's op budget. First reduces each op to the
 * one request protobuf keeps (keepLastRequestMember), so what is checked is what runs.
 */
export function checkTxn(r: TxnRequest, maxTxnOps: number): void {
  keepLastRequestMember(r);
  const opc = Math.max(r.compare.length, r.success.length, r.failure.length);
  if (opc > maxTxnOps) throw serverError("TooManyOps");
  for (const c of r.compare) if (c.key.length === 0) throw serverError("EmptyKey");
  for (const op of r.success) checkOp(op, maxTxnOps - opc);
  for (const op of r.failure) checkOp(op, maxTxnOps - opc);
}

/** Half-open key interval [start, end); end undefined = the single key `start`; end null = to +inf. */
interface Interval {
  start: Buffer;
  end: Buffer | null | undefined;
}

function intervalOf(key: Buffer, rangeEnd: Buffer): Interval {
  if (rangeEnd.length === 0) return { start: key, end: undefined };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { start: key, end: null };
  return { start: key, end: rangeEnd };
}

function covers(iv: Interval, key: Buffer): boolean {
  if (iv.end === undefined) return Buffer.compare(iv.start, key) === 0;
  if (Buffer.compare(key, iv.start) < 0) return false;
  return iv.end === null || Buffer.compare(key, iv.end) < 0;
}

/**
 * Rejects a txn branch that writes one key twice, or writes a key that the same branch deletes
 * (puts in the two branches of a nested txn may overlap: only one of them runs).
 * @returns the keys put and the ranges deleted by `ops`, for the enclosing level.
 */
export function checkWriteOverlaps(ops: RequestOp[]): { puts: Set<string>; dels: Interval[] } {
  const dels: Interval[] = [];
  for (const op of ops) {
    if (op.requestDeleteRange) dels.push(intervalOf(op.requestDeleteRange.key, op.requestDeleteRange.rangeEnd));
  }
  const deleted = (k: string): boolean => dels.some((iv) => covers(iv, Buffer.from(k, "latin1")));
  const puts = new Set<string>();
  for (const op of ops) {
    if (!op.requestTxn) continue;
    const thenSide = checkWriteOverlaps(op.requestTxn.success);
    const elseSide = checkWriteOverlaps(op.requestTxn.failure);
    for (const k of thenSide.puts) {
      if (puts.has(k) || deleted(k)) throw serverError("DuplicateKey");
      puts.add(k);
    }
    for (const k of elseSide.puts) {
      if (puts.has(k) && !thenSide.puts.has(k)) throw serverError("DuplicateKey");
      if (deleted(k)) throw serverError("DuplicateKey");
      puts.add(k);
    }
    dels.push(...thenSide.dels, ...elseSide.dels);
  }
  for (const op of ops) {
    if (!op.requestPut) continue;
    const k = op.requestPut.key.toString("latin1");
    if (puts.has(k) || deleted(k)) throw serverError("DuplicateKey");
    puts.add(k);
  }
  return { puts, dels };
}
