/**
 * The etcdserverpb.Watch service: many watchers multiplexed over one bidirectional stream, as
 * etcd's serverWatchStream does it. Watch IDs are per stream (server-chosen from 0, or the
 * client's). Delivery is back-pressured: when the gRPC stream's buffer is full, the sink refuses
 * further messages and the store's watch hub retries later (catching up from the store), so a slow
 * client never blocks the apply loop.
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import {
  WatchCreateRequest_FilterType, WatchRequest, WatchResponse, WatchServer,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import type { Event as PbEvent } from "@etcd-ts/proto/mvccpb/kv";
import { Event_EventType } from "@etcd-ts/proto/mvccpb/kv";
import type { Event, KeyValue } from "../../mvcc/key-value.js";
import type { WatchFilter, WatchMessage, Watcher } from "../../mvcc/watch-hub.js";
import type { EtcdServer } from "../../server/etcd-server.js";
import { toPbKv } from "../../server/apply/kv-ops.js";
import type { Logger } from "../../pkg/logger.js";

export interface WatchServiceOptions {
  /** Period of progress notifications for watchers that asked for them (etcd: 10m). */
  progressNotifyIntervalMs: number;
  /** Responses larger than this are split when the watcher asked for fragments. */
  fragmentBytesMax?: number;
}

/** Watchers one stream may hold (bounded, as everything from the network is). */
const WATCHERS_PER_STREAM_MAX = 10_000;
const DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream";
const EMPTY_RANGE = "mvcc: watcher range is empty";

interface StreamWatcher {
  id: bigint;
  watcher: Watcher | undefined;
  prevKv: boolean;
  progressNotify: boolean;
  fragment: boolean;
  /** Whether anything was sent since the last progress tick. */
  sentSinceTick: boolean;
}

/** A WatchResponse with `fields` set and everything else at its default. */
function watchResponse(fields: Partial<WatchResponse>): WatchResponse {
  return {
    header: undefined, watchId: 0n, created: false, canceled: false, compactRevision: 0n,
    cancelReason: "", fragment: false, events: [], ...fields,
  };
}

function toPbEvent(e: Event, withPrev: boolean): PbEvent {
  return {
    type: e.type === "PUT" ? Event_EventType.PUT : Event_EventType.DELETE,
    kv: toPbKv(e.kv as KeyValue),
    prevKv: withPrev && e.prevKv ? toPbKv(e.prevKv as KeyValue) : undefined,
  };
}

function eventBytes(e: PbEvent): number {
  return 32 + (e.kv ? e.kv.key.length + e.kv.value.length : 0) + (e.prevKv ? e.prevKv.key.length + e.prevKv.value.length : 0);
}

export function watchService(server: EtcdServer, options: WatchServiceOptions, logger: Logger): WatchServer {
  const fragmentBytesMax = options.fragmentBytesMax ?? 1.5 * 1024 * 1024;
  return {
    watch: (stream: ServerDuplexStream<WatchRequest, WatchResponse>) => {
      const watchers = new Map<bigint, StreamWatcher>();
      let nextId = 0n;
      let congested = false;
      let closed = false;

      const write = (resp: WatchResponse): boolean => {
        if (closed) return false;
        const ok = stream.write(resp);
        if (!ok) congested = true;
        return true;
      };
      stream.on("drain", () => {
        congested = false;
        // Watchers refused while the stream was full catch up now rather than after a back-off.
        for (const sw of watchers.values()) sw.watcher?.resume();
      });

      const deliver = (sw: StreamWatcher, msg: WatchMessage): boolean => {
        if (closed) return true; // drop silently: the stream is gone
        if (congested) return false;
        if ("compactRevision" in msg) {
          // etcd's compaction notice carries no store revision.
          write(watchResponse({ header: server.header(0), watchId: sw.id, canceled: true, compactRevision: BigInt(msg.compactRevision) }));
          sw.watcher?.cancel();
          watchers.delete(sw.id);
          return true;
        }
        sw.sentSinceTick = true;
        const events = msg.events.map((e) => toPbEvent(e, sw.prevKv));
        const header = server.header(msg.revision);
        if (!sw.fragment) {
          write(watchResponse({ header, watchId: sw.id, events }));
          return true;
        }
        // Split into fragments no larger than fragmentBytesMax (at least one event each).
        let start = 0;
        while (start < events.length || start === 0) {
          let size = 0;
          let end = start;
          while (end < events.length && (end === start || size + eventBytes(events[end]!) <= fragmentBytesMax)) {
            size += eventBytes(events[end]!);
            end++;
          }
          write(watchResponse({ header, watchId: sw.id, fragment: end < events.length, events: events.slice(start, end) }));
          if (end >= events.length) break;
          start = end;
        }
        return true;
      };

      const create = (req: NonNullable<WatchRequest["createRequest"]>): void => {
        let key = req.key;
        if (key.length === 0) key = Buffer.from([0]); // the smallest key
        // An empty range end watches one key; etcd's "\0" means every key from `key` on.
        const fromKey = req.rangeEnd.length === 1 && req.rangeEnd[0] === 0;
        const end = req.rangeEnd.length === 0 ? undefined : req.rangeEnd;
        let id = req.watchId;
        const headerRev = server.store.currentRevision;
        if (end !== undefined && !fromKey && Buffer.compare(Buffer.from(key), Buffer.from(end)) >= 0) {
          // Checked before the watch ID, as etcd's watch stream does.
          write(watchResponse({ header: server.header(headerRev), watchId: -1n, created: true, canceled: true, cancelReason: EMPTY_RANGE }));
          return;
        }
        if (id !== 0n && watchers.has(id)) {
          write(watchResponse({ header: server.header(headerRev), watchId: -1n, created: true, canceled: true, cancelReason: DUPLICATE_ID }));
          return;
        }
        if (watchers.size >= WATCHERS_PER_STREAM_MAX) {
          write(watchResponse({
            header: server.header(headerRev), watchId: -1n, created: true, canceled: true, cancelReason: "etcdserver: too many watchers on one stream",
          }));
          return;
        }
        if (id === 0n) {
          while (watchers.has(nextId)) nextId++;
          id = nextId++;
        }
        const filters: WatchFilter[] = [];
        for (const f of req.filters) {
          if (f === WatchCreateRequest_FilterType.NOPUT) filters.push("NOPUT");
          else if (f === WatchCreateRequest_FilterType.NODELETE) filters.push("NODELETE");
        }
        const sw: StreamWatcher = {
          id, watcher: undefined, prevKv: req.prevKv, progressNotify: req.progressNotify, fragment: req.fragment, sentSinceTick: false,
        };
        watchers.set(id, sw);
        write(watchResponse({ header: server.header(headerRev), watchId: id, created: true }));
        const start = Number(req.startRevision);
        const compactRev = server.store.compactRevision;
        if (start < 0 && start < compactRev) {
          // Below the compacted revision (-1 before the first compaction): etcd cancels it as
          // compacted. -1 on a store never compacted is not below it: etcd's catch-up then finds
          // no events (a negative revision reads an empty range) and the watch goes on from now.
          deliver(sw, { compactRevision: compactRev });
          return;
        }
        sw.watcher = server.store.watch(
          { key, end, startRevision: start <= 0 ? headerRev + 1 : start, prevKv: req.prevKv, filters },
          { send: (msg) => deliver(sw, msg) },
        );
      };

      const progressTimer = options.progressNotifyIntervalMs > 0
        ? setInterval(() => {
            for (const sw of watchers.values()) {
              if (sw.progressNotify && !sw.sentSinceTick) sw.watcher?.requestProgress();
              sw.sentSinceTick = false;
            }
          }, options.progressNotifyIntervalMs)
        : undefined;
      progressTimer?.unref();

      const close = (): void => {
        if (closed) return;
        closed = true;
        if (progressTimer) clearInterval(progressTimer);
        for (const sw of watchers.values()) sw.watcher?.cancel();
        watchers.clear();
      };

      stream.on("data", (req: WatchRequest) => {
        try {
          // One member of the request oneof counts: the last on the wire, the highest numbered
          // when written in field order (progress 3, cancel 2, create 1), as protobuf keeps it.
          if (req.progressRequest) {
            // Not tied to one watcher: etcd answers with watch ID -1.
            write(watchResponse({ header: server.header(), watchId: -1n }));
          } else if (req.cancelRequest) {
            const id = req.cancelRequest.watchId;
            const sw = watchers.get(id);
            if (sw) {
              sw.watcher?.cancel();
              watchers.delete(id);
              write(watchResponse({ header: server.header(), watchId: id, canceled: true }));
            }
          } else if (req.createRequest) {
            create(req.createRequest);
          }
        } catch (err) {
          logger.warn("watch request failed", { error: String(err) });
        }
      });
      stream.on("end", () => {
        close();
        stream.end();
      });
      stream.on("cancelled", close);
      stream.on("error", close);
      stream.on("close", close);
    },
  };
}
