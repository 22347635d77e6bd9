/**
 * lean-unary.test.ts over ETCD_TS_H2=own (raw-grpc.ts's servers then run on OwnH2Server): the
 * lean side's streams are pkg/h2's through LeanH2Stream, the reference side's calls go to grpc-js
 * through the bridge; answers and metric counts must still match frame for frame.
 */
process.env.ETCD_TS_H2 = "own";
await import("./lean-unary.test.js");
