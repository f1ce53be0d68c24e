/**
 * Where the CLI finds an agent's bearer token: only in its own configuration, never in
 * the topology (a topology is untrusted input: a pull request can name any endpoint and
 * any local file). Every credential is bound to one endpoint (scheme, host and port) and
 * is sent to that endpoint only.
 *
 * Looked up, first match wins, for DPU `d` at endpoint `e`:
 *  1. the credentials file ($FLEXBSO_CREDENTIALS, else $XDG_CONFIG_HOME/flexbso/credentials.yaml,
 *     else ~/.config/flexbso/credentials.yaml): an entry with `dpu: d` and `endpoint: e`
 *     and a `token` or `tokenFile`;
 *  2. $FLEXBSO_TOKEN_<D> with $FLEXBSO_ENDPOINT_<D> = e (<D>: the DPU name upper-cased,
 *     other than A-Z0-9 as `_`);
 *  3. $FLEXBSO_TOKEN with $FLEXBSO_ENDPOINT = e;
 *  With role `read` (plan, show, events), a read token configured there is preferred:
 *  `readToken`/`readTokenFile` in the file, $FLEXBSO_READ_TOKEN[_<D>], the local `token.read`.
 *  4. the local agent's token ($FLEXBSO_STATE_DIR/token, else /var/lib/flexbso/token),
 *     for the endpoint that agent wrote beside it (`agent.url`) only: a loopback
 *     address alone proves nothing, any local user can listen on 127.0.0.2.
 * An https endpoint is verified before anything is sent: against the entry's `ca` (a PEM
 * file) and/or `fingerprint` (SHA-256 pin), the local agent's `agent.fingerprint`, or
 * else the system's CAs.
 */
import { promises as fsp } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DEFAULT_STATE_DIR, LOCAL_FINGERPRINT_FILE, LOCAL_URL_FILE } from "../state/layout.js";
import type { AgentTlsOptions } from "./client.js";

/** A credential, where it came from, or why none applies. */
export type CredentialLookup =
  | { readonly ok: true; readonly token: string; readonly source: string; readonly tls?: AgentTlsOptions }
  | { readonly ok: false; readonly problems: readonly string[] };

/** The credentials file the CLI reads. */
export function credentialsFile(env: NodeJS.ProcessEnv): string {
  if (env.FLEXBSO_CREDENTIALS) return env.FLEXBSO_CREDENTIALS;
  const base = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), ".config");
  return path.join(base, "flexbso", "credentials.yaml");
}

/** `scheme://host:port` of an endpoint, or undefined when it is not a URL. */
export function endpointOrigin(endpoint: string): string | undefined {
  try {
    const u = new URL(endpoint);
    return u.protocol === "http:" || u.protocol === "https:" ? u.origin : undefined;
  } catch {
    return undefined;
  }
}

/** The env-variable suffix of a DPU name. */
export function envSuffix(dpu: string): string {
  return dpu.toUpperCase().replace(/[^A-Z0-9]/g, "_");
}

/** The first line of a token file, or why it cannot be used. */
export async function readTokenFile(file: string): Promise<{ token?: string; problem?: string }> {
  try {
    const token = (await fsp.readFile(file, "utf8")).split("\n")[0]!.trim();
    return token ? { token } : { problem: `${file} is empty` };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return {
      problem:
        code === "ENOENT"
          ? `${file} does not exist`
          : code === "EACCES"
            ? `${file} is not readable by this user (permission denied)`
            : `cannot read ${file} (${(e as Error).message})`,
    };
  }
}

interface FileEntry {
  dpu?: unknown;
  endpoint?: unknown;
  token?: unknown;
  tokenFile?: unknown;
  readToken?: unknown;
  readTokenFile?: unknown;
  ca?: unknown;
  fingerprint?: unknown;
}

/** What a command needs: `read` (plan, show, events) prefers the read token where one is configured. */
export type CredentialRole = "read" | "admin";

/** The token for DPU `dpu` at `endpoint` from the CLI's own configuration. */
export async function lookupCredential(
  dpu: string,
  endpoint: string,
  env: NodeJS.ProcessEnv,
  role: CredentialRole = "admin",
): Promise<CredentialLookup> {
  const problems: string[] = [];
  const origin = endpointOrigin(endpoint);
  if (!origin) return { ok: false, problems: [`endpoint '${endpoint}' is not an http(s) URL`] };
  const sameOrigin = (e: unknown) => typeof e === "string" && endpointOrigin(e) === origin;

  const file = credentialsFile(env);
  let text: string | undefined;
  try {
    text = await fsp.readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") problems.push(`cannot read ${file} (${(e as Error).message})`);
  }
  if (text !== undefined) {
    let doc: { credentials?: unknown } | null;
    try {
      // Loaded only when there is a file to read: the Terraform provider's launches rarely need it.
      const { parse: parseYaml } = require("yaml") as typeof import("yaml");
      doc = parseYaml(text) as { credentials?: unknown } | null;
    } catch (e) {
      doc = null;
      problems.push(`${file} is not valid YAML (${(e as Error).message.split("\n")[0]})`);
    }
    const list = doc && Array.isArray(doc.credentials) ? (doc.credentials as FileEntry[]) : [];
    if (doc && !Array.isArray(doc.credentials)) problems.push(`${file} has no 'credentials:' list`);
    const forDpu = list.filter((c) => c && c.dpu === dpu);
    const hit = forDpu.find((c) => sameOrigin(c.endpoint));
    if (hit) {
      // how an https endpoint is verified: the entry's CA file and/or pinned fingerprint
      let tls: AgentTlsOptions | undefined;
      if (hit.ca !== undefined || hit.fingerprint !== undefined) {
        let ca: string | undefined;
        if (typeof hit.ca === "string") {
          const caFile = path.resolve(
            path.dirname(file),
            hit.ca.startsWith("~/") && env.HOME ? path.join(env.HOME, hit.ca.slice(2)) : hit.ca,
          );
          try {
            ca = await fsp.readFile(caFile, "utf8");
          } catch (e) {
            return {
              ok: false,
              problems: [
                ...problems,
                `${file}: dpu ${dpu}: ca ${caFile} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
              ],
            };
          }
        }
        tls = {
          ...(ca !== undefined ? { ca } : {}),
          ...(typeof hit.fingerprint === "string" ? { fingerprint: hit.fingerprint } : {}),
          source: `${file} (dpu ${dpu})`,
        };
      }
      const inline = role === "read" && typeof hit.readToken === "string" ? hit.readToken : hit.token;
      const named = role === "read" && typeof hit.readTokenFile === "string" ? hit.readTokenFile : hit.tokenFile;
      if (typeof inline === "string" && inline.trim())
        return { ok: true, token: inline.trim(), source: `${file} (dpu ${dpu})`, ...(tls ? { tls } : {}) };
      if (typeof named === "string") {
        const tf = path.resolve(
          path.dirname(file),
          named.startsWith("~/") && env.HOME ? path.join(env.HOME, named.slice(2)) : named,
        );
        const r = await readTokenFile(tf);
        if (r.token) return { ok: true, token: r.token, source: tf, ...(tls ? { tls } : {}) };
        problems.push(`${file}: dpu ${dpu}: ${r.problem}`);
      } else {
        problems.push(`${file}: the entry of dpu ${dpu} at ${origin} has neither 'token' nor 'tokenFile'`);
      }
    } else if (forDpu.length) {
      problems.push(
        `${file} binds dpu ${dpu} to ${forDpu.map((c) => String(c.endpoint)).join(", ")}, not to ${origin}, so its token is not sent there`,
      );
    }
  }

  const sfx = envSuffix(dpu);
  const pairs: (readonly [string, string])[] = [
    [`FLEXBSO_TOKEN_${sfx}`, `FLEXBSO_ENDPOINT_${sfx}`],
    ["FLEXBSO_TOKEN", "FLEXBSO_ENDPOINT"],
  ];
  if (role === "read")
    pairs.unshift([`FLEXBSO_READ_TOKEN_${sfx}`, `FLEXBSO_ENDPOINT_${sfx}`], ["FLEXBSO_READ_TOKEN", "FLEXBSO_ENDPOINT"]);
  for (const [tk, ek] of pairs) {
    const token = env[tk]?.trim();
    if (!token) continue;
    if (sameOrigin(env[ek])) return { ok: true, token, source: `$${tk}` };
    problems.push(
      env[ek]
        ? `$${tk} is bound to $${ek}=${env[ek]}, not to ${origin}, so it is not sent there`
        : `$${tk} is set but not bound to an endpoint (set $${ek}), so it is not sent`,
    );
  }

  // The local agent writes the URL it serves beside its token; the token goes there only.
  const stateDir = env.FLEXBSO_STATE_DIR || DEFAULT_STATE_DIR;
  const local = path.join(stateDir, "token");
  const urlFile = path.join(stateDir, LOCAL_URL_FILE);
  let localUrl: string | undefined;
  try {
    localUrl = (await fsp.readFile(urlFile, "utf8")).trim();
  } catch {
    /* no local agent */
  }
  if (localUrl !== undefined && endpointOrigin(localUrl) === origin) {
    // an https local agent wrote its certificate's fingerprint beside its URL: pinned
    const fp = (await fsp.readFile(path.join(stateDir, LOCAL_FINGERPRINT_FILE), "utf8").catch(() => "")).trim();
    const tls = fp ? { tls: { fingerprint: fp, source: path.join(stateDir, LOCAL_FINGERPRINT_FILE) } } : {};
    if (role === "read") {
      const rr = await readTokenFile(path.join(stateDir, "token.read"));
      if (rr.token) return { ok: true, token: rr.token, source: path.join(stateDir, "token.read"), ...tls };
    }
    const r = await readTokenFile(local);
    if (r.token) return { ok: true, token: r.token, source: local, ...tls };
    problems.push(r.problem!);
  } else {
    problems.push(
      localUrl === undefined
        ? `no local agent serves ${origin} (${urlFile} does not exist)`
        : `the local agent's token (${local}) is sent only to ${localUrl} (${urlFile}), not to ${origin}`,
    );
  }
  return { ok: false, problems };
}

/** The fix for a DPU without a credential, naming the exact settings. */
export function credentialFix(dpu: string, endpoint: string, env: NodeJS.ProcessEnv): string {
  const origin = endpointOrigin(endpoint) ?? endpoint;
  return (
    `add '- { dpu: ${dpu}, endpoint: ${origin}, tokenFile: <file> }' under 'credentials:' in ${credentialsFile(env)}, ` +
    `or set FLEXBSO_TOKEN_${envSuffix(dpu)} and FLEXBSO_ENDPOINT_${envSuffix(dpu)}=${origin}`
  );
}
