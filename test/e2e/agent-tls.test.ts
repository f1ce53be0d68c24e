/**
 * The agent over HTTPS: `flexbso agent --generate-cert` makes a development pair, the
 * agent serves it, and the real CLI verifies it against a pinned fingerprint or a CA
 * file from its credentials config. A wrong pin, or no trust at all, is refused before
 * any byte of the request (and so the credential) is written: a recording TLS server
 * stands in for an impostor at the pinned endpoint.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, promises as fsp, statSync } from "node:fs";
import * as path from "node:path";
import * as tls from "node:tls";
import { createSelfSignedCert } from "../../lib/tls/cert.js";
import { BIN, cleanupAll, killEngine, run, sleep, tempDir } from "./helpers/agent.js";

let agent: ChildProcess | undefined;
let runDir = "";
test.after(async () => {
  agent?.kill("SIGTERM");
  await killEngine(runDir);
  await cleanupAll();
});

const flexbso = (args: string[], env: NodeJS.ProcessEnv = {}) => {
  const e: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete e.FLEXBSO_TOKEN;
  return run(process.execPath, [BIN, ...args], { env: e });
};

async function topology(dir: string, endpoint: string): Promise<string> {
  const file = path.join(dir, `t-${Math.random().toString(36).slice(2)}.yaml`);
  await fsp.writeFile(
    file,
    `dpus:\n  dpu0:\n    agent: { endpoint: "${endpoint}" }\n    bdevs: {}\n    functions: {}\n`,
  );
  return file;
}

async function credentials(dir: string, endpoint: string, tokenFile: string, extra: string): Promise<string> {
  const file = path.join(dir, `c-${Math.random().toString(36).slice(2)}.yaml`);
  await fsp.writeFile(
    file,
    `credentials:\n  - { dpu: dpu0, endpoint: "${endpoint}", tokenFile: ${JSON.stringify(tokenFile)}${extra} }\n`,
  );
  return file;
}

test("agent TLS: generated pair served; right pin and CA file work; wrong pin and no trust refused before any byte is sent", async () => {
  const dir = tempDir("fbe2e-tls-");
  const gen = await flexbso(["agent", "--generate-cert", path.join(dir, "tls"), "--cert-host", "127.0.0.1,localhost"]);
  assert.is(gen.code, 0, gen.stdout + gen.stderr);
  const fp = /SHA-256 fingerprint: ([0-9a-f]{64})/.exec(gen.stdout)?.[1];
  assert.ok(fp, gen.stdout);
  const cert = path.join(dir, "tls", "agent.crt");
  const key = path.join(dir, "tls", "agent.key");
  assert.is(statSync(key).mode & 0o777, 0o600);
  assert.match(gen.stdout, `tls: { cert: ${cert}, key: ${key} }`);

  const stateDir = path.join(dir, "state");
  runDir = path.join(dir, "run");
  await fsp.writeFile(path.join(dir, "agent.yaml"), JSON.stringify({ tls: { cert, key } }));
  agent = spawn(
    process.execPath,
    [
      BIN,
      "agent",
      "--config",
      path.join(dir, "agent.yaml"),
      "--listen",
      "127.0.0.1:0",
      "--state-dir",
      stateDir,
      "--run-dir",
      runDir,
      "--data-dir",
      path.join(dir, "data"),
      "--dpu",
      "dpu0",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  agent.stderr!.on("data", (d: Buffer) => (log += d));
  const urlFile = path.join(runDir, "agent.url");
  for (let i = 0; i < 400 && !existsSync(urlFile); i++) await sleep(50);
  assert.ok(existsSync(urlFile), `agent did not start:\n${log}`);
  const url = (await fsp.readFile(urlFile, "utf8")).trim();
  assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const token = path.join(stateDir, "token");
  const t = await topology(dir, url);
  const noLocal = { FLEXBSO_STATE_DIR: path.join(dir, "elsewhere") };

  // plan exits 2: the DPU is new to this agent (it answered, verified)
  const pinned = await flexbso(["plan", t], {
    ...noLocal,
    FLEXBSO_CREDENTIALS: await credentials(
      dir,
      url,
      token,
      `, fingerprint: "${fp!.toUpperCase().replace(/(..)(?!$)/g, "$1:")}"`,
    ),
  });
  assert.is(pinned.code, 2, `right pin (colon form): ${pinned.stdout}${pinned.stderr}`);
  const byCa = await flexbso(["plan", t], {
    ...noLocal,
    FLEXBSO_CREDENTIALS: await credentials(dir, url, token, `, ca: ${JSON.stringify(cert)}`),
  });
  assert.is(byCa.code, 2, `CA file: ${byCa.stdout}${byCa.stderr}`);
  // the local agent's own fingerprint file pins it for the CLI on the DPU
  const local = await flexbso(["plan", t], {
    FLEXBSO_STATE_DIR: stateDir,
    FLEXBSO_CREDENTIALS: path.join(dir, "none.yaml"),
  });
  assert.is(local.code, 2, `local agent: ${local.stdout}${local.stderr}`);

  const wrong = await flexbso(["plan", t], {
    ...noLocal,
    FLEXBSO_CREDENTIALS: await credentials(dir, url, token, `, fingerprint: "${"ab".repeat(32)}"`),
  });
  assert.is(wrong.code, 1, wrong.stdout + wrong.stderr);
  assert.match(wrong.stderr, `not the pinned ${"ab".repeat(32)}`);
  assert.match(wrong.stderr, "no credential was sent");
  const untrusted = await flexbso(["plan", t], {
    ...noLocal,
    FLEXBSO_CREDENTIALS: await credentials(dir, url, token, ""),
  });
  assert.is(untrusted.code, 1, untrusted.stdout + untrusted.stderr);
  assert.match(untrusted.stderr, "its certificate is not trusted");
  assert.match(untrusted.stderr, "fingerprint: (its SHA-256 pin)");

  // an impostor at the pinned endpoint: the handshake completes, nothing else arrives
  const other = createSelfSignedCert({ names: ["127.0.0.1"] });
  const seen: Buffer[] = [];
  let connections = 0;
  const impostor = tls.createServer({ cert: other.certPem, key: other.keyPem }, (s) => {
    s.on("data", (d: Buffer) => seen.push(d));
    s.on("error", () => undefined);
  });
  impostor.on("connection", () => connections++);
  impostor.on("tlsClientError", () => undefined);
  await new Promise<void>((r) => impostor.listen(0, "127.0.0.1", r));
  const fake = `https://127.0.0.1:${(impostor.address() as { port: number }).port}`;
  try {
    const r = await flexbso(["plan", await topology(dir, fake)], {
      ...noLocal,
      FLEXBSO_CREDENTIALS: await credentials(dir, fake, token, `, fingerprint: "${fp}"`),
    });
    assert.is(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, "not the pinned");
    await sleep(100);
    assert.is(connections, 1, "the CLI reached the impostor");
    assert.is(Buffer.concat(seen).length, 0, `bytes reached the impostor: ${Buffer.concat(seen).toString()}`);
  } finally {
    impostor.close();
  }
});

test.run();
