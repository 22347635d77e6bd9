/** A member gate's state (member-gate.ts) that a test steers: learner or not, and its leader. */
export interface GateState {
  isLearner: boolean;
  hasLeader: boolean;
  onLeaderLongLost(listener: () => void): () => void;
  /** Streams waiting to hear of a long-lost leader. */
  listening(): number;
  /** The member has long known no leader: the streams that need one are told. */
  loseLeaderLong(): void;
}

export function gateState(isLearner = false): GateState {
  const listeners = new Set<() => void>();
  return {
    isLearner,
    hasLeader: true,
    listening: () => listeners.size,
    onLeaderLongLost: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    loseLeaderLong() {
      this.hasLeader = false;
      const told = [...listeners];
      listeners.clear();
      for (const l of told) l();
    },
  };
}
