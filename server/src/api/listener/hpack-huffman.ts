/**
 * HPACK's static Huffman code (RFC 7541 §5.2, Appendix B): decoding string literals that a
 * client sent Huffman-coded, e.g. the `:authority` of its first request.
 *
 * The code of Appendix B is canonical: within one length, codes increase with the symbol, and
 * every code is the next free value after all shorter codes (the DEFLATE convention). So the
 * table below stores only the code length of each of the 257 symbols (bytes 0-255 and EOS = 256)
 * and the codes follow from it; the tests check the result against the RFC's examples.
 *
 * Rules for a valid literal (§5.2): it ends with at most 7 bits of padding, all ones (the top
 * bits of EOS); the EOS symbol itself never appears.
 */

/** Code length in bits of each symbol: index = byte value, 256 = EOS (RFC 7541 Appendix B). */
const CODE_LENGTH_BITS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

const EOS = 256;
const LONGEST_CODE_BITS = 30;
/** Padding longer than this is an error (§5.2). */
const PADDING_BITS_MAX = 7;

/** A Huffman-coded literal that breaks §5.2 (bad code, EOS inside, or bad padding). */
export class HpackHuffmanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HpackHuffmanError";
  }
}

/** The canonical code: how many codes each length has, and the symbols in code order. */
interface CanonicalCode {
  /** countByLength[n] = number of symbols whose code is n bits long. */
  countByLength: Uint16Array;
  /** Symbols sorted by (code length, symbol): the order in which codes are assigned. */
  symbolsInCodeOrder: Uint16Array;
}

function buildCanonicalCode(): CanonicalCode {
  const countByLength = new Uint16Array(LONGEST_CODE_BITS + 1);
  for (const bits of CODE_LENGTH_BITS) countByLength[bits]!++;
  const symbols = CODE_LENGTH_BITS.map((_, symbol) => symbol);
  symbols.sort((a, b) => CODE_LENGTH_BITS[a]! - CODE_LENGTH_BITS[b]! || a - b);
  return { countByLength, symbolsInCodeOrder: Uint16Array.from(symbols) };
}

const CODE = buildCanonicalCode();

/**
 * The code of every symbol as [code, length in bits], MSB-first, derived from the lengths.
 * Exposed for tests (an encoder for round trips); the returned array is a fresh copy.
 */
export function huffmanCodeTable(): Array<[code: number, bits: number]> {
  const out: Array<[number, number]> = new Array(CODE_LENGTH_BITS.length);
  let code = 0;
  let bits = 0;
  for (let i = 0; i < CODE.symbolsInCodeOrder.length; i++) {
    const symbol = CODE.symbolsInCodeOrder[i]!;
    const length = CODE_LENGTH_BITS[symbol]!;
    if (i > 0) code = (code + 1) * 2 ** (length - bits);
    else code = 0;
    bits = length;
    out[symbol] = [code, length];
  }
  return out;
}

/**
 * Decodes one Huffman-coded HPACK string literal into its bytes, returned as a latin1 string
 * (one char per byte).
 *
 * @throws HpackHuffmanError when the input is not a valid literal (§5.2).
 */
export function decodeHuffman(input: Uint8Array): string {
  const out: number[] = [];
  // Canonical decoding, one bit at a time: `code` holds the bits read since the last symbol;
  // `first` is the first code of the current length and `index` the position of that code's
  // symbol in symbolsInCodeOrder.
  let code = 0;
  let first = 0;
  let index = 0;
  let length = 0;
  let allOnes = true;
  for (let i = 0; i < input.length; i++) {
    const byte = input[i]!;
    for (let shift = 7; shift >= 0; shift--) {
      const bit = (byte >> shift) & 1;
      code = code * 2 + bit;
      allOnes &&= bit === 1;
      length++;
      const count = CODE.countByLength[length]!;
      if (code - first < count) {
        const symbol = CODE.symbolsInCodeOrder[index + code - first]!;
        if (symbol === EOS) throw new HpackHuffmanError("hpack: EOS symbol inside a Huffman-coded string");
        out.push(symbol);
        code = 0;
        first = 0;
        index = 0;
        length = 0;
        allOnes = true;
        continue;
      }
      if (length >= LONGEST_CODE_BITS) throw new HpackHuffmanError("hpack: invalid Huffman code");
      index += count;
      first = (first + count) * 2;
    }
  }
  if (length > PADDING_BITS_MAX) throw new HpackHuffmanError("hpack: Huffman padding longer than 7 bits");
  if (!allOnes) throw new HpackHuffmanError("hpack: Huffman padding is not a prefix of EOS");
  return Buffer.from(out).toString("latin1");
}
