/**
 * A user's key permissions merged over all of its roles (etcd's unified range permissions): one
 * set of intervals that may be read and one that may be written, checked by coverage.
 *
 * Keys compare as etcd's "affine" byte strings: the empty string stands for +infinity (an open
 * end), so a permission [key, "") runs to the end of the key space. A permission on one key is
 * the interval [key, key + "\x00"). A permission's range end "\x00" means "from key on".
 */
import { Permission_Type, type Permission } from "@etcd-ts/proto/authpb/auth";

/** The half-open interval [begin, end) of affine keys. */
interface Interval {
  begin: Buffer;
  end: Buffer;
}

/** Affine comparison: empty compares above every non-empty key. */
function compareAffine(a: Buffer, b: Buffer): number {
  if (a.length === 0) return b.length === 0 ? 0 : 1;
  if (b.length === 0) return -1;
  return Buffer.compare(a, b);
}

function point(key: Buffer): Interval {
  return { begin: key, end: Buffer.concat([key, Buffer.from([0])]) };
}

/** Whether `a` overlaps `b`, as etcd's interval tree decides it. */
function overlaps(a: Interval, b: Interval): boolean {
  if (compareAffine(a.begin, b.begin) < 0 && compareAffine(a.end, b.begin) <= 0) return false;
  return compareAffine(a.begin, b.end) < 0;
}

/** Intervals sorted by begin; coverage and intersection queries. */
class IntervalSet {
  private readonly intervals: Interval[] = [];
  private sorted = true;

  add(ivl: Interval): void {
    this.intervals.push(ivl);
    this.sorted = false;
  }

  private all(): Interval[] {
    if (!this.sorted) {
      this.intervals.sort((x, y) => compareAffine(x.begin, y.begin));
      this.sorted = true;
    }
    return this.intervals;
  }

  /** Whether the intervals overlapping `ivl` cover it without a gap. */
  contains(ivl: Interval): boolean {
    let minBegin: Buffer | undefined;
    let maxEnd: Buffer | undefined;
    for (const n of this.all()) {
      if (!overlaps(ivl, n)) continue;
      if (minBegin === undefined || maxEnd === undefined) {
        minBegin = n.begin;
        maxEnd = n.end;
        continue;
      }
      if (compareAffine(maxEnd, n.begin) < 0) return false;
      if (compareAffine(n.end, maxEnd) > 0) maxEnd = n.end;
    }
    return minBegin !== undefined && maxEnd !== undefined && compareAffine(maxEnd, ivl.end) >= 0 && compareAffine(minBegin, ivl.begin) <= 0;
  }

  intersects(ivl: Interval): boolean {
    return this.all().some((n) => overlaps(ivl, n));
  }
}

export class RangePermissions {
  private readonly read = new IntervalSet();
  private readonly write = new IntervalSet();

  /** Merges the permissions of every role (roles that do not exist contribute nothing). */
  constructor(permissions: Iterable<Permission>) {
    for (const perm of permissions) {
      const openEnd = perm.rangeEnd.length === 1 && perm.rangeEnd[0] === 0;
      const ivl = perm.rangeEnd.length === 0 ? point(perm.key) : { begin: perm.key, end: openEnd ? Buffer.alloc(0) : perm.rangeEnd };
      if (perm.permType === Permission_Type.READ || perm.permType === Permission_Type.READWRITE) this.read.add(ivl);
      if (perm.permType === Permission_Type.WRITE || perm.permType === Permission_Type.READWRITE) this.write.add(ivl);
    }
  }

  /**
   * Whether the user may do `type` (READ or WRITE) on [key, rangeEnd); an empty range end is the
   * one key, "\x00" every key from `key` on.
   */
  permits(type: Permission_Type.READ | Permission_Type.WRITE, key: Buffer, rangeEnd: Buffer | undefined): boolean {
    const set = type === Permission_Type.READ ? this.read : this.write;
    if (rangeEnd === undefined || rangeEnd.length === 0) return set.intersects(point(key));
    const end = rangeEnd.length === 1 && rangeEnd[0] === 0 ? Buffer.alloc(0) : rangeEnd;
    return set.contains({ begin: key, end });
  }
}
