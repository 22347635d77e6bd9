/**
 * Which etcd versions a running cluster may be moved to (pure). etcd supports upgrading one minor
 * version at a time (3.3 → 3.4 → 3.5) with a rolling restart, and no rolling downgrade across
 * minor versions (3.4 cannot read what 3.5 writes once the cluster version moved); patch releases
 * of one minor may go either way.
 */

export type VersionRefusalReason = "VersionUnparsable" | "VersionMajorChange" | "VersionDowngrade" | "VersionSkipsMinor";

export interface VersionRefusal {
  reason: VersionRefusalReason;
  message: string;
}

interface MajorMinor {
  major: number;
  minor: number;
}

/** "3.4", "3.4.23" or "v3.4.23" → {3, 4}; undefined for anything else. */
export function parseMajorMinor(v: string): MajorMinor | undefined {
  const m = /^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+].*)?$/.exec(v.trim());
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
}

/**
 * Why moving members that run `running` (every version members report; the lowest and highest
 * both matter in a half-rolled cluster) to `target` is refused, or undefined when it is allowed.
 */
export function versionRefusal(running: string[], target: string): VersionRefusal | undefined {
  const t = parseMajorMinor(target);
  if (t === undefined) return { reason: "VersionUnparsable", message: `spec.version ${target} is not a version` };
  const parsed = running.map(parseMajorMinor).filter((x): x is MajorMinor => x !== undefined);
  if (parsed.length === 0) return undefined;
  const lowest = parsed.reduce((a, b) => (cmp(a, b) <= 0 ? a : b));
  const highest = parsed.reduce((a, b) => (cmp(a, b) >= 0 ? a : b));
  const show = (v: MajorMinor) => `${v.major}.${v.minor}`;
  if (t.major !== lowest.major || t.major !== highest.major) {
    return { reason: "VersionMajorChange", message: `members run ${show(lowest)}, spec.version ${target} changes the major version` };
  }
  if (t.minor < highest.minor) {
    return { reason: "VersionDowngrade", message: `members run ${show(highest)}, spec.version ${target} would downgrade across minor versions` };
  }
  if (t.minor > lowest.minor + 1) {
    return { reason: "VersionSkipsMinor", message: `members run ${show(lowest)}, spec.version ${target} skips a minor version (upgrade to ${lowest.major}.${lowest.minor + 1} first)` };
  }
  return undefined;
}

/** Whether a member reporting `reported` runs the minor version `target` names. */
export function sameMinor(reported: string, target: string): boolean {
  const a = parseMajorMinor(reported);
  const b = parseMajorMinor(target);
  return a !== undefined && b !== undefined && cmp(a, b) === 0;
}

function cmp(a: MajorMinor, b: MajorMinor): number {
  return a.major !== b.major ? a.major - b.major : a.minor - b.minor;
}
