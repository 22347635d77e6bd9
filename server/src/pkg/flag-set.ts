/**
 * Command-line flags with the semantics of Go's `flag` package, which etcd uses, so that every
 * etcd command line parses the same way here and fails with the same words:
 *  - `-name`, `--name`, `-name=value`, `--name value`; bool flags take no separate value
 *    (`--debug` or `--debug=false`);
 *  - parsing stops at the first non-flag argument or after `--`;
 *  - errors: `flag provided but not defined: -x`, `flag needs an argument: -x`,
 *    `invalid value "v" for flag -x: <why>`, `invalid boolean value "v" for -x: parse error`.
 */

export type FlagKind = "string" | "bool" | "uint" | "int" | "duration" | "float";

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

/** Parses a Go duration ("300ms", "1h30m", "2.5s", "0") into milliseconds. */
export function parseGoDurationMs(text: string): number {
  if (text === "0") return 0;
  const re = /^([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)/;
  let rest = text.replace(/^[+-]/, "");
  const negative = text.startsWith("-");
  if (rest.length === 0) throw new Error("parse error");
  let totalNs = 0;
  while (rest.length > 0) {
    const m = re.exec(rest);
    if (m === null) throw new Error("parse error");
    totalNs += parseFloat(m[1]!) * DURATION_UNITS_NS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return (negative ? -totalNs : totalNs) / 1e6;
}

/** Checks a raw value against its flag's kind; throws FlagError with Go's message. */
export function checkFlagValue(spec: FlagSpec, value: string, source: string): void {
  const fail = (why: string): never => {
    throw new FlagError(`invalid value "${value}" for ${source}: ${why}`);
  };
  switch (spec.kind) {
    case "bool":
      if (parseGoBool(value) === undefined) {
        throw new FlagError(`invalid boolean value "${value}" for ${source.replace(/^flag /, "")}: parse error`);
      }
      break;
    case "uint":
      if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(value) || Number(value) > Number.MAX_SAFE_INTEGER) fail("parse error");
      break;
    case "int":
      if (!/^-?(0x[0-9a-fA-F]+|[0-9]+)$/.test(value) || Math.abs(Number(value)) > Number.MAX_SAFE_INTEGER) fail("parse error");
      break;
    case "float":
      if (!/^-?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$/.test(value)) fail("parse error");
      break;
    case "duration":
      try {
        parseGoDurationMs(value);
      } catch {
        fail("parse error");
      }
      break;
    case "string":
      break;
  }
  if (spec.validate) {
    try {
      spec.validate(value);
    } catch (err) {
      if (err instanceof FlagError) throw err;
      fail((err as Error).message);
    }
  }
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
    checkFlagValue(spec, value, `flag -${name}`);
    values.set(name, value);
  }
  return { values, rest: argv.slice(i) };
}
