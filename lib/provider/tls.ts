/**
 * go-plugin's AutoMTLS, server side. Terraform passes its own self-signed client
 * certificate in PLUGIN_CLIENT_CERT (PEM); the plugin requires client certificates
 * signed by it, serves a self-signed certificate of its own (CA:TRUE, SAN DNS:localhost,
 * serverAuth + clientAuth, as go-plugin makes them) and puts that certificate's DER,
 * base64 without padding, in the 6th field of the handshake line.
 *
 * Node cannot create certificates, so this writes the few DER structures an X.509 v3
 * certificate needs (ECDSA P-256, SHA-256). The certificate and key are cached (0600)
 * because a fresh key costs each launch time, and Terraform launches a provider several
 * times per command.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, X509Certificate } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { writeFileAtomicSync } from "../state/atomic.js";

/** A certificate and its key, PEM. */
export interface ServerCert {
  readonly certPem: string;
  readonly keyPem: string;
  /** Base64 DER without '=' padding, for the handshake. */
  readonly handshake: string;
}

// --- DER ----------------------------------------------------------------------------

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const tlv = (tag: number, ...body: Buffer[]): Buffer => {
  const content = Buffer.concat(body);
  return Buffer.concat([Buffer.from([tag]), len(content.length), content]);
};
const seq = (...items: Buffer[]) => tlv(0x30, ...items);
const set = (...items: Buffer[]) => tlv(0x31, ...items);
const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const octets = (b: Buffer) => tlv(0x04, b);
const bits = (b: Buffer, unused = 0) => tlv(0x03, Buffer.from([unused]), b);
const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, "utf8"));
const explicit = (n: number, b: Buffer) => tlv(0xa0 | n, b);

function oid(dotted: string): Buffer {
  const parts = dotted.split(".").map(Number);
  const out: number[] = [parts[0]! * 40 + parts[1]!];
  for (const p of parts.slice(2)) {
    const groups: number[] = [];
    let v = p;
    do {
      groups.unshift(v & 0x7f);
      v = Math.floor(v / 128);
    } while (v > 0);
    for (let i = 0; i < groups.length - 1; i++) groups[i]! |= 0x80;
    out.push(...groups);
  }
  return tlv(0x06, Buffer.from(out));
}

function integer(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const v = b.subarray(i);
  return tlv(0x02, v[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
}

function time(d: Date): Buffer {
  const p = (n: number) => String(n).padStart(2, "0");
  const body = `${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  const y = d.getUTCFullYear();
  // RFC 5280: UTCTime through 2049, GeneralizedTime after.
  return y < 2050 ? tlv(0x17, Buffer.from(`${p(y % 100)}${body}`)) : tlv(0x18, Buffer.from(`${y}${body}`));
}

const ECDSA_SHA256 = seq(oid("1.2.840.10045.4.3.2"));

/** A new self-signed certificate as go-plugin's AutoMTLS expects one. */
export function createServerCert(now = new Date(), days = 30): ServerCert {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const name = seq(set(seq(oid("2.5.4.10"), utf8("FlexBSO"))), set(seq(oid("2.5.4.3"), utf8("localhost"))));
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const extension = (id: string, critical: boolean, value: Buffer) => seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))),
    integer(serial),
    ECDSA_SHA256,
    name,
    seq(time(new Date(now.getTime() - 60 * 60 * 1000)), time(new Date(now.getTime() + days * 86400_000))),
    name,
    publicKey.export({ type: "spki", format: "der" }),
    explicit(3, seq(
      extension("2.5.29.15", true, bits(Buffer.from([0xa4]), 2)), // digitalSignature, keyEncipherment, keyCertSign
      extension("2.5.29.37", false, seq(oid("1.3.6.1.5.5.7.3.1"), oid("1.3.6.1.5.5.7.3.2"))), // serverAuth, clientAuth
      extension("2.5.29.19", true, seq(bool(true))), // CA:TRUE
      extension("2.5.29.17", false, seq(tlv(0x82, Buffer.from("localhost")))), // DNS:localhost
    )),
  );
  const der = seq(tbs, ECDSA_SHA256, bits(sign("sha256", tbs, privateKey)));
  return {
    certPem: pem("CERTIFICATE", der),
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    handshake: der.toString("base64").replace(/=+$/, ""),
  };
}

function pem(label: string, der: Buffer): string {
  const b64 = der.toString("base64").replace(/(.{64})/g, "$1\n").replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** Where the certificate is cached: $FLEXBSO_PROVIDER_CACHE, else $XDG_CACHE_HOME/flexbso, else ~/.cache/flexbso. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env["FLEXBSO_PROVIDER_CACHE"] ?? path.join(env["XDG_CACHE_HOME"] ?? path.join(os.homedir(), ".cache"), "flexbso");
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
      if (new Date(x.validTo).getTime() - now.getTime() > 86400_000 && x.checkPrivateKey(createPrivateKey(keyPem)) && x.ca) {
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
