/**
 * A byte-bounded LRU of decoded KeyValues, keyed by revision id (see revision.ts). Holds recently
 * written and recently read versions so that head reads rarely touch LevelDB. Entries are
 * immutable versions, so a cached entry never goes stale; compaction may leave entries no read can
 * reach any more, which age out.
 */
import { keyValueBytes, type KeyValue } from "./key-value.js";

export class ValueCache {
  private readonly map = new Map<number, KeyValue>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(id: number): KeyValue | undefined {
    const kv = this.map.get(id);
    if (kv !== undefined) {
      // refresh recency
      this.map.delete(id);
      this.map.set(id, kv);
    }
    return kv;
  }

  set(id: number, kv: KeyValue): void {
    if (this.maxBytes <= 0) return;
    const old = this.map.get(id);
    if (old !== undefined) {
      this.map.delete(id);
      this.bytes -= keyValueBytes(old);
    }
    this.map.set(id, kv);
    this.bytes += keyValueBytes(kv);
    if (this.bytes > this.maxBytes) this.evict();
  }

  /** Drops every entry (the store's contents were replaced). */
  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }

  private evict(): void {
    const target = this.maxBytes * 0.9;
    for (const [id, kv] of this.map) {
      if (this.bytes <= target) break;
      this.map.delete(id);
      this.bytes -= keyValueBytes(kv);
    }
  }

  get sizeBytes(): number {
    return this.bytes;
  }

  get entries(): number {
    return this.map.size;
  }
}
