/** Binary and decimal size suffixes users may write, e.g. "64GiB", "512MiB", "1.5G", "4096", "1PiB". */
const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  tb: 1000 ** 4,
  p: 1024 ** 5,
  pib: 1024 ** 5,
  pb: 1000 ** 5,
};

const SIZE_RE = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/;

/**
 * Parses a size to bytes. Bare suffixes `K`/`M`/`G`/`T` are binary (like qemu-img);
 * `KB`/`MB`/... are decimal. Returns undefined for anything that is not a whole number of bytes.
 */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== "string") return undefined;
  const m = SIZE_RE.exec(value);
  if (!m) return undefined;
  const unit = UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Number(m[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Whether `value` is written as a size but is more bytes than a size may be (Number.MAX_SAFE_INTEGER, just under 8 PiB). */
export function sizeTooLarge(value: unknown): boolean {
  if (typeof value === "number") return Number.isInteger(value) && value > Number.MAX_SAFE_INTEGER;
  if (typeof value !== "string") return false;
  const m = SIZE_RE.exec(value);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  return unit !== undefined && Number(m![1]) * unit > Number.MAX_SAFE_INTEGER;
}

/** Renders bytes the short way a human reads them: "1 GiB", "64 KiB", "1536 B". */
export function formatSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  let v = bytes;
  while (i < units.length - 1 && v >= 1024 && v % 1024 === 0) {
    v /= 1024;
    i++;
  }
  if (i === 0 && bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return `${v} ${units[i]}`;
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0 && n <= 2 ** 30;
}
