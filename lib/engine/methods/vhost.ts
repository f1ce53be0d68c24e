/**
 * vhost-user-blk controllers with SPDK's method names and params:
 * `vhost_create_blk_controller {ctrlr, dev_name, cpumask?, readonly?, packed_ring?}`,
 * `vhost_delete_controller {ctrlr}`, `vhost_get_controllers {name?}`.
 * Sockets are created 0600 as `<vhost dir>/<ctrlr>`, where the vhost dir is
 * given when the engine starts (`flexbso engine --vhost-dir DIR`), as with
 * spdk_tgt's `-S`. A FlexBSO extension, `socket_dir`, puts one controller's
 * socket in another directory (the agent's per-tenant directories).
 *
 * @module
 */
import * as path from "node:path";
import type { EngineContext } from "../context";
import { defineMethod, type RpcMethod } from "../rpc/dispatcher";
import { errnoFailure, fromEngineError, invalidValue } from "../rpc/failure";
import { spdkDefaultOnly, type ParamSpec } from "../rpc/params";
import type { NativeVhostControllerInfo } from "../native";
import { BDEV_NAME } from "./bdev";

const CTRLR: ParamSpec = {
  type: "string",
  minLength: 1,
  maxLength: 200,
  pattern: "^[A-Za-z0-9._-]+$",
  hint: 'a controller name of 1 to 200 characters from A-Z a-z 0-9 . _ - (it names the socket file), e.g. "vhost.0"',
};

const CPUMASK: ParamSpec = {
  type: "string",
  minLength: 1,
  maxLength: 256,
  pattern: "^(0[xX])?[0-9a-fA-F]+$|^\\[[0-9,\\- ]+\\]$",
  hint: 'reactor indexes as a hex mask ("0x3") or a list ("[0,2-3]")',
};

const createBlk = defineMethod<
  { ctrlr: string; dev_name: string; cpumask?: string; readonly?: boolean; packed_ring?: boolean; socket_dir?: string },
  EngineContext
>({
  name: "vhost_create_blk_controller",
  description:
    "Serve a bdev as a vhost-user-blk device on the unix socket <vhost dir>/<ctrlr> (QEMU vhost-user-blk-pci).",
  params: {
    properties: {
      ctrlr: CTRLR,
      dev_name: BDEV_NAME,
      cpumask: CPUMASK,
      readonly: { type: "boolean", hint: "true to refuse writes (VIRTIO_BLK_F_RO), or false (the default)" },
      packed_ring: spdkDefaultOnly(false, "a packed virtqueue"),
      socket_dir: {
        type: "string",
        minLength: 2,
        maxLength: 80,
        pattern: "^/",
        hint: 'an absolute path of an existing directory for this controller\'s socket, e.g. "/run/flexbso/tenants/acme" (a FlexBSO extension; default: the vhost dir)',
      },
    },
    required: ["ctrlr", "dev_name"],
  },
  handler: (p, ctx) => {
    if (p.cpumask !== undefined) checkCpumask(p.cpumask, ctx.engine.reactorCount());
    try {
      ctx.engine.vhostBlkControllerCreate(p.ctrlr, p.dev_name, p.socket_dir ?? ctx.info.vhostDir, {
        ...(p.cpumask !== undefined ? { cpumask: p.cpumask.replace(/ /g, "") } : {}),
        readonly: p.readonly ?? false,
      });
    } catch (e) {
      throw fromEngineError(e, { ENOENT: "ENODEV" });
    }
    return true;
  },
});

const deleteController = defineMethod<{ ctrlr: string }, EngineContext>({
  name: "vhost_delete_controller",
  description:
    "Delete a vhost controller: its front-end is disconnected after in-flight I/O completes, the socket is removed.",
  params: { properties: { ctrlr: CTRLR }, required: ["ctrlr"] },
  handler: (p, ctx) => {
    try {
      ctx.engine.vhostBlkControllerDelete(p.ctrlr);
    } catch (e) {
      throw fromEngineError(e, { ENOENT: "ENODEV" });
    }
    return true;
  },
});

/** Hex mask of every reactor, SPDK's default cpumask. */
function allReactorsMask(n: number): string {
  return `0x${((1n << BigInt(n)) - 1n).toString(16)}`;
}

/** One controller in vhost_get_controllers' shape (SPDK's fields, then ours). */
function controllerJson(x: NativeVhostControllerInfo, ctx: EngineContext): Record<string, unknown> {
  return {
    ctrlr: x.ctrlr,
    cpumask: x.cpumask ?? allReactorsMask(ctx.engine.reactorCount()),
    delay_base_us: 0,
    iops_threshold: 0,
    socket: x.socketPath,
    sessions: x.connected ? [{ vid: 0, id: 0, name: `${x.ctrlr}s0`, started: x.activeQueues > 0 }] : [],
    backend_specific: { block: { readonly: x.readonly, bdev: x.bdevName, transport: "vhost_user_blk" } },
    connected: x.connected,
    num_queues: x.numQueues,
    active_queues: x.activeQueues,
    requests: x.requests,
    bad_messages: x.badMessages,
  };
}

/** The controllers in vhost_get_controllers' shape. */
export function listControllers(ctx: EngineContext, name?: string): Record<string, unknown>[] {
  const all = ctx.engine.vhostControllerList();
  const sel = name === undefined ? all : all.filter((x) => x.ctrlr === name);
  if (name !== undefined && sel.length === 0) {
    throw errnoFailure("ENODEV", `ctrlr "${name}" does not exist (vhost_get_controllers without name lists them)`);
  }
  return sel.map((x) => controllerJson(x, ctx));
}

const getControllers = defineMethod<{ name?: string }, EngineContext>({
  name: "vhost_get_controllers",
  description: "List vhost controllers (or the one named) with their socket, bdev, mode and front-end state.",
  params: { properties: { name: CTRLR } },
  handler: (p, ctx) => listControllers(ctx, p.name),
});

/** The vhost_blk subsystem's config: one vhost_create_blk_controller per controller. */
export function vhostConfig(ctx: EngineContext): { method: string; params: Record<string, unknown> }[] {
  return ctx.engine.vhostControllerList().map((x) => ({
    method: "vhost_create_blk_controller",
    params: {
      ctrlr: x.ctrlr,
      dev_name: x.bdevName,
      ...(x.cpumask !== null ? { cpumask: x.cpumask } : {}),
      readonly: x.readonly,
      ...(path.dirname(x.socketPath) !== path.resolve(ctx.info.vhostDir)
        ? { socket_dir: path.dirname(x.socketPath) }
        : {}),
    },
  }));
}

/** Throws unless `cpumask` only names reactors the engine has (a clear message before the C check). */
export function checkCpumask(cpumask: string, reactors: number): void {
  if (/^\[/.test(cpumask)) return;
  const hex = cpumask.replace(/^0[xX]/, "");
  if (BigInt(`0x${hex}`) >> BigInt(reactors) !== 0n) {
    // A well-formed mask the engine refuses: SPDK's -EINVAL, like every refused value.
    throw invalidValue(
      `Invalid parameter 'cpumask': ${JSON.stringify(cpumask)} names reactors beyond the engine's ${reactors}. Fix: pass ${CPUMASK.hint} within 0..${reactors - 1}.`,
    );
  }
}

/** The vhost methods. */
export const VHOST_METHODS: readonly RpcMethod<EngineContext>[] = [createBlk, deleteController, getControllers];
