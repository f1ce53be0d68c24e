/** `flexbso demo` runs the whole lifecycle (a safe-read repair and a real compression ratio included) and cleans up. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync } from "node:fs";
import { cli } from "./helpers/agent.js";

test("flexbso demo succeeds, shows a safe-read catch and repair and a compression ratio, and cleans up", async () => {
  const t0 = Date.now();
  const r = await cli(["demo"]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.ok(Date.now() - t0 < 60_000, "well under a minute");
  for (const s of [
    "[8/8]",
    "Apply complete! 6 step(s), generation 1.",
    "4 MiB written and read back with the pattern verified",
    "every read through safe0 returned 0x42",
    "engine.raid_safe_read_repair: raid 'safe0': member 'EE_sr_a' lba ",
    "read back identical (qemu-img compare)",
    '~ tenant = "bob" -> "bob-team"',
    "Plan: 2 to add, 1 to change, 0 to destroy.",
    "work dir removed",
  ])
    assert.ok(r.stdout.includes(s), `missing "${s}" in:\n${r.stdout}`);
  // the repair names the very block that was flipped, not just the range of the read
  const flipped = /\(array lba (\d+)\)/.exec(r.stdout)?.[1];
  assert.ok(flipped !== undefined && flipped !== "0", `the demo flips a block inside the read:\n${r.stdout}`);
  assert.match(r.stdout, `member 'EE_sr_a' lba ${flipped} (member lba`);
  const ratio = Number(/compression ratio ([0-9.]+)/.exec(r.stdout)?.[1]);
  assert.ok(ratio > 1, `compression ratio > 1 on text (got ${ratio})`);
  const dir = /work dir (\S+)\)/.exec(r.stdout)?.[1];
  assert.ok(dir && !existsSync(dir), "work dir removed");
});

test.run();
