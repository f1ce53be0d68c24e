/**
 * The engine supervisor against a real `flexbso engine` in attach mode: a target that is
 * restarted between two health polls answers every poll, and must still be restored.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "node:path";
import { EngineSupervisor, type ReconcileReason } from "../../lib/agent/supervisor.js";
import { nullLogger } from "../../lib/agent/log.js";
import { cleanupAll, startBareEngine, tempDir } from "../e2e/helpers/agent.js";

test.after(cleanupAll);

test("attach mode: a target restarted between two polls is restored", async () => {
  const dir = tempDir("fbsup-");
  let eng = await startBareEngine(dir);
  const reasons: ReconcileReason[] = [];
  // Polls far apart, so the restart below falls between two of them: no poll sees the
  // target down (the engine starts in about a second).
  const pollMs = 8_000;
  const sup = new EngineSupervisor({
    target: { mode: "attach", socket: eng.socket, reactors: 1, command: [] },
    runDir: path.join(dir, "run"),
    log: nullLogger,
    pollMs,
    onReconcile: async (reason) => {
      reasons.push(reason);
    },
  });
  try {
    await sup.start();
    assert.equal(reasons, ["start"]);
    eng.child.kill("SIGKILL");
    await new Promise((res) => eng.child.once("exit", res));
    eng = await startBareEngine(dir);
    const deadline = Date.now() + pollMs + 5_000;
    while (reasons.length < 2 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
    assert.equal(reasons, ["start", "target-returned"], "the restarted target was not restored");
    assert.ok(sup.isUp);
  } finally {
    await sup.stop();
    eng.child.kill("SIGKILL");
  }
});

test.run();
