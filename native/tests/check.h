// A minimal test harness for the C++ tests (no dependencies): CHECK(cond) records a failure with
// its location and keeps going; main() returns the failure count through report().
#ifndef ADAMP_TESTS_CHECK_H
#define ADAMP_TESTS_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_checks = 0;
static int g_failures = 0;

#define CHECK(cond)                                                          \
  do {                                                                       \
    ++g_checks;                                                              \
    if (!(cond)) {                                                           \
      ++g_failures;                                                          \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                        \
  } while (0)

#define CHECK_EQ_F(a, b)                                                                          \
  do {                                                                                            \
    ++g_checks;                                                                                   \
    const double va_ = (double)(a), vb_ = (double)(b);                                            \
    if (!(va_ == vb_) && !(va_ != va_ && vb_ != vb_)) {                                           \
      ++g_failures;                                                                               \
      fprintf(stderr, "%s:%d: %s == %s failed: %.9g vs %.9g\n", __FILE__, __LINE__, #a, #b, va_, vb_); \
    }                                                                                             \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                                          \
  do {                                                                                                 \
    ++g_checks;                                                                                        \
    const double va_ = (double)(a), vb_ = (double)(b);                                                 \
    if (!(fabs(va_ - vb_) <= (tol))) {                                                                 \
      ++g_failures;                                                                                    \
      fprintf(stderr, "%s:%d: |%s - %s| <= %g failed: %.9g vs %.9g\n", __FILE__, __LINE__, #a, #b, (double)(tol), va_, vb_); \
    }                                                                                                  \
  } while (0)

/**
 * `--quick` (the sanitizer leg, scripts/asan-native.sh): every code path still runs, with fewer
 * repetitions (thread counts, variants) and without the largest tensors, whose cost under ASan is
 * time, not coverage.
 */
static bool g_quick = false;
static inline void parse_test_args(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--quick") == 0) {
      g_quick = true;
    } else {
      fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
      exit(2);
    }
  }
  // a shortened run says so: a green --quick run does not stand for the full one
  if (g_quick) printf("%s --quick: fewer thread counts and variants, no tensor over ~150,000 elements (run without --quick for all)\n", argv[0]);
}

static inline int report(const char* name) {
  printf("%s: %d checks, %d failed\n", name, g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}

/** xorshift-based uniform in [-1, 1) and a rough normal, seeded. */
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  double uniform() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
  }
  float normal() { return (float)(uniform() + uniform() + uniform()); }
  /** Uniform integer in [0, n). */
  int below(int n) { return (int)(s = s * 6364136223846793005ull + 1442695040888963407ull, (s >> 33) % (uint64_t)n); }
};

#endif
