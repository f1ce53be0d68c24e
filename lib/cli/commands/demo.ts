import { runDemo } from "../../demo/demo.js";
import { action, type CliCommand } from "../registry.js";

/** `flexbso demo [--keep]` */
export const demoCommand: CliCommand = {
  name: "demo",
  summary: "run the whole lifecycle on a software DPU on this machine (under a minute; cleans up)",
  define(cmd) {
    cmd
      .option("--keep", "keep the work dir (state, logs, images) for inspection")
      .addHelpText("after", "\nNeeds the built engine (npm ci) and qemu-io (qemu-utils) for the data steps.")
      .action(action(async (opts: { keep?: boolean }) => runDemo({ keep: !!opts.keep })));
  },
};
