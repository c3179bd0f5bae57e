/**
 * Resolution of option objects shared by AdamP and SGDP: unknown keys (including PyTorch's
 * snake_case names) are rejected with a hint instead of being silently ignored.
 */
import { invalid } from './errors';

const SNAKE_HINTS: Record<string, string> = {
  weight_decay: 'weightDecay',
  wd_ratio: 'wdRatio',
  weightdecay: 'weightDecay',
  wdratio: 'wdRatio',
  learning_rate: 'lr',
  learningRate: 'lr',
};

export function rejectUnknown(options: object, known: readonly string[], where: string): void {
  for (const key of Object.keys(options)) {
    if (key === 'params' || known.includes(key)) continue;
    const hint = SNAKE_HINTS[key] ?? known.find((k) => k.toLowerCase() === key.replace(/_/g, '').toLowerCase());
    throw invalid(`${where}.${key} is not an option${hint ? `; did you mean '${hint}'?` : ''} (options: ${known.join(', ')})`);
  }
}

/** The value of `key`: from `options` if present (even undefined is an error), else the default. */
export function pick<T>(options: Record<string, unknown>, defaults: Record<string, unknown> | null, fallback: Record<string, unknown>, key: string): T {
  if (Object.prototype.hasOwnProperty.call(options, key) && options[key] !== undefined) return options[key] as T;
  if (defaults) return defaults[key] as T;
  return fallback[key] as T;
}
