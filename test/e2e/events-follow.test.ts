/**
 * `flexbso events --follow` against a real agent: the backlog, then events as they
 * happen; Ctrl-C ends it cleanly (exit 0); an agent that stops ends it with its reason
 * (exit 0); an agent killed breaks it (exit 1, the DPU named).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "node:path";
import { spawn, type ChildProcess } from "node:child_process";
import {
  hook,
  startAgent,
  cli,
  writeTopology,
  cleanupAll,
  writeCredentials,
  BIN,
  ROOT,
  type AgentProc,
} from "./helpers/agent.js";

let a: AgentProc;
let topo: string;
test.before(
  hook(async () => {
    a = await startAgent("dpu0");
    topo = await writeTopology("kinds.yaml", [a], path.join(a.dir, "f.yaml"), (s) =>
      s
        .replace("${BDEVS}", "      m: { kind: malloc, size: 8MiB }")
        .replace("${FUNCS}", "      vm: { pf: 0, vf: 0, transport: nbd, volume: m }")
        .replace("${VFS}", "8"),
    );
    const r = await cli(["apply", topo, "--auto-approve"]);
    if (r.code !== 0) throw new Error(r.stdout + r.stderr);
  }),
);
test.after(cleanupAll);

/** A running `flexbso events --follow --json`, its parsed lines, and a wait for a line. */
function follow(): {
  child: ChildProcess;
  events: { type: string; dpu: string }[];
  stderr: () => string;
  until: (pred: (e: { type: string }) => boolean) => Promise<void>;
  exit: Promise<number | null>;
} {
  const env: NodeJS.ProcessEnv = { ...process.env, FLEXBSO_CREDENTIALS: writeCredentials() };
  delete env.FLEXBSO_TOKEN;
  const child = spawn(process.execPath, [BIN, "events", topo, "--follow", "--json"], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const events: { type: string; dpu: string }[] = [];
  let buf = "";
  let err = "";
  const waiters: (() => void)[] = [];
  child.stdout!.on("data", (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split("\n");
    buf = lines.pop()!;
    for (const l of lines) if (l) events.push(JSON.parse(l));
    for (const w of waiters) w();
  });
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exit = new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
  const until = (pred: (e: { type: string }) => boolean) =>
    new Promise<void>((resolve, reject) => {
      const t = setTimeout(
        () =>
          reject(new Error(`no such event within 20 s; got ${events.map((e) => e.type).join(", ")}; stderr ${err}`)),
        20_000,
      );
      const check = () => {
        if (events.some(pred)) {
          clearTimeout(t);
          resolve();
        }
      };
      waiters.push(check);
      check();
    });
  return { child, events, stderr: () => err, until, exit };
}

async function exitWithin(p: Promise<number | null>, child: ChildProcess): Promise<number | null> {
  let t: NodeJS.Timeout | undefined;
  const r = await Promise.race([
    p,
    new Promise<"late">((res) => {
      t = setTimeout(() => res("late"), 20_000);
    }),
  ]);
  clearTimeout(t);
  if (r === "late") {
    child.kill("SIGKILL");
    assert.unreachable("the follower did not exit within 20 s");
  }
  return r as number | null;
}

test("--follow prints the backlog, then new events; Ctrl-C ends it cleanly", async () => {
  const f = follow();
  await f.until((e) => e.type === "apply.done");
  const seen = f.events.length;
  const edited = await writeTopology("kinds.yaml", [a], path.join(a.dir, "g.yaml"), (s) =>
    s
      .replace("${BDEVS}", "      m: { kind: malloc, size: 8MiB }")
      .replace("${FUNCS}", "      vm: { pf: 0, vf: 0, transport: nbd, volume: m, qos: { iops: 1000 } }")
      .replace("${VFS}", "8"),
  );
  const sha = "0123456789abcdef0123456789abcdef01234567";
  const r = await cli(["apply", edited, "--auto-approve"], { env: { GITHUB_SHA: sha } });
  assert.is(r.code, 0, r.stdout + r.stderr);
  await f.until((e) => f.events.indexOf(e as never) >= seen && e.type === "apply.done");
  // the audit trail: the plan's digest and the commit (here from CI's GITHUB_SHA: the topology is in no git repository)
  const done = f.events.slice(seen).find((e) => e.type === "apply.done") as unknown as {
    data: { audit: { planDigest: string; commit: string; commitSource: string }; stack: string };
  };
  assert.match(done.data.audit.planDigest, /^sha256:[0-9a-f]{64}$/);
  assert.equal([done.data.audit.commit, done.data.audit.commitSource, done.data.stack], [sha, "GITHUB_SHA", "default"]);
  assert.ok(
    f.events.slice(seen).some((e) => e.type === "apply.step.done"),
    JSON.stringify(f.events.slice(seen)),
  );
  assert.ok(f.events.every((e) => e.dpu === "dpu0"));
  f.child.kill("SIGINT");
  assert.is(await exitWithin(f.exit, f.child), 0, f.stderr());
  assert.not.match(f.stderr(), /Error|at /);
});

test("an agent that stops ends the stream with its reason; one killed breaks it", async () => {
  const f = follow();
  await f.until((e) => e.type === "apply.done");
  await a.stop();
  assert.is(await exitWithin(f.exit, f.child), 0, f.stderr());
  assert.match(f.stderr(), "dpu0: event stream ended: the agent is shutting down");

  await a.restart();
  const g = follow();
  await g.until((e) => e.type === "apply.done");
  await a.kill9();
  assert.is(await exitWithin(g.exit, g.child), 1, g.stderr());
  assert.match(g.stderr(), /dpu0: .*(broke|closed the event stream)/, g.stderr());
});

test.run();
