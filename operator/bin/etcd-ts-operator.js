#!/usr/bin/env node
// The etcd-ts operator: `etcd-ts-operator [flags]` (see `etcd-ts-operator --help`).
import { main } from "../dist/main.js";

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
