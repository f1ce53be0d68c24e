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
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { bindServices, createGrpcServer, type Unary } from "./grpc.js";
import { fromJson, loadProtos, toJson, type ProtosJson } from "./proto.js";
import { serverCert } from "./tls.js";
import type { FlexbsoProvider } from "./resources.js";

const MAGIC_KEY = "TF_PLUGIN_MAGIC_COOKIE";
const MAGIC_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/** go-plugin's core protocol version, and the tfplugin protocol served. */
const CORE_VERSION = 1;
const APP_VERSION = 6;
/** The largest request (Terraform sends whole resource states). */
const MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

/** The .proto files live beside the sources (dist/lib/provider -> lib/provider/proto). */
export function protoDir(): string {
  return path.resolve(__dirname, "..", "..", "..", "lib", "provider", "proto");
}

/** The .proto files served. */
export const PROTO_FILES = ["tfplugin6.proto", "plugin.proto", "health.proto"] as const;

/** The prebuilt descriptor of {@link PROTO_FILES} (a test checks it matches them). */
export const DESCRIPTOR_FILE = "descriptor.json";

/** Rewrites the prebuilt descriptor after a .proto change: `node -e 'require("./dist/lib/provider/server.js").writeDescriptor()'`. */
export function writeDescriptor(): void {
  writeFileSync(
    path.join(protoDir(), DESCRIPTOR_FILE),
    `${JSON.stringify(toJson(loadProtos(protoDir(), PROTO_FILES)), null, 1)}\n`,
  );
}

/**
 * Serve until Terraform calls Shutdown (or the process is killed). `load` is called at
 * the first RPC, so the model and planner are not loaded before the handshake.
 */
export async function serve(load: () => FlexbsoProvider, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (env[MAGIC_KEY] !== MAGIC_VALUE) {
    process.stderr.write(
      "This binary is a Terraform plugin (the FlexBSO provider); it is not meant to be run directly.\n" +
        "Install it with `flexbso provider install` and run terraform, which starts it.\n",
    );
    process.exit(1);
  }
  const versions = (env["PLUGIN_PROTOCOL_VERSIONS"] ?? String(APP_VERSION)).split(",").map((v) => v.trim());
  if (!versions.includes(String(APP_VERSION))) {
    process.stderr.write(
      `terraform-provider-flexbso speaks plugin protocol ${APP_VERSION}; this Terraform offers ${versions.join(", ")} (use Terraform >= 1.0)\n`,
    );
    process.exit(1);
  }

  const protos = fromJson(JSON.parse(readFileSync(path.join(protoDir(), DESCRIPTOR_FILE), "utf8")) as ProtosJson);
  let loaded: FlexbsoProvider | undefined;
  const p = () => (loaded ??= load());

  let socket = "";
  let shuttingDown = false;
  const exit = () => {
    try {
      rmSync(socket, { force: true });
    } catch {
      /* gone */
    }
    process.exit(0);
  };
  const provider: Record<string, Unary> = {
    GetMetadata: () => p().getMetadata(),
    GetProviderSchema: () => p().getProviderSchema(),
    ValidateProviderConfig: (r) => ({ diagnostics: p().validateProviderConfig(r["config"] as never) }),
    ValidateResourceConfig: (r) => ({
      diagnostics: p().validateResourceConfig(r["type_name"] as string, r["config"] as never),
    }),
    UpgradeResourceState: (r) => p().upgradeResourceState(r as never),
    ConfigureProvider: async (r) => ({ diagnostics: await p().configure(r["config"] as never) }),
    ReadResource: (r) => p().readResource(r as never),
    PlanResourceChange: (r) => p().planResourceChange(r as never),
    ApplyResourceChange: (r) => p().applyResourceChange(r as never),
    ImportResourceState: (r) => p().importResourceState(r as never),
    StopProvider: () => ({}),
  };
  const served = bindServices(protos, {
    "tfplugin6.Provider": provider,
    // Terraform waits for this call to return, then closes its connection and waits for
    // the process to exit (2 s, then kill): exit once the answer is out.
    "plugin.GRPCController": {
      Shutdown: () => {
        shuttingDown = true;
        return {};
      },
    },
    "grpc.health.v1.Health": { Check: () => ({ status: 1 }) },
  });

  const clientCert = env["PLUGIN_CLIENT_CERT"];
  let certField = "";
  let tls: { key: string; cert: string; ca: string } | undefined;
  if (clientCert) {
    const cert = serverCert();
    tls = { key: cert.keyPem, cert: cert.certPem, ca: clientCert };
    certField = cert.handshake;
  }
  const server = createGrpcServer(protos, served, {
    ...(tls ? { tls } : {}),
    maxMessageBytes: MAX_MESSAGE_BYTES,
    onError: (method, e) =>
      process.stderr.write(`[ERROR] terraform-provider-flexbso: ${method}: ${e.stack ?? e.message}\n`),
    onResponded: (m) => {
      if (m.name !== "Shutdown" || !shuttingDown) return;
      // The client closes the connection next; exit then, or shortly in any case.
      server.close();
      setTimeout(exit, 250);
    },
  });
  server.on("session", (session) =>
    session.on("close", () => {
      if (shuttingDown) exit();
    }),
  );
  socket = path.join(
    env["PLUGIN_UNIX_SOCKET_DIR"] ?? os.tmpdir(),
    `plugin-flexbso-${randomBytes(6).toString("hex")}.sock`,
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socket, () => {
      server.off("error", reject);
      resolve();
    });
  });
  process.on("exit", () => {
    try {
      rmSync(socket, { force: true });
    } catch {
      /* gone */
    }
  });
  // Terraform forwards Ctrl-C to its plugins and then calls StopProvider; don't die on the signal.
  process.on("SIGINT", () => undefined);
  process.on("SIGTERM", exit);
  process.stdout.write(`${CORE_VERSION}|${APP_VERSION}|unix|${socket}|grpc${certField ? `|${certField}` : ""}\n`);
}
