/**
 * Whether `p` settles within a few turns of the event loop: for in-memory I/O, which settles at
 * once or, once its disk crashed, never.
 */
export async function settles(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  return settled;
}
