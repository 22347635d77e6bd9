/** The lease layer: the lessor, its errors, and etcd's lease ID helpers. */
export * from "./errors.js";
export * from "./lease.js";
export * from "./lease-id.js";
export * from "./lessor.js";
