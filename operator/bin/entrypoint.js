#!/usr/bin/env node
// The container image's entrypoint: `entrypoint.js etcd [etcd flags]` runs the etcd-ts server,
// `entrypoint.js operator [flags]` the operator, `entrypoint.js healthcheck` asks the local
// member's /health (the Dockerfile's HEALTHCHECK). Flags alone (`--name=x ...`) mean etcd.
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const [first, ...rest] = process.argv.slice(2);
const mode = first === undefined || first.startsWith("-") ? "etcd" : first;
const args = mode === first ? rest : process.argv.slice(2);

async function run() {
  switch (mode) {
    case "etcd":
    case "etcd-ts": {
      const { main } = await import(path.join(here, "../../server/dist/etcdmain/main.js"));
      return main(args);
    }
    case "operator": {
      const { main } = await import(path.join(here, "../dist/main.js"));
      return main(args);
    }
    case "healthcheck": {
      const url = args[0] ?? "http://127.0.0.1:2379/health";
      const res = await fetch(url, { signal: AbortSignal.timeout(3000) }).catch(() => undefined);
      return res?.ok ? 0 : 1;
    }
    default:
      process.stderr.write(`unknown mode ${JSON.stringify(mode)}: use etcd, operator or healthcheck\n`);
      return 2;
  }
}

run().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
