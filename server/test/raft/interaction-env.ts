/**
 * A small scripted environment for the Raft core: a set of in-memory members, a message pool,
 * and commands that step, tick, deliver and print. Used by the golden transcript tests
 * (testdata/*.txt, see transcript.test.ts). Everything is deterministic: each member's RNG is
 * seeded with its ID.
 *
 * Commands (ids are member IDs; several ids mean "each of them", none means "all"):
 *   add-nodes N [voters=(1,2,3)] [learners=(4)] [index=I] [prevote=true] [checkquorum=true]
 *             [max-inflight=N] [max-size=BYTES] [max-uncommitted=BYTES] [read-only=lease-based]
 *             [disable-forwarding=true] [election=TICKS] [heartbeat=TICKS]
 *   campaign ID | propose ID DATA | propose-conf-change ID add|remove|learner|update NODE
 *   read-index ID CTX | transfer-leader ID to=NODE
 *   tick ID [N] | tick-heartbeat ID | tick-election ID (exactly until the randomized timeout fires)
 *   process-ready [ID...]   handle one Ready each: persist, send, apply, advance (and print it)
 *   deliver-msgs [ID...] [type=MsgApp] | drop-msgs [ID...] [type=...]
 *   stabilize [ID...]       Readies and deliveries among the given members until quiet
 *   partition A B / C D | partition A (A against everyone) | heal
 *   compact ID INDEX        snapshot the state machine at INDEX (<= applied) and compact the log
 *   report-unreachable ID PEER | report-snapshot ID PEER [fail]
 *   status ID | raft-state | raft-log ID | applied ID | log on|off (the members' log lines)
 * Messages over a partitioned link are lost when sent and when delivered.
 */
import {
  ConfChangeType, EntryType, MessageType, MemoryStorage, NONE, RawNode, StateRole, decodeConfChange,
  describeEntry, describeMessage, seededRng, ErrProposalDropped,
  type ConfChange, type Entry, type Message, type NodeId, type RaftConfig, type Ready,
} from "../../src/raft/index.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

interface Member {
  id: NodeId;
  rn: RawNode;
  storage: MemoryStorage;
  /** Applied normal entries' payloads: the "state machine". */
  applied: string[];
  config: RaftConfig;
}

export interface Command {
  name: string;
  /** Positional arguments. */
  args: string[];
  /** key=value arguments; value lists written as (a,b,c). */
  kv: Map<string, string>;
  raw: string;
}

export function parseCommand(line: string): Command {
  const parts = line.trim().split(/\s+/);
  const name = parts.shift()!;
  const args: string[] = [];
  const kv = new Map<string, string>();
  for (const p of parts) {
    const eq = p.indexOf("=");
    if (eq > 0) kv.set(p.slice(0, eq), p.slice(eq + 1));
    else args.push(p);
  }
  return { name, args, kv, raw: line };
}

function parseIdList(v: string | undefined): NodeId[] {
  if (v === undefined) return [];
  const inner = v.replace(/^\(/, "").replace(/\)$/, "").trim();
  if (inner === "") return [];
  return inner.split(",").map((s) => BigInt(s.trim()));
}

function roleName(r: StateRole): string {
  return "State" + StateRole[r];
}

function describeData(e: Entry): string {
  if (e.type === EntryType.ConfChange) {
    const cc = decodeConfChange(e.data);
    const kind = cc.type === ConfChangeType.AddNode ? "v" : cc.type === ConfChangeType.RemoveNode ? "r" : cc.type === ConfChangeType.AddLearnerNode ? "l" : "u";
    return `${kind}${cc.nodeId}`;
  }
  return dec.decode(e.data);
}

export function fmtEntry(e: Entry): string {
  return describeEntry(e, describeData);
}

export function fmtMsg(m: Message): string {
  let s = describeMessage(m, describeData);
  if (m.context.byteLength > 0 && m.type !== MessageType.Vote && m.type !== MessageType.PreVote) {
    s += ` Ctx:${JSON.stringify(dec.decode(m.context))}`;
  } else if (m.context.byteLength > 0) {
    s += " (transfer)";
  }
  return s;
}

export class InteractionEnv {
  readonly members = new Map<NodeId, Member>();
  /** Messages sent and not yet delivered or dropped, in send order. */
  messages: Message[] = [];
  /** Links that drop messages: "a-b" with a < b. */
  private readonly cut = new Set<string>();
  private out: string[] = [];
  private verbose = false;

  private log(line: string): void {
    this.out.push(line);
  }

  /** Run one command; returns its output ("ok" if it printed nothing). */
  handle(cmd: Command): string {
    this.out = [];
    try {
      this.dispatch(cmd);
    } catch (e) {
      if (e instanceof ErrProposalDropped) this.log(`error: ${e.message}`);
      else throw e;
    }
    const s = this.out.join("\n").replace(/\n{2,}/g, "\n").trimEnd();
    return s.length === 0 ? "ok" : s;
  }

  private member(idStr: string | undefined): Member {
    if (idStr === undefined) throw new Error("missing member id");
    const m = this.members.get(BigInt(idStr));
    if (m === undefined) throw new Error(`unknown member ${idStr}`);
    return m;
  }

  private ids(args: string[]): NodeId[] {
    if (args.length === 0) return [...this.members.keys()];
    return args.map((a) => BigInt(a));
  }

  private dispatch(cmd: Command): void {
    const a = cmd.args;
    switch (cmd.name) {
      case "add-nodes": return this.addNodes(cmd);
      case "log": this.verbose = a[0] === "on"; return;
      case "campaign": this.member(a[0]).rn.campaign(); return;
      case "propose": this.member(a[0]).rn.propose(enc.encode(a[1] ?? "")); return;
      case "propose-conf-change": return this.proposeConfChange(cmd);
      case "tick": {
        const n = Number(a[1] ?? "1");
        for (let i = 0; i < n; i++) this.member(a[0]).rn.tick();
        return;
      }
      case "tick-heartbeat": {
        const m = this.member(a[0]);
        for (let i = 0; i < m.config.heartbeatTicks; i++) m.rn.tick();
        return;
      }
      case "tick-election": return this.tickElection(this.member(a[0]));
      case "process-ready": for (const id of this.ids(a)) this.processReady(this.members.get(id)!); return;
      case "deliver-msgs": this.deliverMsgs(cmd); return;
      case "drop-msgs": return this.dropMsgs(cmd);
      case "stabilize": return this.stabilize(this.ids(a));
      case "status": return this.status(this.member(a[0]));
      case "raft-state": return this.raftState();
      case "raft-log": return this.raftLog(this.member(a[0]));
      case "applied": {
        const m = this.member(a[0]);
        this.log(`applied: [${m.applied.join(" ")}]`);
        return;
      }
      case "partition": return this.partition(cmd);
      case "heal": this.cut.clear(); return;
      case "read-index": this.member(a[0]).rn.readIndex(enc.encode(a[1] ?? "")); return;
      case "transfer-leader": this.member(a[0]).rn.transferLeader(BigInt(cmd.kv.get("to") ?? a[1]!)); return;
      case "compact": return this.compact(this.member(a[0]), Number(a[1]));
      case "report-unreachable": this.member(a[0]).rn.reportUnreachable(BigInt(a[1]!)); return;
      case "report-snapshot": this.member(a[0]).rn.reportSnapshot(BigInt(a[1]!), a[2] !== "fail"); return;
      default:
        throw new Error(`unknown command ${cmd.name}`);
    }
  }

  /**
   * add-nodes N [voters=(1,2,3)] [learners=(4)] [index=I] [prevote=true] [checkquorum=true]
   *   [max-inflight=N] [max-size=BYTES] [max-uncommitted=BYTES] [read-only=lease-based]
   * With `index`, each new member's storage starts from a snapshot at index I holding the given
   * configuration; without it, members with `voters` bootstrap (entries 1..n), and members with
   * no configuration start empty (they will be given a snapshot).
   */
  private addNodes(cmd: Command): void {
    const n = Number(cmd.args[0]);
    const voters = parseIdList(cmd.kv.get("voters"));
    const learners = parseIdList(cmd.kv.get("learners"));
    const index = cmd.kv.get("index") !== undefined ? Number(cmd.kv.get("index")) : undefined;
    const bool = (k: string) => cmd.kv.get(k) === "true";
    for (let i = 0; i < n; i++) {
      const id = BigInt(this.members.size + 1);
      const storage = new MemoryStorage();
      if (index !== undefined && (voters.length > 0 || learners.length > 0)) {
        storage.applySnapshot({ metadata: { index, term: 1, confState: { voters, learners } }, data: enc.encode("[]") });
        // A member that holds a term-1 snapshot has seen term 1: elections start at term 2.
        storage.setHardState({ term: 1, vote: 0n, commit: index });
      }
      const config: RaftConfig = {
        id, electionTicks: Number(cmd.kv.get("election") ?? "10"), heartbeatTicks: Number(cmd.kv.get("heartbeat") ?? "1"),
        maxSizePerMsgBytes: Number(cmd.kv.get("max-size") ?? String(Number.MAX_SAFE_INTEGER)),
        maxInflightMsgs: Number(cmd.kv.get("max-inflight") ?? "256"),
        maxUncommittedEntriesBytes: Number(cmd.kv.get("max-uncommitted") ?? "0"),
        maxCommittedSizePerReadyBytes: Number.MAX_SAFE_INTEGER,
        preVote: bool("prevote"), checkQuorum: bool("checkquorum"),
        readOnlyOption: cmd.kv.get("read-only") === "lease-based" ? "lease-based" : "safe",
        disableProposalForwarding: bool("disable-forwarding"),
      };
      const verbose = () => this.verbose;
      const out = (l: string) => this.log(l);
      const logger = {
        info(msg: string, f?: object) { if (verbose()) out(`INFO ${id} ${msg}${fmtFields(f)}`); },
        warn(msg: string, f?: object) { if (verbose()) out(`WARN ${id} ${msg}${fmtFields(f)}`); },
      };
      const rn = new RawNode(config, { storage, rng: seededRng(Number(id)), logger });
      if (index === undefined && voters.length > 0) rn.bootstrap(voters);
      this.members.set(id, { id, rn, storage, applied: [], config });
    }
  }

  /** propose-conf-change <id> add|remove|learner|update <node> */
  private proposeConfChange(cmd: Command): void {
    const [idStr, kind, node] = cmd.args;
    const type = kind === "add" ? ConfChangeType.AddNode : kind === "remove" ? ConfChangeType.RemoveNode
      : kind === "learner" ? ConfChangeType.AddLearnerNode : ConfChangeType.UpdateNode;
    const cc: ConfChange = { type, nodeId: BigInt(node!), context: new Uint8Array(0) };
    this.member(idStr).rn.proposeConfChange(cc);
  }

  private tickElection(m: Member): void {
    const r = m.rn.raft;
    // Tick exactly until the (randomized) election timeout fires; for a leader, one election
    // timeout (the check-quorum period).
    const n = r.role === StateRole.Leader ? r.electionTimeout - r.electionElapsed : Math.max(1, r.randomizedElectionTimeout - r.electionElapsed);
    for (let i = 0; i < n; i++) m.rn.tick();
  }

  private processReady(m: Member): boolean {
    if (!m.rn.hasReady()) return false;
    const rd = m.rn.ready();
    this.log(`> ${m.id} handling Ready`);
    for (const l of fmtReady(rd)) this.log("  " + l);
    // 1. persist
    if (rd.hardState) m.storage.setHardState(rd.hardState);
    if (rd.snapshot) m.storage.applySnapshot(rd.snapshot);
    m.storage.append(rd.entries);
    // 2. send
    // Messages over a cut link are lost on the wire.
    for (const msg of rd.messages) if (!this.linkCut(msg.from, msg.to)) this.messages.push(msg);
    // 3. apply
    if (rd.snapshot) m.applied = JSON.parse(dec.decode(rd.snapshot.data)) as string[];
    for (const e of rd.committedEntries) {
      if (e.type === EntryType.ConfChange) {
        const cs = m.rn.applyConfChange(decodeConfChange(e.data));
        void cs;
      } else if (e.data.byteLength > 0) {
        m.applied.push(dec.decode(e.data));
      }
    }
    // 4. advance
    m.rn.advance(rd);
    return true;
  }

  private linkCut(a: NodeId, b: NodeId): boolean {
    return this.cut.has(a < b ? `${a}-${b}` : `${b}-${a}`);
  }

  private deliverOne(msg: Message): void {
    const target = this.members.get(msg.to);
    if (target === undefined || this.linkCut(msg.from, msg.to)) {
      this.log(`  dropped: ${fmtMsg(msg)}`);
      return;
    }
    this.log(`  ${fmtMsg(msg)}`);
    target.rn.step(msg);
  }

  /** deliver-msgs <id>... [type=MsgApp]: deliver pending messages addressed to the members. */
  private deliverMsgs(cmd: Command): boolean {
    const ids = new Set(this.ids(cmd.args));
    const type = cmd.kv.get("type");
    let any = false;
    for (const id of ids) {
      const mine = this.messages.filter((m) => m.to === id && (type === undefined || "Msg" + MessageType[m.type] === type));
      if (mine.length === 0) continue;
      this.messages = this.messages.filter((m) => !mine.includes(m));
      this.log(`> ${id} receiving messages`);
      for (const msg of mine) this.deliverOne(msg);
      any = true;
    }
    return any;
  }

  /** drop-msgs <id>... [type=MsgApp]: discard pending messages addressed to the members. */
  private dropMsgs(cmd: Command): void {
    const ids = new Set(this.ids(cmd.args));
    const type = cmd.kv.get("type");
    const dropped = this.messages.filter((m) => ids.has(m.to) && (type === undefined || "Msg" + MessageType[m.type] === type));
    this.messages = this.messages.filter((m) => !dropped.includes(m));
    for (const m of dropped) this.log(`dropped: ${fmtMsg(m)}`);
  }

  /** Process Readies and deliver messages among `ids` until nothing changes (bounded). */
  private stabilize(ids: NodeId[]): void {
    for (let round = 0; round < 1000; round++) {
      let any = false;
      for (const id of ids) if (this.processReady(this.members.get(id)!)) any = true;
      const targets = new Set(this.messages.filter((m) => ids.includes(m.to)).map((m) => m.to));
      for (const id of ids) {
        if (!targets.has(id)) continue;
        const mine = this.messages.filter((m) => m.to === id);
        this.messages = this.messages.filter((m) => m.to !== id);
        this.log(`> ${id} receiving messages`);
        for (const msg of mine) this.deliverOne(msg);
        any = true;
      }
      if (!any) return;
    }
    throw new Error("stabilize did not converge in 1000 rounds");
  }

  /** partition 1 / 2 3: cut every link between the two groups (default: the rest). */
  private partition(cmd: Command): void {
    const slash = cmd.args.indexOf("/");
    const left = (slash < 0 ? cmd.args : cmd.args.slice(0, slash)).map((s) => BigInt(s));
    const right = slash < 0 ? [...this.members.keys()].filter((id) => !left.includes(id)) : cmd.args.slice(slash + 1).map((s) => BigInt(s));
    for (const a of left) for (const b of right) this.cut.add(a < b ? `${a}-${b}` : `${b}-${a}`);
  }

  private status(m: Member): void {
    const st = m.rn.status();
    if (st.progress === undefined) {
      this.log(`${m.id}: ${roleName(st.softState.role)} term=${st.hardState.term} lead=${st.softState.lead} (no progress: not leader)`);
      return;
    }
    this.log(`term=${st.hardState.term} commit=${st.hardState.commit} applied=${st.applied} last=${st.lastIndex}`);
    for (const [id, pr] of st.progress) {
      const raw = m.rn.raft.prs.progress.get(id)!;
      this.log(`${id}: ${raw.toString()}`);
    }
    if (st.leadTransferee !== NONE) this.log(`leadTransferee: ${st.leadTransferee}`);
  }

  private raftState(): void {
    for (const m of this.members.values()) {
      const st = m.rn.status();
      const voter = st.confState.voters.includes(m.id) ? "(Voter)" : st.confState.learners.includes(m.id) ? "(Learner)" : "(Non-Voter)";
      this.log(`${m.id}: ${roleName(st.softState.role)} ${voter} Term:${st.hardState.term} Lead:${st.softState.lead}`);
    }
  }

  private raftLog(m: Member): void {
    const log = m.rn.raft.log;
    const fi = log.firstIndex();
    const li = log.lastIndex();
    if (li < fi) {
      this.log(`log is empty: first index=${fi}, last index=${li}`);
      return;
    }
    for (const e of log.allEntriesFrom(fi)) this.log(fmtEntry(e));
  }

  private compact(m: Member, index: number): void {
    const st = m.rn.status();
    if (index > st.applied) throw new Error(`compact ${index} beyond applied ${st.applied}`);
    m.storage.createSnapshot(index, st.confState, enc.encode(JSON.stringify(m.applied)));
    m.storage.compact(index);
    this.raftLog(m);
  }
}

function fmtFields(f: object | undefined): string {
  if (f === undefined) return "";
  const parts = Object.entries(f).map(([k, v]) => `${k}=${Array.isArray(v) ? `[${v.join(" ")}]` : String(v)}`);
  return parts.length > 0 ? " " + parts.join(" ") : "";
}

export function fmtReady(rd: Ready): string[] {
  const out: string[] = [];
  out.push(`Ready MustSync=${rd.mustSync}:`);
  if (rd.softState) out.push(`Lead:${rd.softState.lead} State:${roleName(rd.softState.role)}`);
  if (rd.hardState) out.push(`HardState Term:${rd.hardState.term} Vote:${rd.hardState.vote} Commit:${rd.hardState.commit}`);
  if (rd.entries.length > 0) {
    out.push("Entries:");
    for (const e of rd.entries) out.push(fmtEntry(e));
  }
  if (rd.snapshot) {
    const md = rd.snapshot.metadata;
    out.push(`Snapshot Index:${md.index} Term:${md.term} ConfState: Voters:[${md.confState.voters.join(" ")}] Learners:[${md.confState.learners.join(" ")}]`);
  }
  if (rd.committedEntries.length > 0) {
    out.push("CommittedEntries:");
    for (const e of rd.committedEntries) out.push(fmtEntry(e));
  }
  if (rd.messages.length > 0) {
    out.push("Messages:");
    for (const m of rd.messages) out.push(fmtMsg(m));
  }
  if (rd.readStates.length > 0) {
    out.push("ReadStates:");
    for (const rs of rd.readStates) out.push(`Index:${rs.index} Ctx:${JSON.stringify(dec.decode(rs.requestCtx))}`);
  }
  return out;
}
