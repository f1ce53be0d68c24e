/**
 * The agent's HTTP front writes answers with the shared layer's serializer, so request
 * ids are echoed exactly, as the engine echoes them (numbers beyond 2^53 included).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createAgentServer, listen } from "../../lib/agent/http.js";
import { RpcDispatcher } from "../../lib/agent/jsonrpc.js";
import { AgentMetrics } from "../../lib/agent/metrics.js";
import { nullLogger } from "../../lib/agent/log.js";

test("http: ids are echoed exactly, in single calls and batches", async () => {
  const rpc = new RpcDispatcher();
  rpc.register("echo", async (p) => p);
  const server = createAgentServer({
    token: "t",
    rpc,
    metrics: new AgentMetrics(async () => []),
    log: nullLogger,
    health: async () => ({ ok: true }),
  });
  const port = await listen(server, "127.0.0.1", 0);
  const post = async (body: string) =>
    (
      await fetch(`http://127.0.0.1:${port}/rpc`, { method: "POST", body, headers: { Authorization: "Bearer t" } })
    ).text();
  try {
    assert.is(
      await post('{"jsonrpc":"2.0","id":18446744073709551615,"method":"echo","params":{"a":1}}'),
      '{"jsonrpc":"2.0","id":18446744073709551615,"result":{"a":1}}\n',
    );
    assert.is(
      await post('[{"jsonrpc":"2.0","id":-1e3,"method":"echo"},{"jsonrpc":"2.0","id":"x","method":"nope"}]'),
      '[{"jsonrpc":"2.0","id":-1e3,"result":{}},' +
        (await post('{"jsonrpc":"2.0","id":"x","method":"nope"}')).trim() +
        "]\n",
    );
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test.run();
