/**
 * Where an apply came from, recorded in the agent's events (`apply.start`, `.done`,
 * `.failed`): the digest of the plan that ran and the commit of the topology. The
 * commit is `--commit` when given, else the git HEAD of the repository holding the
 * topology, else what CI says (GITHUB_SHA, CI_COMMIT_SHA, ...).
 */
import { execFileSync } from "node:child_process";
import { statSync } from "node:fs";
import * as path from "node:path";

import type { ApplyAudit } from "../state/events.js";

export type { ApplyAudit };

/** CI variables holding the commit being built, in the order they are trusted. */
export const CI_COMMIT_VARS = [
  "GITHUB_SHA",
  "CI_COMMIT_SHA",
  "BUILD_SOURCEVERSION",
  "GIT_COMMIT",
  "BITBUCKET_COMMIT",
] as const;

/** The commit of `topology` (a file or directory), or undefined when nothing says. */
export function commitOf(
  topology: string | undefined,
  opts: { commit?: string; env?: NodeJS.ProcessEnv } = {},
): Omit<ApplyAudit, "planDigest"> {
  if (opts.commit) return { commit: opts.commit, commitSource: "--commit" };
  if (topology !== undefined) {
    const git = gitCommit(topology);
    if (git) return git;
  }
  const env = opts.env ?? process.env;
  for (const name of CI_COMMIT_VARS) {
    const v = env[name];
    if (v) return { commit: v, commitSource: name };
  }
  return {};
}

function gitCommit(topology: string): Omit<ApplyAudit, "planDigest"> | undefined {
  let dir: string;
  try {
    dir = statSync(topology).isDirectory() ? topology : path.dirname(topology);
  } catch {
    return undefined;
  }
  const git = (args: string[]) =>
    execFileSync("git", ["-C", dir, ...args], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 5_000,
    }).trim();
  try {
    const commit = git(["rev-parse", "--verify", "HEAD"]);
    if (!/^[0-9a-f]{40,64}$/.test(commit)) return undefined;
    const dirty = git(["status", "--porcelain", "--untracked-files=no", "--", path.resolve(topology)]) !== "";
    return { commit, commitSource: "git", ...(dirty ? { dirty } : {}) };
  } catch {
    return undefined; // not a git checkout, or no git
  }
}
