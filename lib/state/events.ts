/**
 * The agent's append-only event log (`events.jsonl` in the state dir): one JSON object
 * per line, each with a sequence number, so clients can ask for "everything since N".
 */
import { promises as fsp } from "node:fs";
import * as path from "node:path";

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

  private constructor(stateDir: string) {
    this.file = path.join(stateDir, "events.jsonl");
  }

  /** Open (or create) the log in `stateDir`, recovering the last sequence number. */
  static async open(stateDir: string): Promise<EventLog> {
    const log = new EventLog(stateDir);
    let text = "";
    try {
      text = await fsp.readFile(log.file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
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
    // a torn last line must not glue itself to the next append
    if (text.length > 0 && !text.endsWith("\n")) await fsp.appendFile(log.file, "\n");
    return log;
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
    const write = this.chain.then(() => fsp.appendFile(this.file, JSON.stringify(ev) + "\n", { mode: 0o600 }));
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
    const text = await fsp.readFile(this.file, "utf8");
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
