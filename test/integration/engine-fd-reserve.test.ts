/**
 * File-descriptor reserve (issue 12): under a 1 024-descriptor limit
 * (prlimit on the engine process), one client opening 4 096 NBD connections
 * must not starve the engine's RPC socket: the engine refuses NBD
 * connections once fewer than 128 descriptors are left.
 */
import * as net from "node:net";
import { test } from "uvu";
import * as assert from "uvu/assert";

import { exportMalloc, rpcOnce, withEngine } from "./helpers/engine";
import { requireTools, runTool } from "./helpers/proc";

const MiB = 1 << 20;

test.before(() => requireTools("prlimit"));

function connect(path: string): Promise<net.Socket | undefined> {
  return new Promise((resolve) => {
    const s = net.createConnection({ path });
    s.once("connect", () => resolve(s));
    s.once("error", () => resolve(undefined));
  });
}

test("4 096 NBD connections under a 1 024 fd limit: the RPC socket keeps working", () =>
  withEngine(async (eng) => {
    const { socket } = await exportMalloc(eng, "x", 16 * MiB);
    await runTool("prlimit", ["--pid", String(eng.pid), "--nofile=1024:1024"]);
    const socks: net.Socket[] = [];
    try {
      for (let i = 0; i < 4096; i++) {
        const s = await connect(socket);
        if (s) {
          s.on("error", () => undefined);
          socks.push(s);
        }
      }
      // Let the engine accept (or refuse) them all.
      await new Promise((r) => setTimeout(r, 1000));
      // A new RPC connection (the helper's client keeps one open from the start).
      const reply = await rpcOnce(eng.socketPath, '{"jsonrpc":"2.0","method":"bdev_get_bdevs","id":1}');
      const bdevs = (JSON.parse(reply) as { result: { name: string }[] }).result;
      assert.equal(
        bdevs.map((b) => b.name),
        ["x"],
      );
    } finally {
      for (const s of socks) s.destroy();
    }
    assert.is((await eng.stop()).code, 0);
  }));

test.run();
