/**
 * Command-line flags with the semantics of Go's `flag` package, which etcd uses, so that every
 * etcd command line parses the same way here and fails with the same words:
 *  - `-name`, `--name`, `-name=value`, `--name value`; bool flags take no separate value
 *    (`--debug` or `--debug=false`);
 *  - parsing stops at the first non-flag argument or after `--`;
 *  - errors: `flag provided but not defined: -x`, `flag needs an argument: -x`,
 *    `invalid value "v" for flag -x: <why>`, `invalid boolean value "v" for -x: parse error`.
 */

/**
 * Go's flag value types: `uint`/`int` are 64-bit (strconv base 0: decimal, 0x, 0o, 0b, leading-0
 * octal); `uint32` is etcd's own Uint32Value, whose errors are strconv's raw text.
 */
export type FlagKind = "string" | "bool" | "uint" | "uint32" | "int" | "duration" | "float";

export interface FlagSpec<K extends FlagKind = FlagKind> {
  name: string;
  kind: K;
  /** Default as etcd prints it in --help. */
  defaultText: string;
  usage: string;
  /** Extra validation/normalisation; throw an Error whose message completes "invalid value ...: ". */
  validate?: (value: string) => void;
}

export class FlagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FlagError";
  }
}

export interface ParsedFlags {
  /** Raw string values of the flags given on the command line, by name. */
  values: Map<string, string>;
  /** Positional arguments left after the flags. */
  rest: string[];
}

const BOOL_TRUE = new Set(["1", "t", "T", "TRUE", "true", "True"]);
const BOOL_FALSE = new Set(["0", "f", "F", "FALSE", "false", "False"]);

/** Parses a Go-style bool; returns undefined when the text is not one. */
export function parseGoBool(text: string): boolean | undefined {
  if (BOOL_TRUE.has(text)) return true;
  if (BOOL_FALSE.has(text)) return false;
  return undefined;
}

const DURATION_UNITS_NS: Record<string, number> = {
  ns: 1, us: 1e3, "µs": 1e3, "μs": 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9,
};

/**
 * Parses a Go duration ("300ms", "1h30m", "2.5s", ".5s", "5.s", "0", "-0") into milliseconds.
 * @throws Error("parse error") when the text is not one.
 */
export function parseGoDurationMs(text: string): number {
  let rest = text;
  let negative = false;
  if (rest[0] === "-" || rest[0] === "+") {
    negative = rest[0] === "-";
    rest = rest.slice(1);
  }
  if (rest === "0") return 0;
  if (rest.length === 0) throw new Error("parse error");
  const re = /^([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)/;
  let totalNs = 0;
  while (rest.length > 0) {
    const m = re.exec(rest);
    if (m === null) throw new Error("parse error");
    totalNs += parseFloat(m[1]!) * DURATION_UNITS_NS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return (negative ? -totalNs : totalNs) / 1e6;
}

const UINT64_MAX = (1n << 64n) - 1n;
const INT64_MAX = (1n << 63n) - 1n;
const UINT32_MAX = (1n << 32n) - 1n;

/**
 * Parses an integer the way Go's strconv does with base 0 (optional sign when `signed`).
 * Returns undefined for a syntax error; range is the caller's to check.
 */
function parseGoIntBig(text: string, signed: boolean): bigint | undefined {
  let body = text;
  let negative = false;
  if (signed && (body[0] === "-" || body[0] === "+")) {
    negative = body[0] === "-";
    body = body.slice(1);
  }
  let digits: string;
  if (/^0[xX][0-9a-fA-F]+$/.test(body) || /^0[bB][01]+$/.test(body) || /^0[oO][0-7]+$/.test(body)) digits = body;
  else if (/^0[0-7]+$/.test(body)) digits = "0o" + body.slice(1);
  else if (/^(0|[1-9][0-9]*)$/.test(body)) digits = body;
  else return undefined;
  const n = BigInt(digits);
  return negative ? -n : n;
}

/**
 * The number a `uint`, `uint32` or `int` flag's raw text stands for (already checked by
 * checkFlagValue); precision beyond 2^53 is lost, which no etcd setting needs.
 */
export function parseGoInt(text: string): number {
  const n = parseGoIntBig(text, true);
  if (n === undefined) throw new Error("parse error");
  return Number(n);
}

/**
 * Why a raw value does not fit its flag, in the words Go's flag package (or etcd's own flag
 * value types) use after "invalid value ...: "; undefined when the value is fine.
 */
export function flagValueProblem(spec: FlagSpec, value: string): string | undefined {
  switch (spec.kind) {
    case "bool":
      if (parseGoBool(value) === undefined) return "parse error";
      break;
    case "uint": {
      const n = parseGoIntBig(value, false);
      if (n === undefined) return "parse error";
      if (n > UINT64_MAX) return "value out of range";
      break;
    }
    case "uint32": {
      const n = parseGoIntBig(value, false);
      const quoted = JSON.stringify(value);
      if (n === undefined) return `strconv.ParseUint: parsing ${quoted}: invalid syntax`;
      if (n > UINT32_MAX) return `strconv.ParseUint: parsing ${quoted}: value out of range`;
      break;
    }
    case "int": {
      const n = parseGoIntBig(value, true);
      if (n === undefined) return "parse error";
      if (n > INT64_MAX || n < -INT64_MAX - 1n) return "value out of range";
      break;
    }
    case "float":
      if (!/^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/.test(value)) return "parse error";
      break;
    case "duration":
      try {
        parseGoDurationMs(value);
      } catch {
        return "parse error";
      }
      break;
    case "string":
      break;
  }
  if (spec.validate) {
    try {
      spec.validate(value);
    } catch (err) {
      return (err as Error).message;
    }
  }
  return undefined;
}

/**
 * Checks a command-line value against its flag.
 * @throws FlagError with Go's text: `invalid value "v" for flag -x: <why>`, or for bools
 *   `invalid boolean value "v" for -x: parse error`.
 */
export function checkFlagValue(spec: FlagSpec, value: string): void {
  const why = flagValueProblem(spec, value);
  if (why === undefined) return;
  if (spec.kind === "bool") throw new FlagError(`invalid boolean value "${value}" for -${spec.name}: ${why}`);
  throw new FlagError(`invalid value "${value}" for flag -${spec.name}: ${why}`);
}

/**
 * Parses argv (without the program name) against the specs.
 * @throws FlagError on an unknown flag, a missing argument or an invalid value.
 */
export function parseFlags(specs: ReadonlyMap<string, FlagSpec>, argv: readonly string[]): ParsedFlags {
  const values = new Map<string, string>();
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i]!;
    if (arg.length < 2 || arg[0] !== "-") break;
    let body = arg.slice(1);
    if (body[0] === "-") {
      body = body.slice(1);
      if (body.length === 0) {
        i++;
        break; // "--" ends the flags
      }
    }
    if (body.length === 0 || body[0] === "-" || body[0] === "=") {
      throw new FlagError(`bad flag syntax: ${arg}`);
    }
    i++;
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const spec = specs.get(name);
    if (spec === undefined) {
      if (name === "help" || name === "h") throw new FlagError("help requested");
      throw new FlagError(`flag provided but not defined: -${name}`);
    }
    let value: string;
    if (eq >= 0) {
      value = body.slice(eq + 1);
    } else if (spec.kind === "bool") {
      value = "true";
    } else {
      if (i >= argv.length) throw new FlagError(`flag needs an argument: -${name}`);
      value = argv[i]!;
      i++;
    }
    checkFlagValue(spec, value);
    values.set(name, value);
  }
  return { values, rest: argv.slice(i) };
}
