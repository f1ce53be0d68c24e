import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";

let found: { root: string; version: string } | undefined;

/** This flexbso install: the nearest directory above this file whose package.json is flexbso's, and its version. */
export function flexbsoPackage(): { root: string; version: string } {
  if (found) return found;
  for (let d = __dirname; ; d = path.dirname(d)) {
    const pj = path.join(d, "package.json");
    if (existsSync(pj)) {
      const json = JSON.parse(readFileSync(pj, "utf8")) as { name?: string; version?: string };
      if (json.name === "flexbso") {
        found = { root: d, version: json.version ?? "0.0.0" };
        return found;
      }
    }
    if (path.dirname(d) === d) throw new Error(`cannot find flexbso's package.json above ${__dirname}`);
  }
}
