/**
 * An in-process cluster of RawNodes for unit tests: each member has a MemoryStorage and an
 * "applied" list; messages go through a pool that tests can filter, drop or reorder.
 */
import {
  EntryType, MemoryStorage, RawNode, StateRole, decodeConfChange, seededRng,
  type Message, type NodeId, type RaftConfig, type Snapshot,
} from "../../src/raft/index.js";

export interface TestMember {
  id: NodeId;
  rn: RawNode;
  storage: MemoryStorage;
  applied: Uint8Array[];
  readStates: { index: number; ctx: string }[];
}

export type ConfigOverrides = Partial<Omit<RaftConfig, "id">>;

export function defaultConfig(id: NodeId, o: ConfigOverrides = {}): RaftConfig {
  return {
    id, electionTicks: 10, heartbeatTicks: 1, maxSizePerMsgBytes: 1 << 20, maxInflightMsgs: 256,
    preVote: false, checkQuorum: false, ...o,
  };
}

const dec = new TextDecoder();
export const enc = new TextEncoder();

export class Network {
  readonly members = new Map<NodeId, TestMember>();
  pool: Message[] = [];
  /** Return false to drop a message on send. */
  filter: (m: Message) => boolean = () => true;
  private readonly cut = new Set<string>();

  /**
   * Members 1..n, all voters except `learners`, each starting from a snapshot at index 1, term 1
   * holding the configuration (so no bootstrap entries are needed); the first election is for term 2.
   */
  constructor(n: number, o: ConfigOverrides & { learners?: NodeId[]; seed?: number } = {}) {
    const ids = Array.from({ length: n }, (_, i) => BigInt(i + 1));
    const learners = o.learners ?? [];
    const voters = ids.filter((id) => !learners.includes(id));
    for (const id of ids) {
      const storage = new MemoryStorage();
      const snap: Snapshot = { metadata: { index: 1, term: 1, confState: { voters, learners } }, data: new Uint8Array(0) };
      storage.applySnapshot(snap);
      storage.setHardState({ term: 1, vote: 0n, commit: 1 });
      this.add(id, storage, o);
    }
  }

  add(id: NodeId, storage: MemoryStorage, o: ConfigOverrides & { seed?: number } = {}): TestMember {
    const { seed, ...cfg } = o as ConfigOverrides & { seed?: number; learners?: NodeId[] };
    delete (cfg as { learners?: unknown }).learners;
    const rn = new RawNode(defaultConfig(id, cfg), { storage, rng: seededRng((seed ?? 0) * 1000 + Number(id)) });
    const m: TestMember = { id, rn, storage, applied: [], readStates: [] };
    this.members.set(id, m);
    return m;
  }

  get(id: number | bigint): TestMember {
    const m = this.members.get(BigInt(id));
    if (!m) throw new Error(`no member ${id}`);
    return m;
  }

  raft(id: number | bigint) {
    return this.get(id).rn.raft;
  }

  isolate(id: number | bigint): void {
    for (const other of this.members.keys()) if (other !== BigInt(id)) this.cutLink(BigInt(id), other);
  }

  cutLink(a: NodeId, b: NodeId): void {
    this.cut.add(`${a}-${b}`);
    this.cut.add(`${b}-${a}`);
  }

  heal(): void {
    this.cut.clear();
  }

  /** Process one Ready of member `m` like a driver would. */
  processReady(m: TestMember): boolean {
    if (!m.rn.hasReady()) return false;
    const rd = m.rn.ready();
    if (rd.hardState) m.storage.setHardState(rd.hardState);
    if (rd.snapshot) m.storage.applySnapshot(rd.snapshot);
    m.storage.append(rd.entries);
    for (const msg of rd.messages) {
      if (this.cut.has(`${msg.from}-${msg.to}`) || !this.filter(msg)) continue;
      this.pool.push(msg);
    }
    for (const e of rd.committedEntries) {
      if (e.type === EntryType.ConfChange) m.rn.applyConfChange(decodeConfChange(e.data));
      else if (e.data.byteLength > 0) m.applied.push(e.data);
    }
    for (const rs of rd.readStates) m.readStates.push({ index: rs.index, ctx: dec.decode(rs.requestCtx) });
    m.rn.advance(rd);
    return true;
  }

  /** Deliver every pooled message (to members that exist), once. Returns how many. */
  deliverAll(): number {
    const msgs = this.pool;
    this.pool = [];
    let n = 0;
    for (const msg of msgs) {
      const to = this.members.get(msg.to);
      if (!to || this.cut.has(`${msg.from}-${msg.to}`)) continue;
      to.rn.step(msg);
      n++;
    }
    return n;
  }

  /** Readies and deliveries until quiet (bounded). */
  stabilize(maxRounds = 1000): void {
    for (let i = 0; i < maxRounds; i++) {
      let any = false;
      for (const m of this.members.values()) if (this.processReady(m)) any = true;
      if (this.deliverAll() > 0) any = true;
      if (!any) return;
    }
    throw new Error("network did not stabilize");
  }

  /** Campaign `id` and stabilize. */
  elect(id: number | bigint): void {
    this.get(id).rn.campaign();
    this.stabilize();
  }

  leaders(): NodeId[] {
    return [...this.members.values()].filter((m) => m.rn.raft.role === StateRole.Leader).map((m) => m.id);
  }

  appliedStrings(id: number | bigint): string[] {
    return this.get(id).applied.map((d) => dec.decode(d));
  }

  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) for (const m of this.members.values()) m.rn.tick();
  }
}
