/** Reading a member's whole event history back through the real etcdctl (watch from revision 1). */
import { spawnEtcdctl } from "../harness/etcdctl.js";
import type { HistoryEvent } from "./history-check.js";

/** Reads every event under `prefix` from revision 1 up to `head` with `etcdctl watch -w json`. */
export async function readHistory(endpoint: string, prefix: string, head: number): Promise<HistoryEvent[]> {
  const watch = spawnEtcdctl(endpoint, ["watch", prefix, "--prefix", "--rev=1", "-w", "json"]);
  const events: HistoryEvent[] = [];
  let parsedUpTo = 0;
  let maxRev = 0;
  const parseNew = (out: string): void => {
    const end = out.lastIndexOf("\n") + 1;
    if (end <= parsedUpTo) return;
    for (const line of out.slice(parsedUpTo, end).split("\n")) {
      if (line.trim() === "") continue;
      const resp = JSON.parse(line) as {
        Events?: Array<{ type?: number; kv: { key: string; value?: string; mod_revision: number } }> | null;
      };
      for (const e of resp.Events ?? []) {
        const ev: HistoryEvent = {
          key: Buffer.from(e.kv.key, "base64").toString("utf8"),
          value: Buffer.from(e.kv.value ?? "", "base64").toString("utf8"),
          type: e.type === 1 ? "DELETE" : "PUT",
          revision: e.kv.mod_revision,
        };
        events.push(ev);
        maxRev = Math.max(maxRev, ev.revision);
      }
    }
    parsedUpTo = end;
  };
  await watch.waitFor((out) => {
    parseNew(out);
    return maxRev >= head;
  }, 60_000);
  const res = await watch.stop("SIGTERM");
  parseNew(res.stdout);
  if (maxRev < head) {
    throw new Error(`history read stopped at revision ${maxRev}, head is ${head}; etcdctl stderr: ${res.stderr.slice(0, 2_000)}`);
  }
  return events.filter((e) => e.revision <= head);
}
