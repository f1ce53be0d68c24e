/**
 * Self-signed X.509 v3 certificates (ECDSA P-256, SHA-256) for the TLS the project
 * serves: the Terraform provider's AutoMTLS and the agent's HTTPS. Node cannot create
 * certificates, so this writes the few DER structures one needs. Also the SHA-256
 * fingerprint form that CLI pins use.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, X509Certificate } from "node:crypto";
import { isIP } from "node:net";

/** A certificate and its key, PEM. */
export interface CertPair {
  readonly certPem: string;
  readonly keyPem: string;
  /** The certificate, DER. */
  readonly der: Buffer;
}

/** What a new certificate says. */
export interface CertOptions {
  /** Subject (and issuer) common name. @default "localhost" */
  readonly commonName?: string;
  /** subjectAltName entries: DNS names and IP addresses. @default ["localhost"] */
  readonly names?: readonly string[];
  /** @default now */
  readonly now?: Date;
  /** Validity in days. @default 30 */
  readonly days?: number;
}

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

/** IPv4 or IPv6 address bytes for an iPAddress subjectAltName. */
function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split(".").map(Number));
  const [head, tail = ""] = ip.includes("::") ? ip.split("::") : [ip, undefined as unknown as string];
  const h = head ? head.split(":") : [];
  const t = ip.includes("::") && tail ? tail.split(":") : [];
  const groups = ip.includes("::") ? [...h, ...Array(8 - h.length - t.length).fill("0"), ...t] : h;
  return Buffer.from(
    groups.flatMap((g) => {
      const v = parseInt(g, 16);
      return [v >> 8, v & 0xff];
    }),
  );
}

/**
 * A new self-signed certificate: CA:TRUE (it is its own trust anchor), serverAuth and
 * clientAuth, the given names in subjectAltName (DNS or IP).
 */
export function createSelfSignedCert(opts: CertOptions = {}): CertPair {
  const now = opts.now ?? new Date();
  const days = opts.days ?? 30;
  const names = opts.names ?? ["localhost"];
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const name = seq(
    set(seq(oid("2.5.4.10"), utf8("FlexBSO"))),
    set(seq(oid("2.5.4.3"), utf8(opts.commonName ?? "localhost"))),
  );
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const extension = (id: string, critical: boolean, value: Buffer) =>
    seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))),
    integer(serial),
    ECDSA_SHA256,
    name,
    seq(time(new Date(now.getTime() - 60 * 60 * 1000)), time(new Date(now.getTime() + days * 86400_000))),
    name,
    publicKey.export({ type: "spki", format: "der" }),
    explicit(
      3,
      seq(
        extension("2.5.29.15", true, bits(Buffer.from([0xa4]), 2)), // digitalSignature, keyEncipherment, keyCertSign
        extension("2.5.29.37", false, seq(oid("1.3.6.1.5.5.7.3.1"), oid("1.3.6.1.5.5.7.3.2"))), // serverAuth, clientAuth
        extension("2.5.29.19", true, seq(bool(true))), // CA:TRUE
        extension(
          "2.5.29.17",
          false,
          seq(...names.map((n) => (isIP(n) ? tlv(0x87, ipBytes(n)) : tlv(0x82, Buffer.from(n))))),
        ), // DNS:/IP: names
      ),
    ),
  );
  const der = seq(tbs, ECDSA_SHA256, bits(sign("sha256", tbs, privateKey)));
  return {
    certPem: pem("CERTIFICATE", der),
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    der,
  };
}

function pem(label: string, der: Buffer): string {
  const b64 = der
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** SHA-256 fingerprint of a certificate (PEM or DER) as lowercase hex without separators. */
export function certFingerprint(cert: string | Buffer): string {
  const der = typeof cert === "string" ? new X509Certificate(cert).raw : cert;
  return createHash("sha256").update(der).digest("hex");
}

/**
 * A pin as users write it ("AB:CD:...", "sha256:abcd...", any case) in the form
 * {@link certFingerprint} gives, or undefined when it is not 32 bytes of hex.
 */
export function normalizeFingerprint(pin: string): string | undefined {
  const hex = pin
    .trim()
    .replace(/^sha256[:/]/i, "")
    .replace(/[:\s]/g, "")
    .toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : undefined;
}
