/**
 * A progress bar for long runs, written to stderr so stdout stays clean for tables and pipes.
 * On a terminal it redraws one line (at most ~12 times a second); elsewhere (CI logs, files)
 * it prints a plain line at every 25 % so logs stay short and readable.
 */

/** Where progress goes: a writable with an optional TTY flag and width (process.stderr fits). */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export class ProgressBar {
  private readonly started = Date.now();
  private lastDraw = 0;
  private lastQuarter = -1;
  private finished = false;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly stream: ProgressStream | null = process.stderr,
  ) {}

  /** Reports `done` of `total` units, with an optional status text (e.g. the current loss). */
  update(done: number, status = ''): void {
    if (!this.stream || this.finished) return;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    if (this.stream.isTTY) {
      const now = Date.now();
      if (done < this.total && now - this.lastDraw < 80) return;
      this.lastDraw = now;
      const width = Math.max(10, Math.min(30, (this.stream.columns ?? 80) - this.label.length - status.length - 30));
      const filled = Math.round(frac * width);
      const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
      this.stream.write(`\r\x1b[K${this.label} [${bar}] ${String(Math.floor(frac * 100)).padStart(3)}% ${done}/${this.total} ${elapsed(this.started)}${status ? '  ' + status : ''}`);
    } else {
      const quarter = Math.floor(frac * 4);
      if (quarter === 0 || quarter === this.lastQuarter) return;
      this.lastQuarter = quarter;
      this.stream.write(`${this.label}: ${Math.floor(frac * 100)}% (${done}/${this.total}) ${elapsed(this.started)}${status ? '  ' + status : ''}\n`);
    }
  }

  /** Draws the final state and ends the line. */
  finish(status = ''): void {
    if (!this.stream || this.finished) return;
    this.update(this.total, status);
    this.finished = true;
    if (this.stream.isTTY) this.stream.write('\n');
  }
}

function elapsed(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)}s`;
}
