/**
 * A short, stable hash of a JSON value (pure, no node: module: the cluster/ core imports none).
 * Canonical JSON (keys sorted at every level) through two 64-bit FNV-1a passes with different
 * offsets, 32 hex digits. It tells spec versions apart; it is not a cryptographic digest.
 */

const PRIME = 0x100000001b3n;
const MASK = (1n << 64n) - 1n;

function fnv1a64(bytes: Uint8Array, offset: bigint): bigint {
  let h = offset;
  for (const b of bytes) {
    h ^= BigInt(b);
    h = (h * PRIME) & MASK;
  }
  return h;
}

export function hashJson(v: unknown): string {
  const bytes = new TextEncoder().encode(canonicalJson(v));
  const a = fnv1a64(bytes, 0xcbf29ce484222325n);
  const b = fnv1a64(bytes, 0x84222325cbf29ce4n);
  return a.toString(16).padStart(16, "0") + b.toString(16).padStart(16, "0");
}

/** JSON with object keys sorted at every level, so equal values hash equally whatever their key order. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}
