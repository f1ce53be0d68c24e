import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { resolveToken, FleetError } from "../../lib/fleet/fleet.js";
import type { ResourceOf } from "../../lib/model/types.js";
import { repoPath } from "../helpers/index.js";

const dpu = (endpoint: string, tokenFile?: string): ResourceOf<"dpu"> =>
  ({
    address: "dpu0/dpu/dpu0",
    dpu: "dpu0",
    kind: "dpu",
    name: "dpu0",
    spec: { agent: { endpoint, ...(tokenFile ? { tokenFile } : {}) }, backend: "native", pfs: 1, vfsPerPf: 4 },
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

test("token: only the CLI's own configuration, each credential bound to its endpoint", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "fb-tok-"));
  writeFileSync(path.join(dir, "secret"), "topology-named\n");
  writeFileSync(path.join(dir, "dpu0.token"), "from-file\n");
  writeFileSync(
    path.join(dir, "credentials.yaml"),
    `credentials:\n  - { dpu: dpu0, endpoint: "http://10.0.0.2:8400", tokenFile: dpu0.token }\n  - { dpu: dpu1, endpoint: "http://10.0.0.3:8400/", token: inline }\n`,
  );
  const warnings: string[] = [];
  const opts = (env: NodeJS.ProcessEnv) => ({
    env: { FLEXBSO_CREDENTIALS: path.join(dir, "credentials.yaml"), FLEXBSO_STATE_DIR: path.join(dir, "none"), ...env },
    warn: (m: string) => warnings.push(m),
  });
  // the credentials file, keyed by DPU name and endpoint (path ignored, origin compared)
  assert.equal(await resolveToken(dpu("http://10.0.0.2:8400/x"), opts({})), {
    token: "from-file",
    source: path.join(dir, "dpu0.token"),
  });
  // a topology's tokenFile is never read, and the warning names the fix
  let m = await message(resolveToken(dpu("http://10.9.9.9:80", path.join(dir, "secret")), opts({})));
  assert.match(m, "binds dpu dpu0 to http://10.0.0.2:8400, not to http://10.9.9.9");
  assert.match(warnings.join("\n"), "agent.tokenFile in the topology is ignored");
  assert.match(warnings.join("\n"), "FLEXBSO_ENDPOINT_DPU0=http://10.9.9.9");
  // env tokens only when bound to that endpoint
  m = await message(resolveToken(dpu("http://10.9.9.9:80"), opts({ FLEXBSO_TOKEN: "ci-secret" })));
  assert.match(m, "$FLEXBSO_TOKEN is set but not bound to an endpoint (set $FLEXBSO_ENDPOINT)");
  m = await message(
    resolveToken(
      dpu("http://10.9.9.9:80"),
      opts({ FLEXBSO_TOKEN: "ci-secret", FLEXBSO_ENDPOINT: "http://10.9.9.9:81" }),
    ),
  );
  assert.match(m, "not to http://10.9.9.9");
  assert.equal(
    await resolveToken(dpu("http://10.9.9.9:80"), opts({ FLEXBSO_TOKEN: "ci", FLEXBSO_ENDPOINT: "http://10.9.9.9" })),
    { token: "ci", source: "$FLEXBSO_TOKEN" },
  );
  assert.equal(
    await resolveToken(
      dpu("http://10.9.9.9"),
      opts({ FLEXBSO_TOKEN_DPU0: "d0", FLEXBSO_ENDPOINT_DPU0: "http://10.9.9.9:80" }),
    ),
    { token: "d0", source: "$FLEXBSO_TOKEN_DPU0" },
  );
  // the local agent's token goes only to the URL that agent recorded beside it
  mkdirSync(path.join(dir, "state"));
  writeFileSync(path.join(dir, "state", "token"), "local\n");
  writeFileSync(path.join(dir, "state", "agent.url"), "http://127.0.0.1:8400\n");
  const local = { FLEXBSO_STATE_DIR: path.join(dir, "state") };
  assert.equal((await resolveToken(dpu("http://127.0.0.1:8400"), opts(local))).token, "local");
  // plan/show/events (role read) prefer the read token where one is configured
  assert.equal(
    (await resolveToken(dpu("http://127.0.0.1:8400"), opts(local))).source,
    path.join(dir, "state", "token"),
  );
  writeFileSync(path.join(dir, "state", "token.read"), "local-read\n");
  assert.equal(
    (await resolveToken(dpu("http://127.0.0.1:8400"), { ...opts(local), role: "read" })).token,
    "local-read",
  );
  assert.equal((await resolveToken(dpu("http://127.0.0.1:8400"), opts(local))).token, "local");
  m = await message(resolveToken(dpu("http://127.0.0.2:8400"), opts(local)));
  assert.match(m, "is sent only to http://127.0.0.1:8400");
});

/** An HTTP server that records every request's headers and answers 401. */
async function recorder(): Promise<{ url: string; seen: http.IncomingHttpHeaders[]; close(): Promise<void> }> {
  const seen: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers);
    req.resume();
    res.writeHead(401).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.2", r));
  return {
    url: `http://127.0.0.2:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

function runCliAsync(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [repoPath("bin/flexbso.js"), ...args], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    c.stderr.on("data", (d) => (stderr += d));
    const t = setTimeout(() => c.kill("SIGKILL"), 30_000);
    c.on("error", reject);
    c.on("close", (code) => {
      clearTimeout(t);
      resolve({ code, stderr });
    });
  });
}

test("plan on a topology naming an attacker's endpoint sends no credential (real CLI, recording agent)", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "fb-exfil-"));
  const attacker = await recorder();
  try {
    writeFileSync(path.join(dir, "ssh-key"), "PRIVATE-KEY\n");
    mkdirSync(path.join(dir, "state"));
    writeFileSync(path.join(dir, "state", "token"), "LOCAL-TOKEN\n");
    writeFileSync(path.join(dir, "state", "agent.url"), "http://127.0.0.1:8400\n");
    writeFileSync(
      path.join(dir, "credentials.yaml"),
      `credentials:\n  - { dpu: dpu0, endpoint: "http://10.0.0.2:8400", token: FILE-TOKEN }\n`,
    );
    const topo = path.join(dir, "t.yaml");
    writeFileSync(
      topo,
      `dpus:\n  dpu0:\n    agent: { endpoint: "${attacker.url}", tokenFile: "${path.join(dir, "ssh-key")}" }\n    pfs: 1\n    vfsPerPf: 1\n`,
    );
    const env = {
      ...process.env,
      FLEXBSO_DEBUG: "",
      FLEXBSO_TOKEN: "CI-SECRET",
      FLEXBSO_STATE_DIR: path.join(dir, "state"),
      FLEXBSO_CREDENTIALS: path.join(dir, "credentials.yaml"),
    };
    const r = await runCliAsync(["plan", topo], env);
    assert.is.not(r.code, 0, r.stderr);
    assert.match(r.stderr, "agent.tokenFile in the topology is ignored");
    assert.match(r.stderr, `FLEXBSO_ENDPOINT_DPU0=${attacker.url}`);
    for (const h of attacker.seen)
      assert.is(h.authorization, undefined, `a credential reached ${attacker.url}: ${h.authorization}`);
    for (const secret of ["PRIVATE-KEY", "LOCAL-TOKEN", "FILE-TOKEN", "CI-SECRET"])
      assert.not.match(JSON.stringify(attacker.seen), secret);
  } finally {
    await attacker.close();
  }
});

test.run();
