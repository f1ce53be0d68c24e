/**
 * NBD over TLS through the engine's RPC (issue 12): flexbso_nbd_export_add
 * with a tenant's PSK file on a TCP listener in TLS-required mode. qemu-io
 * with that tenant's key writes and reads back a pattern; another tenant's
 * key, or no TLS, gets nothing (no list, no open). The TLS params survive
 * framework_get_config, so a replayed config is as closed as the original,
 * and bad TLS params are refused naming the param.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";

import { makeTempDir, tcpPort, withEngine } from "./helpers/engine";
import { requireTools, runTool } from "./helpers/proc";

const MiB = 1 << 20;

test.before(() => requireTools("qemu-io", "nbdinfo"));

/** DIR/keys.psk with one `user:hexkey` line (qemu's tls-creds-psk reads DIR/keys.psk). */
function pskDir(user: string): string {
  const dir = makeTempDir("fbso-psk-");
  fs.writeFileSync(path.join(dir, "keys.psk"), `${user}:${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
  return dir;
}

function qemuIo(dir: string, user: string, port: number, cmds: readonly string[]) {
  return runTool(
    "qemu-io",
    [
      "--object",
      `tls-creds-psk,id=t0,endpoint=client,dir=${dir},username=${user}`,
      "--image-opts",
      `driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=${port},export=vol,tls-creds=t0`,
      ...cmds.flatMap((c) => ["-c", c]),
    ],
    { timeoutMs: 30_000, allowFailure: true },
  );
}

test("a TLS-required TCP export serves its tenant and nobody else", () =>
  withEngine(async (eng) => {
    const alice = pskDir("alice");
    const mallory = pskDir("alice"); // the same user name, another key
    try {
      const port = await tcpPort();
      await eng.call("bdev_malloc_create", { name: "m", num_blocks: (16 * MiB) / 4096, block_size: 4096 });
      const params = {
        export_name: "vol",
        bdev_name: "m",
        listen: `tcp:127.0.0.1:${port}`,
        tls_psk_file: path.join(alice, "keys.psk"),
        tls_required: true,
      };
      await eng.call("flexbso_nbd_export_add", params);

      const ok = await qemuIo(alice, "alice", port, ["write -P 0x3c 0 64k", "read -P 0x3c 0 64k"]);
      assert.is(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /read 65536\/65536 bytes/);

      const bad = await qemuIo(mallory, "alice", port, ["read 0 4k"]);
      assert.is.not(bad.code, 0, "another key opened the export");
      const plain = await runTool("qemu-io", ["-f", "raw", `nbd://127.0.0.1:${port}/vol`, "-c", "read 0 4k"], {
        allowFailure: true,
      });
      assert.is.not(plain.code, 0, "a client without TLS opened the export");
      assert.match(plain.stderr + plain.stdout, /TLS is required/);
      const list = await runTool("nbdinfo", ["--list", `nbd://127.0.0.1:${port}/`], { allowFailure: true });
      assert.is.not(list.code, 0, "a client without TLS listed the exports");
      assert.not.match(list.stdout, /vol/);

      const cfg = (await eng.call("framework_get_config", { name: "flexbso_nbd" })) as {
        method: string;
        params: Record<string, unknown>;
      }[];
      assert.equal(cfg, [{ method: "flexbso_nbd_export_add", params: { ...params, readonly: false } }]);
      assert.match(eng.logs(), /TLS handshake failed/);
    } finally {
      fs.rmSync(alice, { recursive: true, force: true });
      fs.rmSync(mallory, { recursive: true, force: true });
    }
  }));

test("bad TLS params are refused, naming the param", () =>
  withEngine(async (eng) => {
    await eng.call("bdev_malloc_create", { name: "m", num_blocks: 256, block_size: 4096 });
    const port = await tcpPort();
    const base = { export_name: "vol", bdev_name: "m", listen: `tcp:127.0.0.1:${port}` };
    for (const [extra, want] of [
      [{ tls_required: true }, /tls_required needs tls_psk_file/],
      [{ tls_psk_file: "/nonexistent/keys.psk" }, /tls_psk_file \/nonexistent\/keys.psk/],
      [{ tls_cert_file: "/etc/hostname" }, /tls_cert_file needs tls_key_file/],
    ] as const) {
      let err: Error | undefined;
      try {
        await eng.call("flexbso_nbd_export_add", { ...base, ...extra });
      } catch (e) {
        err = e as Error;
      }
      assert.ok(err, `accepted ${JSON.stringify(extra)}`);
      assert.match(err.message, want);
    }
  }));

test.run();
