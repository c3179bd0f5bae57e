// The step protocol (step.h, namespace protocol) against the unsharded step: random tensors of
// every layout (rows, rows with outer > 1, pieces, lanes with several row and channel chunks, one
// pass, empty), split at unit boundaries into 2-4 shards held in separate arrays; stats per
// shard, decide on the concatenated partials, apply per shard, finish. p, state and the info
// record must be byte-identical to cpu::step's, for every registered optimizer, norms on and off,
// over several steps. Plus the protocol's checks of shards and decision records.
#include <string.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "adamp/math.h"
#include "check.h"
#include "step.h"
#include "tensors.h"

using namespace adamp;
namespace proto = adamp::cpu::protocol;

static proto::Geometry geo_of(const Tensor& t) {
  return proto::Geometry{(int64_t)t.p.size(), t.outer, t.channels, t.inner, t.eligible};
}

/** A random tensor shape of layout `layout` (0 rows, 1 rows outer > 1, 2 pieces, 3 lanes, 4 one pass, 5 empty). */
static Geo random_geo(Rng& r, int layout) {
  auto in = [&](int lo, int hi) { return (int64_t)(lo + r.below(hi - lo + 1)); };
  switch (layout) {
    case 0:
      return r.below(2) ? Geo{1, in(1, 12), in(2, 40), true} : Geo{1, in(100, 400), in(100, 600), true};
    case 1:
      return r.below(3) ? Geo{in(2, 20), in(1, 50), in(2, 100), true} : Geo{2, in(1, 3), in(32769, 40000), true};
    case 2:
      return Geo{1, in(1, 3), in(32769, 100000), true};
    case 3: {
      const int k = r.below(4);
      if (k == 0) return Geo{in(1, 40), in(1, 30), 1, true};
      if (k == 1) return Geo{in(2100, 5000), in(5, 16), 1, true};  // several row chunks
      if (k == 2) return Geo{in(9, 40), in(4097, 9000), 1, true};   // several channel chunks
      return Geo{in(3, 12), in(8200, 13000), 1, true};              // both, and a last short chunk
    }
    case 4:
      return Geo{1, 1, in(1, 100000), false};
    default:
      return r.below(2) ? Geo{1, 0, in(1, 5), true} : Geo{1, 1, 0, false};
  }
}

/** Random valid hyperparameters of `kind`, wire order. */
static std::vector<double> random_hyper(Rng& r, OptKind kind) {
  const bool nest = r.below(2) == 1;
  switch (kind) {
    case OptKind::AdamP:
      return {r.below(2) ? 1e-3 : 0.05, 0.9, r.below(2) ? 0.999 : 0.99, r.below(4) ? 1e-8 : 0.0, r.below(2) ? 0.0 : 0.1,
              r.below(2) ? 0.1 : 0.5, 0.1, nest ? 1.0 : 0.0};
    case OptKind::SGDP: {
      const double mom = r.below(4) ? 0.9 : 0.0;
      return {0.05, mom, nest ? 0.0 : (r.below(2) ? 0.1 : 0.0), r.below(2) ? 0.0 : 1e-3, nest ? 1.0 : 0.0, 1e-8,
              r.below(2) ? 0.1 : 0.5, 0.2};
    }
    case OptKind::AdamW:
      return {r.below(2) ? 1e-3 : 0.05, 0.9, 0.999, 1e-8, r.below(2) ? 0.0 : 0.1};
    default: {
      const double mom = r.below(3) ? 0.9 : 0.0;
      const bool n = nest && mom > 0;
      return {0.1, mom, n ? 0.0 : (r.below(2) ? 0.1 : 0.0), r.below(2) ? 0.0 : 1e-3, n ? 1.0 : 0.0};
    }
  }
}

/** Gradient patterns: 0 random, 1 orthogonal per channel, 2 parallel, 3 tiny (the double redo), 4 zero rows, 5 huge weights. */
static Tensor random_tensor(Rng& r, const Geo& geo, int slots) {
  const int pattern = r.below(6);
  Tensor t = make_tensor(r, geo, pattern <= 2 ? pattern : 0, slots);
  if (pattern == 3)
    for (float& x : t.g) x *= 0x1p-40f;
  if (pattern == 4 && geo.channels > 0)
    for (size_t i = 0; i < t.g.size(); ++i)
      if (((int64_t)(i / (size_t)geo.inner) % geo.channels) % 3 == 0) t.g[i] = 0.0f;
  if (pattern == 5)
    for (float& x : t.p) x *= 0x1p66f;
  return t;
}

/** Copies elements [a, b) of x into a new array (a shard's own memory). */
static std::vector<float> cut(const std::vector<float>& x, int64_t a, int64_t b) {
  return x.empty() ? std::vector<float>() : std::vector<float>(x.begin() + a, x.begin() + b);
}

/**
 * One step of tensor t through the protocol, on `cuts.size() - 1` shards: shard i holds units
 * [cuts[i], cuts[i+1]) in arrays of its own; the results are copied back into t.
 */
static void protocol_step(OptKind kind, Tensor& t, const std::vector<double>& hyper, double step,
                          const std::vector<int64_t>& cuts, bool norms, double* info) {
  const proto::Geometry geo = geo_of(t);
  const std::vector<int64_t> starts = proto::units(kind, geo);
  const size_t nshards = cuts.size() - 1;
  std::vector<Tensor> shards(nshards);
  std::vector<cpu::TensorSlot> slots(nshards);
  for (size_t i = 0; i < nshards; ++i) {
    const int64_t a = starts[(size_t)cuts[i]], b = starts[(size_t)cuts[i + 1]];
    CHECK(proto::check_shard(kind, geo, a, b - a, cuts[i], cuts[i + 1]) == nullptr);
    Tensor& s = shards[i];
    s.p = cut(t.p, a, b);
    s.g = cut(t.g, a, b);
    s.st[0] = cut(t.st[0], a, b);
    s.st[1] = cut(t.st[1], a, b);
    slots[i] = s.slot(step);
  }
  std::vector<double> partials;
  for (size_t i = 0; i < nshards; ++i) proto::stats(kind, geo, slots[i], starts[(size_t)cuts[i]], hyper.data(), cuts[i], cuts[i + 1], partials);
  CHECK(partials.size() == proto::partials_length(kind, geo));
  std::vector<double> decision;
  proto::decide(kind, geo, hyper.data(), partials.data(), partials.size(), decision);
  CHECK(proto::check_decision(kind, geo, decision.data(), decision.size()) == nullptr);
  std::vector<double> nrm;
  for (size_t i = 0; i < nshards; ++i)
    proto::apply(kind, geo, slots[i], starts[(size_t)cuts[i]], hyper.data(), decision.data(), decision.size(), cuts[i],
                 cuts[i + 1], norms, nrm);
  CHECK(nrm.size() == 3 * (starts.size() - 1));
  proto::finish(kind, geo, decision.data(), decision.size(), nrm.data(), info);
  for (size_t i = 0; i < nshards; ++i) {
    const int64_t a = starts[(size_t)cuts[i]];
    std::copy(shards[i].p.begin(), shards[i].p.end(), t.p.begin() + a);
    for (int k = 0; k < 2; ++k) std::copy(shards[i].st[k].begin(), shards[i].st[k].end(), t.st[k].begin() + a);
  }
}

static bool same(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

static void test_sharded_equals_step() {
  const OptKind kinds[] = {OptKind::AdamP, OptKind::SGDP, OptKind::AdamW, OptKind::SGD};
  Rng r(2024);
  int cases = 0, multi_unit = 0, projected = 0;
  for (int rep = 0; rep < 8; ++rep) {
    for (OptKind kind : kinds) {
      const int slots = cpu::kinds()[(size_t)kind].slots;
      for (int layout = 0; layout < 6; ++layout) {
        const Geo geo = random_geo(r, layout);
        const std::vector<double> hyper = random_hyper(r, kind);
        const Tensor init = random_tensor(r, geo, slots);
        const bool norms = r.below(2) == 1;
        Tensor a = init, b = init;
        const std::vector<int64_t> starts = cpu::protocol::units(kind, geo_of(init));
        const int64_t nunits = (int64_t)starts.size() - 1;
        CHECK(starts.front() == 0 && starts.back() == (int64_t)init.p.size());
        for (size_t u = 1; u < starts.size(); ++u) CHECK(starts[u - 1] <= starts[u]);
        if (nunits > 1) ++multi_unit;
        bool ok = true;
        for (int step = 1; step <= 3; ++step) {
          if (step > 1)
            for (size_t i = 0; i < a.g.size(); ++i) a.g[i] = b.g[i] = init.g[i] * (0.5f + 0.25f * (float)step);
          // 2-4 shards at random unit boundaries (some may be empty)
          const int nshards = 2 + r.below(3);
          std::vector<int64_t> cuts = {0, nunits};
          for (int i = 1; i < nshards; ++i) cuts.push_back(nunits == 0 ? 0 : (int64_t)r.below((int)nunits + 1));
          std::sort(cuts.begin(), cuts.end());
          double ia[kInfoStride], ib[kInfoStride];
          std::vector<cpu::TensorSlot> sl(1, a.slot(step));
          cpu::StepConfig cfg;
          cfg.threads = 1 + r.below(3);
          cfg.norms = norms;
          cpu::step(kind, sl.data(), 1, hyper.data(), ia, cfg);
          protocol_step(kind, b, hyper, step, cuts, norms, ib);
          const bool eq = same(a.p, b.p) && same(a.st[0], b.st[0]) && same(a.st[1], b.st[1]) && memcmp(ia, ib, sizeof ia) == 0;
          if (!eq) {
            fprintf(stderr, "  protocol mismatch: %s, geometry %lldx%lldx%lld%s, step %d, %d shards, norms %d\n",
                    cpu::kinds()[(size_t)kind].name, (long long)geo.outer, (long long)geo.channels, (long long)geo.inner,
                    geo.eligible ? "" : " (1-D)", step, nshards, norms ? 1 : 0);
            for (int f = 0; f < kInfoStride; ++f) fprintf(stderr, "    info[%d] %.17g vs %.17g\n", f, ia[f], ib[f]);
          }
          ok = ok && eq;
          if (is_projected((int)ia[kInfoDecision])) ++projected;
        }
        CHECK(ok);
        ++cases;
      }
    }
  }
  printf("test_protocol: %d tensors, %d with several units, %d projected steps\n", cases, multi_unit, projected);
  CHECK(multi_unit > cases / 2);
  CHECK(projected > 5);
}

// Units follow the layouts: check a few boundaries by hand.
static void test_units() {
  // Pieces: 1 x 2 x 70001 -> 3 pieces per row.
  std::vector<int64_t> u = cpu::protocol::units(OptKind::AdamP, {140002, 1, 2, 70001, true});
  CHECK(u.size() == 7 && u[1] == 32768 && u[2] == 65536 && u[3] == 70001 && u[6] == 140002);
  // Non-projecting: blocks of 32768 whatever the shape.
  u = cpu::protocol::units(OptKind::AdamW, {140002, 1, 2, 70001, true});
  CHECK(u.size() == 6 && u[1] == 32768 && u[5] == 140002);
  // Rows with outer > 1: a unit never spans two outer indices.
  u = cpu::protocol::units(OptKind::SGDP, {4 * 6 * 5, 4, 6, 5, true});
  CHECK(u.size() == 5 && u[1] == 30 && u[2] == 60);
  // Lanes: row chunks of whole rows (5000 x 12: 2048 rows per chunk).
  u = cpu::protocol::units(OptKind::SGDP, {5000 * 12, 5000, 12, 1, true});
  CHECK(u.size() == 4 && u[1] == 2048 * 12 && u[3] == 60000);
  // 1-D: blocks.
  u = cpu::protocol::units(OptKind::AdamP, {100, 1, 1, 100, false});
  CHECK(u.size() == 2 && u[1] == 100);
  u = cpu::protocol::units(OptKind::AdamP, {0, 1, 1, 0, false});
  CHECK(u.size() == 1 && u[0] == 0);
}

static void test_checks() {
  const proto::Geometry g = {5000 * 12, 5000, 12, 1, true};
  CHECK(proto::check_shard(OptKind::AdamP, g, 0, 2048 * 12, 0, 1) == nullptr);
  CHECK(proto::check_shard(OptKind::AdamP, g, 1, 2048 * 12, 0, 1) != nullptr);      // offset not at the unit
  CHECK(proto::check_shard(OptKind::AdamP, g, 0, 2048 * 12 - 1, 0, 1) != nullptr);  // short shard
  CHECK(proto::check_shard(OptKind::AdamP, g, 0, 0, 2, 1) != nullptr);              // u0 > u1
  CHECK(proto::check_shard(OptKind::AdamP, g, 0, 0, 0, 4) != nullptr);              // past the last unit
  CHECK(proto::check_shard(OptKind::AdamP, g, 60000, 0, 3, 3) == nullptr);          // an empty shard at the end
  CHECK(proto::partials_length(OptKind::AdamP, g) == 3 * 4 * 12);
  CHECK(proto::partials_length(OptKind::AdamW, g) == 0);

  // Decision records: the code must fit the optimizer and tensor, the length the code.
  const double hyper[8] = {1e-3, 0.9, 0.999, 1e-8, 0, 0.1, 0.1, 0};
  std::vector<double> zeros(proto::partials_length(OptKind::AdamP, g), 0.0), d;
  proto::decide(OptKind::AdamP, g, hyper, zeros.data(), zeros.size(), d);
  CHECK(d[0] == kDecisionChannel && d.size() == 11 + 2 * 12);  // zero gradient: channel
  CHECK(proto::check_decision(OptKind::AdamP, g, d.data(), d.size()) == nullptr);
  CHECK(proto::check_decision(OptKind::AdamP, g, d.data(), d.size() - 1) != nullptr);
  CHECK(proto::check_decision(OptKind::AdamP, g, d.data(), 5) != nullptr);
  std::vector<double> bad = d;
  bad[0] = kDecisionLayer;  // layer takes 1 coefficient
  CHECK(proto::check_decision(OptKind::AdamP, g, bad.data(), bad.size()) != nullptr);
  bad[0] = 7;
  CHECK(proto::check_decision(OptKind::AdamP, g, bad.data(), bad.size()) != nullptr);
  bad[0] = NAN;
  CHECK(proto::check_decision(OptKind::AdamP, g, bad.data(), bad.size()) != nullptr);
  CHECK(proto::check_decision(OptKind::AdamW, g, d.data(), d.size()) != nullptr);
  proto::decide(OptKind::AdamW, g, hyper, nullptr, 0, d);
  CHECK(d[0] == kDecisionNotApplicable && d.size() == 11);
  CHECK(proto::check_decision(OptKind::AdamW, g, d.data(), d.size()) == nullptr);
  CHECK(proto::check_decision(OptKind::AdamP, g, d.data(), d.size()) != nullptr);
  const proto::Geometry flat = {100, 1, 1, 100, false};
  proto::decide(OptKind::SGDP, flat, hyper, nullptr, 0, d);
  CHECK(d[0] == kDecisionNotEligible && proto::check_decision(OptKind::SGDP, flat, d.data(), d.size()) == nullptr);
}

int main() {
  test_units();
  test_checks();
  test_sharded_equals_step();
  return report("test_protocol");
}
