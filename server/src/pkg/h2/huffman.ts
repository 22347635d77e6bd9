/**
 * HPACK's Huffman code (RFC 7541 §5.2, Appendix B): the canonical code of the 256 octets and EOS,
 * an encoder, and a decoder over a 4-bit-at-a-time state machine built once at load.
 *
 * Decoding follows §5.2's rules: padding is at most 7 bits, all ones (a prefix of EOS), and EOS
 * itself inside a string is an error. Errors are thrown as HuffmanError (the HPACK decoder turns
 * them into COMPRESSION_ERROR).
 */

/** A Huffman-coded string broke §5.2's rules (EOS inside, bad or too long padding). */
export class HuffmanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HuffmanError";
  }
}

/** The code of each octet, right-aligned in `HUFFMAN_LENGTHS[i]` bits. */
const HUFFMAN_CODES = new Uint32Array([
  0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7,
  0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec,
  0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3,
  0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb,
  0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa,
  0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18,
  0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
  0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc,
  0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62,
  0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
  0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72,
  0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22,
  0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26,
  0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7,
  0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78,
  0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc,
  0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9,
  0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
  0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3,
  0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef,
  0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde,
  0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec,
  0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef,
  0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1,
  0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec,
  0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed,
  0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2,
  0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5,
  0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3,
  0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4,
  0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea,
  0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
]);

/** The bit length of each octet's code (5 to 30). */
const HUFFMAN_LENGTHS = new Uint8Array([
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
]);

const EOS_CODE = 0x3fffffff;
const EOS_LENGTH = 30;

// The decoder is a state machine over nibbles: a state is an inner node of the code tree, and
// each (state, nibble) says the next state, the symbol completed on the way (if any), and whether
// the bits since the last symbol are all ones (a valid padding when the input ends there).
// The tree has 256 inner nodes at most (a full binary tree with 257 leaves).

/** Inner nodes of the code tree: child indexes; a leaf is stored as -(symbol + 1). */
const treeChildren: number[] = [0, 0];
(function buildTree(): void {
  let nodes = 1;
  const add = (code: number, length: number, symbol: number): void => {
    let node = 0;
    for (let bit = length - 1; bit >= 0; bit--) {
      const b = (code >>> bit) & 1;
      const slot = node * 2 + b;
      if (bit === 0) {
        treeChildren[slot] = -(symbol + 1);
      } else {
        if (treeChildren[slot] === 0) {
          treeChildren[slot] = nodes;
          treeChildren.push(0, 0);
          nodes++;
        }
        node = treeChildren[slot]!;
      }
    }
  };
  for (let s = 0; s < 256; s++) add(HUFFMAN_CODES[s]!, HUFFMAN_LENGTHS[s]!, s);
  add(EOS_CODE, EOS_LENGTH, 256);
})();
const innerNodes = treeChildren.length / 2;

// Per (state, nibble): next state (bits 0-8), emits a symbol (bit 9), symbol (bits 10-17),
// failed (bit 18: EOS met), accepting (bit 19: the state reached is a valid end: depth <= 7 and
// the path from the root all ones).
const FLAG_EMIT = 1 << 9;
const FLAG_FAIL = 1 << 18;
const FLAG_ACCEPT = 1 << 19;
const transitions = new Uint32Array(innerNodes * 16);
(function buildTransitions(): void {
  // depth and all-ones status of each inner node from the root
  const depth = new Int32Array(innerNodes);
  const allOnes = new Uint8Array(innerNodes);
  allOnes[0] = 1;
  for (let n = 0; n < innerNodes; n++) {
    for (let b = 0; b < 2; b++) {
      const child = treeChildren[n * 2 + b]!;
      if (child > 0) {
        depth[child] = depth[n]! + 1;
        allOnes[child] = allOnes[n]! === 1 && b === 1 ? 1 : 0;
      }
    }
  }
  for (let state = 0; state < innerNodes; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let bit = 3; bit >= 0; bit--) {
        const child = treeChildren[node * 2 + ((nibble >>> bit) & 1)]!;
        if (child < 0) {
          const symbol = -child - 1;
          if (symbol === 256) {
            entry |= FLAG_FAIL;
            break;
          }
          // at most one symbol per nibble: every code is at least 5 bits long
          entry |= FLAG_EMIT | (symbol << 10);
          node = 0;
        } else {
          node = child;
        }
      }
      if ((entry & FLAG_FAIL) === 0 && allOnes[node] === 1 && depth[node]! <= 7) entry |= FLAG_ACCEPT;
      transitions[state * 16 + nibble] = entry | node;
    }
  }
})();

const decodeScratch = Buffer.allocUnsafe(4096);

/**
 * Decodes `src[start, end)` as a Huffman-coded string and returns it as a latin1 string (one char
 * per octet). Throws HuffmanError on EOS, padding longer than 7 bits or padding that is not all ones.
 */
export function huffmanDecode(src: Uint8Array, start: number, end: number): string {
  // decoded length is at most 8/5 of the input
  const max = Math.ceil(((end - start) * 8) / 5);
  const out = max <= decodeScratch.length ? decodeScratch : Buffer.allocUnsafe(max);
  let state = 0;
  let accept = true;
  let n = 0;
  for (let i = start; i < end; i++) {
    const byte = src[i]!;
    let t = transitions[state * 16 + (byte >>> 4)]!;
    if ((t & FLAG_FAIL) !== 0) throw new HuffmanError("EOS in a Huffman-coded string");
    if ((t & FLAG_EMIT) !== 0) out[n++] = (t >>> 10) & 0xff;
    state = t & 0x1ff;
    t = transitions[state * 16 + (byte & 0xf)]!;
    if ((t & FLAG_FAIL) !== 0) throw new HuffmanError("EOS in a Huffman-coded string");
    if ((t & FLAG_EMIT) !== 0) out[n++] = (t >>> 10) & 0xff;
    state = t & 0x1ff;
    accept = (t & FLAG_ACCEPT) !== 0;
  }
  if (!accept) throw new HuffmanError("invalid padding in a Huffman-coded string");
  return out.toString("latin1", 0, n);
}

/** The length in octets of `s` (latin1, one octet per char) once Huffman-coded. */
export function huffmanEncodedLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += HUFFMAN_LENGTHS[s.charCodeAt(i) & 0xff]!;
  return (bits + 7) >>> 3;
}

/**
 * Writes `s` (latin1) Huffman-coded at `dst[offset]`, padded with ones; returns the offset past it.
 * The caller sized `dst` with huffmanEncodedLength.
 */
export function huffmanEncode(s: string, dst: Uint8Array, offset: number): number {
  let acc = 0; // pending bits, right-aligned, fewer than 8 after each flush
  let pending = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) & 0xff;
    const len = HUFFMAN_LENGTHS[c]!;
    const code = HUFFMAN_CODES[c]!;
    // write the code in pieces so the accumulator never exceeds 31 bits
    let left = len;
    while (left > 0) {
      const take = Math.min(left, 24);
      left -= take;
      acc = ((acc << take) | ((code >>> left) & ((1 << take) - 1))) >>> 0;
      pending += take;
      while (pending >= 8) {
        pending -= 8;
        dst[offset++] = (acc >>> pending) & 0xff;
      }
      acc &= (1 << pending) - 1;
    }
  }
  if (pending > 0) dst[offset++] = ((acc << (8 - pending)) | ((1 << (8 - pending)) - 1)) & 0xff;
  return offset;
}
