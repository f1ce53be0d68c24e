import { test } from "uvu";
import * as assert from "uvu/assert";
import { createAgentServer, listen } from "../../lib/agent/http.js";
import { RpcDispatcher, RpcMethodError, RpcCode } from "../../lib/agent/jsonrpc.js";
import { AgentMetrics } from "../../lib/agent/metrics.js";
import { nullLogger } from "../../lib/agent/log.js";
import { resolveAgentConfig, loadAgentConfig, AgentConfigError } from "../../lib/agent/config.js";
import { promises as fsp } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const TOKEN = "s3cret";

async function withServer(fn: (url: string) => Promise<void>): Promise<void> {
  const metrics = new AgentMetrics(async () => [{ function: "pf0vf1", bdev: "m0", readOps: 3, writeOps: 4, readBytes: 5, writeBytes: 6 }]);
  const rpc = new RpcDispatcher((m, c) => metrics.rpcRequests.inc({ method: m, code: String(c) }));
  rpc.register("echo", async (p) => p);
  rpc.register("fail", async () => { throw new RpcMethodError(RpcCode.StaleGeneration, "stale", { expected: 1 }); });
  rpc.register("crash", async () => { throw new Error("kaput"); });
  const server = createAgentServer({ token: TOKEN, rpc, metrics, log: nullLogger, health: async () => ({ ok: true }) });
  const port = await listen(server, "127.0.0.1", 0);
  try {
    await fn(`http://127.0.0.1:${port}`);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

const post = (url: string, body: string, token = TOKEN) =>
  fetch(`${url}/rpc`, { method: "POST", body, headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` } });

test("http: token required; wrong token 401", async () => {
  await withServer(async (url) => {
    assert.is((await post(url, '{"jsonrpc":"2.0","id":1,"method":"echo"}', "wrong")).status, 401);
    const none = await fetch(`${url}/rpc`, { method: "POST", body: "{}" });
    assert.is(none.status, 401);
    assert.is((await fetch(`${url}/metrics`)).status, 401);
    assert.is((await fetch(`${url}/healthz`)).status, 200);
    assert.is((await fetch(`${url}/nope`)).status, 404);
  });
});

test("http: JSON-RPC success, errors, batch, notifications", async () => {
  await withServer(async (url) => {
    let r: any = await (await post(url, '{"jsonrpc":"2.0","id":7,"method":"echo","params":{"a":1}}')).json();
    assert.equal(r, { jsonrpc: "2.0", id: 7, result: { a: 1 } });
    r = await (await post(url, "{bad json")).json();
    assert.is(r.error.code, -32700);
    r = await (await post(url, '{"id":1,"method":"echo"}')).json();
    assert.is(r.error.code, -32600);
    r = await (await post(url, '{"jsonrpc":"2.0","id":1,"method":"nosuch"}')).json();
    assert.is(r.error.code, -32601);
    assert.match(r.error.message, "available: crash, echo, fail");
    r = await (await post(url, '{"jsonrpc":"2.0","id":1,"method":"echo","params":5}')).json();
    assert.is(r.error.code, -32600);
    r = await (await post(url, '{"jsonrpc":"2.0","id":1,"method":"fail"}')).json();
    assert.equal(r.error, { code: RpcCode.StaleGeneration, message: "stale", data: { expected: 1 } });
    r = await (await post(url, '{"jsonrpc":"2.0","id":1,"method":"crash"}')).json();
    assert.is(r.error.code, -32603);
    assert.match(r.error.message, "kaput");
    r = await (await post(url, '[{"jsonrpc":"2.0","id":1,"method":"echo"},{"jsonrpc":"2.0","method":"echo"}]')).json();
    assert.is(r.length, 1);
    assert.is((await post(url, '{"jsonrpc":"2.0","method":"echo"}')).status, 204);
  });
});

test("http: /metrics in Prometheus text with function stats", async () => {
  await withServer(async (url) => {
    await post(url, '{"jsonrpc":"2.0","id":1,"method":"echo"}');
    const res = await fetch(`${url}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.is(res.status, 200);
    const text = await res.text();
    assert.match(text, 'flexbso_agent_rpc_requests_total{method="echo",code="0"} 1');
    assert.match(text, 'flexbso_function_write_bytes{function="pf0vf1",bdev="m0"} 6');
  });
});

test("config: defaults and every problem listed", () => {
  const c = resolveAgentConfig({ stateDir: "/s", runDir: "/r" });
  assert.is(c.host, "127.0.0.1");
  assert.is(c.port, 8400);
  assert.is(c.target.mode, "spawn");
  assert.is(c.target.socket, "/r/engine.sock");
  try {
    resolveAgentConfig({ listen: "nope", target: { mode: "attach" }, colour: 1 });
    assert.unreachable();
  } catch (e) {
    assert.instance(e, AgentConfigError);
    const p = (e as AgentConfigError).problems.join("\n");
    assert.match(p, 'unknown field "colour"');
    assert.match(p, "listen");
    assert.match(p, "target.socket: required");
  }
});

test("config: YAML file with overrides, paths relative to the file", async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "fb-cfg-"));
  const file = path.join(dir, "agent.yaml");
  await fsp.writeFile(file, "listen: 127.0.0.1:22555\nstateDir: state\nrunDir: run\nlimits: { pfs: 4, vfsPerPf: 32 }\ntarget: { mode: attach, socket: /tmp/x.sock }\nlog: { level: debug }\n");
  const c = await loadAgentConfig(file, { dpu: "edge1" });
  assert.is(c.port, 22555);
  assert.is(c.stateDir, path.join(dir, "state"));
  assert.is(c.dataDir, path.join(dir, "state", "files"));
  assert.equal(c.limits, { pfs: 4, vfsPerPf: 32 });
  assert.is(c.target.mode, "attach");
  assert.is(c.dpu, "edge1");
  assert.is(c.logLevel, "debug");
  await fsp.writeFile(file, "listen: [oops\n");
  try { await loadAgentConfig(file); assert.unreachable(); } catch (e) { assert.instance(e, AgentConfigError); }
});

test.run();
