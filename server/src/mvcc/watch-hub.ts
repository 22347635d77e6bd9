/**
 * The watchable part of the store: watchers, their groups, and delivery.
 *
 * States of a watcher
 * - synced: it has seen every revision up to the store's current revision; after each committed
 *   write the hub hands it that revision's matching events (`notify`), synchronously.
 * - unsynced: it is behind (a historical start revision, or its consumer was slow). A single
 *   background loop catches unsynced watchers up from the store, reading the key bucket in
 *   bounded chunks (at most `catchUpRevisionsMax` revisions, like etcd's 1000-revision watch
 *   batches, and about `catchUpEntriesMax` entries; never splitting a revision). A watcher whose
 *   next revision is below the compact revision gets the compacted signal and is removed.
 *
 * Backpressure: `sink.send()` returns false when the consumer's (bounded) buffer is full. The
 * batch is then NOT delivered; a synced watcher drops to unsynced at that revision and later
 * re-reads it from the store, so the write path never waits and nothing is lost or duplicated.
 * Each refusing watcher backs off on its own (1 ms doubling up to `retryDelayMaxMs`, reset by
 * a delivery or `resume()`, timed on the injected clock), and catch-up rounds skip watchers that
 * are backing off, so one stalled consumer never holds back the others.
 *
 * Ordering: a watcher receives events in revision order, each revision's events together and in
 * their txn order. Synced batches carry one revision (`revision` = that revision); catch-up batches
 * may carry several (`revision` = the store's revision at the read, as etcd's header says).
 *
 * prevKv (etcd semantics): for an event at revision R that is not a creation, prevKv is the key's
 * version at R-1, omitted if R-1 is compacted or the key did not exist then.
 */
import type { Clock } from "../pkg/clock.js";
import type { Event, KeyValue } from "./key-value.js";
import { indexKey } from "./key-index.js";

export type WatchFilter = "NOPUT" | "NODELETE";

export interface WatchOptions {
  key: Buffer;
  /** Undefined or empty: the single key. One zero byte: every key >= key. Else `[key, end)`. */
  end?: Buffer;
  /** First revision wanted; 0 (or any revision above the current one) watches from head. */
  startRevision: number;
  prevKv: boolean;
  filters?: WatchFilter[];
}

export interface WatchEvents {
  events: Event[];
  /**
   * etcd's header revision: for a synced batch the events' revision; for a catch-up batch the
   * store's revision when it was read (the watcher may still be behind it). With `events` empty:
   * a progress notification (the watcher has seen everything up to `revision`).
   */
  revision: number;
}

export interface WatchCompacted {
  /** The watcher's start revision was compacted; the watcher is cancelled. */
  compactRevision: number;
}

export type WatchMessage = WatchEvents | WatchCompacted;

/** The consumer end of a watcher (its buffer is the consumer's, and bounded). */
export interface WatchSink {
  /**
   * Offers a message. Return true if taken; false if the buffer is full, in which case the
   * message is not taken and the hub re-offers the same data later. Must not throw or block.
   */
  send(message: WatchMessage): boolean;
}

export interface Watcher {
  /** Stops delivery. Idempotent. */
  cancel(): void;
  /**
   * If the watcher is synced, sends it an empty batch at the current revision (a progress
   * notification) and returns what `send` returned; returns false if it is catching up.
   */
  requestProgress(): boolean;
  readonly isSynced: boolean;
  /**
   * Hint that the sink can take data again after refusing some (e.g. its stream drained): the
   * catch-up loop retries now instead of after its back-off. Optional to call.
   */
  resume(): void;
}

/** What the hub needs from the store. */
export interface WatchSource {
  readonly currentRevision: number;
  readonly compactRevision: number;
  /**
   * Events of revisions [fromRev, toRev], in order, stopping at a revision boundary once
   * `revisionsMax` revisions or `entriesMax` entries are read;
   * a revision boundary; `lastRevision` is the last revision fully covered.
   */
  readEvents(fromRev: number, toRev: number, revisionsMax: number, entriesMax: number): Promise<{ events: Event[]; lastRevision: number }>;
  /** The key's version visible at `rev`, undefined if absent or compacted. */
  versionAt(key: Buffer, rev: number): Promise<KeyValue | undefined>;
  /** The cached version named by (main, sub), undefined if not cached. */
  cachedVersion(main: number, sub: number): KeyValue | undefined;
}

/** One change of a committed revision, as the write txn recorded it. */
export interface CommittedChange {
  event: Event;
  keyStr: string;
  /** The key's visible revision before the txn (0/0 = none): the source of prevKv. */
  prevMain: number;
  prevSub: number;
}

export interface WatchHubOptions {
  /** Entries read per catch-up chunk (a memory bound; a revision is never split). Default 100000. */
  catchUpEntriesMax?: number;
  /** Revisions read per catch-up chunk (etcd's watch batch). Default 1000. */
  catchUpRevisionsMax?: number;
  /** Unsynced watchers served per catch-up round. Default 512. */
  catchUpWatchersMax?: number;
  /** Longest back-off while consumers are full. Default 100 ms. */
  retryDelayMaxMs?: number;
  /** Deliberately broken delivery, ONLY for proving that the simulation's checks can fail. */
  unsafeTestingKnobs?: {
    /** A catch-up response spanning several revisions loses its first event. */
    skipEventOnCatchUp?: boolean;
  };
}

export interface WatchHubDeps {
  /** Times the back-off of refusing consumers; the catch-up loop sleeps on it. */
  clock: Clock;
}

type State = "synced" | "unsynced" | "cancelled";

/** Offers a message to a sink; a throwing sink is treated as gone (the watcher is cancelled). */
function offer(w: HubWatcher, message: WatchMessage): boolean {
  try {
    const ok = w.sink.send(message);
    if (ok && "events" in message) w.hub.eventsSent += message.events.length;
    return ok;
  } catch {
    w.cancel();
    return false;
  }
}

class HubWatcher implements Watcher {
  state: State = "unsynced";
  minRev: number;
  /** Catch-up skips this watcher until then (the clock's ms); 0 = eligible. */
  retryAt = 0;
  retryDelayMs = 0;
  readonly keyStr: string;
  /** undefined: single key; "" : no upper bound; else exclusive upper bound. */
  readonly endStr: string | undefined;
  readonly noPut: boolean;
  readonly noDelete: boolean;

  constructor(
    readonly hub: WatchHub,
    readonly key: Buffer,
    end: Buffer | undefined,
    readonly wantPrevKv: boolean,
    filters: WatchFilter[] | undefined,
    readonly sink: WatchSink,
    startRevision: number,
  ) {
    this.keyStr = indexKey(key);
    if (end === undefined || end.length === 0) this.endStr = undefined;
    else if (end.length === 1 && end[0] === 0) this.endStr = "";
    else this.endStr = indexKey(end);
    this.noPut = filters?.includes("NOPUT") ?? false;
    this.noDelete = filters?.includes("NODELETE") ?? false;
    this.minRev = startRevision;
  }

  get isRange(): boolean {
    return this.endStr !== undefined;
  }

  matches(keyStr: string): boolean {
    if (this.endStr === undefined) return keyStr === this.keyStr;
    if (keyStr < this.keyStr) return false;
    return this.endStr === "" || keyStr < this.endStr;
  }

  passes(event: Event): boolean {
    return event.type === "PUT" ? !this.noPut : !this.noDelete;
  }

  get isSynced(): boolean {
    return this.state === "synced";
  }

  cancel(): void {
    this.hub.remove(this);
  }

  resume(): void {
    this.retryAt = 0;
    this.retryDelayMs = 0;
    if (this.state === "unsynced") this.hub.wakeCatchUp();
  }

  requestProgress(): boolean {
    if (this.state !== "synced") return false;
    return offer(this, { events: [], revision: this.hub.currentRevision });
  }
}

function refused(w: HubWatcher, maxMs: number, nowMs: number): void {
  w.retryDelayMs = Math.min(maxMs, w.retryDelayMs === 0 ? 1 : w.retryDelayMs * 2);
  w.retryAt = nowMs + w.retryDelayMs;
}

function delivered(w: HubWatcher): void {
  w.retryDelayMs = 0;
  w.retryAt = 0;
}

function isCreate(e: Event): boolean {
  return e.type === "PUT" && e.kv.createRevision === e.kv.modRevision;
}

export class WatchHub {
  private readonly singles = new Map<string, Set<HubWatcher>>();
  private readonly ranges = new Set<HubWatcher>();
  private syncedCount = 0;
  private readonly unsynced = new Set<HubWatcher>();
  private looping = false;
  private closed = false;
  /** Bumped by restore(): a catch-up round that read the replaced contents is discarded. */
  private generation = 0;
  private wake: (() => void) | undefined;
  private readonly catchUpEntriesMax: number;
  private readonly catchUpRevisionsMax: number;
  private readonly catchUpWatchersMax: number;
  private readonly retryDelayMaxMs: number;
  private readonly skipEventOnCatchUp: boolean;
  /** Resolves when the loop has nothing to do (tests and shutdown). */
  private idleWaiters: Array<() => void> = [];

  private readonly clock: Clock;

  constructor(
    private readonly source: WatchSource,
    options: WatchHubOptions,
    deps: WatchHubDeps,
  ) {
    this.clock = deps.clock;
    this.catchUpEntriesMax = options.catchUpEntriesMax ?? 100_000;
    this.catchUpRevisionsMax = options.catchUpRevisionsMax ?? 1000;
    this.catchUpWatchersMax = options.catchUpWatchersMax ?? 512;
    this.retryDelayMaxMs = options.retryDelayMaxMs ?? 100;
    this.skipEventOnCatchUp = options.unsafeTestingKnobs?.skipEventOnCatchUp === true;
  }

  get currentRevision(): number {
    return this.source.currentRevision;
  }

  /** Registers a watcher. See WatchOptions for the range and start-revision rules. */
  watch(options: WatchOptions, sink: WatchSink): Watcher {
    if (this.closed) throw new Error("mvcc: watch on a closed store");
    const cur = this.source.currentRevision;
    const start = options.startRevision;
    const w = new HubWatcher(this, options.key, options.end, options.prevKv, options.filters, sink, start);
    if (start <= 0 || start > cur) {
      w.minRev = Math.max(cur + 1, start);
      this.addSynced(w);
    } else {
      this.addUnsynced(w);
    }
    return w;
  }

  /** Events handed to watchers' sinks (etcd_debugging_mvcc_events_total). */
  eventsSent = 0;

  /** Number of watchers per state (metrics, tests). */
  counts(): { synced: number; unsynced: number } {
    return { synced: this.syncedCount, unsynced: this.unsynced.size };
  }

  /**
   * The revision every watcher has seen everything up to: the current revision when all are
   * synced, else one below the lowest next revision of a catching-up watcher.
   */
  syncedRevision(): number {
    let rev = this.source.currentRevision;
    for (const w of this.unsynced) rev = Math.min(rev, w.minRev - 1);
    return rev;
  }

  /** @internal */
  remove(w: HubWatcher): void {
    if (w.state === "synced") this.removeSynced(w);
    else if (w.state === "unsynced") this.unsynced.delete(w);
    w.state = "cancelled";
  }

  private addSynced(w: HubWatcher): void {
    w.state = "synced";
    delivered(w);
    this.syncedCount++;
    if (w.isRange) {
      this.ranges.add(w);
    } else {
      let set = this.singles.get(w.keyStr);
      if (!set) this.singles.set(w.keyStr, (set = new Set()));
      set.add(w);
    }
  }

  private removeSynced(w: HubWatcher): void {
    this.syncedCount--;
    if (w.isRange) {
      this.ranges.delete(w);
    } else {
      const set = this.singles.get(w.keyStr);
      if (set) {
        set.delete(w);
        if (set.size === 0) this.singles.delete(w.keyStr);
      }
    }
  }

  private addUnsynced(w: HubWatcher): void {
    w.state = "unsynced";
    this.unsynced.add(w);
    this.scheduleCatchUp();
  }

  private demote(w: HubWatcher, fromRev: number): void {
    this.removeSynced(w);
    w.minRev = fromRev;
    this.addUnsynced(w);
  }

  /**
   * Feeds synced watchers one committed revision. Called by the store right after the revision
   * is in LevelDB and `currentRevision` has advanced to `rev`. Never blocks, never throws.
   */
  /** Whether a synced watcher exists: without one, notify does nothing (callers may skip building its changes). */
  get watching(): boolean {
    return this.syncedCount > 0;
  }

  notify(rev: number, changes: CommittedChange[]): void {
    if (this.syncedCount === 0) return;
    let perWatcher: Map<HubWatcher, CommittedChange[]> | undefined;
    for (const ch of changes) {
      const singles = this.singles.get(ch.keyStr);
      if (singles) {
        for (const w of singles) {
          perWatcher ??= new Map();
          const list = perWatcher.get(w);
          if (list) list.push(ch);
          else perWatcher.set(w, [ch]);
        }
      }
      if (this.ranges.size > 0) {
        for (const w of this.ranges) {
          if (!w.matches(ch.keyStr)) continue;
          perWatcher ??= new Map();
          const list = perWatcher.get(w);
          if (list) list.push(ch);
          else perWatcher.set(w, [ch]);
        }
      }
    }
    if (!perWatcher) return;
    let withPrev: Map<CommittedChange, Event | null> | undefined;
    for (const [w, list] of perWatcher) {
      if (w.state !== "synced" || w.minRev > rev) continue;
      const events: Event[] = [];
      let unresolved = false;
      for (const ch of list) {
        if (!w.passes(ch.event)) continue;
        if (!w.wantPrevKv || isCreate(ch.event) || ch.prevMain === 0 || rev - 1 < this.source.compactRevision) {
          events.push(ch.event);
          continue;
        }
        withPrev ??= new Map();
        let e = withPrev.get(ch);
        if (e === undefined) {
          const prev = this.source.cachedVersion(ch.prevMain, ch.prevSub);
          e = prev ? { type: ch.event.type, kv: ch.event.kv, prevKv: prev } : null;
          withPrev.set(ch, e);
        }
        if (e === null) {
          unresolved = true;
          break;
        }
        events.push(e);
      }
      if (unresolved) {
        // The previous version is not in memory: let the catch-up loop read it from the store.
        this.demote(w, rev);
        continue;
      }
      if (events.length === 0) continue;
      if (offer(w, { events, revision: rev })) {
        w.minRev = rev + 1;
      } else if (w.state === "synced") {
        refused(w, this.retryDelayMaxMs, this.clock.nowMs());
        this.demote(w, rev);
      }
    }
  }

  /**
   * The store's contents were replaced (etcd's watchableStore.Restore): every synced watcher goes
   * back to catching up from its next revision, so it gets the new contents' events from there
   * (or the compacted signal when they are compacted past it); a catch-up round in flight is
   * discarded. Called by the store once its new contents are readable.
   */
  restore(): void {
    this.generation++;
    const synced = [...this.ranges];
    for (const set of this.singles.values()) synced.push(...set);
    for (const w of synced) this.demote(w, w.minRev);
  }

  /** @internal */
  wakeCatchUp(): void {
    this.wake?.();
  }

  private scheduleCatchUp(): void {
    if (this.closed) return;
    if (this.looping) {
      this.wake?.();
      return;
    }
    this.looping = true;
    setImmediate(() => void this.catchUpLoop());
  }

  /** Resolves once no watcher is catching up (or the hub is closed). */
  whenIdle(): Promise<void> {
    if (!this.looping) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private async catchUpLoop(): Promise<void> {
    try {
      while (!this.closed && this.unsynced.size > 0) {
        let waitMs: number;
        try {
          waitMs = await this.catchUpRound();
        } catch (e) {
          if (this.closed) break; // the store is shutting down under an in-flight read
          throw e; // a broken invariant (e.g. a corrupt record): crash loudly
        }
        if (waitMs === 0) {
          await new Promise<void>((r) => setImmediate(r));
          continue;
        }
        await new Promise<void>((r) => {
          const t = this.clock.setTimeout(() => {
            this.wake = undefined;
            r();
          }, waitMs);
          this.wake = () => {
            this.clock.clearTimeout(t);
            this.wake = undefined;
            r();
          };
        });
      }
    } finally {
      this.looping = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const r of waiters) r();
    }
  }

  /**
   * One bounded catch-up step over the watchers not backing off. Returns 0 to go on at once, or
   * how long to sleep when every unsynced watcher is backing off.
   */
  private async catchUpRound(): Promise<number> {
    const now = this.clock.nowMs();
    const chosen: HubWatcher[] = [];
    let earliest = Infinity;
    for (const w of this.unsynced) {
      if (w.retryAt > now) {
        earliest = Math.min(earliest, w.retryAt);
        continue;
      }
      chosen.push(w);
      if (chosen.length >= this.catchUpWatchersMax) break;
    }
    if (chosen.length === 0) return Math.max(1, Math.min(this.retryDelayMaxMs, earliest - now));
    // Round-robin fairness: chosen watchers go to the back of the line.
    for (const w of chosen) {
      this.unsynced.delete(w);
      this.unsynced.add(w);
    }
    const compactRev = this.source.compactRevision;
    let cur = this.source.currentRevision;
    let minRev = Infinity;
    const active: HubWatcher[] = [];
    for (const w of chosen) {
      if (w.minRev < compactRev) {
        if (offer(w, { compactRevision: compactRev })) {
          this.unsynced.delete(w);
          w.state = "cancelled";
        } else if (w.state === "unsynced") {
          refused(w, this.retryDelayMaxMs, this.clock.nowMs());
        }
        continue;
      }
      if (w.minRev > cur) {
        this.unsynced.delete(w);
        this.addSynced(w);
        continue;
      }
      active.push(w);
      if (w.minRev < minRev) minRev = w.minRev;
    }
    if (active.length === 0) return 0;

    const generation = this.generation;
    const { events, lastRevision } = await this.source.readEvents(minRev, cur, this.catchUpRevisionsMax, this.catchUpEntriesMax);
    if (generation !== this.generation) return 0;
    const keyStrs = events.map((e) => indexKey(e.kv.key));
    const prevCache = new Map<Event, Promise<KeyValue | undefined>>();
    for (const w of active) {
      if (w.state !== "unsynced") continue; // cancelled meanwhile
      const start = w.minRev;
      // The chunk ends below this watcher's next revision (the chunk started at a slower
      // watcher's): nothing for it this round, and its position must not move back.
      if (start > lastRevision) continue;
      const picked: Event[] = [];
      for (let i = 0; i < events.length; i++) {
        const e = events[i]!;
        if (e.kv.modRevision < start) continue;
        if (!w.matches(keyStrs[i]!) || !w.passes(e)) continue;
        picked.push(e);
      }
      let out = picked;
      if (this.skipEventOnCatchUp && picked.length > 1 && picked[0]!.kv.modRevision !== picked[picked.length - 1]!.kv.modRevision) {
        out = picked.slice(1);
      }
      if (w.wantPrevKv && picked.length > 0) {
        const prevs = await Promise.all(
          picked.map((e) => {
            if (isCreate(e)) return undefined;
            let p = prevCache.get(e);
            if (!p) {
              p = this.source.versionAt(e.kv.key, e.kv.modRevision - 1);
              prevCache.set(e, p);
            }
            return p;
          }),
        );
        out = picked.map((e, i) => {
          const prev = prevs[i];
          return prev ? { type: e.type, kv: e.kv, prevKv: prev } : e;
        });
        if (generation !== this.generation) return 0;
        if (w.state !== "unsynced" || w.minRev !== start) continue;
      }
      // Header revision as etcd sends it for catch-up responses: the store's revision.
      if (out.length === 0 || offer(w, { events: out, revision: cur })) {
        w.minRev = lastRevision + 1;
        if (out.length > 0) delivered(w);
      } else if (w.state === "unsynced") {
        refused(w, this.retryDelayMaxMs, this.clock.nowMs());
      }
    }
    // Watchers now past the head join the synced group (synchronously with the head check, so
    // no revision published meanwhile can be missed).
    cur = this.source.currentRevision;
    for (const w of active) {
      if (w.state === "unsynced" && w.minRev > cur) {
        this.unsynced.delete(w);
        this.addSynced(w);
      }
    }
    return 0;
  }

  /** Stops the catch-up loop and drops every watcher (no signal is sent). */
  close(): void {
    this.closed = true;
    this.wake?.();
    for (const w of this.unsynced) w.state = "cancelled";
    this.unsynced.clear();
    for (const set of this.singles.values()) for (const w of set) w.state = "cancelled";
    for (const w of this.ranges) w.state = "cancelled";
    this.singles.clear();
    this.ranges.clear();
    this.syncedCount = 0;
  }
}
