/**
 * The per-DPU lock: one apply, destroy or reconcile at a time on a DPU. Clients are
 * refused rather than queued (they planned against a state about to change); the
 * agent's own reconcile waits its turn.
 */
import { DpuBusyError } from "./errors.js";

/** A mutex that remembers what holds it. */
export class DpuLock {
  private holder: string | null = null;
  /** Callers that asked for the lock and have not got it yet (set synchronously). */
  private readonly waiting: string[] = [];
  private tail: Promise<void> = Promise.resolve();

  constructor(private readonly dpu: () => string) {}

  /** The current holder's description, or null. */
  get heldBy(): string | null {
    return this.holder;
  }

  /**
   * Run `fn` holding the lock; refuse if held.
   * @throws {@link DpuBusyError}
   */
  async tryRun<T>(what: string, fn: () => Promise<T>): Promise<T> {
    // a caller queued in the same tick (e.g. two applies in one JSON-RPC batch) counts as a holder
    const busy = this.holder ?? this.waiting[0] ?? null;
    if (busy !== null) throw new DpuBusyError(this.dpu(), busy);
    return this.run(what, fn);
  }

  /** Run `fn` holding the lock, waiting for the current holder first. */
  run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => (release = r));
    this.waiting.push(what);
    return prev.then(async () => {
      this.waiting.splice(this.waiting.indexOf(what), 1);
      this.holder = what;
      try {
        return await fn();
      } finally {
        this.holder = null;
        release();
      }
    });
  }
}
