/**
 * A deduplicating work queue of keys ("namespace/name"), as controllers use: a key waits at most
 * once; a key added while it is being processed is processed again afterwards (never twice at
 * once); delayed adds keep the earliest time. Bounded: beyond `maxKeys` distinct keys an add is
 * refused (returns false) and counted; the periodic resync brings the key back.
 */
export interface WorkQueueOptions {
  maxKeys: number;
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export class WorkQueue {
  private readonly ready: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly delayed = new Map<string, { at: number; handle: unknown }>();
  private readonly waiters: Array<(key: string | undefined) => void> = [];
  private shutDown = false;
  /** Adds refused because the queue was full. */
  dropped = 0;

  constructor(
    private readonly options: WorkQueueOptions,
    private readonly deps: { timers: Timers; now: () => number } = { timers: realTimers, now: Date.now },
  ) {}

  get length(): number {
    return this.ready.length;
  }

  private size(): number {
    return new Set([...this.queued, ...this.processing, ...this.delayed.keys()]).size;
  }

  add(key: string): boolean {
    if (this.shutDown) return false;
    const d = this.delayed.get(key);
    if (d !== undefined) {
      this.deps.timers.clearTimeout(d.handle);
      this.delayed.delete(key);
    }
    if (this.queued.has(key)) return true;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return true;
    }
    if (this.size() >= this.options.maxKeys) {
      this.dropped++;
      return false;
    }
    const w = this.waiters.shift();
    if (w !== undefined) {
      this.processing.add(key);
      w(key);
      return true;
    }
    this.queued.add(key);
    this.ready.push(key);
    return true;
  }

  addAfter(key: string, ms: number): void {
    if (this.shutDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = this.deps.now() + ms;
    const d = this.delayed.get(key);
    if (d !== undefined) {
      if (d.at <= at) return;
      this.deps.timers.clearTimeout(d.handle);
    } else if (this.queued.has(key)) {
      return;
    }
    const handle = this.deps.timers.setTimeout(() => {
      if (this.delayed.get(key)?.handle !== handle) return;
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    this.delayed.set(key, { at, handle });
  }

  /** The next key to process (marked processing until done(key)); undefined after shutdown. */
  next(): Promise<string | undefined> {
    if (this.shutDown) return Promise.resolve(undefined);
    const key = this.ready.shift();
    if (key !== undefined) {
      this.queued.delete(key);
      this.processing.add(key);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.delete(key)) this.add(key);
  }

  shutdown(): void {
    this.shutDown = true;
    for (const d of this.delayed.values()) this.deps.timers.clearTimeout(d.handle);
    this.delayed.clear();
    for (const w of this.waiters.splice(0)) w(undefined);
  }
}
