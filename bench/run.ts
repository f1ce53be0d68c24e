import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { runBench, type BenchFn } from "./harness.js";

/**
 * `npm run bench -- NAME [ARGS...]`: loads bench/NAME.ts (compiled to dist/bench/NAME.js),
 * whose exported `bench(ctx)` (or `run(ctx)`, or default export) returns rows; the
 * harness prints them and writes bench/results/NAME.json.
 */
async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  const available = readdirSync(__dirname)
    .filter((f) => f.endsWith(".js") && !["run.js", "harness.js"].includes(f))
    .map((f) => f.slice(0, -3))
    .sort();
  if (!name || !/^[a-z0-9-]+$/.test(name) || !existsSync(join(__dirname, `${name}.js`))) {
    process.stderr.write(`usage: npm run bench -- NAME [ARGS...]\navailable: ${available.join(", ") || "(none)"}\n`);
    return 1;
  }
  const mod = require(join(__dirname, `${name}.js`)) as { bench?: BenchFn; run?: BenchFn; default?: BenchFn };
  const fn = [mod.bench, mod.run, mod.default].find((f) => typeof f === "function");
  if (!fn) {
    process.stderr.write(`bench/${name}.ts exports none of bench(ctx), run(ctx), default(ctx)\n`);
    return 1;
  }
  await runBench(name, fn, args);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (e: unknown) => {
    process.stderr.write(`bench failed: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
