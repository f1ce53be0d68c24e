/**
 * The drift-aware plan against a live agent: a real `flexbso agent` (spawning its engine)
 * holding 1 000 resources, and `plan` as the CLI runs it — read every agent's state,
 * target facts and drift (topology.get), check the plan against the live target
 * (topology.plan), then plan. Used by bench/plan.ts.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { AgentActualSource } from "../lib/fleet/fleet.js";
import { validateDesired } from "../lib/model/validate.js";
import type { Desired } from "../lib/model/types.js";
import { plan } from "../lib/plan/plan.js";
import { timeIt, type BenchContext } from "./harness.js";

/** The CLI entry (dist/bench -> package root). */
const BIN = resolve(__dirname, "..", "..", "bin", "flexbso.js");

/** Time a drift-aware plan of `resources` resources against a live agent; returns the median in ms. */
export async function livePlanMs(
  ctx: BenchContext,
  dir: string,
  resources = 1000,
): Promise<{ median: number; n: number; drift: number }> {
  const stateDir = join(dir, "state");
  const runDir = join(dir, "run");
  const functions = Math.min(200, Math.floor((resources - 1) / 5));
  const nulls = resources - 1 - functions;
  writeFileSync(
    join(dir, "agent.yaml"),
    `listen: 127.0.0.1:0\ndpu: bench0\nstateDir: ${stateDir}\nrunDir: ${runDir}\ndataDir: ${join(dir, "data")}\nlimits: { pfs: 1, vfsPerPf: 1024 }\n`,
  );
  const agent = spawn(process.execPath, [BIN, "agent", "--config", join(dir, "agent.yaml")], {
    stdio: ["ignore", "ignore", "ignore"],
  });
  try {
    const url = await waitFor(
      () =>
        existsSync(join(runDir, "agent.url")) ? readFileSync(join(runDir, "agent.url"), "utf8").trim() : undefined,
      30_000,
      "the agent to listen",
    );
    const spec = (kind: string, name: string, s: object) => ({
      address: `bench0/${kind}/${name}`,
      dpu: "bench0",
      kind,
      name,
      spec: s,
    });
    const raw = {
      formatVersion: 1,
      resources: [
        spec("dpu", "bench0", {
          agent: { endpoint: url },
          backend: "native",
          pfs: 1,
          vfsPerPf: 1024,
        }),
        ...Array.from({ length: nulls }, (_, i) => spec("null", `n${i}`, { size: 1048576, blockSize: 512 })),
        ...Array.from({ length: functions }, (_, i) =>
          spec("function", `f${i}`, { vf: i, transport: "nbd", volume: `n${i}` }),
        ),
      ],
    };
    const desired: Desired = validateDesired(raw);
    const token = readFileSync(join(stateDir, "token"), "utf8").trim();
    ctx.log(`live: applying ${desired.resources.length} resources to a real agent`);
    const res = await fetch(`${url}/rpc`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "topology.apply", params: { desired } }),
      signal: AbortSignal.timeout(600_000),
    });
    const body = (await res.json()) as { error?: { message: string } };
    if (body.error) throw new Error(`bench apply failed: ${body.error.message}`);
    ctx.log("live: planning against the agent (state, facts, drift, live check)");
    let drift = 0;
    const t = await timeIt(
      async () => {
        // the credential comes from the CLI's side (env), as for any plan: never from the topology
        const env = { ...process.env, FLEXBSO_TOKEN_BENCH0: token, FLEXBSO_ENDPOINT_BENCH0: url };
        const actual = await new AgentActualSource({ env }).read(desired);
        const p = plan(desired, actual.desired, {
          ...(actual.generations ? { generations: actual.generations } : {}),
          ...(actual.targets ? { targets: actual.targets } : {}),
          ...(actual.live ? { live: actual.live } : {}),
          ...(actual.drift ? { drift: actual.drift } : {}),
        });
        drift = p.drift.length;
        if (p.steps.length || p.errors.length)
          throw new Error(`bench plan is not a no-op: ${p.steps.length} steps, ${p.errors.length} errors`);
      },
      { repeats: 3, warmup: 1 },
    );
    return { median: t.median, n: desired.resources.length, drift };
  } finally {
    const exited = new Promise((r) => agent.once("exit", r));
    agent.kill("SIGTERM");
    await exited;
    const pidFile = join(runDir, "engine.pid");
    if (existsSync(pidFile)) {
      try {
        process.kill(Number(readFileSync(pidFile, "utf8").trim()), "SIGTERM");
      } catch {
        /* gone */
      }
    }
  }
}

async function waitFor<T>(fn: () => T | undefined, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
