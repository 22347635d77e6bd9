/**
 * Where log lines go (--log-outputs), as etcd's zap logger takes the list: "default" and
 * "stderr" are the standard error, "stdout" the standard output, anything else a file path,
 * opened for appending (created with mode 0666 before the umask, as zap opens it). The same
 * target named twice is written once. "journal" (systemd's journal in etcd) writes to the
 * standard error, which systemd collects in the journal anyway.
 *
 * Files are written synchronously, a line at a time, so that nothing logged is lost when the
 * process exits right after (as a fatal error does).
 */
import fs from "node:fs";

/** A target that could not be opened; the message is etcd's (Go's) text. */
export class LogOutputError extends Error {}

export interface LogOutputs {
  /** Writes one line (without its newline) to every target. */
  write(line: string): void;
  /** Closes the files. */
  close(): void;
}

/** Go's text for the errno of a failed open. */
function goOpenError(file: string, err: NodeJS.ErrnoException): string {
  const why: Record<string, string> = {
    ENOENT: "no such file or directory",
    EACCES: "permission denied",
    EISDIR: "is a directory",
    ENOTDIR: "not a directory",
    EROFS: "read-only file system",
  };
  return `open ${file}: ${why[err.code ?? ""] ?? err.message}`;
}

/**
 * Opens the targets (an empty list is "default").
 * @throws LogOutputError `open sink "<path>": open <path>: <reason>` for a file that cannot be opened.
 */
export function openLogOutputs(outputs: readonly string[]): LogOutputs {
  const writers: ((line: string) => void)[] = [];
  const fds: number[] = [];
  const seen = new Set<string>();
  for (const raw of outputs.length === 0 ? ["default"] : outputs) {
    const target = raw === "default" || raw === "journal" ? "stderr" : raw;
    if (seen.has(target)) continue;
    seen.add(target);
    if (target === "stderr") writers.push((line) => void process.stderr.write(line + "\n"));
    else if (target === "stdout") writers.push((line) => void process.stdout.write(line + "\n"));
    else {
      let fd: number;
      try {
        fd = fs.openSync(target, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o666);
      } catch (err) {
        for (const f of fds) fs.closeSync(f);
        throw new LogOutputError(`open sink ${JSON.stringify(target)}: ${goOpenError(target, err as NodeJS.ErrnoException)}`);
      }
      fds.push(fd);
      writers.push((line) => fs.writeSync(fd, line + "\n"));
    }
  }
  const write =
    writers.length === 1
      ? writers[0]!
      : (line: string): void => {
          for (const w of writers) w(line);
        };
  return {
    write,
    close: () => {
      for (const f of fds.splice(0)) fs.closeSync(f);
    },
  };
}
