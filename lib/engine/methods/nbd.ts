/**
 * NBD exports (SPDK has no NBD server, so these are `flexbso_`-prefixed):
 * `flexbso_nbd_export_add {export_name, bdev_name, listen, readonly?, tls_psk_file?,
 * tls_cert_file?, tls_key_file?, tls_ca_file?, tls_required?}`,
 * `flexbso_nbd_export_remove {export_name}`, `flexbso_nbd_get_exports`.
 * `listen` is "unix:/path/to.sock" or "tcp:HOST:PORT"; exports with the same
 * listen string share one listener.
 *
 * @module
 */
import type { EngineContext } from "../context";
import type { NativeNbdExportInfo } from "../native";
import { defineMethod, type RpcMethod } from "../rpc/dispatcher";
import { fromEngineError, invalidValue } from "../rpc/failure";
import type { ParamSpec } from "../rpc/params";
import { BDEV_NAME } from "./bdev";

const EXPORT_NAME: ParamSpec = {
  type: "string",
  minLength: 1,
  maxLength: 4096,
  hint: 'the NBD export name clients ask for, a non-empty string, e.g. "disk0"',
};

/** "unix:/abs/path" or "tcp:127.0.0.1:10809" / "tcp:[::1]:10809". */
const LISTEN_RE = /^(unix:\/.+|tcp:(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|localhost):(\d{1,5}))$/;

const LISTEN: ParamSpec = {
  type: "string",
  minLength: 1,
  hint: 'where clients connect: "unix:/absolute/path.sock" or "tcp:127.0.0.1:PORT"',
};

/** Validates the listen string beyond the schema (form and port range). */
function checkListen(listen: string): void {
  const m = LISTEN_RE.exec(listen);
  const port = m?.[4] !== undefined ? Number(m[4]) : undefined;
  if (m === null || (port !== undefined && (port < 1 || port > 65535))) {
    throw invalidValue(
      `Invalid parameter 'listen': ${JSON.stringify(listen)} is not a listen address. Fix: pass ${LISTEN.hint}.`,
    );
  }
}

const TLS_FILE = (what: string): ParamSpec => ({ type: "string", minLength: 1, hint: `an absolute path to ${what}` });

const nbdExportAdd = defineMethod<
  {
    export_name: string;
    bdev_name: string;
    listen: string;
    readonly?: boolean;
    tls_psk_file?: string;
    tls_cert_file?: string;
    tls_key_file?: string;
    tls_ca_file?: string;
    tls_required?: boolean;
  },
  EngineContext
>({
  name: "flexbso_nbd_export_add",
  description: "Export a bdev over NBD (fixed newstyle, structured replies, multi-conn) on a unix or TCP listener.",
  params: {
    properties: {
      export_name: EXPORT_NAME,
      bdev_name: BDEV_NAME,
      listen: LISTEN,
      readonly: { type: "boolean", hint: "true to refuse writes, or false (the default)" },
      tls_psk_file: TLS_FILE("a PSK file of `username:hexkey` lines (qemu/nbdkit format), one tenant per listener"),
      tls_cert_file: TLS_FILE("the X.509 server certificate (PEM)"),
      tls_key_file: TLS_FILE("the X.509 certificate's private key (PEM)"),
      tls_ca_file: TLS_FILE("a CA (PEM) whose signature every client certificate must carry"),
      tls_required: {
        type: "boolean",
        hint: "true to list and open nothing before NBD_OPT_STARTTLS, or false (the default)",
      },
    },
    required: ["export_name", "bdev_name", "listen"],
  },
  handler: (p, ctx) => {
    checkListen(p.listen);
    try {
      const tls = {
        ...(p.tls_psk_file !== undefined ? { pskFile: p.tls_psk_file } : {}),
        ...(p.tls_cert_file !== undefined ? { certFile: p.tls_cert_file } : {}),
        ...(p.tls_key_file !== undefined ? { keyFile: p.tls_key_file } : {}),
        ...(p.tls_ca_file !== undefined ? { caFile: p.tls_ca_file } : {}),
        ...(p.tls_required !== undefined ? { required: p.tls_required } : {}),
      };
      ctx.engine.nbdExportAdd(p.export_name, p.bdev_name, p.listen, p.readonly ?? false, tls);
    } catch (e) {
      throw fromEngineError(e, { ENOENT: "ENODEV" });
    }
    return true;
  },
});

const nbdExportRemove = defineMethod<{ export_name: string }, EngineContext>({
  name: "flexbso_nbd_export_remove",
  description: "Remove an NBD export: in-flight I/O completes, then its clients are disconnected.",
  params: { properties: { export_name: EXPORT_NAME }, required: ["export_name"] },
  handler: (p, ctx) => {
    try {
      ctx.engine.nbdExportRemove(p.export_name);
    } catch (e) {
      throw fromEngineError(e, { ENOENT: "ENODEV" });
    }
    return true;
  },
});

/** An export's TLS options as flexbso_nbd_export_add params (none: {}). */
export function tlsParams(x: NativeNbdExportInfo): Record<string, string | boolean> {
  return {
    ...(x.tlsPskFile !== undefined ? { tls_psk_file: x.tlsPskFile } : {}),
    ...(x.tlsCertFile !== undefined ? { tls_cert_file: x.tlsCertFile } : {}),
    ...(x.tlsKeyFile !== undefined ? { tls_key_file: x.tlsKeyFile } : {}),
    ...(x.tlsCaFile !== undefined ? { tls_ca_file: x.tlsCaFile } : {}),
    ...(x.tlsRequired === true ? { tls_required: true } : {}),
  };
}

/** The NBD exports in flexbso_nbd_get_exports' shape. */
export function listExports(ctx: EngineContext): Record<string, unknown>[] {
  return ctx.engine.nbdExportList().map((x) => ({
    export_name: x.exportName,
    bdev_name: x.bdevName,
    listen: x.listen,
    readonly: x.readonly,
    connections: x.connections,
    ...tlsParams(x),
  }));
}

const nbdGetExports = defineMethod<Record<string, never>, EngineContext>({
  name: "flexbso_nbd_get_exports",
  description: "List NBD exports with their bdev, listener, mode and connected clients.",
  params: { properties: {} },
  handler: (_p, ctx) => listExports(ctx),
});

/** The NBD export methods. */
export const NBD_METHODS: readonly RpcMethod<EngineContext>[] = [nbdExportAdd, nbdExportRemove, nbdGetExports];
