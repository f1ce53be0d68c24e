/**
 * The shared JSON-RPC layer (lib/rpc) under both servers' dialects: one
 * method table, declared params, the same answers except where the dialects
 * differ (the `jsonrpc` member, the code for a refused value).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";

import { AGENT_DIALECT } from "../../lib/agent/jsonrpc.js";
import { SPDK_DIALECT } from "../../lib/engine/rpc/dispatcher.js";
import {
  defineMethod,
  RpcDispatcher,
  serializeResponse,
  type RpcCallRecord,
  type RpcDialect,
} from "../../lib/rpc/dispatcher.js";

const METHODS = [
  defineMethod<{ n: number }, { calls: number }>({
    name: "thing_create",
    description: "test",
    params: { properties: { n: { type: "integer", minimum: 1, hint: "a positive integer" } }, required: ["n"] },
    handler: (p, ctx) => {
      ctx.calls++;
      return p.n;
    },
  }),
];

function make(dialect: RpcDialect) {
  const seen: RpcCallRecord[] = [];
  const ctx = { calls: 0 };
  const d = new RpcDispatcher(METHODS, { dialect, ctx, observe: (c) => seen.push(c) });
  const one = async (text: string) => JSON.parse(serializeResponse((await d.handleText(text))!));
  return { d, seen, ctx, one };
}

test("dialects: SPDK runs a request without jsonrpc, the agent refuses it", async () => {
  const spdk = make(SPDK_DIALECT);
  const agent = make(AGENT_DIALECT);
  const text = '{"id":1,"method":"thing_create","params":{"n":2}}';
  assert.equal(await spdk.one(text), { jsonrpc: "2.0", id: 1, result: 2 });
  assert.equal((await agent.one(text)).error, { code: -32600, message: 'Invalid request: "jsonrpc" must be "2.0"' });
  assert.is(agent.ctx.calls, 0);
});

test("dialects: a refused value is -22 in SPDK's, -32602 in the agent's; undecodable params -32602 in both", async () => {
  for (const [dialect, refused] of [
    [SPDK_DIALECT, -22],
    [AGENT_DIALECT, -32602],
  ] as const) {
    const { one } = make(dialect);
    const zero = await one('{"jsonrpc":"2.0","id":1,"method":"thing_create","params":{"n":0}}');
    assert.is(zero.error.code, refused);
    assert.is(zero.error.message, "Invalid parameter 'n': must be >= 1, got 0. Fix: pass a positive integer.");
    const word = await one('{"jsonrpc":"2.0","id":1,"method":"thing_create","params":{"n":"x"}}');
    assert.is(word.error.code, -32602);
  }
});

test("ids echoed exactly through handleText; notifications get nothing; calls observed", async () => {
  const { d, seen } = make(AGENT_DIALECT);
  const out = await d.handleText(
    '[{"jsonrpc":"2.0","id":18446744073709551615,"method":"thing_create","params":{"n":1}},{"jsonrpc":"2.0","method":"thing_create","params":{"n":1}}]',
  );
  assert.is(serializeResponse(out!), '[{"jsonrpc":"2.0","id":18446744073709551615,"result":1}]');
  assert.is(await d.handleText('{"jsonrpc":"2.0","method":"nope"}'), undefined);
  assert.equal(
    seen.map((c) => [c.method, c.known, c.code]),
    [
      ["thing_create", true, 0],
      ["thing_create", true, 0],
      ["nope", false, -32601],
    ],
  );
  const bad = await d.handleText("{nope");
  assert.is((bad as { error: { code: number } }).error.code, -32700);
  assert.is(seen.at(-1)!.method, "(parse)");
});

test("an unknown method is named with a suggestion and the list method", async () => {
  const { one } = make(SPDK_DIALECT);
  const r = await one('{"jsonrpc":"2.0","id":1,"method":"thing_creat"}');
  assert.is(r.error.code, -32601);
  assert.match(r.error.message, "did you mean 'thing_create'?");
  assert.match(r.error.message, "Fix: call rpc_get_methods");
});

test.run();
