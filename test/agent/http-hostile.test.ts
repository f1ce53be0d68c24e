/**
 * The agent's HTTP front against unauthenticated peers (issue 12 item 7): idle
 * connections cannot take the slots an authenticated client needs, they are closed at
 * the authentication deadline, and /healthz tells them only whether the agent is up.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as http from "node:http";
import * as net from "node:net";
import { createAgentServer, listen, MAX_CONNECTIONS } from "../../lib/agent/http.js";
import { RpcDispatcher } from "../../lib/agent/jsonrpc.js";
import { AgentMetrics } from "../../lib/agent/metrics.js";
import { nullLogger } from "../../lib/agent/log.js";

const TOKEN = "s3cret";
const READ = "r34d";

async function withServer(
  fn: (port: number) => Promise<void>,
  limits: { headersTimeoutMs?: number; requestTimeoutMs?: number; authDeadlineMs?: number },
): Promise<void> {
  const metrics = new AgentMetrics(async () => []);
  const rpc = new RpcDispatcher(() => undefined);
  rpc.register("echo", async (p) => p);
  rpc.register("topology.get", async () => ({ generation: 7 }));
  rpc.register("topology.apply", async () => ({ applied: [] }));
  const server = createAgentServer(
    {
      token: TOKEN,
      readToken: READ,
      rpc,
      metrics,
      log: nullLogger,
      health: async () => ({ ok: true, dpu: "dpu0", generation: 7, target: "up" }),
    },
    limits,
  );
  const port = await listen(server, "0.0.0.0", 0);
  try {
    await fn(port);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

/** An authenticated JSON-RPC call from `localAddress`; rejects on a dropped connection. */
function rpcFrom(port: number, localAddress: string, token = TOKEN): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const body = '{"jsonrpc":"2.0","id":1,"method":"echo","params":{"x":1}}';
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        path: "/rpc",
        method: "POST",
        localAddress,
        agent: false,
        timeout: 20_000,
        headers: {
          Authorization: `Bearer ${token}`,
          "Content-Type": "application/json",
          "Content-Length": Buffer.byteLength(body),
        },
      },
      (res) => {
        let text = "";
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode!, body: text }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("no answer within 20 s")));
    req.on("error", reject);
    req.end(body);
  });
}

/** Open an idle connection (sends nothing) from `localAddress`. */
function idle(port: number, localAddress: string, sockets: net.Socket[]): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port, localAddress });
    sockets.push(s);
    s.on("error", () => undefined);
    s.once("connect", () => resolve());
    s.once("close", () => resolve());
  });
}

test("idle unauthenticated connections, from one address or many, do not lock an authenticated client out", async () => {
  await withServer(
    async (port) => {
      const sockets: net.Socket[] = [];
      try {
        const n = MAX_CONNECTIONS + 60;
        // half from one address, half spread over 20 addresses
        for (let i = 0; i < n; i++) await idle(port, i % 2 ? "127.0.0.1" : `127.0.1.${1 + (i % 20)}`, sockets);
        const r = await rpcFrom(port, "127.0.0.2");
        assert.is(r.status, 200, r.body);
        assert.equal(JSON.parse(r.body).result, { x: 1 });
      } finally {
        for (const s of sockets) s.destroy();
      }
    },
    { headersTimeoutMs: 60_000 },
  );
});

test("a connection that does not authenticate is closed at the deadline", async () => {
  await withServer(
    async (port) => {
      const s = net.connect({ host: "127.0.0.1", port });
      s.on("error", () => undefined);
      const closed = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), 10_000);
        s.once("close", () => {
          clearTimeout(t);
          resolve(true);
        });
      });
      s.destroy();
      assert.ok(closed, "an idle unauthenticated connection was still open after 10 s (deadline 200 ms)");
      // an authenticated client is served past the deadline on its connection
      assert.is((await rpcFrom(port, "127.0.0.1")).status, 200);
    },
    { headersTimeoutMs: 60_000, requestTimeoutMs: 60_000, authDeadlineMs: 200 },
  );
});

test("/healthz without the token says only whether the agent is up; with it, the details", async () => {
  await withServer(async (port) => {
    const open = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.is(open.status, 200);
    assert.equal(await open.json(), { ok: true });
    const authed = await fetch(`http://127.0.0.1:${port}/healthz`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(await authed.json(), { ok: true, dpu: "dpu0", generation: 7, target: "up" });
  }, {});
});

test("the read token reads (topology.get, /metrics) but cannot apply; the admin token can", async () => {
  await withServer(async (port) => {
    const call = async (token: string, method: string) =>
      (
        await fetch(`http://127.0.0.1:${port}/rpc`, {
          method: "POST",
          headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
          body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params: {} }),
        })
      ).json() as Promise<any>;
    assert.equal((await call(READ, "topology.get")).result, { generation: 7 });
    const refused = await call(READ, "topology.apply");
    assert.is(refused.error.code, -32009);
    assert.match(refused.error.message, "topology.apply needs the agent's admin token ('token' in its state dir)");
    // a batch cannot smuggle a write past the read token
    const batch = (await (
      await fetch(`http://127.0.0.1:${port}/rpc`, {
        method: "POST",
        headers: { Authorization: `Bearer ${READ}`, "Content-Type": "application/json" },
        body: JSON.stringify([
          { jsonrpc: "2.0", id: 1, method: "topology.get" },
          { jsonrpc: "2.0", id: 2, method: "topology.apply", params: {} },
        ]),
      })
    ).json()) as any[];
    assert.equal(
      batch.map((r) => r.error?.code ?? "ok"),
      ["ok", -32009],
    );
    assert.is(
      (await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { Authorization: `Bearer ${READ}` } })).status,
      200,
    );
    assert.equal((await call(TOKEN, "topology.apply")).result, { applied: [] });
    assert.is(
      (
        await fetch(`http://127.0.0.1:${port}/rpc`, {
          method: "POST",
          headers: { Authorization: "Bearer wrong" },
          body: "{}",
        })
      ).status,
      401,
    );
  }, {});
});

test.run();
