/**
 * Watch guarantees, as etcd's robustness tests state them, checked over what the simulation's
 * watchers received (each watches the whole key space of one member incarnation, from some start
 * revision):
 *
 * - ordered:   a watcher's events never go back in revision;
 * - unique:    no (revision, key) event reaches one watcher twice;
 * - atomic:    all events of one revision arrive in one response;
 * - no gaps:   from its start revision, a watcher sees every revision up to the last it saw (every
 *              revision of etcd's store holds at least one event), within the available history:
 *              a watcher catching up from exactly the compacted revision reads what compaction
 *              kept of it, which is not a deletion there (etcd 3.4 drops a tombstone at the
 *              compaction revision and serves such a watcher all the same);
 * - history:   every watcher (on every member) reports the same events for a revision, and they
 *              match the acknowledged writes;
 * - compacted: a watcher told that its start revision was compacted started at or below that
 *              compaction, and gets nothing else; a watcher whose start revision was below the
 *              member's compaction when it opened is refused that way (etcd answers such a watch
 *              with the compact revision, canceled, and no events).
 */

/** One event as a watcher received it. */
export interface SeenEvent {
  type: "PUT" | "DELETE";
  key: string;
  /** "" for a delete. */
  value: string;
  modRevision: number;
  /** The lease a put attached the key to (0: none). */
  lease?: bigint;
}

/** One response: its events, and the member's compacted revision when it came. */
export interface SeenResponse {
  events: SeenEvent[];
  compactRevision: number;
}

/** What one watcher received, response by response. */
export interface WatchRecord {
  /** Who watched: member and incarnation, for messages. */
  label: string;
  startRevision: number;
  /** The member's compaction when the watch opened (-1: none). */
  compactRevisionAtStart: number;
  responses: SeenResponse[];
  /** Set when the hub cancelled it for a compacted start revision. */
  compactRevision?: number;
}

/** The store's history as the watchers saw it: revision → its events, in key order. */
export type RevisionHistory = Map<number, SeenEvent[]>;

function describe(e: SeenEvent): string {
  return e.type === "PUT" ? `PUT ${e.key}=${e.value}@${e.modRevision}` : `DELETE ${e.key}@${e.modRevision}`;
}

function sameEvents(a: SeenEvent[], b: SeenEvent[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((e, i) => e.type === b[i]!.type && e.key === b[i]!.key && e.value === b[i]!.value && e.modRevision === b[i]!.modRevision);
}

/**
 * Checks every watcher on its own and builds the history they agree on.
 * @returns the history, or the first violation found.
 */
export function checkWatches(records: WatchRecord[]): { history: RevisionHistory } | { violation: string } {
  const history: RevisionHistory = new Map();
  const reportedBy = new Map<number, string>();
  for (const w of records) {
    /**
     * The next revision the watcher must see: every revision of the store after the first (the
     * empty store's) holds an event.
     */
    if (w.startRevision < w.compactRevisionAtStart) {
      if (w.responses.length > 0) {
        return { violation: `${w.label}: served events from revision ${w.startRevision}, below the compaction at ${w.compactRevisionAtStart}` };
      }
      if (w.compactRevision === undefined) {
        return { violation: `${w.label}: never refused, though revision ${w.startRevision} is below the compaction at ${w.compactRevisionAtStart}` };
      }
      if (w.compactRevision < w.compactRevisionAtStart) {
        return { violation: `${w.label}: refused with compact revision ${w.compactRevision}, but the member was compacted at ${w.compactRevisionAtStart}` };
      }
      continue;
    }
    let next = Math.max(w.startRevision, 2);
    /** The revision of the last event seen, -1 before any. */
    let current = -1;
    const seen = new Set<string>();
    for (const { events: response, compactRevision } of w.responses) {
      if (response.length > 0 && response[0]!.modRevision === current) {
        return { violation: `${w.label}: revision ${current} split across responses` };
      }
      const revisions: number[] = [];
      for (const e of response) {
        const id = `${e.modRevision}/${e.key}`;
        if (seen.has(id)) return { violation: `${w.label}: ${describe(e)} delivered twice` };
        seen.add(id);
        if (e.modRevision === current) continue;
        if (e.modRevision < next) return { violation: `${w.label}: ${describe(e)} after revision ${current} (out of order)` };
        // A skipped revision at the compaction revision held only what compaction dropped.
        if (e.modRevision > next && !(e.modRevision === next + 1 && next === compactRevision)) {
          return { violation: `${w.label}: revisions ${next}..${e.modRevision - 1} skipped` };
        }
        current = e.modRevision;
        next = current + 1;
        revisions.push(current);
      }
      for (const rev of revisions) {
        const events = response.filter((e) => e.modRevision === rev);
        const known = history.get(rev);
        if (known === undefined) {
          history.set(rev, events);
          reportedBy.set(rev, w.label);
        } else if (!sameEvents(known, events)) {
          return {
            violation: `revision ${rev}: ${w.label} saw [${events.map(describe).join(", ")}], ${reportedBy.get(rev)} saw [${known.map(describe).join(", ")}]`,
          };
        }
      }
    }
    if (w.compactRevision !== undefined && next > w.compactRevision) {
      return { violation: `${w.label}: refused as compacted at ${w.compactRevision}, but it wanted revision ${next} next` };
    }
  }
  return { history };
}

/**
 * An acknowledged write must be in the history at its revision (when the watchers saw that
 * revision at all).
 */
export function checkAcknowledgedWrites(history: RevisionHistory, writes: { key: string; value: string | null; revision: number; what: string }[]): string | undefined {
  for (const w of writes) {
    const events = history.get(w.revision);
    if (events === undefined) continue;
    const match = events.find((e) => e.key === w.key && (w.value === null ? e.type === "DELETE" : e.type === "PUT" && e.value === w.value));
    if (match === undefined) return `${w.what} acknowledged at revision ${w.revision}, which holds [${events.map(describe).join(", ")}]`;
  }
  return undefined;
}
