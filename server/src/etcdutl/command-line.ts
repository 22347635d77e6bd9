/**
 * Command lines of the offline subcommands, parsed the way etcdutl's (cobra's pflag) parses them:
 * `--flag value`, `--flag=value`, `-w value` for the one shorthand, bool flags without a value
 * (`--skip-hash-check`, or `--skip-hash-check=false`), flags and positional arguments in any order,
 * everything after `--` positional. Unknown flags fail with pflag's words.
 */

export interface FlagDef {
  name: string;
  kind: "string" | "bool" | "uint";
  defaultValue: string;
  usage: string;
  shorthand?: string;
}

/** A malformed command line: exit code 128 with this message after "Error: " (etcdctl's ExitBadArgs). */
export class UsageError extends Error {
  readonly code = "USAGE";
}

export interface ParsedCommand {
  values: Map<string, string>;
  /** Names of the flags given on the command line. */
  given: Set<string>;
  args: string[];
}

/** Parses `argv` against `defs`. @throws UsageError */
export function parseCommand(defs: readonly FlagDef[], argv: readonly string[]): ParsedCommand {
  const byName = new Map(defs.map((d) => [d.name, d]));
  const byShort = new Map(defs.filter((d) => d.shorthand !== undefined).map((d) => [d.shorthand!, d]));
  const values = new Map(defs.map((d) => [d.name, d.defaultValue]));
  const given = new Set<string>();
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith("-") || a === "-") {
      args.push(a);
      continue;
    }
    const long = a.startsWith("--");
    const body = a.slice(long ? 2 : 1);
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const def = long ? byName.get(name) : byShort.get(name);
    if (def === undefined) throw new UsageError(long ? `unknown flag: --${name}` : `unknown shorthand flag: '${name}' in ${a}`);
    let value: string;
    if (eq >= 0) value = body.slice(eq + 1);
    else if (def.kind === "bool") value = "true";
    else {
      if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: ${a}`);
      value = argv[++i]!;
    }
    if (def.kind === "bool" && !["true", "false", "1", "0", "t", "f", "TRUE", "FALSE", "True", "False", "T", "F"].includes(value)) {
      throw new UsageError(`invalid argument "${value}" for "--${def.name}" flag: strconv.ParseBool: parsing "${value}": invalid syntax`);
    }
    if (def.kind === "uint" && !/^[0-9]+$/.test(value)) {
      throw new UsageError(`invalid argument "${value}" for "--${def.name}" flag: strconv.ParseUint: parsing "${value}": invalid syntax`);
    }
    values.set(def.name, value);
    given.add(def.name);
  }
  return { values, given, args };
}

export function boolValue(p: ParsedCommand, name: string): boolean {
  return ["true", "1", "t", "TRUE", "True", "T"].includes(p.values.get(name) ?? "");
}

/** Help text for a subcommand's flags. */
export function flagsHelp(defs: readonly FlagDef[]): string {
  return defs
    .map((d) => {
      const head = (d.shorthand ? `  -${d.shorthand}, ` : "      ") + `--${d.name}` + (d.kind === "bool" ? "" : ` ${d.kind}`);
      const def = d.kind === "bool" || d.defaultValue === "" || d.defaultValue === "0" ? "" : ` (default "${d.defaultValue}")`;
      return `${head.padEnd(40)}${d.usage}${def}`;
    })
    .join("\n");
}
