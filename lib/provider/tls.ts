/**
 * go-plugin's AutoMTLS, server side. Terraform passes its own self-signed client
 * certificate in PLUGIN_CLIENT_CERT (PEM); the plugin requires client certificates
 * signed by it, serves a self-signed certificate of its own (CA:TRUE, SAN DNS:localhost,
 * serverAuth + clientAuth, as go-plugin makes them) and puts that certificate's DER,
 * base64 without padding, in the 6th field of the handshake line.
 *
 * The certificate comes from lib/tls/cert.ts. It and its key are cached (0600)
 * because a fresh key costs each launch time, and Terraform launches a provider several
 * times per command.
 */
import { createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { writeFileAtomicSync } from "../state/atomic.js";
import { createSelfSignedCert } from "../tls/cert.js";

/** A certificate and its key, PEM. */
export interface ServerCert {
  readonly certPem: string;
  readonly keyPem: string;
  /** Base64 DER without '=' padding, for the handshake. */
  readonly handshake: string;
}

/** A new self-signed certificate as go-plugin's AutoMTLS expects one (SAN DNS:localhost). */
export function createServerCert(now = new Date(), days = 30): ServerCert {
  const c = createSelfSignedCert({ now, days, names: ["localhost"] });
  return { certPem: c.certPem, keyPem: c.keyPem, handshake: c.der.toString("base64").replace(/=+$/, "") };
}

/** Where the certificate is cached: $FLEXBSO_PROVIDER_CACHE, else $XDG_CACHE_HOME/flexbso, else ~/.cache/flexbso. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return (
    env["FLEXBSO_PROVIDER_CACHE"] ?? path.join(env["XDG_CACHE_HOME"] ?? path.join(os.homedir(), ".cache"), "flexbso")
  );
}

/**
 * The cached server certificate, or a new one (then cached). A cached one is reused
 * while it has more than a day left and its key matches it. Caching is best effort: an
 * unwritable cache dir only costs time.
 */
export function serverCert(dir = cacheDir(), now = new Date()): ServerCert {
  const file = path.join(dir, "provider-tls.pem");
  try {
    const text = readFileSync(file, "utf8");
    const certPem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/.exec(text)?.[0];
    const keyPem = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n/.exec(text)?.[0];
    if (certPem && keyPem) {
      const x = new X509Certificate(certPem);
      if (
        new Date(x.validTo).getTime() - now.getTime() > 86400_000 &&
        x.checkPrivateKey(createPrivateKey(keyPem)) &&
        x.ca
      ) {
        return { certPem, keyPem, handshake: x.raw.toString("base64").replace(/=+$/, "") };
      }
    }
  } catch {
    // absent or unreadable: make a new one
  }
  const fresh = createServerCert(now);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Several provider processes may start at once: each replaces the file whole.
    writeFileAtomicSync(file, fresh.keyPem + fresh.certPem, { mode: 0o600 });
  } catch {
    // no cache: the next launch makes its own
  }
  return fresh;
}

/** The public key of a PEM certificate matches `keyPem` (used by tests). */
export function certMatchesKey(certPem: string, keyPem: string): boolean {
  return new X509Certificate(certPem).publicKey.equals(createPublicKey(keyPem));
}
