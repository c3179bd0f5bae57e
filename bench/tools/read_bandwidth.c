// One core's read bandwidth against the size of the buffer read (1 MB to 256 MB): where it drops
// is where the last-level cache ends. This VM's CPUID reports no cache sizes, so this is how
// docs/performance.md ("Other experiments the same day") measured them.
//   gcc -O2 -mavx2 -o /tmp/read_bandwidth bench/tools/read_bandwidth.c && /tmp/read_bandwidth
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void) {
  const size_t max_bytes = (size_t)256 << 20;
  float* a = aligned_alloc(64, max_bytes);
  if (a == NULL) return 1;
  for (size_t i = 0; i < max_bytes / 4; ++i) a[i] = 1.0f;
  for (size_t mb = 1; mb <= 256; mb *= 2) {
    const size_t n = (mb << 20) / 4;
    const int reps = (int)(2048 / mb);  // 2 GB read per size
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < n; i += 8) s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i));  // warm
    const double t0 = now();
    for (int r = 0; r < reps; ++r)
      for (size_t i = 0; i < n; i += 32) {  // four independent sums: the adds never limit the loads
        s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(a + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(a + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(a + i + 24));
      }
    const double t = now() - t0;
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    printf("%4zu MB: %.1f GB/s (checksum %g)\n", mb, (double)mb * reps / 1024.0 / t, out[0]);
  }
  free(a);
  return 0;
}
