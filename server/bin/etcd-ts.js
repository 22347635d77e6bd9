#!/usr/bin/env node
// The etcd-ts server binary: `etcd-ts [etcd flags]` (see `etcd-ts --help`).
import v8 from "node:v8";
import { main } from "../dist/etcdmain/main.js";

// ETCD_TS_HEAP_GROWING_PERCENT=N: the old space may grow by N% between full collections (V8's
// --heap-growing-percent; as Go's GOGC for etcd). Unset: V8's own heuristics (up to about 4x).
const heapGrowingPercent = process.env.ETCD_TS_HEAP_GROWING_PERCENT;
if (heapGrowingPercent !== undefined && heapGrowingPercent !== "") {
  const n = Number(heapGrowingPercent);
  if (!Number.isInteger(n) || n < 1 || n > 1000) {
    console.error(`etcd-ts: ETCD_TS_HEAP_GROWING_PERCENT must be an integer in [1, 1000], got ${JSON.stringify(heapGrowingPercent)}`);
    process.exit(2);
  }
  v8.setFlagsFromString(`--heap-growing-percent=${n}`);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
