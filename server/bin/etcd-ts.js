#!/usr/bin/env node
// The etcd-ts server binary: `etcd-ts [etcd flags]` (see `etcd-ts --help`).
import { main } from "../dist/etcdmain/main.js";

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
