/**
 * Large state-machine snapshots (the backend database a leader sends to a follower), written and
 * read as streams so they never have to fit in memory.
 *
 * File format: the payload bytes, then a 16-byte trailer (little-endian):
 *   offset  size  field
 *   0       8     payloadBytes (u64; the file is payloadBytes + 16 long)
 *   8       4     crc32c of the payload
 *   12      4     magic "etss"
 *
 * Writing: `createSnapshotWriter(dir, name)` appends to `<name>.tmp`; `finish()` writes the trailer,
 * fsyncs, re-reads the file to verify it (and checks the sender's size/CRC when given), then
 * renames it to `name` and fsyncs the directory. A crash leaves at most a `.tmp` file.
 * Reading: `openSnapshotStream(path)` yields the payload and checks the CRC when it reaches the
 * end; the last chunk is delivered before that check, so a consumer must treat the data as
 * unverified until the stream ends without an error (e.g. write it to a tmp file and only rename on
 * success, which is what the writer does).
 */
import { promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { crc32cUpdate } from "../pkg/crc32c.js";
import { ErrSnapshotCorrupt } from "./errors.js";
import { fsyncDir } from "../pkg/fsync-dir.js";
import { readFully } from "../pkg/read-fully.js";

const TRAILER_BYTES = 16;
const TRAILER_MAGIC = 0x73737465; // "etss" little-endian
const TWO_POW_32 = 4294967296;
const READ_CHUNK_BYTES = 1024 * 1024;

export interface SnapshotStreamInfo {
  path: string;
  /** Payload size (without the trailer). */
  sizeBytes: number;
  crc32c: number;
}

function encodeTrailer(sizeBytes: number, crc: number): Buffer {
  const t = Buffer.alloc(TRAILER_BYTES);
  t.writeUInt32LE(sizeBytes >>> 0, 0);
  t.writeUInt32LE(Math.floor(sizeBytes / TWO_POW_32), 4);
  t.writeUInt32LE(crc, 8);
  t.writeUInt32LE(TRAILER_MAGIC, 12);
  return t;
}

async function readTrailerFrom(fh: FileHandle, file: string): Promise<{ sizeBytes: number; crc32c: number }> {
  const { size } = await fh.stat();
  if (size < TRAILER_BYTES) throw new ErrSnapshotCorrupt(file, `file too short (${size} bytes) for a trailer`);
  const t = Buffer.alloc(TRAILER_BYTES);
  const { bytesRead } = await fh.read(t, 0, TRAILER_BYTES, size - TRAILER_BYTES);
  if (bytesRead !== TRAILER_BYTES) throw new ErrSnapshotCorrupt(file, "short read of the trailer");
  if (t.readUInt32LE(12) !== TRAILER_MAGIC) throw new ErrSnapshotCorrupt(file, "bad trailer magic");
  const sizeBytes = t.readUInt32LE(4) * TWO_POW_32 + t.readUInt32LE(0);
  if (sizeBytes !== size - TRAILER_BYTES) {
    throw new ErrSnapshotCorrupt(file, `trailer says ${sizeBytes} payload bytes, file holds ${size - TRAILER_BYTES}`);
  }
  return { sizeBytes, crc32c: t.readUInt32LE(8) };
}

/** Size and CRC a stream file declares (e.g. to announce them before sending). Throws ErrSnapshotCorrupt. */
export async function readSnapshotTrailer(file: string): Promise<SnapshotStreamInfo> {
  const fh = await fsp.open(file, "r");
  try {
    return { path: file, ...(await readTrailerFrom(fh, file)) };
  } finally {
    await fh.close();
  }
}

async function* payloadChunks(file: string, chunkBytes: number): AsyncGenerator<Buffer> {
  const fh = await fsp.open(file, "r");
  try {
    const trailer = await readTrailerFrom(fh, file);
    let crc = 0;
    let pos = 0;
    while (pos < trailer.sizeBytes) {
      const n = Math.min(chunkBytes, trailer.sizeBytes - pos);
      const chunk = Buffer.allocUnsafe(n);
      if ((await readFully(fh, chunk, n, pos)) < n) throw new ErrSnapshotCorrupt(file, "file shrank while reading");
      crc = crc32cUpdate(crc, chunk);
      pos += n;
      yield chunk;
    }
    if (crc !== trailer.crc32c) {
      throw new ErrSnapshotCorrupt(file, `crc mismatch (trailer ${trailer.crc32c.toString(16)}, payload ${crc.toString(16)})`);
    }
  } finally {
    await fh.close();
  }
}

/**
 * Streams the payload of a snapshot stream file. The stream errors with ErrSnapshotCorrupt if the
 * trailer is bad (before any data) or the CRC does not match (after the last chunk).
 */
export function openSnapshotStream(file: string, options: { chunkBytes?: number } = {}): Readable {
  return Readable.from(payloadChunks(file, options.chunkBytes ?? READ_CHUNK_BYTES), { objectMode: false });
}

/** Reads the whole payload and verifies it; returns its size and CRC. Throws ErrSnapshotCorrupt. */
export async function verifySnapshotStreamFile(file: string): Promise<SnapshotStreamInfo> {
  let sizeBytes = 0;
  let crc = 0;
  for await (const chunk of payloadChunks(file, READ_CHUNK_BYTES)) {
    sizeBytes += chunk.length;
    crc = crc32cUpdate(crc, chunk);
  }
  return { path: file, sizeBytes, crc32c: crc };
}

export class SnapshotWriter {
  private pos = 0;
  private crc = 0;
  private done = false;
  private pending: Promise<void> = Promise.resolve();
  private writeError: unknown;

  /** Use createSnapshotWriter. */
  constructor(
    private readonly dir: string,
    readonly path: string,
    readonly tmpPath: string,
    private readonly fh: FileHandle,
  ) {}

  /** Appends `chunk` (copied into the file before the promise resolves; the caller may reuse it after). */
  write(chunk: Uint8Array): Promise<void> {
    if (this.done) return Promise.reject(new Error("snap: write after finish/abort"));
    if (this.writeError !== undefined) return Promise.reject(this.writeError);
    const step = this.pending.then(async () => {
      let off = 0;
      for (let guard = 0; off < chunk.length; guard++) {
        if (guard > 1000) throw new Error("snap: write made no progress");
        const { bytesWritten } = await this.fh.write(chunk, off, chunk.length - off, this.pos);
        off += bytesWritten;
        this.pos += bytesWritten;
      }
      this.crc = crc32cUpdate(this.crc, chunk);
    });
    this.pending = step.catch((e: unknown) => {
      this.writeError ??= e;
    });
    return step;
  }

  /** Bytes of payload written so far. */
  get sizeBytes(): number {
    return this.pos;
  }

  /** A Node.js Writable over `write` (for `pipeline(source, writer.writable())`); then call finish(). */
  writable(): Writable {
    return new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        this.write(chunk).then(() => cb(), cb);
      },
    });
  }

  /**
   * Seals the file: trailer, fsync, verification by re-reading, optional comparison with what the
   * sender declared, rename into place, directory fsync. On any failure the tmp file is removed
   * and the error is thrown (ErrSnapshotCorrupt for verification failures).
   */
  async finish(expect: { sizeBytes?: number; crc32c?: number } = {}): Promise<SnapshotStreamInfo> {
    if (this.done) throw new Error("snap: finish after finish/abort");
    try {
      await this.pending;
      this.done = true;
      if (this.writeError !== undefined) throw this.writeError;
      const trailer = encodeTrailer(this.pos, this.crc);
      const { bytesWritten } = await this.fh.write(trailer, 0, trailer.length, this.pos);
      if (bytesWritten !== trailer.length) throw new Error("snap: short write of the trailer");
      await this.fh.sync();
      await this.fh.close();
      const info = await verifySnapshotStreamFile(this.tmpPath);
      if (info.sizeBytes !== this.pos || info.crc32c !== this.crc) {
        throw new ErrSnapshotCorrupt(this.tmpPath, "file does not read back as written");
      }
      if (expect.sizeBytes !== undefined && expect.sizeBytes !== info.sizeBytes) {
        throw new ErrSnapshotCorrupt(this.tmpPath, `received ${info.sizeBytes} bytes, sender declared ${expect.sizeBytes}`);
      }
      if (expect.crc32c !== undefined && expect.crc32c !== info.crc32c) {
        throw new ErrSnapshotCorrupt(this.tmpPath, `received crc ${info.crc32c.toString(16)}, sender declared ${expect.crc32c.toString(16)}`);
      }
      await fsp.rename(this.tmpPath, this.path);
      await fsyncDir(this.dir);
      return { path: this.path, sizeBytes: info.sizeBytes, crc32c: info.crc32c };
    } catch (e) {
      this.done = true;
      await this.fh.close().catch(() => undefined);
      await fsp.rm(this.tmpPath, { force: true });
      throw e;
    }
  }

  /** Discards the partial file. */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.pending;
    await this.fh.close().catch(() => undefined);
    await fsp.rm(this.tmpPath, { force: true });
  }
}

/** Starts writing the stream file `name` (a plain file name, no directories) in `dir`. */
export async function createSnapshotWriter(dir: string, name: string): Promise<SnapshotWriter> {
  if (name === "" || name !== path.basename(name) || name.endsWith(".tmp")) {
    throw new RangeError(`snap: bad snapshot stream file name ${JSON.stringify(name)}`);
  }
  await fsp.mkdir(dir, { recursive: true });
  const finalPath = path.join(dir, name);
  const tmpPath = `${finalPath}.tmp`;
  const fh = await fsp.open(tmpPath, "w");
  return new SnapshotWriter(dir, finalPath, tmpPath, fh);
}
