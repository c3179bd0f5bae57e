/**
 * The pure TypeScript engine: the CPU fallback that runs everywhere.
 *
 * Each tensor takes two passes (a projection decision needs the whole tensor first):
 *   pass 1 updates the moments and accumulates, per output channel, g.p, g.g, p.p and p.u in
 *          double precision (u = the update before projection);
 *   decide  the channel view, then the layer view (sums of the same four), float32 compare;
 *   pass 2 removes the radial component of u where the test fired (AdamP keeps u from pass 1
 *          in a scratch array; SGDP's d is the buffer or cheap to recompute), and applies
 *          weight decay and the step.
 * Tensors that are never projected (ndim <= 1) take a single pass.
 *
 * Element-wise arithmetic reproduces the official float32 operations one by one with
 * `Math.fround` (reference/SPEC.md sections 2-4): `fround(a + b * c)` on float32 inputs is the
 * fused multiply-add PyTorch's CPU kernels use.
 */
import { Decision, Info, INFO_STRIDE } from '../engine';
import type { AdamPScalars, Engine, SGDPScalars, Slot } from '../engine';
import { decide, type Sums } from '../../core/decision';

const f = Math.fround;

/** Scratch for the per-channel sums, grown on demand and reused across tensors and steps. */
class SumsScratch implements Sums {
  gp = new Float64Array(16);
  gg = new Float64Array(16);
  pp = new Float64Array(16);
  pu = new Float64Array(16);
  div = new Float64Array(16);
  scale = new Float64Array(16);
  take(channels: number): this {
    if (this.gp.length < channels) {
      const n = Math.max(channels, this.gp.length * 2);
      this.gp = new Float64Array(n);
      this.gg = new Float64Array(n);
      this.pp = new Float64Array(n);
      this.pu = new Float64Array(n);
      this.div = new Float64Array(n);
      this.scale = new Float64Array(n);
    } else {
      this.gp.fill(0, 0, channels);
      this.gg.fill(0, 0, channels);
      this.pp.fill(0, 0, channels);
      this.pu.fill(0, 0, channels);
    }
    return this;
  }
}

export class JsEngine implements Engine {
  readonly name = 'js' as const;
  private readonly sums = new SumsScratch();
  /** AdamP's update u of the tensor in flight, kept from pass 1 so pass 2 need not recompute sqrt and divisions. */
  private u = new Float32Array(0);

  stepAdamP(slots: readonly Slot[], hp: AdamPScalars, info: Float64Array): void {
    for (let k = 0; k < slots.length; k++) {
      const s = slots[k];
      if (s.eligible && this.u.length < s.p.length) this.u = new Float32Array(s.p.length);
      adampTensor(s, hp, info, k * INFO_STRIDE, this.sums, this.u);
    }
  }

  stepSGDP(slots: readonly Slot[], hp: SGDPScalars, info: Float64Array): void {
    for (let k = 0; k < slots.length; k++) sgdpTensor(slots[k], hp, info, k * INFO_STRIDE, this.sums);
  }
}

function adampTensor(s: Slot, hp: AdamPScalars, info: Float64Array, o: number, scratch: SumsScratch, us: Float32Array): void {
  const { p, g, m, v } = s;
  const n = p.length;
  const b1 = f(hp.beta1), omb1 = f(1 - hp.beta1);
  const b2 = f(hp.beta2), omb2 = f(1 - hp.beta2);
  const bc1 = 1 - Math.pow(hp.beta1, s.step);
  const bc2 = 1 - Math.pow(hp.beta2, s.step);
  // note: float32 division by a constant equals one double multiplication by its double
  // reciprocal, then rounding (the double error is far below float32's rounding boundaries;
  // checked on 2e7 random pairs), so the division sqrt(v) / sqrt(bc2) costs a multiply here.
  const rSqrtBc2 = 1 / f(Math.sqrt(bc2));
  const eps = f(hp.eps);
  const negStep = f(-(hp.lr / bc1));
  const nesterov = hp.nesterov;

  if (!s.eligible) {
    // Single pass: never projected, full weight decay.
    const wdf = hp.weightDecay > 0 ? f(1 - hp.lr * hp.weightDecay) : 1;
    const decay = hp.weightDecay > 0;
    let before = 0, after = 0, delta = 0;
    for (let i = 0; i < n; i++) {
      const gi = g[i];
      const mi = f(f(m[i] * b1) + omb1 * gi);
      const vi = f(f(v[i] * b2) + f(omb2 * gi) * gi);
      m[i] = mi;
      v[i] = vi;
      const den = f(f(f(Math.sqrt(vi)) * rSqrtBc2) + eps);
      const u = nesterov ? f(f(f(b1 * mi) + f(omb1 * gi)) / den) : f(mi / den);
      const p0 = p[i];
      const pd = decay ? f(p0 * wdf) : p0;
      const p1 = f(pd + negStep * u);
      p[i] = p1;
      before += p0 * p0;
      after += p1 * p1;
      delta += (p1 - p0) * (p1 - p0);
    }
    writeNotEligible(info, o, before, after, delta);
    return;
  }

  // Pass 1: moments and per-channel sums.
  const { outer, channels, inner } = s;
  const sums = scratch.take(channels);
  const { gp, gg, pp, pu } = sums;
  let i = 0;
  for (let a = 0; a < outer; a++) {
    for (let c = 0; c < channels; c++) {
      let sgp = 0, sgg = 0, spp = 0, spu = 0;
      for (let j = 0; j < inner; j++, i++) {
        const gi = g[i];
        const mi = f(f(m[i] * b1) + omb1 * gi);
        const vi = f(f(v[i] * b2) + f(omb2 * gi) * gi);
        m[i] = mi;
        v[i] = vi;
        const den = f(f(f(Math.sqrt(vi)) * rSqrtBc2) + eps);
        const u = nesterov ? f(f(f(b1 * mi) + f(omb1 * gi)) / den) : f(mi / den);
        us[i] = u;
        const pi = p[i];
        sgp += gi * pi;
        sgg += gi * gi;
        spp += pi * pi;
        spu += pi * u;
      }
      gp[c] += sgp;
      gg[c] += sgg;
      pp[c] += spp;
      pu[c] += spu;
    }
  }

  const ratio = decide(sums, channels, n, hp.delta, hp.wdRatio, hp.eps, info, o);
  const wdf = hp.weightDecay > 0 ? f(1 - hp.lr * hp.weightDecay * ratio) : 1;
  const decay = hp.weightDecay > 0;
  const projected = info[o + Info.decision] === Decision.channel || info[o + Info.decision] === Decision.layer;
  const { div, scale } = sums;

  // Pass 2: project u, decay, step.
  let after = 0, delta = 0;
  i = 0;
  for (let a = 0; a < outer; a++) {
    for (let c = 0; c < channels; c++) {
      const den2 = projected ? div[c] : 1;
      const sc = projected ? scale[c] : 0;
      let sAfter = 0, sDelta = 0;
      for (let j = 0; j < inner; j++, i++) {
        let u = us[i];
        const p0 = p[i];
        if (projected) u = f(u - f(f(p0 / den2) * sc));
        const pd = decay ? f(p0 * wdf) : p0;
        const p1 = f(pd + negStep * u);
        p[i] = p1;
        sAfter += p1 * p1;
        sDelta += (p1 - p0) * (p1 - p0);
      }
      after += sAfter;
      delta += sDelta;
    }
  }
  info[o + Info.normSqAfter] = after;
  info[o + Info.deltaSq] = delta;
}

function sgdpTensor(s: Slot, hp: SGDPScalars, info: Float64Array, o: number, scratch: SumsScratch): void {
  const { p, g, m: buf } = s;
  const n = p.length;
  const mom = f(hp.momentum);
  const omd = f(1 - hp.dampening);
  const negLr = f(-hp.lr);
  const nesterov = hp.nesterov;
  const decay = hp.weightDecay > 0;

  if (!s.eligible) {
    const wdf = decay ? f(1 - (hp.lr * hp.weightDecay) / (1 - hp.momentum)) : 1;
    let before = 0, after = 0, delta = 0;
    for (let i = 0; i < n; i++) {
      const gi = g[i];
      const bi = f(f(buf[i] * mom) + omd * gi);
      buf[i] = bi;
      const d = nesterov ? f(gi + f(mom * bi)) : bi;
      const p0 = p[i];
      const pd = decay ? f(p0 * wdf) : p0;
      const p1 = f(pd + negLr * d);
      p[i] = p1;
      before += p0 * p0;
      after += p1 * p1;
      delta += (p1 - p0) * (p1 - p0);
    }
    writeNotEligible(info, o, before, after, delta);
    return;
  }

  const { outer, channels, inner } = s;
  const sums = scratch.take(channels);
  const { gp, gg, pp, pu } = sums;
  let i = 0;
  for (let a = 0; a < outer; a++) {
    for (let c = 0; c < channels; c++) {
      let sgp = 0, sgg = 0, spp = 0, spu = 0;
      for (let j = 0; j < inner; j++, i++) {
        const gi = g[i];
        const bi = f(f(buf[i] * mom) + omd * gi);
        buf[i] = bi;
        const d = nesterov ? f(gi + f(mom * bi)) : bi;
        const pi = p[i];
        sgp += gi * pi;
        sgg += gi * gi;
        spp += pi * pi;
        spu += pi * d;
      }
      gp[c] += sgp;
      gg[c] += sgg;
      pp[c] += spp;
      pu[c] += spu;
    }
  }

  const ratio = decide(sums, channels, n, hp.delta, hp.wdRatio, hp.eps, info, o);
  const wdf = decay ? f(1 - (hp.lr * hp.weightDecay * ratio) / (1 - hp.momentum)) : 1;
  const projected = info[o + Info.decision] === Decision.channel || info[o + Info.decision] === Decision.layer;
  const { div, scale } = sums;

  let after = 0, delta = 0;
  i = 0;
  for (let a = 0; a < outer; a++) {
    for (let c = 0; c < channels; c++) {
      const den2 = projected ? div[c] : 1;
      const sc = projected ? scale[c] : 0;
      let sAfter = 0, sDelta = 0;
      for (let j = 0; j < inner; j++, i++) {
        const bi = buf[i];
        let d = nesterov ? f(g[i] + f(mom * bi)) : bi;
        const p0 = p[i];
        if (projected) {
          d = f(d - f(f(p0 / den2) * sc));
          // note: without Nesterov the official `d` IS the momentum buffer and the projection
          // is in place, so the projected update is written back into the buffer (SPEC.md s3).
          if (!nesterov) buf[i] = d;
        }
        const pd = decay ? f(p0 * wdf) : p0;
        const p1 = f(pd + negLr * d);
        p[i] = p1;
        sAfter += p1 * p1;
        sDelta += (p1 - p0) * (p1 - p0);
      }
      after += sAfter;
      delta += sDelta;
    }
  }
  info[o + Info.normSqAfter] = after;
  info[o + Info.deltaSq] = delta;
}

function writeNotEligible(info: Float64Array, o: number, before: number, after: number, delta: number): void {
  info[o + Info.decision] = Decision.notEligible;
  info[o + Info.channelMaxCos] = NaN;
  info[o + Info.channelThreshold] = NaN;
  info[o + Info.layerCos] = NaN;
  info[o + Info.layerThreshold] = NaN;
  info[o + Info.normSqBefore] = before;
  info[o + Info.normSqAfter] = after;
  info[o + Info.deltaSq] = delta;
}
