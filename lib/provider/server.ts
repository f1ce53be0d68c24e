/**
 * terraform-provider-flexbso's process: a go-plugin server speaking tfplugin6 over gRPC
 * on a unix socket.
 *
 * Startup, as go-plugin's client expects it:
 * 1. TF_PLUGIN_MAGIC_COOKIE must hold Terraform's cookie (else this is not a plugin launch);
 * 2. serve Provider, plugin.GRPCController (Shutdown exits at once) and the gRPC health
 *    check on a unix socket, with AutoMTLS when PLUGIN_CLIENT_CERT is set;
 * 3. print one handshake line on stdout: `1|6|unix|<socket>|grpc|<cert>`.
 * Logs go to stderr (Terraform shows them with TF_LOG). Nothing else is printed on stdout.
 */
import * as path from "node:path";
import * as os from "node:os";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { serverCert } from "./tls.js";
import type { FlexbsoProvider } from "./resources.js";

const MAGIC_KEY = "TF_PLUGIN_MAGIC_COOKIE";
const MAGIC_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/** go-plugin's core protocol version, and the tfplugin protocol served. */
const CORE_VERSION = 1;
const APP_VERSION = 6;

/** The .proto files live beside the sources (dist/lib/provider -> lib/provider/proto). */
function protoDir(): string {
  return path.resolve(__dirname, "..", "..", "..", "lib", "provider", "proto");
}

type Handler = (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => void;

/**
 * Serve until Terraform calls Shutdown (or the process is killed). `load` is called at
 * the first RPC, so the model and planner are not loaded before the handshake.
 */
export async function serve(load: () => FlexbsoProvider, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (env[MAGIC_KEY] !== MAGIC_VALUE) {
    process.stderr.write("This binary is a Terraform plugin (the FlexBSO provider); it is not meant to be run directly.\n" +
      "Install it with `flexbso provider install` and run terraform, which starts it.\n");
    process.exit(1);
  }
  const versions = (env["PLUGIN_PROTOCOL_VERSIONS"] ?? String(APP_VERSION)).split(",").map((v) => v.trim());
  if (!versions.includes(String(APP_VERSION))) {
    process.stderr.write(`terraform-provider-flexbso speaks plugin protocol ${APP_VERSION}; this Terraform offers ${versions.join(", ")} (use Terraform >= 1.0)\n`);
    process.exit(1);
  }

  const defs = protoLoader.loadSync(["tfplugin6.proto", "plugin.proto", "health.proto"], {
    includeDirs: [protoDir()], keepCase: true, longs: Number, enums: Number, defaults: false, oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(defs) as any;
  let loaded: FlexbsoProvider | undefined;
  const p = () => (loaded ??= load());
  const server = new grpc.Server({ "grpc.max_receive_message_length": 256 * 1024 * 1024, "grpc.max_send_message_length": 256 * 1024 * 1024 });

  const unary = (fn: (req: any) => unknown | Promise<unknown>): Handler => (call, cb) => {
    Promise.resolve()
      .then(() => fn(call.request))
      .then((res) => cb(null, res), (e: Error) => {
        process.stderr.write(`[ERROR] terraform-provider-flexbso: ${e.stack ?? e.message}\n`);
        cb({ code: grpc.status.INTERNAL, details: e.message });
      });
  };
  server.addService(pkg.tfplugin6.Provider.service, {
    GetMetadata: unary(() => p().getMetadata()),
    GetProviderSchema: unary(() => p().getProviderSchema()),
    ValidateProviderConfig: unary((r) => ({ diagnostics: p().validateProviderConfig(r.config) })),
    ValidateResourceConfig: unary((r) => ({ diagnostics: p().validateResourceConfig(r.type_name, r.config) })),
    UpgradeResourceState: unary((r) => p().upgradeResourceState(r)),
    ConfigureProvider: unary(async (r) => ({ diagnostics: await p().configure(r.config) })),
    ReadResource: unary((r) => p().readResource(r)),
    PlanResourceChange: unary((r) => p().planResourceChange(r)),
    ApplyResourceChange: unary((r) => p().applyResourceChange(r)),
    ImportResourceState: unary((r) => p().importResourceState(r)),
    StopProvider: unary(() => ({})),
  } satisfies Record<string, Handler>);

  let socket = "";
  const exit = () => {
    try { rmSync(socket, { force: true }); } catch { /* gone */ }
    process.exit(0);
  };
  server.addService(pkg.plugin.GRPCController.service, {
    // Terraform waits for this call to return, then for the process to exit (2 s, then kill).
    Shutdown: unary(() => {
      setImmediate(exit);
      return {};
    }),
  });
  server.addService(pkg.grpc.health.v1.Health.service, { Check: unary(() => ({ status: 1 })) });

  let creds = grpc.ServerCredentials.createInsecure();
  let certField = "";
  const clientCert = env["PLUGIN_CLIENT_CERT"];
  if (clientCert) {
    const cert = serverCert();
    creds = grpc.ServerCredentials.createSsl(Buffer.from(clientCert), [{ private_key: Buffer.from(cert.keyPem), cert_chain: Buffer.from(cert.certPem) }], true);
    certField = cert.handshake;
  }
  socket = path.join(env["PLUGIN_UNIX_SOCKET_DIR"] ?? os.tmpdir(), `plugin-flexbso-${randomBytes(6).toString("hex")}.sock`);
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, creds, (e) => (e ? reject(e) : resolve())));
  process.on("exit", () => { try { rmSync(socket, { force: true }); } catch { /* gone */ } });
  // Terraform forwards Ctrl-C to its plugins and then calls StopProvider; don't die on the signal.
  process.on("SIGINT", () => undefined);
  process.on("SIGTERM", exit);
  process.stdout.write(`${CORE_VERSION}|${APP_VERSION}|unix|${socket}|grpc${certField ? `|${certField}` : ""}\n`);
}
