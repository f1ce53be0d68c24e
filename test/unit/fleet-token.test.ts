import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, writeFileSync, mkdirSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { resolveToken, FleetError } from "../../lib/agent/fleet.js";
import type { ResourceOf } from "../../lib/model/types.js";

const dpu = (tokenFile?: string): ResourceOf<"dpu"> => ({
  address: "dpu0/dpu/dpu0", dpu: "dpu0", kind: "dpu", name: "dpu0",
  spec: { agent: { endpoint: "http://127.0.0.1:1", ...(tokenFile ? { tokenFile } : {}) }, backend: "native", pfs: 1, vfsPerPf: 4 },
}) as ResourceOf<"dpu">;

async function message(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, FleetError);
    return (e as Error).message;
  }
  throw new Error("expected a FleetError");
}

test("token: a missing, empty or unreadable tokenFile says which and why, and the fix names the DPU's field", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "fb-tok-"));
  writeFileSync(path.join(dir, "empty"), "\n");
  mkdirSync(path.join(dir, "adir"));
  writeFileSync(path.join(dir, "good"), "abc123\n");
  let m = await message(resolveToken(dpu("nope"), { baseDir: dir, env: {} }));
  assert.match(m, `dpu0: no agent token: ${path.join(dir, "nope")} does not exist; point agent.tokenFile of DPU 'dpu0' at the 'token' file`);
  m = await message(resolveToken(dpu("empty"), { baseDir: dir, env: {} }));
  assert.match(m, `${path.join(dir, "empty")} is empty`);
  m = await message(resolveToken(dpu("adir"), { baseDir: dir, env: {} }));
  assert.match(m, `cannot read ${path.join(dir, "adir")} (EISDIR`);
  m = await message(resolveToken(dpu(), { env: { FLEXBSO_STATE_DIR: dir + "/none" } }));
  assert.match(m, "set agent.tokenFile on the DPU, or FLEXBSO_TOKEN");
  assert.equal(await resolveToken(dpu("good"), { baseDir: dir, env: {} }), { token: "abc123", source: path.join(dir, "good") });
});

test.run();
