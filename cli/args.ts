/**
 * A small, strict command-line parser: `--name value`, `--name=value`, boolean flags, and clear
 * errors for unknown options, missing values and malformed numbers.
 */

export type OptionType = 'int' | 'number' | 'string' | 'bool' | 'list';

export interface OptionSpec {
  name: string;
  type: OptionType;
  /** What the value means, for `--help` (e.g. `N`, `DIR`). */
  value?: string;
  help: string;
  min?: number;
  max?: number;
  /** Allowed values for `string` (and each item of `list`). */
  choices?: readonly string[];
}

/** A usage error: the CLI prints it with a pointer to `--help` and exits with status 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export type ParsedValue = number | string | boolean | string[];

export interface Parsed {
  options: Record<string, ParsedValue>;
  positionals: string[];
  help: boolean;
  /** The arguments as given. */
  raw: string[];
}

/** Parses `argv` against `specs`; `--help`/`-h` is always accepted. */
export function parseArgs(argv: readonly string[], specs: readonly OptionSpec[], command: string): Parsed {
  const options: Record<string, ParsedValue> = {};
  const positionals: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq < 0 ? arg : arg.slice(0, eq);
    const name = flag.startsWith('--') ? flag.slice(2) : '';
    const spec = name ? specs.find((s) => s.name === name) : undefined;
    if (!spec) {
      const close = name.length >= 2 ? specs.filter((s) => s.name.startsWith(name.slice(0, 2))).map((s) => `--${s.name}`) : [];
      throw new UsageError(`unknown option '${flag}' for '${command}'` + (close.length ? ` (did you mean ${close.join(' or ')}?)` : ''));
    }
    if (spec.type === 'bool') {
      if (eq >= 0) {
        const v = arg.slice(eq + 1);
        if (v !== 'true' && v !== 'false') throw new UsageError(`option --${name} takes no value (or =true/=false), got '${v}'`);
        options[spec.name] = v === 'true';
      } else {
        options[spec.name] = true;
      }
      continue;
    }
    let raw: string;
    if (eq >= 0) raw = arg.slice(eq + 1);
    else {
      if (i + 1 >= argv.length || /^--[a-z]/.test(argv[i + 1])) {
        throw new UsageError(`option --${name} needs a value (${spec.value ?? spec.type})`);
      }
      raw = argv[++i];
    }
    options[spec.name] = convert(spec, raw);
  }
  return { options, positionals, help, raw: argv.slice() };
}

function convert(spec: OptionSpec, raw: string): ParsedValue {
  const where = `option --${spec.name}`;
  switch (spec.type) {
    case 'int':
    case 'number': {
      const v = raw.trim() === '' ? NaN : Number(raw);
      if (!Number.isFinite(v) || (spec.type === 'int' && !Number.isInteger(v))) {
        throw new UsageError(`${where} must be ${spec.type === 'int' ? 'an integer' : 'a number'}, got '${raw}'`);
      }
      if (spec.min !== undefined && v < spec.min) throw new UsageError(`${where} must be >= ${spec.min}, got ${raw}`);
      if (spec.max !== undefined && v > spec.max) throw new UsageError(`${where} must be <= ${spec.max}, got ${raw}`);
      return v;
    }
    case 'string':
      if (raw === '') throw new UsageError(`${where} needs a non-empty value`);
      if (spec.choices && !spec.choices.includes(raw)) {
        throw new UsageError(`${where} must be one of ${spec.choices.join(', ')}; got '${raw}'`);
      }
      return raw;
    case 'list': {
      const items = raw.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
      if (items.length === 0) throw new UsageError(`${where} needs a comma-separated list`);
      if (spec.choices) {
        for (const it of items) {
          if (!spec.choices.includes(it)) throw new UsageError(`${where}: '${it}' is not one of ${spec.choices.join(', ')}`);
        }
      }
      return items;
    }
    default:
      return raw;
  }
}

/** The options block of a command's `--help`. */
export function formatOptions(specs: readonly OptionSpec[]): string {
  const rows = specs.map((s) => [`--${s.name}${s.type === 'bool' ? '' : ' ' + (s.value ?? s.type.toUpperCase())}`, s.help]);
  rows.push(['--help, -h', 'show this help']);
  const w = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([a, b]) => `  ${a.padEnd(w)}  ${b}`).join('\n');
}
