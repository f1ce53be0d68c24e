import { App } from "../constructs/index.js";
import { FleetStack } from "./fleet/main.js";
import { Raid5SafeReadStack } from "./raid5-safe-read/main.js";
import { SingleDpuStack } from "./single-dpu/main.js";

/** Every example as its own stack; `npx cdktf synth` (cdktf.json) runs this file. */
export function buildExamples(app: App): void {
  new SingleDpuStack(app);
  new Raid5SafeReadStack(app);
  new FleetStack(app);
}

if (require.main === module) {
  const app = new App();
  buildExamples(app);
  app.synth();
}
