/** The first words of an `etcd-ts` command line that select an offline tool instead of the server. */
export const OFFLINE_COMMANDS: ReadonlySet<string> = new Set(["snapshot", "defrag", "migrate"]);
