import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";

/** Repository root, found from the compiled (dist/test/helpers) or source (test/helpers) location. */
export const repoRoot: string = (() => {
  let dir = __dirname;
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("package.json not found above " + __dirname);
    dir = up;
  }
  return dir;
})();

/** Absolute path of a file in the repository (sources, examples, golden files). */
export function repoPath(...parts: string[]): string {
  return resolve(repoRoot, ...parts);
}

/** A fresh temporary directory; `cleanup()` removes it. */
export function tempDir(prefix = "flexbso-test-"): { path: string; cleanup(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/** Writes `files` (relative name -> content) under `dir`, creating folders. */
export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
}

/** Lists a directory's entries (sorted), or [] when it does not exist. */
export function listDir(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/flexbso.js ARGS` as a user would (cwd defaults to the repo root). */
export function runCli(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): CliResult {
  const r = spawnSync(process.execPath, [repoPath("bin/flexbso.js"), ...args], {
    cwd: options.cwd ?? repoRoot,
    env: { ...process.env, FLEXBSO_DEBUG: "", ...options.env },
    encoding: "utf8",
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Compares `actual` with test/golden/NAME; with UPDATE_GOLDEN=1 rewrites the file instead.
 * Returns the expected text (for assert.is).
 */
export function golden(name: string, actual: string): string {
  const file = repoPath("test/golden", name);
  if (process.env["UPDATE_GOLDEN"] === "1" || !existsSync(file)) {
    if (process.env["UPDATE_GOLDEN"] !== "1")
      throw new Error(`golden file ${file} is missing; run with UPDATE_GOLDEN=1 to create it`);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, actual);
  }
  return readFileSync(file, "utf8");
}
