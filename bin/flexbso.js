#!/usr/bin/env node
"use strict";
// The compiled CLI lives in dist/ (npm run build). Keep this file tiny.
require("../dist/lib/cli/main.js").main();
