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
import { Event as PbEventCodec, Event_EventType } from "@etcd-ts/proto/mvccpb/kv";
import type { Event, KeyValue } from "../../mvcc/key-value.js";
import type { WatchFilter, WatchMessage, Watcher } from "../../mvcc/watch-hub.js";
import type { EtcdServer } from "../../server/etcd-server.js";
import { toPbKv } from "../../server/apply/kv-ops.js";
import type { Logger } from "../../pkg/logger.js";
import { ServerError } from "../../server/errors.js";
import { requestContext } from "./grpc-util.js";

export interface WatchServiceOptions {
  /** Period of progress notifications for watchers that asked for them (etcd: 10m). */
  progressNotifyIntervalMs: number;
  /**
   * Responses of this many bytes or more are split when the watcher asked for fragments (etcd:
   * --max-request-bytes plus its 512 KiB gRPC allowance). Default: the member's limit plus that.
   */
  fragmentBytesMax?: number;
}

/** Watchers one stream may hold (bounded, as everything from the network is). */
const WATCHERS_PER_STREAM_MAX = 10_000;
/** Watch requests one stream may have waiting behind a pending permission check. */
const QUEUED_REQUESTS_MAX = 1024;
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

/** What etcd adds to --max-request-bytes for a gRPC message (its grpcOverheadBytes). */
const GRPC_OVERHEAD_BYTES = 512 * 1024;

function varintBytes(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

/** What one event adds to an encoded WatchResponse: tag, length and the event. */
function eventFieldBytes(e: PbEvent): number {
  const len = PbEventCodec.encode(e).finish().length;
  return 1 + varintBytes(len) + len;
}

/**
 * etcd's sendFragments: a response below `max` bytes, or with fewer than two events, goes whole;
 * otherwise fragments are filled event by event, an event that brings a fragment (of more than
 * one event) to `max` or more starting the next one; every fragment but the last has `fragment`
 * set.
 */
function fragments(wr: WatchResponse, max: number): WatchResponse[] {
  const sizes = wr.events.map(eventFieldBytes);
  const whole = WatchResponse.encode({ ...wr, events: [] }).finish().length + sizes.reduce((a, b) => a + b, 0);
  if (whole < max || wr.events.length < 2) return [wr];
  const base = WatchResponse.encode({ ...wr, events: [], fragment: true }).finish().length;
  const out: WatchResponse[] = [];
  let idx = 0;
  for (;;) {
    const start = idx;
    let size = base;
    while (idx < wr.events.length) {
      size += sizes[idx]!;
      if (idx - start + 1 > 1 && size >= max) break;
      idx++;
    }
    const last = idx === wr.events.length;
    out.push({ ...wr, events: wr.events.slice(start, idx), fragment: !last });
    if (last) return out;
  }
}

export function watchService(server: EtcdServer, options: WatchServiceOptions, logger: Logger): WatchServer {
  const fragmentBytesMax = options.fragmentBytesMax ?? server.options.maxRequestBytes + GRPC_OVERHEAD_BYTES;
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
        for (const f of fragments(watchResponse({ header, watchId: sw.id, events }), fragmentBytesMax)) write(f);
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

      // As etcd: a watch needs read permission on its range (checked when created, with etcd's
      // normalised key and end). Requests are handled in arrival order; while a check is
      // pending, later requests queue behind it.
      const ctx = requestContext(stream);
      const mayWatch = async (req: NonNullable<WatchRequest["createRequest"]>): Promise<string | undefined> => {
        const key = req.key.length === 0 ? Buffer.from([0]) : req.key;
        const end = req.rangeEnd.length === 1 && req.rangeEnd[0] === 0 ? Buffer.alloc(0) : req.rangeEnd;
        try {
          await server.checkWatch(ctx, key, end);
          return undefined;
        } catch (err) {
          const code = err instanceof ServerError ? err.code : undefined;
          // etcd's cancel reason is the gRPC status error's text.
          if (code === "InvalidAuthToken") return "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token";
          if (code === "AuthOldRevision") return "rpc error: code = InvalidArgument desc = etcdserver: revision of auth store is old";
          if (code === "UserEmpty") return "rpc error: code = InvalidArgument desc = etcdserver: user name is empty";
          if (code !== "PermissionDenied") logger.error("unexpected error code", { error: String(err) });
          return "rpc error: code = PermissionDenied desc = etcdserver: permission denied";
        }
      };
      const checked = async (req: NonNullable<WatchRequest["createRequest"]>): Promise<void> => {
        const refused = await mayWatch(req);
        if (closed) return; // the stream ended meanwhile: nothing to register or answer
        if (refused === undefined) create(req);
        else write(watchResponse({ header: server.header(), watchId: -1n, created: true, canceled: true, cancelReason: refused }));
      };
      let queue: Promise<void> = Promise.resolve();
      let queued = 0;
      const needsCheck = (): boolean => server.auth.enabled || ctx.token !== undefined;
      stream.on("data", (req: WatchRequest) => {
        if (queued === 0 && !(req.createRequest && needsCheck())) {
          handle(req);
          return;
        }
        // Bounded: past QUEUED_REQUESTS_MAX pending requests the stream stops reading (gRPC's flow
        // control then holds the client back) until the checks catch up.
        if (++queued >= QUEUED_REQUESTS_MAX) stream.pause();
        queue = queue
          .then(() => {
            if (closed) return undefined;
            return req.createRequest ? checked(req.createRequest) : handle(req);
          })
          .catch((err: unknown) => logger.warn("watch request failed", { error: String(err) }))
          .finally(() => {
            if (--queued === QUEUED_REQUESTS_MAX / 2) stream.resume();
          });
      });
      const handle = (req: WatchRequest): void => {
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
      };
      // The client's half-close ends nothing: as etcd, the stream and its watchers stay until the
      // client goes (cancel, reset, deadline) or the call fails.
      stream.on("cancelled", close);
      stream.on("error", close);
      stream.on("close", close);
    },
  };
}
