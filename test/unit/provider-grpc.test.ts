/**
 * The provider's own protobuf reader/codec and its gRPC server, checked against an
 * independent implementation: protobufjs (through @grpc/proto-loader) reads the same
 * .proto files and encodes/decodes the same messages, and a @grpc/grpc-js client calls
 * the server over a unix socket with mutual TLS, as Terraform's grpc-go client does.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { readFileSync } from "node:fs";
import { decodeMessage, encodeMessage, fromJson, loadProtos, toJson, WireError } from "../../lib/provider/proto.js";
import { bindServices, createGrpcServer, percentEncode } from "../../lib/provider/grpc.js";
import { DESCRIPTOR_FILE, PROTO_FILES, protoDir } from "../../lib/provider/server.js";
import { createServerCert } from "../../lib/provider/tls.js";

const ours = loadProtos(protoDir(), PROTO_FILES);
const theirs = protoLoader.loadSync([...PROTO_FILES], {
  includeDirs: [protoDir()],
  keepCase: true,
  longs: Number,
  enums: Number,
  defaults: false,
  oneofs: false,
  bytes: Buffer,
});

const pj = require("protobufjs") as typeof import("protobufjs");
const root = new pj.Root().loadSync(
  PROTO_FILES.map((f) => path.join(protoDir(), f)),
  { keepCase: true },
);
root.resolveAll();

test("proto: every message and field protobufjs reads, with the same numbers and types", () => {
  const seen: string[] = [];
  const walk = (ns: import("protobufjs").NamespaceBase) => {
    for (const o of ns.nestedArray) {
      if (o instanceof pj.Type) {
        const name = o.fullName.slice(1);
        seen.push(name);
        const m = ours.messages.get(name);
        assert.ok(m, `read ${name}`);
        const want = o.fieldsArray
          .map((f) => {
            const t = f.map
              ? "map"
              : f.resolvedType instanceof pj.Type
                ? `message:${f.resolvedType.fullName.slice(1)}`
                : f.resolvedType
                  ? `enum:${f.resolvedType.fullName.slice(1)}`
                  : f.type;
            return [f.name, f.id, f.repeated || f.map, t, f.partOf?.name ?? null];
          })
          .sort();
        const got = m!.fields
          .map((f) => [
            f.name,
            f.no,
            f.repeated,
            f.type === "message" || f.type === "enum" ? `${f.type}:${f.typeName}` : f.type,
            f.oneof ?? null,
          ])
          .sort();
        assert.equal(got, want, name);
      }
      if ("nestedArray" in o) walk(o as import("protobufjs").NamespaceBase);
    }
  };
  walk(root);
  assert.equal(seen.sort(), [...ours.messages.keys()].sort());
  assert.ok(seen.length >= 40, `checked ${seen.length} messages`);
  const svc = root.lookupService("tfplugin6.Provider");
  assert.equal(
    [...ours.services.get("tfplugin6.Provider")!.values()].map((m) => [m.name, m.request.name, m.response.name]).sort(),
    svc.methodsArray
      .map((m) => [m.name, m.resolvedRequestType!.fullName.slice(1), m.resolvedResponseType!.fullName.slice(1)])
      .sort(),
  );
});

test("proto: the prebuilt descriptor a launch reads is the .proto files", () => {
  const prebuilt = JSON.parse(readFileSync(path.join(protoDir(), DESCRIPTOR_FILE), "utf8"));
  assert.equal(
    prebuilt,
    JSON.parse(JSON.stringify(toJson(ours))),
    `lib/provider/proto/${DESCRIPTOR_FILE} is stale: run npx tsc -p tsconfig.json && node -e 'require("./dist/lib/provider/server.js").writeDescriptor()'`,
  );
  const back = fromJson(prebuilt);
  assert.equal(toJson(back), toJson(ours));
  assert.is(
    back.services.get("tfplugin6.Provider")!.get("PlanResourceChange")!.request,
    back.messages.get("tfplugin6.PlanResourceChange.Request"),
  );
});

test("proto: bytes protobufjs encodes decode here, and ours decode there, field for field", () => {
  const r = root;
  const schemaResponse = {
    provider: {
      version: 3,
      block: {
        version: 0,
        attributes: [{ name: "endpoint", type: Buffer.from('"string"'), optional: true, description: "é ✓" }],
      },
    },
    resource_schemas: {
      flexbso_function: {
        version: 0,
        block: {
          attributes: [
            {
              name: "qos",
              nested_type: {
                nesting: 1,
                attributes: [{ name: "iops", type: Buffer.from('"number"'), computed: true }],
              },
              optional: true,
            },
          ],
        },
      },
    },
    diagnostics: [
      {
        severity: 2,
        summary: "s",
        detail: "d",
        attribute: { steps: [{ attribute_name: "qos" }, { element_key_int: -5 }, { element_key_string: "" }] },
      },
    ],
    server_capabilities: { plan_destroy: true, get_provider_schema_optional: true },
  };
  const T = r.lookupType("tfplugin6.GetProviderSchema.Response");
  const mine = encodeMessage(ours, ours.messages.get("tfplugin6.GetProviderSchema.Response")!, schemaResponse);
  const back = T.toObject(T.decode(mine), { longs: Number, enums: Number, bytes: Buffer, oneofs: false }) as any;
  assert.equal(back.provider.block.attributes[0].description, "é ✓");
  assert.equal(back.provider.version, 3);
  assert.equal(back.resource_schemas.flexbso_function.block.attributes[0].nested_type.attributes[0].name, "iops");
  assert.equal(back.diagnostics[0].attribute.steps, [
    { attribute_name: "qos" },
    { element_key_int: -5 },
    { element_key_string: "" },
  ]);
  assert.equal(back.server_capabilities, { plan_destroy: true, get_provider_schema_optional: true });

  const req = {
    type_name: "flexbso_dpu",
    version: 2 ** 40,
    raw_state: { json: Buffer.from("{}"), flatmap: { a: "1", "": "" } },
  };
  const RT = r.lookupType("tfplugin6.UpgradeResourceState.Request");
  const decoded = decodeMessage(
    ours,
    ours.messages.get("tfplugin6.UpgradeResourceState.Request")!,
    Buffer.from(RT.encode(RT.fromObject(req)).finish()),
  );
  assert.equal(decoded, req);
  // a message carrying a field this .proto does not have (newer Terraform): skipped
  const withUnknown = Buffer.concat([
    Buffer.from(RT.encode(RT.fromObject(req)).finish()),
    Buffer.from([0xf8, 0x3e, 0x07, 0x95, 0x3e, 1, 2, 3, 4]),
  ]);
  assert.equal(decodeMessage(ours, ours.messages.get("tfplugin6.UpgradeResourceState.Request")!, withUnknown), req);
  assert.throws(
    () =>
      decodeMessage(
        ours,
        ours.messages.get("tfplugin6.UpgradeResourceState.Request")!,
        Buffer.from([0x0a, 0x09, 0x61]),
      ),
    (e: unknown) => e instanceof WireError,
  );
});

test("grpc: percent-encoded grpc-message", () => {
  assert.is(percentEncode("50% é\n"), "50%25 %C3%A9%0A");
});

test("grpc: a grpc-js client over mutual TLS on a unix socket: unary calls, errors, unknown methods", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "fbgrpc-"));
  const serverCert = createServerCert();
  const clientCert = createServerCert();
  let errors = 0;
  const served = bindServices(ours, {
    "tfplugin6.Provider": {
      ValidateResourceConfig: (r) => ({
        diagnostics: [
          {
            severity: 1,
            summary: `got ${String(r["type_name"])}`,
            detail: String((r["config"] as { msgpack: Buffer }).msgpack.length),
          },
        ],
      }),
      StopProvider: () => Promise.reject(new Error("stop: nope ✗")),
    },
    "grpc.health.v1.Health": { Check: () => ({ status: 1 }) },
  });
  const server = createGrpcServer(ours, served, {
    tls: { key: serverCert.keyPem, cert: serverCert.certPem, ca: clientCert.certPem },
    maxMessageBytes: 1024 * 1024,
    onError: () => errors++,
  });
  const socket = path.join(dir, "s.sock");
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  const pkg = grpc.loadPackageDefinition(theirs) as any;
  const creds = grpc.credentials.createSsl(
    Buffer.from(serverCert.certPem),
    Buffer.from(clientCert.keyPem),
    Buffer.from(clientCert.certPem),
  );
  const client = new pkg.tfplugin6.Provider(`unix://${socket}`, creds, {
    "grpc.ssl_target_name_override": "localhost",
    "grpc.default_authority": "localhost",
  });
  const health = new pkg.grpc.health.v1.Health(`unix://${socket}`, creds, {
    "grpc.ssl_target_name_override": "localhost",
    "grpc.default_authority": "localhost",
  });
  const call = (c: any, m: string, req: unknown) =>
    new Promise<any>((resolve) => c[m](req, (e: grpc.ServiceError | null, res: unknown) => resolve(e ?? res)));
  try {
    const ok = await call(client, "ValidateResourceConfig", {
      type_name: "flexbso_malloc_bdev",
      config: { msgpack: Buffer.alloc(70_000, 1) },
    });
    assert.equal(ok.diagnostics, [{ severity: 1, summary: "got flexbso_malloc_bdev", detail: "70000" }]);
    const failed = await call(client, "StopProvider", {});
    assert.is(failed.code, grpc.status.INTERNAL);
    assert.is(failed.details, "stop: nope ✗");
    assert.is(errors, 1);
    const missing = await call(client, "GetMetadata", {});
    assert.is(missing.code, grpc.status.UNIMPLEMENTED);
    const big = await call(client, "ValidateResourceConfig", {
      type_name: "x",
      config: { msgpack: Buffer.alloc(2 * 1024 * 1024) },
    });
    assert.is(big.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(await call(health, "Check", { service: "plugin" }), { status: 1 });

    // a client whose certificate the server did not get in PLUGIN_CLIENT_CERT is refused
    const stranger = createServerCert();
    const other = new pkg.tfplugin6.Provider(
      `unix://${socket}`,
      grpc.credentials.createSsl(
        Buffer.from(serverCert.certPem),
        Buffer.from(stranger.keyPem),
        Buffer.from(stranger.certPem),
      ),
      { "grpc.ssl_target_name_override": "localhost", "grpc.default_authority": "localhost" },
    );
    const refused = await call(other, "ValidateResourceConfig", { type_name: "x" });
    assert.is(refused.code, grpc.status.UNAVAILABLE);
    other.close();
  } finally {
    client.close();
    health.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
