import { test } from "uvu";
import * as assert from "uvu/assert";
import { createAgentServer, listen, MAX_BODY, MAX_BATCH } from "../../lib/agent/http.js";
import * as net from "node:net";
import { RpcDispatcher, RpcMethodError, RpcCode } from "../../lib/agent/jsonrpc.js";
import { AgentMetrics } from "../../lib/agent/metrics.js";
import { nullLogger } from "../../lib/agent/log.js";
import { resolveAgentConfig, loadAgentConfig, AgentConfigError } from "../../lib/agent/config.js";
import { promises as fsp } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const TOKEN = "s3cret";

/** An SPDK bdev_get_histogram buffer (shift 7) holding `count` samples of each value (ns). */
function spdkHistogram(samples: [number, number][]): string {
  const buf = Buffer.alloc(58 * 128 * 8);
  for (const [v, count] of samples) {
    const top = 31 - Math.clz32(v); // values below 2^31 here
    const i = v < 128 ? v : (top - 6) * 128 + ((v >>> (top - 7)) & 127);
    buf.writeBigUInt64LE(buf.readBigUInt64LE(i * 8) + BigInt(count), i * 8);
  }
  return buf.toString("base64");
}

async function withServer(
  fn: (url: string) => Promise<void>,
  limits: { headersTimeoutMs?: number; requestTimeoutMs?: number } = {},
): Promise<void> {
  const metrics = new AgentMetrics(async () => [
    {
      dpu: "d0",
      function: "vm1",
      tenant: "alice",
      readOps: 3,
      writeOps: 4,
      readBytes: 5,
      writeBytes: 6,
      errors: 1,
      connections: 2,
      latency: {
        histogram: spdkHistogram([
          [20_000, 2],
          [3_000_000, 1],
        ]),
        bucketShift: 7,
        tscRate: 1e9,
        sumSeconds: 0.00304,
      },
    },
  ]);
  const rpc = new RpcDispatcher((m, c) => metrics.rpcRequests.inc({ method: m, code: String(c) }));
  rpc.register("echo", async (p) => p);
  rpc.register("fail", async () => {
    throw new RpcMethodError(RpcCode.StaleGeneration, "stale", { expected: 1 });
  });
  rpc.register("crash", async () => {
    throw new Error("kaput");
  });
  rpc.register("slow", async () => {
    await new Promise((r) => setTimeout(r, 1_500));
    return "late";
  });
  const server = createAgentServer(
    { token: TOKEN, rpc, metrics, log: nullLogger, health: async () => ({ ok: true }) },
    limits,
  );
  const port = await listen(server, "127.0.0.1", 0);
  try {
    await fn(`http://127.0.0.1:${port}`);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

const post = (url: string, body: string, token = TOKEN) =>
  fetch(`${url}/rpc`, {
    method: "POST",
    body,
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
  });

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

/** Raw HTTP over a socket: write `head`, then `bodyBytes` of filler; resolve with what came back when the server closes. */
function rawRequest(url: string, head: string, bodyBytes = 0): Promise<{ reply: string; ms: number }> {
  const { port } = new URL(url);
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = net.connect(Number(port), "127.0.0.1", () => {
      s.write(head);
      const chunk = Buffer.alloc(1 << 20, 0x20);
      let left = Math.ceil(bodyBytes / chunk.length);
      const pump = () => {
        while (left > 0) {
          left--;
          if (!s.write(chunk)) {
            s.once("drain", pump);
            return;
          }
        }
      };
      pump();
    });
    let reply = "";
    s.on("data", (d) => (reply += d));
    s.on("error", () => undefined);
    s.on("close", () => resolve({ reply, ms: Date.now() - t0 }));
  });
}

test("http: an oversized body gets 413 naming the limit (not a reset), unauthenticated bodies are not read", async () => {
  await withServer(async (url) => {
    const declared = await rawRequest(
      url,
      `POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: ${MAX_BODY + 1}\r\n\r\n`,
    );
    assert.match(declared.reply, /^HTTP\/1.1 413/);
    assert.match(declared.reply, `request body larger than ${MAX_BODY} bytes`);
    const chunked = await rawRequest(
      url,
      `POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n` +
        `${(MAX_BODY + 16).toString(16)}\r\n`,
      MAX_BODY + 16,
    );
    assert.match(chunked.reply, /^HTTP\/1.1 413/);
    const anon = await rawRequest(url, `POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: ${MAX_BODY}\r\n\r\n`, 1 << 20);
    assert.match(anon.reply, /^HTTP\/1.1 401/);
    // the server still serves
    assert.is((await post(url, '{"jsonrpc":"2.0","id":1,"method":"echo"}')).status, 200);
  });
});

test("http: slow or idle clients are dropped; a slow handler is not cut off", async () => {
  await withServer(
    async (url) => {
      const slowHeaders = rawRequest(url, "POST /rpc HTTP/1.1\r\nHost: x\r\n");
      const idle = rawRequest(url, "");
      const slowBody = rawRequest(
        url,
        `POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 100\r\n\r\n{`,
      );
      const slowHandler = post(url, '{"jsonrpc":"2.0","id":1,"method":"slow"}');
      for (const p of [slowHeaders, idle, slowBody]) {
        const r = await p;
        assert.ok(r.ms < 4_000, `dropped after ${r.ms} ms`);
      }
      assert.equal(await (await slowHandler).json(), { jsonrpc: "2.0", id: 1, result: "late" });
    },
    { headersTimeoutMs: 300, requestTimeoutMs: 600 },
  );
});

test("http: a batch longer than the limit is refused whole, naming the limit", async () => {
  await withServer(async (url) => {
    const calls = Array.from({ length: MAX_BATCH + 1 }, (_, i) => ({ jsonrpc: "2.0", id: i, method: "echo" }));
    const r: any = await (await post(url, JSON.stringify(calls))).json();
    assert.is(r.error.code, -32600);
    assert.match(r.error.message, `at most ${MAX_BATCH} per request`);
    const ok: any = await (await post(url, JSON.stringify(calls.slice(0, MAX_BATCH)))).json();
    assert.is(ok.length, MAX_BATCH);
  });
});

test("http: a port in use is named with the fix", async () => {
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, "127.0.0.1", () => r()));
  const port = (taken.address() as net.AddressInfo).port;
  const server = createAgentServer({
    token: TOKEN,
    rpc: new RpcDispatcher(),
    metrics: new AgentMetrics(async () => []),
    log: nullLogger,
    health: async () => ({ ok: true }),
  });
  try {
    await listen(server, "127.0.0.1", port);
    assert.unreachable();
  } catch (e) {
    assert.match(
      (e as Error).message,
      `cannot listen on 127.0.0.1:${port} (EADDRINUSE: another process uses this port); choose another address with --listen`,
    );
  } finally {
    await new Promise((r) => taken.close(r));
  }
});

test("http: /metrics in Prometheus text with function stats", async () => {
  await withServer(async (url) => {
    await post(url, '{"jsonrpc":"2.0","id":1,"method":"echo"}');
    const res = await fetch(`${url}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.is(res.status, 200);
    const text = await res.text();
    assert.match(text, 'flexbso_agent_rpc_requests_total{method="echo",code="0"} 1');
    const fn = 'dpu="d0",function="vm1",tenant="alice"';
    assert.match(text, `flexbso_function_write_bytes_total{${fn}} 6`);
    assert.match(text, `flexbso_function_read_ops_total{${fn}} 3`);
    assert.match(text, `flexbso_function_io_errors_total{${fn}} 1`);
    assert.match(text, `flexbso_function_connections{${fn}} 2`);
    assert.match(text, "# TYPE flexbso_function_io_latency_seconds histogram");
    // cumulative: 2 samples of 20 µs, 1 of 3 ms
    assert.match(text, `flexbso_function_io_latency_seconds_bucket{le="0.00001",${fn}} 0`);
    assert.match(text, `flexbso_function_io_latency_seconds_bucket{le="0.000025",${fn}} 2`);
    assert.match(text, `flexbso_function_io_latency_seconds_bucket{le="0.0025",${fn}} 2`);
    assert.match(text, `flexbso_function_io_latency_seconds_bucket{le="0.005",${fn}} 3`);
    assert.match(text, `flexbso_function_io_latency_seconds_bucket{le="+Inf",${fn}} 3`);
    assert.match(text, `flexbso_function_io_latency_seconds_sum{${fn}} 0.00304`);
    assert.match(text, `flexbso_function_io_latency_seconds_count{${fn}} 3`);
    assert.not.match(text, "pf0vf1", "export names are not labels");
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
  try {
    resolveAgentConfig({ limits: 5, target: [1], log: "debug" });
    assert.unreachable();
  } catch (e) {
    assert.instance(e, AgentConfigError);
    assert.equal((e as AgentConfigError).problems, [
      "limits: must be a mapping like { pfs: 2, vfsPerPf: 16 } (got 5)",
      "target: must be a mapping like { mode: spawn } (got [1])",
      'log: must be a mapping like { level: info } (got "debug")',
    ]);
  }
  // file bdevs live under dataDir: it may not hold the agent's own state or sockets
  assert.is(resolveAgentConfig({ stateDir: "/s", runDir: "/r" }).dataDir, "/s/files");
  for (const [conf, problem] of [
    [{ stateDir: "/s", runDir: "/r", dataDir: "/s" }, "dataDir: /s holds the stateDir /s"],
    [{ stateDir: "/v/s", runDir: "/r", dataDir: "/v" }, "dataDir: /v holds the stateDir /v/s"],
    [{ stateDir: "/s", runDir: "/d/run", dataDir: "/d" }, "dataDir: /d holds the runDir /d/run"],
  ] as const) {
    try {
      resolveAgentConfig(conf);
      assert.unreachable(JSON.stringify(conf));
    } catch (e) {
      assert.instance(e, AgentConfigError);
      assert.match((e as AgentConfigError).problems.join("\n"), problem);
    }
  }
});

test("config: YAML file with overrides, paths relative to the file", async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "fb-cfg-"));
  const file = path.join(dir, "agent.yaml");
  await fsp.writeFile(
    file,
    "listen: 127.0.0.1:22555\nstateDir: state\nrunDir: run\nlimits: { pfs: 4, vfsPerPf: 32 }\ntarget: { mode: attach, socket: /tmp/x.sock }\nlog: { level: debug }\n",
  );
  const c = await loadAgentConfig(file, { dpu: "edge1" });
  assert.is(c.port, 22555);
  assert.is(c.stateDir, path.join(dir, "state"));
  assert.is(c.dataDir, path.join(dir, "state", "files"));
  assert.equal(c.limits, { pfs: 4, vfsPerPf: 32 });
  assert.is(c.target.mode, "attach");
  assert.is(c.dpu, "edge1");
  assert.is(c.logLevel, "debug");
  await fsp.writeFile(file, "- listen: 127.0.0.1:1\n");
  try {
    await loadAgentConfig(file);
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, "config must be a mapping of listen, dpu");
  }
  await fsp.writeFile(file, "listen: [oops\n");
  try {
    await loadAgentConfig(file);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, AgentConfigError);
  }
});

test.run();
