import { test } from "uvu";
import * as assert from "uvu/assert";
import { createLogger as agentLogger } from "../../lib/agent/log.js";
import { createLogger as engineLogger, engineLogLevel } from "../../lib/engine/log.js";

function capture(make: typeof agentLogger, opts: Parameters<typeof agentLogger>[0] = {}) {
  const lines: Record<string, unknown>[] = [];
  const log = make({
    ...opts,
    write: (l) => {
      assert.ok(l.endsWith("\n"), "one line per write");
      lines.push(JSON.parse(l));
    },
  });
  return { log, lines };
}

test("agent and engine write one format: level, ISO time, msg, then fields", () => {
  const a = capture(agentLogger);
  const e = capture(engineLogger);
  a.log.child({ component: "service" }).info("applied", { generation: 3, err: new Error("boom") });
  e.log.child({ component: "service" }).info("applied", { generation: 3, err: new Error("boom") });
  const strip = (r: Record<string, unknown>) => ({ ...r, time: "T" });
  assert.equal(strip(a.lines[0]!), strip(e.lines[0]!));
  assert.equal(Object.keys(a.lines[0]!).sort(), ["component", "err", "generation", "level", "msg", "time"]);
  assert.is(a.lines[0]!.level, "info");
  assert.match(String(a.lines[0]!.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.equal(a.lines[0]!.err, { message: "boom" });
});

test("levels and debug flags, changed at run time under existing children", () => {
  const { log, lines } = capture(engineLogger, { level: "warn", flags: { rpc: false, engine: true } });
  const rpc = log.child({ src: "rpc" });
  const eng = log.child({ src: "engine" });
  log.info("dropped");
  rpc.error("kept");
  log.control.level = "debug";
  rpc.debug("gated by its flag");
  eng.debug("flag on");
  log.control.flags.set("rpc", true);
  rpc.debug("now on");
  log.control.level = "error";
  eng.warn("dropped again");
  assert.equal(
    lines.map((l) => `${l.level} ${l.msg}`),
    ["error kept", "debug flag on", "debug now on"],
  );
  // the C engine's levels (enum fb_log_level) map onto the same names
  assert.equal([0, 1, 2, 3, 9].map(engineLogLevel), ["error", "warn", "info", "debug", "debug"]);
});

test.run();
