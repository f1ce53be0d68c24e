/**
 * The engine's JSON-RPC server and the SPDK RPC client, in process, over a
 * real unix socket, with a small method table of their own (no native engine):
 * SPDK wire framing, error codes, param validation messages, several
 * connections, parse errors that close one connection only, client timeouts
 * and reconnects.
 */
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";

import { RpcError, RpcTransportError, SpdkRpcClient } from "../../lib/client/spdk-rpc";
import { JsonValueSplitter } from "../../lib/client/spdk-rpc-stream";
import { createLogger } from "../../lib/engine/log";
import { defineMethod, RpcDispatcher, type RpcMethod } from "../../lib/engine/rpc/dispatcher";
import { errnoFailure } from "../../lib/engine/rpc/failure";
import { RpcSocketServer } from "../../lib/engine/rpc/server";
import { makeTempDir } from "./helpers/engine";

interface Ctx {
  names: Set<string>;
}

const METHODS: RpcMethod<Ctx>[] = [
  defineMethod<{ name: string; num_blocks: number }, Ctx>({
    name: "thing_create",
    description: "test",
    params: {
      properties: {
        name: { type: "string", minLength: 1, hint: 'a name, e.g. "T0"' },
        num_blocks: { type: "integer", minimum: 1, hint: "a positive integer, e.g. 8" },
      },
      required: ["name", "num_blocks"],
    },
    handler: (p, ctx) => {
      if (ctx.names.has(p.name)) throw errnoFailure("EEXIST", `thing '${p.name}' already exists`);
      ctx.names.add(p.name);
      return p.name;
    },
  }),
  defineMethod<{ ms: number }, Ctx>({
    name: "sleep",
    description: "test",
    params: { properties: { ms: { type: "integer", minimum: 0, hint: "milliseconds" } }, required: ["ms"] },
    handler: async (p) => {
      await new Promise((r) => setTimeout(r, p.ms));
      return p.ms;
    },
  }),
  defineMethod<Record<string, never>, Ctx>({
    name: "boom",
    description: "test",
    params: { properties: {} },
    handler: () => {
      throw Object.assign(new Error("engine said no: bdev busy"), { code: "EBUSY", errno: -16 });
    },
  }),
];

interface Fixture {
  dir: string;
  sock: string;
  server: RpcSocketServer<Ctx>;
}

async function serve(): Promise<Fixture> {
  const dir = makeTempDir();
  const sock = path.join(dir, "rpc.sock");
  const log = createLogger({ level: "error", write: () => undefined });
  const server = new RpcSocketServer(new RpcDispatcher(METHODS, { names: new Set<string>() }, log), log);
  await server.listen(sock);
  return { dir, sock, server };
}

async function teardown(f: Fixture): Promise<void> {
  await f.server.close();
  fs.rmSync(f.dir, { recursive: true, force: true });
}

/**
 * Writes `chunks` (each after a tick) on a raw connection and collects
 * responses until `count` arrived or the server closed the connection.
 */
function raw(
  sock: string,
  chunks: (string | Buffer)[],
  count: number,
  timeoutMs = 3000,
): Promise<{ values: unknown[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection({ path: sock });
    const sp = new JsonValueSplitter();
    const values: unknown[] = [];
    let closed = false;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`timeout: got ${values.length}/${count}: ${JSON.stringify(values)}`));
    }, timeoutMs);
    const finish = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve({ values, closed });
    };
    s.on("data", (d: Buffer) => {
      for (const v of sp.push(d)) {
        if (!v.ok) return reject(v.error);
        values.push(v.value);
      }
      if (values.length >= count && count > 0) finish();
    });
    s.on("end", () => {
      closed = true;
      finish();
    });
    s.on("error", reject);
    s.on("connect", async () => {
      for (const c of chunks) {
        s.write(c);
        await new Promise((r) => setImmediate(r));
      }
      if (count === 0) setTimeout(finish, 200);
    });
  });
}

const req = (id: number, method: string, params?: object): string =>
  JSON.stringify({ jsonrpc: "2.0", id, method, ...(params !== undefined ? { params } : {}) });

test("splitter: values back to back, split anywhere, strings with braces and escapes", () => {
  const text = '{"a":"}{\\"[","b":[1,{"c":2}]}  \n[1,2]{"x":"\\\\"}"str" 42 ';
  for (let cut = 1; cut < text.length; cut++) {
    const sp = new JsonValueSplitter();
    const got = [...sp.push(Buffer.from(text.slice(0, cut))), ...sp.push(Buffer.from(text.slice(cut)))];
    const end = sp.end();
    const all = [...got, ...(end !== undefined ? [end] : [])];
    assert.equal(
      all.map((v) => (v.ok ? v.value : v.error.message)),
      [{ a: '}{"[', b: [1, { c: 2 }] }, [1, 2], { x: "\\" }, "str", 42],
      `cut at ${cut}`,
    );
  }
});

test("splitter: malformed input and size limit are errors", () => {
  const bad = new JsonValueSplitter().push(Buffer.from('{"a":tru}'));
  assert.is(bad.length, 1);
  assert.is(bad[0]!.ok, false);
  const close = new JsonValueSplitter().push(Buffer.from("}"));
  assert.is(close[0]!.ok, false);
  const big = new JsonValueSplitter({ maxValueBytes: 100 }).push(Buffer.from(`{"a":"${"x".repeat(200)}`));
  assert.is(big[0]!.ok, false);
  assert.is(!big[0]!.ok && big[0]!.error.code, "E2BIG");
  const truncated = new JsonValueSplitter();
  truncated.push(Buffer.from('{"a":'));
  const end = truncated.end();
  assert.ok(end !== undefined && !end.ok, "a value cut by EOF is an error");
});

test("server: several requests in one write, answered in order; one request split byte by byte", async () => {
  const f = await serve();
  try {
    const one = await raw(
      f.sock,
      [req(1, "sleep", { ms: 30 }) + req(2, "sleep", { ms: 0 }) + req(3, "thing_create", { name: "A", num_blocks: 1 })],
      3,
    );
    assert.equal(
      one.values.map((v) => (v as { id: number }).id),
      [1, 2, 3],
    );
    assert.equal((one.values[2] as { result: string }).result, "A");
    const text = req(7, "thing_create", { name: "B", num_blocks: 2 });
    const split = await raw(
      f.sock,
      [...text].map((ch) => ch),
      1,
    );
    assert.equal(split.values, [{ jsonrpc: "2.0", id: 7, result: "B" }]);
  } finally {
    await teardown(f);
  }
});

test("server: pretty-printed requests as rpc.py sends them, batches, notifications", async () => {
  const f = await serve();
  try {
    const pretty = JSON.stringify(
      { jsonrpc: "2.0", method: "thing_create", id: 1, params: { name: "P", num_blocks: 1 } },
      null,
      2,
    );
    const r = await raw(f.sock, [`${pretty}\n`], 1);
    assert.equal((r.values[0] as { result: string }).result, "P");
    // A notification (no id) is executed but not answered; the next request is.
    const n = await raw(
      f.sock,
      [
        JSON.stringify({ jsonrpc: "2.0", method: "thing_create", params: { name: "N", num_blocks: 1 } }),
        req(2, "thing_create", { name: "N", num_blocks: 1 }),
      ],
      1,
    );
    assert.equal(
      (n.values[0] as { id: number; error: { code: number } }).error.code,
      -17,
      "the notification created N",
    );
    const batch = await raw(f.sock, [`[${req(3, "sleep", { ms: 0 })},${req(4, "nope")}]`], 1);
    const arr = batch.values[0] as { id: number; result?: unknown; error?: { code: number } }[];
    assert.ok(Array.isArray(arr));
    assert.equal(
      arr.map((x) => x.id),
      [3, 4],
    );
    assert.is(arr[1]!.error!.code, -32601);
    const empty = await raw(f.sock, ["[]"], 1);
    assert.is((empty.values[0] as { error: { code: number } }).error.code, -32600);
  } finally {
    await teardown(f);
  }
});

test("server: invalid requests get -32600 and the connection stays usable", async () => {
  const f = await serve();
  try {
    const r = await raw(
      f.sock,
      [
        JSON.stringify({ jsonrpc: "2.0", id: 1 }),
        JSON.stringify({ jsonrpc: "1.0", id: 2, method: "sleep", params: { ms: 0 } }),
        JSON.stringify({ id: { x: 1 }, method: "sleep" }),
        JSON.stringify({ id: 4, method: "sleep", params: 5 }),
        "17",
        req(6, "sleep", { ms: 0 }),
      ],
      6,
    );
    const codes = r.values.map((v) =>
      "error" in (v as object) ? (v as { error: { code: number } }).error.code : "ok",
    );
    assert.equal(codes, [-32600, -32600, -32600, -32600, -32600, "ok"]);
    assert.is(r.closed, false);
  } finally {
    await teardown(f);
  }
});

test("server: unknown method -32601 names it; bad params -32602 (undecodable) or -22 (refused value) name the param and the fix", async () => {
  const f = await serve();
  try {
    const r = await raw(
      f.sock,
      [
        req(1, "bdev_frobnicate"),
        req(2, "thing_create", { name: "X" }),
        req(3, "thing_create", { name: "X", num_blocks: "lots" }),
        req(4, "thing_create", { name: "X", num_blocks: 0 }),
        req(5, "thing_create", { name: "X", num_blocks: 1, colour: "red" }),
        JSON.stringify({ id: 6, method: "thing_create", params: ["X", 1] }),
        req(7, "boom"),
      ],
      7,
    );
    const errs = r.values.map((v) => (v as { error: { code: number; message: string } }).error);
    assert.is(errs[0]!.code, -32601);
    assert.match(errs[0]!.message, "bdev_frobnicate");
    assert.match(errs[0]!.message, "rpc_get_methods");
    assert.equal(
      errs.slice(1, 6).map((e) => e.code),
      [-32602, -32602, -22, -32602, -32602],
    );
    assert.match(
      errs[1]!.message,
      /Missing required parameter 'num_blocks'.*Fix: add "num_blocks": a positive integer/,
    );
    assert.match(
      errs[2]!.message,
      /Invalid parameter 'num_blocks': must be an integer, got the string "lots"\. Fix: pass/,
    );
    assert.match(errs[3]!.message, /Invalid parameter 'num_blocks': must be >= 1, got 0/);
    assert.match(errs[4]!.message, /Unknown parameter 'colour'. Fix: remove it; thing_create accepts name, num_blocks/);
    assert.match(errs[5]!.message, /named params/);
    assert.is(errs[6]!.code, -16, "an engine EBUSY is -16");
    assert.match(errs[6]!.message, "bdev busy");
  } finally {
    await teardown(f);
  }
});

test("server: ids are echoed exactly: integers beyond 2^53, negative, exponent forms, strings, null", async () => {
  const f = await serve();
  try {
    const ids = [
      "18446744073709551615",
      "9007199254740993",
      "-12345678901234567890123",
      "1e3",
      "1.50",
      "7",
      '"7"',
      '"a\\u00e9\\"b"',
      "null",
    ];
    const text = ids.map((id) => `{"jsonrpc":"2.0","id":${id},"method":"sleep","params":{"ms":0}}`).join("\n");
    const lines = await new Promise<string[]>((resolve, reject) => {
      const s = net.createConnection({ path: f.sock });
      let out = "";
      s.setEncoding("utf8");
      s.on("data", (d: string) => (out += d));
      s.on("end", () => resolve(out.trim().split("\n")));
      s.on("error", reject);
      s.on("connect", () => s.end(text));
    });
    assert.is(lines.length, ids.length);
    // Compare source text: a JavaScript parse of the answer would round the big numbers.
    for (let i = 0; i < ids.length; i++) {
      const idText = /^\{"jsonrpc":"2\.0","id":(.*),"result":0\}$/.exec(lines[i]!)?.[1];
      const expect = ids[i]!.startsWith('"') ? JSON.stringify(JSON.parse(ids[i]!)) : ids[i];
      assert.is(idText, expect, lines[i]);
    }
    // Inside a batch, and for an error answer, too.
    const batch = await new Promise<string>((resolve, reject) => {
      const s = net.createConnection({ path: f.sock });
      let out = "";
      s.setEncoding("utf8");
      s.on("data", (d: string) => (out += d));
      s.on("end", () => resolve(out.trim()));
      s.on("error", reject);
      s.on("connect", () =>
        s.end(
          '[{"id":123456789012345678901,"method":"sleep","params":{"ms":0}}, {"id": 98765432109876543210 , "method":"nope"}]',
        ),
      );
    });
    assert.match(
      batch,
      /^\[\{"jsonrpc":"2\.0","id":123456789012345678901,"result":0\},\{"jsonrpc":"2\.0","id":98765432109876543210,"error":\{"code":-32601,/,
    );
    // Only the request's own "id" counts: not one inside params, nor a key that merely contains "id".
    const nested = await new Promise<string>((resolve, reject) => {
      const s = net.createConnection({ path: f.sock });
      let out = "";
      s.setEncoding("utf8");
      s.on("data", (d: string) => (out += d));
      s.on("end", () => resolve(out.trim()));
      s.on("error", reject);
      s.on("connect", () =>
        s.end(String.raw`{"method":"sleep","params":{"ms":0,"id":7},"\"id":1,"id" : 18446744073709551616}`),
      );
    });
    assert.match(
      nested,
      /^\{"jsonrpc":"2\.0","id":18446744073709551616,"error":\{"code":-32602,"message":"Unknown parameter 'id'/,
    );
  } finally {
    await teardown(f);
  }
});

test("server: notifications get no answer, whether they succeed or fail; invalid requests still do", async () => {
  const f = await serve();
  try {
    const note = (method: string, params?: object): string =>
      JSON.stringify({ jsonrpc: "2.0", method, ...(params !== undefined ? { params } : {}) });
    const r = await raw(
      f.sock,
      [
        note("thing_create", { name: "N1", num_blocks: 1 }), // succeeds
        note("thing_create", { name: "N1", num_blocks: 1 }), // -17
        note("thing_create", { name: "N2" }), // -32602
        note("no_such_method"), // -32601
        note("boom"), // -16
        `[${note("no_such_method")},${note("thing_create", { name: "N3", num_blocks: 0 })}]`, // a batch of failing notifications
        JSON.stringify({ jsonrpc: "2.0", method: 42 }), // invalid request: answered, id null
        req(9, "thing_create", { name: "N1", num_blocks: 1 }),
      ],
      2,
    );
    assert.is(r.values.length, 2, JSON.stringify(r.values));
    assert.equal(r.values[0], {
      jsonrpc: "2.0",
      id: null,
      error: { code: -32600, message: 'Invalid request: "method" must be a string' },
    });
    assert.is((r.values[1] as { id: number }).id, 9);
    assert.is((r.values[1] as { error: { code: number } }).error.code, -17, "the first notification ran");
  } finally {
    await teardown(f);
  }
});

test("server: malformed JSON gets -32700 and closes that connection only", async () => {
  const f = await serve();
  try {
    const other = new SpdkRpcClient({ socketPath: f.sock });
    await other.call("thing_create", { name: "before", num_blocks: 1 });
    const bad = await raw(
      f.sock,
      [req(1, "sleep", { ms: 0 }), '{"jsonrpc": "2.0", "id": 2, "method": nope}', req(3, "sleep", { ms: 0 })],
      0,
      3000,
    );
    assert.is(bad.values.length, 2, "the request before the garbage is answered, then the parse error");
    assert.is((bad.values[0] as { id: number }).id, 1);
    assert.equal((bad.values[1] as { id: null; error: { code: number } }).error.code, -32700);
    assert.is((bad.values[1] as { id: null }).id, null);
    assert.ok(bad.closed, "the server closed the connection after the parse error");
    // Garbage that is not JSON at all.
    const junk = await raw(f.sock, [Buffer.from([0x00, 0xff, 0x7d, 0x10])], 0);
    assert.is((junk.values[0] as { error: { code: number } }).error.code, -32700);
    assert.ok(junk.closed);
    // The other connection is still served.
    assert.is(await other.call("thing_create", { name: "after", num_blocks: 1 }), "after");
    await other.close();
  } finally {
    await teardown(f);
  }
});

test("server: a client that sends and half-closes (like `nc -U`) still gets its answers", async () => {
  const f = await serve();
  try {
    const text = await new Promise<string>((resolve, reject) => {
      const s = net.createConnection({ path: f.sock });
      let out = "";
      s.setEncoding("utf8");
      s.on("data", (d: string) => (out += d));
      s.on("end", () => resolve(out));
      s.on("error", reject);
      // The last value is a bare scalar ended only by EOF: complete, and an invalid request.
      s.on("connect", () => s.end(`${req(1, "sleep", { ms: 20 })}${req(2, "sleep", { ms: 0 })} 5`));
    });
    const answers = text
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { id: unknown; error?: { code: number } });
    assert.equal(
      answers.map((a) => a.id),
      [1, 2, null],
    );
    assert.is(answers[2]!.error!.code, -32600);
  } finally {
    await teardown(f);
  }
});

test("server: many connections at once, each answered", async () => {
  const f = await serve();
  try {
    const clients = Array.from({ length: 16 }, () => new SpdkRpcClient({ socketPath: f.sock }));
    const names = await Promise.all(
      clients.map((c, i) => c.call<string>("thing_create", { name: `c${i}`, num_blocks: 1 })),
    );
    assert.equal(
      names,
      clients.map((_, i) => `c${i}`),
    );
    await Promise.all(clients.map((c) => c.close()));
  } finally {
    await teardown(f);
  }
});

test("client: typed RpcError, timeout, missing socket, reconnect after the server restarts", async () => {
  const f = await serve();
  const client = new SpdkRpcClient({ socketPath: f.sock, timeoutMs: 200 });
  try {
    await client.call("thing_create", { name: "dup", num_blocks: 1 });
    const dup = await client.call("thing_create", { name: "dup", num_blocks: 1 }).catch((e: unknown) => e);
    assert.instance(dup, RpcError);
    assert.is((dup as RpcError).code, -17);
    assert.is((dup as RpcError).method, "thing_create");
    assert.match((dup as RpcError).rpcMessage, "thing 'dup' already exists");
    const slow = await client.call("sleep", { ms: 1000 }).catch((e: unknown) => e);
    assert.instance(slow, RpcTransportError);
    assert.is((slow as RpcTransportError).code, "ETIMEDOUT");
    // The late answer to the timed-out call is ignored; the next call works.
    assert.is(await client.call("sleep", { ms: 0 }, { timeoutMs: 3000 }), 0);
    // Server goes away: the call fails with a transport error; when it is back, the client reconnects.
    await f.server.close();
    const gone = await client.call("sleep", { ms: 0 }).catch((e: unknown) => e);
    assert.instance(gone, RpcTransportError);
    assert.ok(["ENOENT", "ECONNREFUSED", "ECONNRESET"].includes((gone as RpcTransportError).code), String(gone));
    const log = createLogger({ level: "error", write: () => undefined });
    f.server = new RpcSocketServer(new RpcDispatcher(METHODS, { names: new Set<string>() }, log), log);
    await f.server.listen(f.sock);
    assert.is(await client.call("thing_create", { name: "back", num_blocks: 1 }), "back");
    const none = new SpdkRpcClient({ socketPath: path.join(f.dir, "absent.sock") });
    const e = await none.call("sleep", { ms: 0 }).catch((x: unknown) => x);
    assert.instance(e, RpcTransportError);
    assert.is((e as RpcTransportError).code, "ENOENT");
    assert.match((e as Error).message, "is the target running");
  } finally {
    await client.close();
    await teardown(f);
  }
});

test.run();
