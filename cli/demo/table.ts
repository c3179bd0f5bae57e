/** Plain-text tables for terminal output: a header, a rule, right-aligned numbers. */

export type Cell = string | number;

/** Formats a number for a table: fixed for ordinary magnitudes, exponential for tiny/huge ones. */
export function fmt(v: number | null | undefined, digits = 4): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '-';
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(digits - 2);
  return v.toFixed(Math.max(0, digits - Math.max(0, Math.floor(Math.log10(a || 1)) + 1)));
}

/** A percentage with one decimal. */
export function pct(frac: number): string {
  return `${(frac * 100).toFixed(1)}%`;
}

/** Renders rows under headers; the first column is left-aligned, the others right-aligned. */
export function formatTable(headers: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const cells = [headers.map(String), ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  const line = (r: readonly string[]): string =>
    r.map((s, c) => (c === 0 ? s.padEnd(widths[c]) : s.padStart(widths[c]))).join('  ').trimEnd();
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}
