/**
 * JSON as Go's encoding/json writes it, for records other implementations of etcd read and that
 * must match byte for byte: strings escaped HTML-safe (<, >, & and U+2028/U+2029 as \u escapes,
 * control characters other than \n, \r, \t as \u00XX), object keys in the order given (callers
 * build objects in Go's struct field order, or sort map keys), bigint written as a bare integer.
 */

/** A JSON string literal as Go writes it. */
export function goJsonString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || ch === "<" || ch === ">" || ch === "&" || c === 0x2028 || c === 0x2029) {
      out += "\\u" + c.toString(16).padStart(4, "0");
    } else out += ch;
  }
  return out + '"';
}

export type GoJsonValue = string | number | bigint | boolean | null | undefined | GoJsonValue[] | { [key: string]: GoJsonValue };

/**
 * Serializes a value as Go would: objects in their own key order, properties whose value is
 * `undefined` left out (callers express `omitempty` that way), no whitespace.
 */
export function goJsonStringify(v: GoJsonValue): string {
  if (v === null || v === undefined) return "null";
  switch (typeof v) {
    case "string":
      return goJsonString(v);
    case "number":
      if (!Number.isFinite(v)) throw new Error(`go-json: ${v} is not a JSON number`);
      return String(v);
    case "bigint":
      return v.toString(10);
    case "boolean":
      return v ? "true" : "false";
  }
  if (Array.isArray(v)) return "[" + v.map(goJsonStringify).join(",") + "]";
  const parts: string[] = [];
  for (const [k, x] of Object.entries(v)) {
    if (x === undefined) continue;
    parts.push(goJsonString(k) + ":" + goJsonStringify(x));
  }
  return "{" + parts.join(",") + "}";
}

/** Go's map key order: byte-wise over the UTF-8 encoding. */
export function goMapKeyCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
