/**
 * The agent's state dir against a local attacker (issue 12 item 7): a stale pid of
 * another program, an unsafe state dir, planted links, and an event log past 512 MiB.
 * Real files, real processes.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { promises as fsp } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { lockStateDir, StateDirLockedError } from "../../lib/state/lock.js";
import { checkStateDir, UnsafeStateDirError } from "../../lib/state/safety.js";
import { ensureToken } from "../../lib/state/token.js";
import { EventLog } from "../../lib/state/events.js";
import { repoPath } from "../helpers/index.js";

const tmp = () => fsp.mkdtemp(path.join(os.tmpdir(), "fb-harden-"));

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("expected a refusal");
}

test("a stale agent.pid whose pid is now another program does not block the start; a live agent's does", async () => {
  const dir = await tmp();
  const other: ChildProcess = spawn("sleep", ["60"], { stdio: "ignore" });
  try {
    await new Promise((r) => other.once("spawn", r));
    // as an older agent wrote it (pid only) and as this one does (pid and a start time that is not sleep's)
    for (const content of [`${other.pid}\n`, `${other.pid}\n1\n`]) {
      await fsp.writeFile(path.join(dir, "agent.pid"), content);
      const release = await lockStateDir(dir);
      assert.match(await fsp.readFile(path.join(dir, "agent.pid"), "utf8"), new RegExp(`^${process.pid}\\n\\d+\\n$`));
      await release();
    }
    // this process's lock is a live agent's: a second taker is refused, naming the pid
    const release = await lockStateDir(dir);
    const child = spawnSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { lockStateDir } from ${JSON.stringify(repoPath("dist/lib/state/lock.js"))}; try { await lockStateDir(${JSON.stringify(dir)}); console.log("taken"); } catch (e) { console.log(e.code, e.message); }`,
      ],
      { encoding: "utf8", timeout: 30_000 },
    );
    assert.match(child.stdout, `STATE_DIR_LOCKED state dir ${dir} is in use by agent pid ${process.pid}`);
    await release();
  } finally {
    other.kill("SIGKILL");
  }
  assert.ok(StateDirLockedError);
});

test("a state dir others can write, or another uid owns, or a link, is refused naming the fix", async () => {
  const dir = await tmp();
  await fsp.chmod(dir, 0o777);
  let m = await refusal(checkStateDir(dir));
  assert.match(m, `state dir ${dir} is writable by group and others (mode 0777)`);
  assert.match(m, `chmod go-w ${dir}`);
  await fsp.chmod(dir, 0o770);
  assert.match(await refusal(checkStateDir(dir)), "writable by group (mode 0770)");
  await fsp.chmod(dir, 0o700);
  await checkStateDir(dir);
  m = await refusal(checkStateDir(dir, 4242));
  assert.match(m, `is owned by uid ${process.getuid!()}, not by the agent's uid 4242`);
  assert.match(m, `chown 4242 ${dir}`);
  const link = `${dir}-link`;
  await fsp.symlink(dir, link);
  assert.match(await refusal(checkStateDir(link)), "is a symbolic link");
  assert.instance(await checkStateDir(link).catch((e) => e), UnsafeStateDirError);
});

test("the agent process refuses an unsafe state dir before serving", async () => {
  const dir = await tmp();
  const state = path.join(dir, "state");
  await fsp.mkdir(state, { mode: 0o777 });
  await fsp.chmod(state, 0o777);
  const r = spawnSync(
    process.execPath,
    [
      repoPath("bin/flexbso.js"),
      "agent",
      "--listen",
      "127.0.0.1:0",
      "--state-dir",
      state,
      "--run-dir",
      path.join(dir, "run"),
      "--data-dir",
      path.join(dir, "data"),
      "--dpu",
      "dpu0",
    ],
    { encoding: "utf8", timeout: 30_000 },
  );
  assert.is.not(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, `state dir ${state} is writable by group and others (mode 0777)`);
  await assert.not.ok(
    await fsp.stat(path.join(state, "token")).catch(() => null),
    "a token was created in the unsafe dir",
  );
});

test("planted links for the token and the event log are refused, not followed", async () => {
  const dir = await tmp();
  const elsewhere = path.join(await tmp(), "attacker");
  await fsp.writeFile(elsewhere, "planted\n");
  await fsp.symlink(elsewhere, path.join(dir, "token"));
  assert.match(await refusal(ensureToken(dir)), `${path.join(dir, "token")} is a symbolic link`);
  await fsp.symlink(elsewhere, path.join(dir, "events.jsonl"));
  assert.match(await refusal(EventLog.open(dir)), `${path.join(dir, "events.jsonl")} is a symbolic link`);
  assert.is(await fsp.readFile(elsewhere, "utf8"), "planted\n");
});

test("an event log past 512 MiB opens (rotated), keeps its sequence, and stays under its cap", async () => {
  const dir = await tmp();
  const file = path.join(dir, "events.jsonl");
  // 600 MiB (sparse) then the last real event, as an agent that never rotated left it
  const fh = await fsp.open(file, "w", 0o600);
  const last =
    JSON.stringify({ seq: 41, time: new Date().toISOString(), level: "info", type: "x", message: "last" }) + "\n";
  await fh.write("\n" + last, 600 * 1024 * 1024);
  await fh.close();
  const log = await EventLog.open(dir);
  assert.is(log.lastSeq, 41);
  assert.is((await log.append({ level: "info", type: "y", message: "next" })).seq, 42);
  assert.ok((await fsp.stat(file)).size < 4096);
  assert.ok((await fsp.stat(log.rotatedFile)).size > 600 * 1024 * 1024);
  await fsp.rm(log.rotatedFile);
  // a small cap: the file rotates and never passes it; the sequence carries over a reopen
  const small = await EventLog.open(dir, { maxBytes: 2048 });
  for (let i = 0; i < 100; i++) await small.append({ level: "info", type: "z", message: `event ${i}` });
  assert.ok((await fsp.stat(file)).size <= 2048);
  assert.ok((await fsp.stat(small.rotatedFile)).size <= 2048);
  const again = await EventLog.open(dir, { maxBytes: 2048 });
  assert.is(again.lastSeq, 142);
  const listed = await again.list(130, 100);
  assert.equal(
    listed.map((e) => e.seq),
    [131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142],
  );
});

test.run();
