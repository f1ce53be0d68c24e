/**
 * The per-DPU lock: one apply, destroy or reconcile at a time on a DPU. Clients are
 * refused rather than queued (they planned against a state about to change); the
 * agent's own reconcile waits its turn.
 */
import { DpuBusyError } from "./errors.js";

/** A mutex that remembers what holds it. */
export class DpuLock {
  private holder: string | null = null;
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
    if (this.holder !== null) throw new DpuBusyError(this.dpu(), this.holder);
    return this.run(what, fn);
  }

  /** Run `fn` holding the lock, waiting for the current holder first. */
  run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => (release = r));
    return prev.then(async () => {
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
