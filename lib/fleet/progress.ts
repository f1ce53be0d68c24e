/**
 * Apply progress on the terminal. On a TTY: one live line per DPU with a bar, redrawn
 * in place. Not on a TTY: one plain line per finished or failed step, nothing else (no
 * bar frames in CI logs).
 */
import type { AgentEvent } from "../state/events.js";

/** Renders per-DPU apply progress from agent events. */
export class ProgressRenderer {
  private readonly lines = new Map<string, string>();
  private drawn = 0;
  private readonly tty: boolean;

  /** @param tty draw live bars (default: `stream.isTTY`) */
  constructor(
    private readonly stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number },
    tty?: boolean,
  ) {
    this.tty = tty ?? !!stream.isTTY;
  }

  /** Feed one event from `dpu`'s agent. */
  onEvent(dpu: string, ev: AgentEvent): void {
    const d = (ev.data ?? {}) as { index?: number; total?: number; fraction?: number };
    if (!ev.type.startsWith("apply.step.") && !ev.type.startsWith("reconcile.")) return;
    if (!this.tty) {
      if (ev.type === "apply.step.done" || ev.type === "apply.step.failed")
        this.stream.write(`${dpu}: ${ev.message}\n`);
      return;
    }
    const total = d.total ?? 1;
    const doneSteps = (d.index ?? 0) + (ev.type === "apply.step.done" ? 1 : 0);
    const frac = ev.type === "apply.step.progress" ? ((d.index ?? 0) + (d.fraction ?? 0)) / total : doneSteps / total;
    const label =
      ev.type === "apply.step.failed"
        ? `FAILED ${ev.address ?? ""}`
        : ev.type === "apply.step.done" && doneSteps === total
          ? "done"
          : `${ev.message}`;
    this.lines.set(dpu, `${dpu.padEnd(10)} ${bar(frac, 24)} ${doneSteps}/${total} ${label}`);
    this.redraw();
  }

  /** Leave the last frame on screen and stop drawing. */
  finish(): void {
    this.drawn = 0;
    this.lines.clear();
  }

  private redraw(): void {
    const width = Math.max(40, (this.stream.columns || 100) - 1);
    const rows = [...this.lines.values()];
    // go back to the first line of the block, rewrite every line, end below the block
    let out = this.drawn ? `\x1b[${this.drawn}F` : "";
    for (const l of rows) out += `\x1b[2K${l.length > width ? l.slice(0, width - 1) + "…" : l}\n`;
    this.stream.write(out);
    this.drawn = rows.length;
  }
}

/** `[#######.........]` */
export function bar(fraction: number, width: number): string {
  const f = Math.max(0, Math.min(1, fraction));
  const n = Math.round(f * width);
  return `[${"#".repeat(n)}${".".repeat(width - n)}] ${String(Math.round(f * 100)).padStart(3)}%`;
}
