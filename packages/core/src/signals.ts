/**
 * Stopping a run cleanly. The first SIGINT or SIGTERM aborts the returned signal: the run
 * finishes its current step, saves what it has, marks its manifest interrupted and says how to
 * resume. A second signal ends the process at once.
 */

export interface Interrupt {
  readonly signal: AbortSignal;
  /** The signal that stopped the run, if one did. */
  readonly received: NodeJS.Signals | undefined;
  /** Stop listening (call when the run ends). */
  dispose(): void;
}

export function interruptOnSignals(
  notify: (message: string) => void = (message) => process.stderr.write(`${message}\n`),
): Interrupt {
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  const handler = (name: NodeJS.Signals) => {
    if (received !== undefined) {
      notify(`forge: ${name} again: stopping now`);
      process.exit(name === "SIGTERM" ? 143 : 130);
    }
    received = name;
    notify(`forge: ${name}: stopping after the current step (send it again to stop at once)`);
    controller.abort(new Error(name));
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  return {
    signal: controller.signal,
    get received() {
      return received;
    },
    dispose() {
      process.off("SIGINT", handler);
      process.off("SIGTERM", handler);
    },
  };
}
