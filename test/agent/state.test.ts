import { test } from "uvu";
import * as assert from "uvu/assert";
import { promises as fsp, statSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { StateStore, StateCorruptError, emptyState } from "../../lib/state/store.js";
import { EventLog } from "../../lib/state/events.js";
import { ensureToken, checkBearer } from "../../lib/state/token.js";
import { lockStateDir, processStartTime, StateDirLockedError } from "../../lib/state/lock.js";
import { writeFileAtomic } from "../../lib/state/atomic.js";

const tmp = () => fsp.mkdtemp(path.join(os.tmpdir(), "fb-state-"));

test("state: missing file is the empty state; save then load round-trips", async () => {
  const dir = await tmp();
  const store = new StateStore(dir);
  assert.equal((await store.load()).generation, 0);
  const r = {
    address: "d/malloc/m",
    dpu: "d",
    kind: "malloc",
    name: "m",
    spec: { size: 4096, blockSize: 512 },
  } as const;
  await store.save({ ...emptyState("d"), generation: 3, resources: [r] });
  const back = await store.load();
  assert.equal(back.generation, 3);
  assert.equal(back.dpu, "d");
  assert.equal(back.resources, [r]);
  assert.equal(statSync(store.file).mode & 0o777, 0o600);
  const left = (await fsp.readdir(dir)).filter((f) => f.endsWith(".tmp"));
  assert.equal(left, [], "no temp files left behind");
});

test("state: a corrupt file is a typed error naming the file", async () => {
  const dir = await tmp();
  const store = new StateStore(dir);
  await fsp.writeFile(store.file, "{not json");
  try {
    await store.load();
    assert.unreachable();
  } catch (e) {
    assert.instance(e, StateCorruptError);
    assert.match((e as Error).message, store.file);
  }
  await fsp.writeFile(store.file, JSON.stringify({ formatVersion: 1, generation: -1, resources: [] }));
  try {
    await store.load();
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, "generation");
  }
});

test("atomic: replaces content and leaves no temp file", async () => {
  const dir = await tmp();
  const f = path.join(dir, "x");
  await writeFileAtomic(f, "one");
  await writeFileAtomic(f, "two");
  assert.is(await fsp.readFile(f, "utf8"), "two");
  assert.equal(await fsp.readdir(dir), ["x"]);
});

test("events: append, list since, survive reopen and a torn last line", async () => {
  const dir = await tmp();
  const log = await EventLog.open(dir);
  for (let i = 0; i < 5; i++) await log.append({ level: "info", type: "t", message: `m${i}` });
  assert.equal(
    (await log.list(3)).map((e) => e.seq),
    [4, 5],
  );
  await fsp.appendFile(log.file, '{"seq":6,"tim'); // crash mid-line
  const again = await EventLog.open(dir);
  assert.is(again.lastSeq, 5);
  const e = await again.append({ level: "warn", type: "t", message: "after" });
  assert.is(e.seq, 6);
  assert.equal(
    (await (await EventLog.open(dir)).list(0)).map((x) => x.seq),
    [1, 2, 3, 4, 5, 6],
  );
});

test("token: created 0600 once, reused; bearer check", async () => {
  const dir = await tmp();
  const t1 = await ensureToken(dir);
  const t2 = await ensureToken(dir);
  assert.is(t1, t2);
  assert.is(t1.length, 64);
  assert.is(statSync(path.join(dir, "token")).mode & 0o777, 0o600);
  assert.ok(checkBearer(`Bearer ${t1}`, t1));
  assert.not.ok(checkBearer(`Bearer ${t1}x`, t1));
  assert.not.ok(checkBearer(undefined, t1));
  assert.not.ok(checkBearer(t1, t1));
});

test("token: an existing token file readable by others is narrowed to 0600, with a warning", async () => {
  const dir = await tmp();
  const file = path.join(dir, "token");
  await fsp.writeFile(file, "abc\n", { mode: 0o644 });
  await fsp.chmod(file, 0o644);
  const warnings: string[] = [];
  assert.is(await ensureToken(dir, (m) => warnings.push(m)), "abc");
  assert.is(statSync(file).mode & 0o777, 0o600);
  assert.equal(warnings, [`token file ${file} had mode 0644 (readable by other users); changed it to 0600`]);
  await ensureToken(dir, (m) => warnings.push(m));
  assert.is(warnings.length, 1, "no warning once it is 0600");
});

test("lock: second holder refused while the first lives; stale pid taken over", async () => {
  const dir = await tmp();
  const release = await lockStateDir(dir);
  try {
    // a live agent's record: its pid and its start time
    await fsp.writeFile(path.join(dir, "agent.pid"), `${process.ppid}\n${processStartTime(process.ppid)}\n`);
    await lockStateDir(dir);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, StateDirLockedError);
  }
  await fsp.writeFile(path.join(dir, "agent.pid"), "999999999\n"); // dead
  const r2 = await lockStateDir(dir);
  await r2();
  await release();
});

test.run();
