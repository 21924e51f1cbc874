/**
 * A one-line progress bar with rate and ETA, drawn on stderr when it is a terminal (nothing
 * is drawn otherwise, so piped output and logs stay clean). Redraws at most 10 times a second.
 */
import pc from "picocolors";

export interface ProgressOptions {
  /** Expected total; undefined draws a counter without a bar. */
  total?: number;
  /** Unit shown after the rate ("merges", "steps"). */
  unit?: string;
  stream?: NodeJS.WriteStream;
  /** Force drawing on or off (default: when the stream is a TTY and FORGE_PROGRESS is not 0). */
  enabled?: boolean;
}

const WIDTH = 24;

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--:--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

export class ProgressBar {
  private readonly stream: NodeJS.WriteStream;
  private readonly enabled: boolean;
  private readonly started = performance.now();
  private lastDraw = 0;
  private done = 0;
  private total: number | undefined;
  private detail = "";
  private drawn = false;

  constructor(
    private readonly label: string,
    private readonly options: ProgressOptions = {},
  ) {
    this.stream = options.stream ?? process.stderr;
    this.total = options.total;
    this.enabled =
      options.enabled ?? (Boolean(this.stream.isTTY) && process.env.FORGE_PROGRESS !== "0");
  }

  /** Record progress; `detail` is a short status shown after the ETA (a loss, a file name). */
  update(done: number, total?: number, detail?: string): void {
    this.done = done;
    if (total !== undefined) this.total = total;
    if (detail !== undefined) this.detail = detail;
    const now = performance.now();
    if (this.enabled && now - this.lastDraw >= 100) {
      this.lastDraw = now;
      this.draw();
    }
  }

  /** The elapsed seconds so far. */
  get seconds(): number {
    return (performance.now() - this.started) / 1000;
  }

  private line(): string {
    const elapsed = this.seconds;
    const rate = elapsed > 0 ? this.done / elapsed : 0;
    const unit = this.options.unit ? ` ${this.options.unit}` : "";
    const parts = [pc.bold(this.label)];
    if (this.total !== undefined && this.total > 0) {
      const fraction = Math.min(1, this.done / this.total);
      const filled = Math.round(fraction * WIDTH);
      parts.push(`${pc.cyan("█".repeat(filled))}${pc.dim("░".repeat(WIDTH - filled))}`);
      parts.push(`${String(Math.floor(fraction * 100)).padStart(3)}%`);
      parts.push(`${this.done}/${this.total}${unit}`);
      const eta = rate > 0 ? (this.total - this.done) / rate : Number.NaN;
      parts.push(`${rate.toFixed(rate < 10 ? 1 : 0)}/s`, `ETA ${formatDuration(eta)}`);
    } else {
      parts.push(
        `${this.done}${unit}`,
        `${rate.toFixed(rate < 10 ? 1 : 0)}/s`,
        formatDuration(elapsed),
      );
    }
    if (this.detail) parts.push(pc.dim(this.detail));
    return parts.join("  ");
  }

  private draw(): void {
    const columns = this.stream.columns ?? 100;
    // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping ANSI colour codes to measure width
    const visible = this.line().replace(/\x1b\[[0-9;]*m/g, "");
    const text = visible.length > columns - 1 ? visible.slice(0, columns - 1) : this.line();
    this.stream.write(`\r\x1b[2K${text}`);
    this.drawn = true;
  }

  /** Finish: clear the bar (the command prints its own summary). */
  stop(): void {
    if (this.enabled && this.drawn) this.stream.write("\r\x1b[2K");
  }
}
