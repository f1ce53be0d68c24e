/** `flexbso demo` runs the whole lifecycle, says what is not built, and cleans up. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync } from "node:fs";
import { cli } from "./helpers/agent.js";

test("flexbso demo succeeds, is honest about RAID/compression, and cleans up", async () => {
  const t0 = Date.now();
  const r = await cli(["demo"]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.ok(Date.now() - t0 < 60_000, "well under a minute");
  for (const s of [
    "[8/8]", "Apply complete! 6 step(s), generation 1.", "4 MiB written and read back with the pattern verified",
    "Pattern verification failed", "creating a RAID bdev: needs the target method bdev_raid_create",
    '~ tenant = "bob" -> "bob-team"', "Plan: 2 to add, 1 to change, 0 to destroy.", "work dir removed",
  ]) assert.ok(r.stdout.includes(s), `missing "${s}" in:\n${r.stdout}`);
  const dir = /work dir (\S+)\)/.exec(r.stdout)?.[1];
  assert.ok(dir && !existsSync(dir), "work dir removed");
});

test.run();
