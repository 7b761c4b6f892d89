#!/usr/bin/env node
// The published entry point: the compiled CLI (built by `tsc -b`, which `npm install` runs).
import("../dist/bin.js")
