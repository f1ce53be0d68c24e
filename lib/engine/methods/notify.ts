/**
 * SPDK's notify RPCs over the engine's notification ring:
 * `notify_get_types` and `notify_get_notifications {id, max}`. Modules raise
 * notifications in C (fb_notify: safe-read repairs, degraded members, ...);
 * the bdev core raises bdev_register and bdev_unregister as SPDK does.
 *
 * @module
 */
import type { EngineContext } from "../context";
import { defineMethod, type RpcMethod } from "../rpc/dispatcher";
import { errnoFailure } from "../rpc/failure";
import { MAX_SAFE, NO_PARAMS } from "../rpc/params";

/** The types every engine raises, before any module adds its own. */
const CORE_TYPES = ["bdev_register", "bdev_unregister"];

function parseCtx(text: string, id: number): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw errnoFailure("EIO", `notification ${id} carries invalid JSON: ${(e as Error).message}`, e);
  }
}

const notifyGetTypes = defineMethod<Record<string, never>, EngineContext>({
  name: "notify_get_types",
  description: "The notification types: the bdev core's and those raised since the engine started.",
  params: NO_PARAMS,
  handler: (_p, ctx) => {
    const seen = new Set(CORE_TYPES);
    for (const n of ctx.engine.notifications(0, 0).items) seen.add(n.type);
    return [...seen];
  },
});

const notifyGetNotifications = defineMethod<{ id?: number; max?: number }, EngineContext>({
  name: "notify_get_notifications",
  description: "Notifications from id on (oldest first), at most max; ids start at 1.",
  params: {
    properties: {
      id: {
        type: "integer",
        minimum: 0,
        maximum: MAX_SAFE,
        hint: "the first notification id to return, e.g. 1 (default 0: from the oldest kept)",
      },
      max: {
        type: "integer",
        minimum: 0,
        maximum: MAX_SAFE,
        hint: "how many to return at most, e.g. 100 (default 0: all)",
      },
    },
  },
  handler: (p, ctx) => {
    const first = p.id ?? 0;
    const { items } = ctx.engine.notifications(first > 0 ? first - 1 : 0, p.max ?? 0);
    return items.map((n) => ({ type: n.type, ctx: parseCtx(n.ctx, n.id), id: n.id }));
  },
});

/** The notify methods. */
export const NOTIFY_METHODS: readonly RpcMethod<EngineContext>[] = [notifyGetTypes, notifyGetNotifications];
