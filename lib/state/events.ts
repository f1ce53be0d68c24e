/**
 * The agent's append-only event log (`events.jsonl` in the state dir): one JSON object
 * per line, each with a sequence number, so clients can ask for "everything since N".
 * Rotated at a size cap (the previous file kept as `events.jsonl.1`), so it never grows
 * past what one read can hold; opened without following links.
 */
import { randomBytes } from "node:crypto";
import { promises as fsp, constants as fsc } from "node:fs";
import * as path from "node:path";
import { linkRefused, NOFOLLOW } from "./safety.js";

/** Size at which `events.jsonl` is rotated to `events.jsonl.1`. */
export const EVENTS_MAX_BYTES = 64 * 1024 * 1024;

/** Severity of an event. */
export type EventLevel = "info" | "warn" | "error";

/** One event as stored and returned by `events.list`. */
export interface AgentEvent {
  /** Sequence number, strictly increasing from 1. */
  readonly seq: number;
  /** ISO timestamp. */
  readonly time: string;
  readonly level: EventLevel;
  /** Dotted type, e.g. `apply.step.done`, `engine.restarted`, `bdev.volatile.lost`. */
  readonly type: string;
  /** Resource address the event is about, if any. */
  readonly address?: string;
  /** Human-readable one-liner. */
  readonly message: string;
  /** Extra structured fields. */
  readonly data?: Record<string, unknown>;
}

/**
 * Where an apply or destroy came from, as its client says (recorded in the `data.audit`
 * of its `apply.*` / `destroy.*` events).
 */
export interface ApplyAudit {
  /** `sha256:<hex>` of the plan that runs (lib/plan/saved.ts). */
  readonly planDigest: string;
  /** The commit the topology came from, when known. */
  readonly commit?: string;
  /** Where {@link commit} came from: `--commit`, `git`, or the CI variable's name. */
  readonly commitSource?: string;
  /** The topology file differs from the commit (git only). */
  readonly dirty?: boolean;
  /**
   * An id the client chose for this run (the agent picks one when absent). Every event
   * of the run carries it as `data.run`, so a client follows its own run's events and
   * never another apply's that runs (or is refused) at the same time.
   */
  readonly run?: string;
}

/** Why `v` is not an {@link ApplyAudit} (naming the field), or undefined when it is. */
export function auditProblem(v: unknown): { field: string; want: string } | undefined {
  if (v === null || typeof v !== "object" || Array.isArray(v))
    return { field: "audit", want: "an object {planDigest, commit?, commitSource?, dirty?, run?}" };
  const a = v as Record<string, unknown>;
  const extra = Object.keys(a).find((k) => !["planDigest", "commit", "commitSource", "dirty", "run"].includes(k));
  if (extra !== undefined)
    return { field: `audit.${extra}`, want: "absent (audit has planDigest, commit, commitSource, dirty, run)" };
  if (typeof a.planDigest !== "string" || !/^sha256:[0-9a-f]{64}$/.test(a.planDigest))
    return { field: "audit.planDigest", want: "'sha256:' and 64 hex digits (the plan's digest)" };
  for (const k of ["commit", "commitSource"] as const) {
    if (a[k] !== undefined && (typeof a[k] !== "string" || !/^[\x21-\x7e]{1,128}$/.test(a[k] as string)))
      return { field: `audit.${k}`, want: "1-128 printable characters without spaces" };
  }
  if (a.dirty !== undefined && typeof a.dirty !== "boolean") return { field: "audit.dirty", want: "true or false" };
  if (a.run !== undefined && (typeof a.run !== "string" || !RUN_ID.test(a.run)))
    return { field: "audit.run", want: "8-64 lowercase hex digits (an id for this run)" };
  return undefined;
}

/** The form of {@link ApplyAudit.run}. */
export const RUN_ID = /^[0-9a-f]{8,64}$/;

/** A fresh {@link ApplyAudit.run}. */
export function newRunId(): string {
  return randomBytes(8).toString("hex");
}

/** Whether `ev` belongs to the run `run`, or to no run at all (engine, reconcile and drift events). */
export function ofRun(ev: AgentEvent, run: string): boolean {
  const r = ev.data?.["run"];
  return r === undefined || r === run;
}

/** The fields a producer supplies; `seq` and `time` are assigned by the log. */
export type EventInput = Omit<AgentEvent, "seq" | "time">;

/** How many recent events are kept in memory for fast `since` queries. */
const MEMORY_TAIL = 10_000;

/**
 * Append-only JSONL event log. Appends are serialized in-process; each line is written
 * with one `appendFile` call (O_APPEND), so a crash can lose at most a trailing partial
 * line, which {@link EventLog.open} skips.
 */
export class EventLog {
  readonly file: string;
  private seq = 0;
  private tail: AgentEvent[] = [];
  private chain: Promise<void> = Promise.resolve();
  private listeners = new Set<(e: AgentEvent) => void>();
  /** Bytes in the current file. */
  private size = 0;

  private constructor(
    stateDir: string,
    private readonly maxBytes: number,
  ) {
    this.file = path.join(stateDir, "events.jsonl");
  }

  /** Where the previous file goes at rotation. */
  get rotatedFile(): string {
    return `${this.file}.1`;
  }

  /**
   * Open (or create) the log in `stateDir`, recovering the last sequence number from the
   * file's last `maxBytes` (a file past the cap, as an older agent left it, is rotated).
   */
  static async open(stateDir: string, opts: { maxBytes?: number } = {}): Promise<EventLog> {
    const log = new EventLog(stateDir, opts.maxBytes ?? EVENTS_MAX_BYTES);
    const { text, size } = await readTail(log.file, log.maxBytes);
    log.size = size;
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      try {
        const ev = JSON.parse(line) as AgentEvent;
        if (typeof ev.seq === "number") {
          log.seq = Math.max(log.seq, ev.seq);
          log.tail.push(ev);
        }
      } catch {
        // a torn trailing line from a crash: skip it
      }
    }
    if (log.tail.length > MEMORY_TAIL) log.tail = log.tail.slice(-MEMORY_TAIL);
    if (size > log.maxBytes) await log.rotate();
    // a torn last line must not glue itself to the next append
    else if (text.length > 0 && !text.endsWith("\n")) await log.write("\n");
    return log;
  }

  private async rotate(): Promise<void> {
    await fsp.rename(this.file, this.rotatedFile);
    this.size = 0;
  }

  private async write(text: string): Promise<void> {
    const bytes = Buffer.byteLength(text);
    if (this.size > 0 && this.size + bytes > this.maxBytes) await this.rotate();
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(this.file, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT | NOFOLLOW, 0o600);
    } catch (e) {
      throw linkRefused(this.file, e);
    }
    try {
      await fh.write(text);
    } finally {
      await fh.close();
    }
    this.size += bytes;
  }

  /** The highest sequence number written so far (0 when empty). */
  get lastSeq(): number {
    return this.seq;
  }

  /** Append an event; resolves once it is written. */
  append(input: EventInput): Promise<AgentEvent> {
    const ev: AgentEvent = { seq: ++this.seq, time: new Date().toISOString(), ...input };
    this.tail.push(ev);
    if (this.tail.length > MEMORY_TAIL * 1.5) this.tail = this.tail.slice(-MEMORY_TAIL);
    for (const l of this.listeners) l(ev);
    const write = this.chain.then(() => this.write(JSON.stringify(ev) + "\n"));
    this.chain = write.catch(() => undefined);
    return write.then(() => ev);
  }

  /** Events with `seq > since`, oldest first, at most `limit`. */
  async list(since = 0, limit = 1000): Promise<AgentEvent[]> {
    const first = this.tail[0];
    if (first === undefined || first.seq <= since + 1) {
      return this.tail.filter((e) => e.seq > since).slice(0, limit);
    }
    // older than the memory tail: read the file
    await this.chain;
    const text =
      (await readTail(this.rotatedFile, this.maxBytes)).text + "\n" + (await readTail(this.file, this.maxBytes)).text;
    const out: AgentEvent[] = [];
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      try {
        const ev = JSON.parse(line) as AgentEvent;
        if (ev.seq > since) out.push(ev);
        if (out.length >= limit) break;
      } catch {
        // skip torn line
      }
    }
    return out;
  }

  /** Subscribe to new events (in-process); returns an unsubscribe function. */
  subscribe(fn: (e: AgentEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Wait for pending appends. */
  flush(): Promise<void> {
    return this.chain;
  }
}

/** The last `maxBytes` of `file` (whole lines only when cut) and its size; empty when missing. */
async function readTail(file: string, maxBytes: number): Promise<{ text: string; size: number }> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, fsc.O_RDONLY | NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { text: "", size: 0 };
    throw linkRefused(file, e);
  }
  try {
    const size = (await fh.stat()).size;
    // when cut, start one byte early: the first line is whole only if that byte ends a line
    const cut = size > maxBytes;
    const n = cut ? maxBytes + 1 : size;
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await fh.read(buf, got, n - got, size - n + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    let text = buf.subarray(0, got).toString("utf8");
    if (cut) text = text.slice(text.indexOf("\n") + 1);
    return { text, size };
  } finally {
    await fh.close();
  }
}
