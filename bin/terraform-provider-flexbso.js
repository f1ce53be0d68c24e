#!/usr/bin/env node
"use strict";
// Terraform starts this (through the wrapper `flexbso provider install` writes); see docs/terraform.md.
require("../dist/lib/provider/server.js")
  .serve(() => require("../dist/lib/provider/resources.js").launchProvider())
  .catch((e) => {
    process.stderr.write(`terraform-provider-flexbso: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  });
