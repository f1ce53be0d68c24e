/**
 * SPDK's JSON-RPC wire format: bare JSON values written back to back on a
 * stream socket, with no length prefix and no required separator (SPDK's
 * scripts/rpc.py sends pretty-printed objects; spdk_tgt answers with objects
 * followed by a newline). {@link JsonValueSplitter} cuts such a byte stream
 * into complete top-level values incrementally, in O(bytes), so a value split
 * across reads or several values in one read both work. Both the client
 * (lib/client/spdk-rpc.ts) and the engine's server use it.
 *
 * @module
 */

/** Why the stream cannot be read any further (the connection must be closed). */
export class JsonStreamError extends Error {
  /** Stable code: `EPARSE` malformed JSON, `E2BIG` a value over the size limit. */
  readonly code: "EPARSE" | "E2BIG";
  constructor(code: "EPARSE" | "E2BIG", message: string) {
    super(message);
    this.name = "JsonStreamError";
    this.code = code;
  }
}

/** One complete top-level value cut from the stream, with its source text. */
export type JsonChunk =
  | { readonly ok: true; readonly value: unknown; readonly text: string }
  | { readonly ok: false; readonly error: JsonStreamError };

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN = new Set([0x7b, 0x5b]); // { [
const CLOSE = new Set([0x7d, 0x5d]); // } ]
/** Bytes that end a bare top-level scalar (number, true, false, null). */
const SCALAR_END = new Set([...WS, 0x7b, 0x5b, 0x7d, 0x5d, QUOTE, 0x2c, 0x3a]);

/** Options for {@link JsonValueSplitter}. */
export interface JsonValueSplitterOptions {
  /**
   * Largest single value accepted, in bytes; a longer one is an `E2BIG` error.
   * @default 16 MiB
   */
  readonly maxValueBytes?: number;
  /**
   * Deepest nesting of arrays and objects accepted; deeper is an `EPARSE`
   * error, found while scanning (before JSON.parse, whose recursion an
   * attacker would otherwise drive). @default 64
   */
  readonly maxDepth?: number;
}

/**
 * Incremental splitter of a byte stream into top-level JSON values.
 *
 * Feed it every chunk read from the socket with {@link push}; it returns the
 * values completed so far. Once it returns an error the stream has no reliable
 * resync point (as SPDK says): the caller answers the error and closes.
 */
export class JsonValueSplitter {
  private buf: Buffer = Buffer.alloc(0);
  /** Scan position inside buf of the value being scanned. */
  private pos = 0;
  /** Start of the value being scanned, or -1 while skipping whitespace. */
  private start = -1;
  private depth = 0;
  private inString = false;
  private escape = false;
  private scalar = false;
  private failed = false;
  private readonly maxValueBytes: number;
  private readonly maxDepth: number;

  constructor(options: JsonValueSplitterOptions = {}) {
    this.maxValueBytes = options.maxValueBytes ?? 16 * 1024 * 1024;
    this.maxDepth = options.maxDepth ?? 64;
  }

  /** Bytes buffered that do not yet form a complete value (whitespace excluded). */
  get pendingBytes(): number {
    return this.start < 0 ? 0 : this.buf.length - this.start;
  }

  /**
   * Appends a chunk and returns every value it completes, in order. After an
   * error chunk the splitter is failed and ignores further input.
   */
  push(chunk: Buffer): JsonChunk[] {
    if (this.failed) return [];
    const b = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: JsonChunk[] = [];
    let i = this.pos;
    while (i < b.length) {
      const c = b[i]!;
      if (this.start < 0) {
        i++;
        if (WS.has(c)) continue;
        this.start = i - 1;
        if (OPEN.has(c)) this.depth = 1;
        else if (c === QUOTE) this.inString = true;
        else if (CLOSE.has(c) || c === 0x2c || c === 0x3a) {
          out.push(this.fail("EPARSE", `unexpected '${String.fromCharCode(c)}' at the start of a JSON value`));
          return out;
        } else this.scalar = true;
        continue;
      }
      let end = -1;
      if (this.scalar) {
        if (SCALAR_END.has(c)) end = i;
      } else if (this.inString) {
        if (this.escape) this.escape = false;
        else if (c === BACKSLASH) this.escape = true;
        else if (c === QUOTE) {
          this.inString = false;
          if (this.depth === 0) end = i + 1;
        }
      } else if (c === QUOTE) this.inString = true;
      else if (OPEN.has(c)) {
        if (++this.depth > this.maxDepth) {
          out.push(this.fail("EPARSE", `JSON nested deeper than ${this.maxDepth} levels`));
          return out;
        }
      } else if (CLOSE.has(c) && --this.depth === 0) end = i + 1;
      if (end < 0) {
        i++;
        continue;
      }
      out.push(this.parse(b, end));
      if (this.failed) return out;
      i = end;
    }
    if (this.start < 0) {
      this.buf = Buffer.alloc(0);
      this.pos = 0;
    } else {
      this.buf = b.subarray(this.start);
      this.pos = b.length - this.start;
      this.start = 0;
      if (this.buf.length > this.maxValueBytes) {
        out.push(this.fail("E2BIG", `a JSON value exceeds ${this.maxValueBytes} bytes`));
      }
    }
    return out;
  }

  /**
   * The stream ended: a bare scalar still pending is complete, anything else
   * pending is truncated. Returns the final value or error, if any.
   */
  end(): JsonChunk | undefined {
    if (this.failed || this.start < 0) return undefined;
    if (this.scalar) return this.parse(this.buf, this.buf.length);
    return this.fail("EPARSE", `the stream ended inside a JSON value (${this.pendingBytes} bytes pending)`);
  }

  /** Parses b[start, end) and resets the scanner state for the next value. */
  private parse(b: Buffer, end: number): JsonChunk {
    const text = b.toString("utf8", this.start, end);
    this.start = -1;
    this.depth = 0;
    this.scalar = false;
    this.inString = false;
    this.escape = false;
    try {
      return { ok: true, value: JSON.parse(text), text };
    } catch (e) {
      return this.fail("EPARSE", `malformed JSON: ${(e as Error).message}`);
    }
  }

  private fail(code: "EPARSE" | "E2BIG", message: string): JsonChunk {
    this.failed = true;
    this.buf = Buffer.alloc(0);
    return { ok: false, error: new JsonStreamError(code, message) };
  }
}
