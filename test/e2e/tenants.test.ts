/**
 * Tenant isolation on the data plane: every function's socket (NBD and vhost-user-blk)
 * lies in its tenant's directory under the run dir, which only that tenant's group can
 * enter. Real clients run as other uids (setpriv): tenant B's uid can neither list,
 * open, read nor write tenant A's function; tenant A's can. Root only (setpriv, chown).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { promises as fsp, statSync } from "node:fs";
import * as path from "node:path";
import { hook, startAgent, cli, writeTopology, cleanupAll, run, ROOT, type AgentProc } from "./helpers/agent.js";

const root = process.getuid?.() === 0;
const A = 40101;
const B = 40102;
let a: AgentProc;

test.before(
  hook(async () => {
    if (!root) return;
    a = await startAgent("dpu0", {
      config: { tenants: { acme: { uid: A, gid: A, mode: "0660" }, beta: { uid: B, gid: B } } },
    });
    // mkdtemp made the test's dir 0700; a real run dir's parent (/run) lets everyone pass
    await fsp.chmod(a.dir, 0o711);
  }),
);
test.after(cleanupAll);

/** Run a tool as `uid`:`uid` with no supplementary groups. */
const as = (uid: number, cmd: string, args: string[]) =>
  run("setpriv", [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", cmd, ...args], { timeoutMs: 30_000 });

const failed = (r: { code: number | null; stdout: string; stderr: string }) =>
  r.code !== 0 || /error|fail|denied/i.test(r.stdout + r.stderr);

test("per-tenant sockets: B cannot list, open, read or write A's NBD or vhost function; A can", async () => {
  if (!root) return console.log("  (skipped: needs root for setpriv and chown)");
  const t = await writeTopology("kinds.yaml", [a], path.join(a.dir, "t.yaml"), (s) =>
    s
      .replace("${VFS}", "8")
      .replace(
        "${BDEVS}",
        [
          "      ma: { kind: malloc, size: 4MiB }",
          "      mb: { kind: malloc, size: 4MiB }",
          "      mv: { kind: malloc, size: 4MiB }",
          "      mo: { kind: malloc, size: 4MiB }",
        ].join("\n"),
      )
      .replace(
        "${FUNCS}",
        [
          "      fa: { pf: 0, vf: 0, transport: nbd, volume: ma, tenant: acme }",
          "      fb: { pf: 0, vf: 1, transport: nbd, volume: mb, tenant: beta }",
          "      fv: { pf: 0, vf: 2, transport: vhost-user-blk, volume: mv, tenant: acme }",
          "      fo: { pf: 0, vf: 3, transport: nbd, volume: mo }",
        ].join("\n"),
      ),
  );
  const applied = await cli(["apply", t, "--auto-approve"]);
  assert.is(applied.code, 0, applied.stdout + applied.stderr);

  const dirA = path.join(a.runDir, "tenants", "acme");
  const sockA = path.join(dirA, "nbd-pf0vf0.sock");
  const sockB = path.join(a.runDir, "tenants", "beta", "nbd-pf0vf1.sock");
  const vhostA = path.join(dirA, "fv");
  const d = statSync(dirA);
  assert.is(d.mode & 0o777, 0o750);
  assert.is(d.gid, A);
  const s = statSync(sockA);
  assert.is(s.uid, A);
  assert.is(s.mode & 0o777, 0o660);
  // show names the tenant's socket
  const shown = await cli(["show", t]);
  assert.match(shown.stdout, sockA);

  const uri = (sock: string, exp: string) => `nbd+unix:///${exp}?socket=${sock}`;
  // B: cannot even list A's directory, nor list, open, read or write A's export
  assert.ok(failed(await as(B, "ls", [dirA])), "B lists A's directory");
  assert.ok(failed(await as(B, "nbdinfo", ["--list", `nbd+unix://?socket=${sockA}`])), "B lists A's exports");
  assert.ok(failed(await as(B, "nbdinfo", [uri(sockA, "pf0vf0")])), "B opens A's export");
  assert.ok(
    failed(await as(B, "qemu-io", ["-f", "raw", "-c", "read 0 4k", uri(sockA, "pf0vf0")])),
    "B reads A's export",
  );
  assert.ok(
    failed(await as(B, "qemu-io", ["-f", "raw", "-c", "write -P 0x66 0 4k", uri(sockA, "pf0vf0")])),
    "B writes A's export",
  );
  const vhost = path.join(ROOT, "native", "out", "fb_vhost");
  assert.ok(failed(await as(B, vhost, ["--socket", vhostA, "info"])), "B reaches A's vhost-user-blk socket");
  // the run dir lets tenants pass, nothing more: the engine's RPC socket and logs stay the agent's
  assert.is(statSync(a.runDir).mode & 0o777, 0o711);
  for (const f of ["engine.sock", "engine.log"])
    assert.is(statSync(path.join(a.runDir, f)).mode & 0o077, 0, `${f} is open to others`);
  assert.ok(failed(await as(B, "ls", [a.runDir])), "B lists the run dir");
  // nobody but root reaches a function without a tenant
  assert.ok(
    failed(await as(A, "nbdinfo", [uri(path.join(a.runDir, "nbd-pf0vf3.sock"), "pf0vf3")])),
    "A opens an untenanted export",
  );

  // A: its own NBD and vhost functions work, with verified data
  const wrote = await as(A, "qemu-io", [
    "-f",
    "raw",
    "-c",
    "write -P 0x5a 0 64k",
    "-c",
    "read -P 0x5a 0 64k",
    uri(sockA, "pf0vf0"),
  ]);
  assert.is(wrote.code, 0, wrote.stdout + wrote.stderr);
  assert.not.match(wrote.stdout + wrote.stderr, /fail/i);
  const list = await as(A, "nbdinfo", ["--list", `nbd+unix://?socket=${sockA}`]);
  assert.is(list.code, 0, list.stderr);
  assert.match(list.stdout, "pf0vf0");
  const info = await as(A, vhost, ["--socket", vhostA, "info"]);
  assert.is(info.code, 0, info.stdout + info.stderr);
  // and B its own
  const own = await as(B, "qemu-io", ["-f", "raw", "-c", "read -P 0 0 64k", uri(sockB, "pf0vf1")]);
  assert.is(own.code, 0, own.stdout + own.stderr);

  // a tenant change moves the endpoint: A loses fa, B gets it
  const moved = path.join(a.dir, "t2.yaml");
  await fsp.writeFile(
    moved,
    (await fsp.readFile(t, "utf8")).replace("volume: ma, tenant: acme", "volume: ma, tenant: beta"),
  );
  const plan = await cli(["plan", moved]);
  assert.match(plan.stdout, "online: the socket moves to the new tenant's directory");
  const re = await cli(["apply", moved, "--auto-approve"]);
  assert.is(re.code, 0, re.stdout + re.stderr);
  const movedSock = path.join(a.runDir, "tenants", "beta", "nbd-pf0vf0.sock");
  const readB = await as(B, "qemu-io", ["-f", "raw", "-c", "read -P 0x5a 0 64k", uri(movedSock, "pf0vf0")]);
  assert.is(readB.code, 0, readB.stdout + readB.stderr);
  assert.ok(failed(await as(A, "nbdinfo", [uri(movedSock, "pf0vf0")])), "A still reaches the moved export");
  assert.is((await cli(["plan", moved])).code, 0, "no changes after the move");
  assert.is((await cli(["destroy", moved, "--auto-approve", "--allow-data-loss"])).code, 0);
});

test.run();
