// POSIX sh quoting for the command lines cco writes: pane start commands, wrapper scripts and hook commands.
// (bin/cco-client.mjs keeps its own copy: the agents' client imports nothing from cco.)

/** `value` as one sh word, whatever it contains. */
export const shellQuote = (value: string): string => `'${value.replaceAll("'", `'\\''`)}'`
