// Test tensors for the CPU core's tests: p, g and up to two state slots, a channel view, and
// gradients built to make a given decision likely.
#ifndef ADAMP_TESTS_TENSORS_H
#define ADAMP_TESTS_TENSORS_H

#include <stdint.h>

#include <vector>

#include "check.h"
#include "step.h"

struct Geo {
  int64_t outer, channels, inner;
  bool eligible;
};

struct Tensor {
  std::vector<float> p, g, st[2];
  int64_t outer = 1, channels = 1, inner = 0;
  bool eligible = false;
  adamp::cpu::TensorSlot slot(double step) {
    adamp::cpu::TensorSlot s;
    s.p = p.data();
    s.g = g.data();
    s.state[0] = st[0].data();
    s.state[1] = st[1].empty() ? nullptr : st[1].data();
    s.numel = (int64_t)p.size();
    s.outer = outer;
    s.channels = channels;
    s.inner = inner;
    s.eligible = eligible;
    s.step = step;
    return s;
  }
};

/**
 * Random p and g ~ N(0, ~1.7), zero state (`slots` arrays). grad_kind 1: g orthogonal to p per
 * channel (channel projection), 2: parallel (none), else random.
 */
static inline Tensor make_tensor(Rng& r, const Geo& geo, int grad_kind, int slots) {
  Tensor t;
  const size_t n = (size_t)(geo.outer * geo.channels * geo.inner);
  t.p.resize(n);
  t.g.resize(n);
  for (int k = 0; k < slots; ++k) t.st[k].assign(n, 0.0f);
  t.outer = geo.outer;
  t.channels = geo.channels;
  t.inner = geo.inner;
  t.eligible = geo.eligible;
  for (size_t i = 0; i < n; ++i) {
    t.p[i] = r.normal();
    t.g[i] = r.normal();
  }
  if (n == 0) return t;
  auto chan = [&](size_t i) { return (size_t)((i / (size_t)geo.inner) % (size_t)geo.channels); };
  if (grad_kind == 1) {  // orthogonal to p per channel -> channel projection
    std::vector<double> gp((size_t)geo.channels, 0), pp((size_t)geo.channels, 0);
    for (size_t i = 0; i < n; ++i) {
      gp[chan(i)] += (double)t.g[i] * t.p[i];
      pp[chan(i)] += (double)t.p[i] * t.p[i];
    }
    for (size_t i = 0; i < n; ++i) t.g[i] = (float)(t.g[i] - gp[chan(i)] / pp[chan(i)] * t.p[i]);
  } else if (grad_kind == 2) {  // parallel -> none
    for (size_t i = 0; i < n; ++i) t.g[i] = 0.5f * t.p[i];
  }
  return t;
}

#endif
