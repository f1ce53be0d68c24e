/**
 * The agent and the engine are separate processes: SIGKILL of the agent never
 * interrupts I/O; SIGKILL of the engine is noticed and the stack is restored from the
 * agent's state, with file-backed data intact and malloc loss reported.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "node:path";
import {
  hook,
  startAgent,
  cli,
  writeTopology,
  cleanupAll,
  run,
  nbdUri,
  sleep,
  type AgentProc,
} from "./helpers/agent.js";

let a: AgentProc;

test.before(
  hook(async () => {
    a = await startAgent("dpu0");
    const t = await writeTopology("one-dpu.yaml", [a], path.join(a.dir, "topo.yaml"));
    const r = await cli(["apply", t, "--auto-approve"]);
    assert.is(r.code, 0, r.stdout + r.stderr);
  }),
);
test.after(cleanupAll);

test("SIGKILL the agent while fio verifies on a function: fio sees no error; the restarted agent reports the same topology", async () => {
  const before = (await a.rpc("topology.get")).body.result;
  const fio = run(
    "fio",
    [
      "--name=agentkill",
      "--ioengine=nbd",
      `--uri=${nbdUri(a, "pf0vf0")}`,
      "--rw=randwrite",
      "--bs=4k",
      "--size=32M",
      "--iodepth=8",
      "--verify=crc32c",
      "--verify_backlog=256",
      "--time_based",
      "--runtime=4",
      "--output-format=json",
    ],
    { timeoutMs: 60_000 },
  );
  await sleep(1000);
  const enginePid = a.enginePid();
  await a.kill9();
  await sleep(700);
  process.kill(enginePid, 0); // the engine is still there
  await a.restart();
  const r = await fio;
  assert.is(r.code, 0, r.stdout + r.stderr);
  const out = JSON.parse(r.stdout.slice(r.stdout.indexOf("{")));
  assert.is(out.jobs[0].error, 0);
  assert.ok(out.jobs[0].read.total_ios > 0, "verify reads happened");
  const after = (await a.rpc("topology.get")).body.result;
  assert.is(after.generation, before.generation);
  assert.equal(after.topology, before.topology);
  assert.is(after.target.pid, enginePid, "the agent re-attached to the same engine");
  assert.match(a.log(), "attached to running engine");
});

test("SIGKILL the engine: the agent restores the stack; file-backed data is intact; malloc loss is reported", async () => {
  const disk = nbdUri(a, "pf0vf1");
  const w = await run("qemu-io", [
    "-f",
    "raw",
    "-c",
    "write -P 0xa7 0 1M",
    "-c",
    "write -P 0x5e 8M 512k",
    "-c",
    "flush",
    disk,
  ]);
  assert.is(w.code, 0, w.stdout + w.stderr);
  const since = (await a.rpc("events.list", { since: 0, limit: 10000 })).body.result.lastSeq;
  const old = a.enginePid();
  process.kill(old, "SIGKILL");
  let restored = false;
  for (let i = 0; i < 100 && !restored; i++) {
    await sleep(100);
    const ev = (await a.rpc("events.list", { since })).body.result.events;
    restored = ev.some((e: any) => e.type === "reconcile.done");
  }
  assert.ok(restored, `no reconcile.done event:\n${a.log()}`);
  assert.is.not(a.enginePid(), old);
  const events = (await a.rpc("events.list", { since })).body.result.events.map((e: any) =>
    `${e.type} ${e.address ?? ""}`.trim(),
  );
  assert.ok(events.includes("engine.restarted"), events.join("\n"));
  assert.ok(events.includes("bdev.volatile.lost dpu0/malloc/ram0"), events.join("\n"));
  assert.ok(events.includes("bdev.restored dpu0/file/disk0"), events.join("\n"));
  const v = await run("qemu-io", [
    "-f",
    "raw",
    "-c",
    "read -P 0xa7 0 1M",
    "-c",
    "read -P 0x5e 8M 512k",
    "-c",
    "read -P 0 2M 1M",
    disk,
  ]);
  assert.is(v.code, 0, v.stdout + v.stderr);
  assert.not.match(v.stdout + v.stderr, "Pattern verification failed");
  const view = (await a.rpc("topology.get")).body.result;
  assert.ok(
    view.status.every((s: any) => s.present),
    JSON.stringify(view.status),
  );
  const p = await cli(["plan", path.join(a.dir, "topo.yaml")]);
  assert.is(p.code, 0, p.stdout + p.stderr);
});

test("a file bdev whose backing file vanished is not silently re-created empty", async () => {
  const { promises: fsp } = await import("node:fs");
  const since = (await a.rpc("events.list", { since: 0, limit: 10000 })).body.result.lastSeq;
  await fsp.rename(path.join(a.dataDir, "disk0.img"), path.join(a.dataDir, "disk0.img.moved"));
  process.kill(a.enginePid(), "SIGKILL");
  let done: any;
  for (let i = 0; i < 100 && !done; i++) {
    await sleep(100);
    done = (await a.rpc("events.list", { since })).body.result.events.find((e: any) => e.type === "reconcile.done");
  }
  assert.ok(done, a.log());
  const events = (await a.rpc("events.list", { since })).body.result.events;
  const failed = events.find((e: any) => e.type === "reconcile.failed" && e.address === "dpu0/file/disk0");
  assert.ok(failed, JSON.stringify(events, null, 1));
  assert.match(failed.message, "not re-creating it empty");
  const { existsSync } = await import("node:fs");
  assert.not.ok(existsSync(path.join(a.dataDir, "disk0.img")), "no empty file was made");
  const view = (await a.rpc("topology.get")).body.result;
  assert.equal(
    view.status.filter((s: any) => !s.present).map((s: any) => s.address),
    ["dpu0/file/disk0", "dpu0/function/vm1"],
  );
  // put the file back: the agent restores it on its next retry, or at once on request
  await fsp.rename(path.join(a.dataDir, "disk0.img.moved"), path.join(a.dataDir, "disk0.img"));
  const again = (await a.rpc("topology.reconcile")).body.result;
  assert.ok(
    again.status.every((s: any) => s.present),
    JSON.stringify(again.status),
  );
  const v = await run("qemu-io", ["-f", "raw", "-c", "read -P 0xa7 0 1M", nbdUri(a, "pf0vf1")]);
  assert.is(v.code, 0, v.stdout + v.stderr);
  assert.not.match(v.stdout + v.stderr, "verification failed");
});

test.run();
