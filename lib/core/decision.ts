/**
 * The projection decision of AdamP/SGDP from four per-channel sums (docs/numerics.md#the-projection-decision).
 *
 * With g.p, g.g, p.p and p.u per output channel, the channel test, the layer fallback (sums of
 * the same four) and the projection's per-channel coefficients need no further pass over the
 * tensor. The cosine follows torch >= 1.12 `F.cosine_similarity`:
 * `sum_i (x_i / max(||x||, e)) (y_i / max(||y||, e))` with `e = sqrt(f32(eps^2))`, which equals
 * `g.p / (max(||g||, e) max(||p||, e))`; the threshold is rounded to float32 and compared in
 * float32, strictly, so NaN never projects.
 */
import { Decision, Info } from './info';

const f = Math.fround;
const FLT_MAX = 3.4028234663852886e38;

/** Per-channel sums in, per-channel projection coefficients out. */
export interface Sums {
  gp: Float64Array;
  gg: Float64Array;
  pp: Float64Array;
  pu: Float64Array;
  /** Out: the float32 divisor `||p_c|| + eps` of the projected view, per channel. */
  div: Float64Array;
  /** Out: the float32 coefficient `s_c = (p_c . u_c) / (||p_c|| + eps)`, per channel. */
  scale: Float64Array;
}

/**
 * Whether a squared norm overflows float32. The official code sums squares in float32, so there
 * the norm is inf: the cosine is 0 (x / inf) and the projection removes nothing (p / inf); the
 * cosine and the projection test this one boundary (docs/numerics.md#the-float32-edge).
 */
export function sqOverflowsF32(x: number): boolean {
  return x > FLT_MAX;
}

/** |cos| of one row from its sums; float32 overflow of a squared norm behaves as in torch (x / inf = 0). */
export function absCos(gp: number, gg: number, pp: number, epsCos: number): number {
  if (sqOverflowsF32(gg) || sqOverflowsF32(pp)) {
    // torch sums x^2 in float32: inf there makes every x_i / inf = 0 (cos 0), unless an element is inf or NaN.
    return gg === Infinity || pp === Infinity || gp !== gp ? NaN : 0;
  }
  return Math.abs(gp) / (Math.max(Math.sqrt(gg), epsCos) * Math.max(Math.sqrt(pp), epsCos));
}

/** float32 threshold `delta / sqrt(cols)`. */
export function threshold(delta: number, cols: number): number {
  return f(delta / Math.sqrt(cols));
}

/**
 * Decide the projection of one tensor and fill `div`/`scale` for the view that fired.
 * Writes the decision fields and `normSqBefore` of `info` at offset `o`.
 * Returns the weight-decay ratio (`wdRatio` when projected, else 1).
 */
export function decide(
  s: Sums, channels: number, numel: number, delta: number, wdRatio: number, eps: number,
  info: Float64Array, o: number,
): number {
  const epsf = f(eps);
  const epsCos = Math.sqrt(f(eps * eps));
  const { gp, gg, pp, pu, div, scale } = s;

  let maxCos = 0;
  let GP = 0, GG = 0, PP = 0, PU = 0;
  for (let c = 0; c < channels; c++) {
    const cos = absCos(gp[c], gg[c], pp[c], epsCos);
    if (!(cos <= maxCos)) maxCos = maxCos !== maxCos ? maxCos : cos; // NaN is sticky, as torch's max
    GP += gp[c]; GG += gg[c]; PP += pp[c]; PU += pu[c];
  }
  info[o + Info.normSqBefore] = PP;
  const chMax = f(maxCos);
  const chThr = threshold(delta, numel / channels);
  info[o + Info.channelMaxCos] = chMax;
  info[o + Info.channelThreshold] = chThr;
  if (chMax < chThr) {
    for (let c = 0; c < channels; c++) projCoef(pp[c], pu[c], epsf, div, scale, c);
    info[o + Info.decision] = Decision.channel;
    info[o + Info.layerCos] = NaN;
    info[o + Info.layerThreshold] = NaN;
    return wdRatio;
  }

  const lCos = f(absCos(GP, GG, PP, epsCos));
  const lThr = threshold(delta, numel);
  info[o + Info.layerCos] = lCos;
  info[o + Info.layerThreshold] = lThr;
  if (lCos < lThr) {
    projCoef(PP, PU, epsf, div, scale, 0);
    div.fill(div[0], 0, channels);
    scale.fill(scale[0], 0, channels);
    info[o + Info.decision] = Decision.layer;
    return wdRatio;
  }
  info[o + Info.decision] = Decision.none;
  return 1;
}

/**
 * The projection coefficients of one row into div[at], scale[at]: `f32(f32(||p||) + eps)` and
 * `f32((p.u) / div)`; where ||p||^2 overflows float32, the official code's inf norm: div inf and
 * scale 0 (p / inf removes nothing), or NaN when p.u is not finite (its float32 sum is NaN).
 */
function projCoef(pp: number, pu: number, epsf: number, div: Float64Array, scale: Float64Array, at: number): void {
  if (sqOverflowsF32(pp)) {
    div[at] = Infinity;
    scale[at] = pu - pu === 0 ? 0 : NaN;
    return;
  }
  const d = f(f(Math.sqrt(pp)) + epsf);
  div[at] = d;
  scale[at] = f(pu / d);
}
