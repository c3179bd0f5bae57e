/**
 * The channel view of TensorFlow.js variables: which rows the projection test and the projection
 * use for each variable, chosen from the layer type its name tells, so that every tfjs-layers
 * layer gets the rows the official code uses for the same layer in PyTorch (`p.view(p.size(0),
 * -1)`: PyTorch's dim 0).
 *
 * adamp's core views a tensor as `outer x channels x inner` around one axis (`Param.channelAxis`).
 * The adapter hands the core a shape of its choosing for each variable (the state, the steps and
 * the data are flat; the shape only fixes the channel view and the "ndim > 1" eligibility), so
 * a layout whose PyTorch rows span two tfjs axes (a depthwise kernel `[kh, kw, in, mult]`, whose
 * rows are the `in * mult` output channels) is handed over as `[kh * kw, in * mult]` with axis -1.
 * docs/tfjs.md has the table.
 */
import { invalid } from '../errors';
import { describe } from '../core/describe';

/**
 * How the channel axis of each multi-dimensional variable is chosen: `'auto'` (default: by layer
 * type, see `layerChannelView`), an axis for every variable (`-1`: the last axis, the TensorFlow
 * layout of dense and conv kernels), or a function of the variable's name and shape returning an
 * axis or `'auto'`.
 */
export type ChannelAxisRule = 'auto' | number | ((name: string, shape: readonly number[]) => number | 'auto');

/** What the adapter hands the core for one variable. */
export interface ChannelView {
  /** The shape the core sees (the variable's own, or a reshape of it with the same element count). */
  shape: number[];
  /** The channel axis in `shape` (absent for 0-D and 1-D shapes: the core does not project them). */
  channelAxis?: number;
  /**
   * Why: `'kernel'` (last axis), `'embeddings'` (axis 0), `'depthwise'` (`[kh*kw, in*mult]`, axis
   * -1), `'elementwise'` (PReLU `alpha`: one dimension, as PyTorch's), `'1d'` (not projected),
   * `'other'` (an unknown name: last axis), `'option'` (the `channelAxis` option chose the axis).
   */
  rule: 'kernel' | 'embeddings' | 'depthwise' | 'elementwise' | '1d' | 'other' | 'option';
}

/**
 * The variable's own name within its layer: the last path segment without the `_N` suffix
 * TensorFlow.js adds to make names unique (`dense_Dense1/kernel_1` -> `kernel`).
 */
export function weightKind(name: string): string {
  const last = name.slice(name.lastIndexOf('/') + 1);
  return last.replace(/_\d+$/, '');
}

/**
 * The channel view of a tfjs-layers weight by its name (docs/tfjs.md, "Channel view by layer type"):
 * - `embeddings` `[vocab, dim]` (Embedding): axis 0, one row per token, as PyTorch's `nn.Embedding`;
 * - `depthwise_kernel` `[kh, kw, in, mult]` (DepthwiseConv2D, SeparableConv2D): `[kh*kw, in*mult]`,
 *   axis -1: one row per output channel `i * mult + m`, as PyTorch's grouped `[in*mult, 1, kh, kw]`;
 * - `alpha` (PReLU): one dimension (PyTorch's `nn.PReLU` weight is 1-D, never projected);
 * - `kernel`, `recurrent_kernel`, `pointwise_kernel` and anything else: the last axis, which is
 *   PyTorch's dim 0 for dense `[in, out]`, conv1d/2d/3d `[..., in, out]`, transposed conv
 *   `[..., out, in]` (PyTorch `[in, out, ...]`), recurrent kernels `[in | units, gates * units]`
 *   (PyTorch `[gates * hidden, in | hidden]`) and pointwise kernels.
 */
export function layerChannelView(name: string, shape: readonly number[]): ChannelView {
  const s = shape.slice();
  if (s.length <= 1) return { shape: s, rule: '1d' };
  const kind = weightKind(name);
  if (kind === 'embeddings') return { shape: s, channelAxis: 0, rule: 'embeddings' };
  if (kind === 'depthwise_kernel' && s.length === 4) return { shape: [s[0] * s[1], s[2] * s[3]], channelAxis: -1, rule: 'depthwise' };
  if (kind === 'alpha') return { shape: [s.reduce((a, b) => a * b, 1)], rule: 'elementwise' };
  if (kind === 'kernel' || kind === 'recurrent_kernel' || kind === 'pointwise_kernel' || kind === 'depthwise_kernel') {
    return { shape: s, channelAxis: -1, rule: 'kernel' };
  }
  return { shape: s, channelAxis: -1, rule: 'other' };
}

/** Checks a `channelAxis` option. */
export function checkChannelAxisRule(rule: unknown): ChannelAxisRule {
  if (rule === 'auto' || typeof rule === 'function' || Number.isInteger(rule)) return rule as ChannelAxisRule;
  throw invalid(`options.channelAxis must be 'auto', an integer or a function (name, shape) => axis | 'auto', got ${describe(rule)}`);
}

/** The channel view of a variable under a `channelAxis` rule. */
export function channelViewOf(rule: ChannelAxisRule, name: string, shape: readonly number[]): ChannelView {
  if (shape.length <= 1) return { shape: shape.slice(), rule: '1d' };
  const axis = typeof rule === 'function' ? rule(name, shape.slice()) : rule;
  if (axis === 'auto') return layerChannelView(name, shape);
  if (!Number.isInteger(axis) || (axis as number) < -shape.length || (axis as number) >= shape.length) {
    throw invalid(`channelAxis for variable '${name}' of shape [${shape.join(',')}] must be an integer in [${-shape.length}, ${shape.length - 1}] or 'auto', got ${describe(axis)}`);
  }
  return { shape: shape.slice(), channelAxis: axis as number, rule: 'option' };
}
