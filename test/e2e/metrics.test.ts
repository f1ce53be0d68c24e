/**
 * /metrics on a real agent + engine: per-function ops, bytes, errors, connections and a
 * latency histogram counted by the engine (bdev_get_histogram), labelled by DPU,
 * function and tenant, after real NBD I/O.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "node:path";
import { spawn } from "node:child_process";
import { hook, startAgent, cli, writeTopology, cleanupAll, run, nbdUri, type AgentProc } from "./helpers/agent.js";

let a: AgentProc;
test.before(
  hook(async () => {
    a = await startAgent("dpu0");
  }),
);
test.after(cleanupAll);

async function scrape(): Promise<string> {
  const res = await fetch(`${a.url}/metrics`, { headers: { Authorization: `Bearer ${a.token()}` } });
  assert.is(res.status, 200);
  return res.text();
}

function value(text: string, line: string): number {
  const at = text.split("\n").find((l) => l.startsWith(`${line} `));
  assert.ok(
    at,
    `no line ${line} in:\n${text
      .split("\n")
      .filter((l) => l.startsWith("flexbso_function"))
      .join("\n")}`,
  );
  return Number(at!.slice(line.length + 1));
}

test("per-function metrics after real I/O, named as the topology names them", async () => {
  const t = await writeTopology("kinds.yaml", [a], path.join(a.dir, "m.yaml"), (s) =>
    s
      .replace("${BDEVS}", "      vol: { kind: malloc, size: 16MiB }")
      .replace("${FUNCS}", "      web: { pf: 0, vf: 3, transport: nbd, volume: vol, tenant: acme }")
      .replace("${VFS}", "8"),
  );
  const r = await cli(["apply", t, "--auto-approve"]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  await scrape(); // the first scrape turns the volume's histogram on

  const io = await run("qemu-io", [
    "-f",
    "raw",
    "-c",
    "write -P 0x11 0 1M",
    "-c",
    "read -P 0x11 0 1M",
    "-c",
    "read 0 64k",
    nbdUri(a, "pf0vf3"),
  ]);
  assert.is(io.code, 0, io.stdout + io.stderr);
  // hold one NBD client open while scraping
  const held = spawn(
    "/usr/bin/python3",
    [
      "-c",
      "import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); print('up', flush=True); sys.stdin.read()",
      nbdUri(a, "pf0vf3"),
    ],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("the NBD client did not connect in 20 s")), 20_000);
      held.stdout!.once("data", () => {
        clearTimeout(t);
        resolve();
      });
      held.once("exit", (c) => {
        clearTimeout(t);
        reject(new Error(`the NBD client exited ${c}`));
      });
    });
    const text = await scrape();
    const fn = '{dpu="dpu0",function="web",tenant="acme"}';
    const writes = value(text, `flexbso_function_write_ops_total${fn}`);
    const reads = value(text, `flexbso_function_read_ops_total${fn}`);
    assert.ok(writes >= 1 && reads >= 2, `writes ${writes} reads ${reads}`);
    assert.is(value(text, `flexbso_function_write_bytes_total${fn}`), 1 << 20);
    assert.is(value(text, `flexbso_function_read_bytes_total${fn}`), (1 << 20) + (64 << 10));
    assert.is(value(text, `flexbso_function_io_errors_total${fn}`), 0);
    assert.is(value(text, `flexbso_function_connections${fn}`), 1);
    // the histogram counted exactly the reads and writes the engine timed
    const hfn = 'dpu="dpu0",function="web",tenant="acme"';
    assert.is(value(text, `flexbso_function_io_latency_seconds_count{${hfn}}`), reads + writes);
    assert.is(value(text, `flexbso_function_io_latency_seconds_bucket{le="+Inf",${hfn}}`), reads + writes);
    assert.ok(value(text, `flexbso_function_io_latency_seconds_sum{${hfn}}`) > 0);
    assert.ok(value(text, `flexbso_function_io_latency_seconds_bucket{le="10",${hfn}}`) === reads + writes);
    assert.not.match(text, "pf0vf3", "export names are not labels");
    assert.match(text, "flexbso_agent_reconcile_runs_total");
    assert.match(text, "flexbso_agent_drift_detected_total 0");
  } finally {
    held.stdin!.end();
    held.kill();
  }
});

test("compress bdevs: /metrics and flexbso show report each one's ratio from the engine's own counts", async () => {
  const t = await writeTopology("kinds.yaml", [a], path.join(a.dir, "z.yaml"), (s) =>
    s
      .replace(
        "${BDEVS}",
        "      zb: { kind: malloc, size: 16MiB }\n      z: { kind: compress, base: zb, algorithm: zstd }",
      )
      .replace("${FUNCS}", "      db: { pf: 0, vf: 4, transport: nbd, volume: z }")
      .replace("${VFS}", "8"),
  );
  // replaces the first test's topology (its malloc volume goes)
  const r = await cli(["apply", t, "--auto-approve", "--allow-data-loss"]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  const before = await scrape();
  assert.is(value(before, 'flexbso_compress_logical_bytes{dpu="dpu0",bdev="z"}'), 0);
  assert.is(value(before, 'flexbso_compress_ratio{dpu="dpu0",bdev="z"}'), 0);
  // 1 MiB of one repeated byte: 64 chunks of 16 KiB, each stored in one 512-byte unit
  const io = await run("qemu-io", ["-f", "raw", "-c", "write -P 0x11 0 1M", "-c", "flush", nbdUri(a, "pf0vf4")]);
  assert.is(io.code, 0, io.stdout + io.stderr);
  const text = await scrape();
  const z = '{dpu="dpu0",bdev="z"}';
  assert.is(value(text, `flexbso_compress_logical_bytes${z}`), 1 << 20);
  const physical = value(text, `flexbso_compress_physical_bytes${z}`);
  assert.ok(physical > 0 && physical <= 64 * 512, `physical ${physical}`);
  assert.is(value(text, `flexbso_compress_ratio${z}`), (1 << 20) / physical);
  const shown = await cli(["show", t]);
  assert.is(shown.code, 0, shown.stdout + shown.stderr);
  assert.match(shown.stdout, `# compression: ratio ${((1 << 20) / physical).toFixed(2)} (1 MiB of data stored in `);
});

test.run();
