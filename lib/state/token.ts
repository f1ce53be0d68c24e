/**
 * The agent's bearer token: 32 random bytes, hex, in `<stateDir>/token` with mode 0600,
 * created on first start. Compared in constant time.
 */
import { promises as fsp, constants as fsc } from "node:fs";
import * as path from "node:path";
import { randomBytes, timingSafeEqual, createHash } from "node:crypto";
import { fsyncDir } from "./atomic.js";
import { linkRefused, NOFOLLOW } from "./safety.js";

/** File name of the (admin) token inside the state dir. */
export const TOKEN_FILE = "token";
/** File name of the read token (plan, show, events, metrics) inside the state dir. */
export const READ_TOKEN_FILE = "token.read";

/**
 * Read the token in `stateDir`, creating it (0600) if it does not exist. An existing
 * token file that others can read or write is narrowed to 0600 (`onWarn` says so).
 */
export async function ensureToken(
  stateDir: string,
  onWarn: (message: string) => void = () => undefined,
  name: string = TOKEN_FILE,
): Promise<string> {
  const file = path.join(stateDir, name);
  try {
    const token = await readToken(file);
    const mode = (await fsp.lstat(file)).mode & 0o777;
    if (mode & 0o077) {
      await fsp.chmod(file, 0o600);
      onWarn(
        `token file ${file} had mode ${mode.toString(8).padStart(4, "0")} (readable by other users); changed it to 0600`,
      );
    }
    return token;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  const token = randomBytes(32).toString("hex");
  try {
    const fh = await fsp.open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | NOFOLLOW, 0o600);
    try {
      await fh.writeFile(token + "\n");
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsyncDir(stateDir);
    return token;
  } catch (e) {
    // another process created it between our read and our create: use theirs
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return readToken(file);
    throw e;
  }
}

/** Read a token file (first line, trimmed). @throws if empty or unreadable */
export async function readToken(file: string): Promise<string> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, fsc.O_RDONLY | NOFOLLOW);
  } catch (e) {
    throw linkRefused(file, e);
  }
  let text: string;
  try {
    if (!(await fh.stat()).isFile())
      throw Object.assign(new Error(`token file ${file} is not a regular file; remove it`), { code: "NOT_A_FILE" });
    text = await fh.readFile("utf8");
  } finally {
    await fh.close();
  }
  const token = text.split("\n")[0]?.trim() ?? "";
  if (!token) throw Object.assign(new Error(`token file ${file} is empty`), { code: "EMPTY_TOKEN" });
  return token;
}

/**
 * Constant-time check of an `Authorization` header value against the token. Both sides
 * are hashed first so that the comparison time does not depend on the length either.
 */
export function checkBearer(header: string | undefined, token: string): boolean {
  if (!header || !header.startsWith("Bearer ")) return false;
  const given = createHash("sha256").update(header.slice(7).trim()).digest();
  const want = createHash("sha256").update(token).digest();
  return timingSafeEqual(given, want);
}
