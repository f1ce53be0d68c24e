/**
 * NBD connection caps (issue 12): one client opening thousands of
 * connections, over a unix socket (a client is a uid there) and over TCP (a
 * client is an IP address), under a 1 024-descriptor limit, locks out
 * neither another client nor the RPC socket. The other clients are real:
 * qemu-io as uid nobody on the unix socket, and from 127.0.0.1 on TCP while
 * the attacker connects from 127.0.0.2; both write and verify a pattern.
 */
import * as fs from "node:fs";
import * as net from "node:net";
import { test } from "uvu";
import * as assert from "uvu/assert";

import { exportMalloc, rpcOnce, tcpPort, withEngine } from "./helpers/engine";
import { requireTools, runTool } from "./helpers/proc";

const MiB = 1 << 20;
const ATTEMPTS = 2000;

test.before(() => requireTools("prlimit", "qemu-io", "setpriv"));

/** Opens up to `n` connections one after another; returns those the engine has not closed. */
async function flood(n: number, opts: net.NetConnectOpts): Promise<Set<net.Socket>> {
  const open = new Set<net.Socket>();
  for (let i = 0; i < n; i++) {
    const s = await new Promise<net.Socket | undefined>((resolve) => {
      const c = net.createConnection(opts);
      c.once("connect", () => resolve(c));
      c.once("error", () => resolve(undefined));
    });
    if (!s) continue;
    s.on("error", () => undefined);
    s.on("close", () => open.delete(s));
    s.resume(); // read the greeting, so a close by the engine is seen
    open.add(s);
  }
  // Let the engine accept (or refuse) the last ones.
  await new Promise((r) => setTimeout(r, 1000));
  return open;
}

/** qemu-io (started by `argv`) writes a pattern and reads it back (-P checks every byte). */
async function verifiedIo(argv: readonly string[], uri: string, pattern: number): Promise<void> {
  const p = `0x${pattern.toString(16)}`;
  const [cmd, ...pre] = argv;
  const r = await runTool(cmd!, [...pre, "-f", "raw", uri, "-c", `write -P ${p} 0 64k`, "-c", `read -P ${p} 0 64k`], {
    timeoutMs: 30_000,
  });
  assert.not.match(r.stdout, /Pattern verification failed|error/i, r.stdout);
  assert.match(r.stdout, /read 65536\/65536 bytes/);
}

test("thousands of NBD connections from one client lock out neither another client nor the RPC socket", () =>
  withEngine(async (eng) => {
    const { socket, uri } = await exportMalloc(eng, "x", 16 * MiB);
    const port = await tcpPort();
    await eng.call("bdev_malloc_create", { name: "y", num_blocks: (16 * MiB) / 4096, block_size: 4096 });
    await eng.call("flexbso_nbd_export_add", { export_name: "y", bdev_name: "y", listen: `tcp:127.0.0.1:${port}` });
    await runTool("prlimit", ["--pid", String(eng.pid), "--nofile=1024:1024"]);
    // The other unix client runs as nobody: let it reach the socket.
    fs.chmodSync(eng.dir, 0o755);
    fs.chmodSync(socket, 0o666);
    const attackers: Set<net.Socket>[] = [];
    try {
      attackers.push(await flood(ATTEMPTS, { path: socket }));
      attackers.push(await flood(ATTEMPTS, { host: "127.0.0.1", port, localAddress: "127.0.0.2" }));
      // Each attacker keeps at most its cap: 256, or a quarter of the
      // descriptors the 1 024 limit leaves after the reserve of 128 (224).
      for (const a of attackers) assert.ok(a.size > 0 && a.size <= 224, `attacker holds ${a.size} connections`);
      await verifiedIo(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "qemu-io"], uri, 0x5a);
      await verifiedIo(["qemu-io"], `nbd://127.0.0.1:${port}/y`, 0xa5);
      const reply = await rpcOnce(eng.socketPath, '{"jsonrpc":"2.0","method":"bdev_get_bdevs","id":1}');
      const bdevs = (JSON.parse(reply) as { result: { name: string }[] }).result;
      assert.equal(bdevs.map((b) => b.name).sort(), ["x", "y"]);
      assert.match(eng.logs(), /nbd_max_conns_per_client/);
    } finally {
      for (const a of attackers) for (const s of a) s.destroy();
    }
    assert.is((await eng.stop()).code, 0);
  }));

test.run();
