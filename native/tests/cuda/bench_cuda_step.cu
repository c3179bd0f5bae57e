// GPU benchmark of the fused step of every registered optimizer on the parameter sets of
// bench/shapes.json (ResNet-50, GPT-2 small), timed with CUDA events, written as JSON.
//
//   bench_cuda_step --shapes bench/shapes.json --out result.json [--iters 50] [--sweep]
//                   [--kinds adamp,sgdp,adamw,sgd] [--sets resnet50,gpt2-small] [--norms]
//
// Per set and kind: median / min / mean milliseconds of one step (stream-launched, and replayed
// from a CUDA graph), the device-to-device copy bandwidth measured in the same run, and the
// fraction of the memory-bandwidth bound (28 B/elem for the Adam family, 20 B/elem for the SGD
// family: what a one-pass Adam / SGD with momentum moves; the two-pass floors are in
// native/cuda/README.md). Steps skip the info norms (what a training loop that does not read
// lastStepInfo runs); --norms times AdamP with them too. Params and gradients are filled on the
// device (a hash-based normal sampler): nothing of the sets' size crosses PCIe. --sweep also times
// AdamP over a grid of scheduling knobs (chunk, group, lag) so one GPU session can pick defaults.
// Knobs for the main run: env ADAMP_CUDA_CHUNK, ADAMP_CUDA_GROUP, ADAMP_CUDA_LAG, ADAMP_CUDA_BLOCKS.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../../cuda/adamp_cuda.h"
#include "mini_json.h"

namespace {

#define CK(call)                                                                                          \
  do {                                                                                                    \
    const int rc_ = (int)(call);                                                                          \
    if (rc_ != 0) {                                                                                       \
      std::fprintf(stderr, "FATAL %s:%d: %s -> %s (%d)\n", __FILE__, __LINE__, #call, adamp_cuda_error_name(rc_), rc_); \
      std::exit(1);                                                                                       \
    }                                                                                                     \
  } while (0)

struct Stats {
  double median = 0, min = 0, mean = 0;
};

Stats stats(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.median = v[v.size() / 2];
  s.min = v.front();
  double t = 0;
  for (double x : v) t += x;
  s.mean = t / v.size();
  return s;
}

struct Set {
  std::string name;
  std::vector<std::vector<int64_t>> shapes;
  int64_t numel = 0;
};

adamp_cuda_config env_config() {
  adamp_cuda_config c = {0, 0, 0, 0, 0};
  if (const char* s = std::getenv("ADAMP_CUDA_CHUNK")) c.chunk = std::atoi(s);
  if (const char* s = std::getenv("ADAMP_CUDA_GROUP")) c.group = std::atoll(s);
  if (const char* s = std::getenv("ADAMP_CUDA_LAG")) c.lag = std::atoi(s);
  if (const char* s = std::getenv("ADAMP_CUDA_BLOCKS")) c.blocks_per_sm = std::atoi(s);
  return c;
}

/** x[i] = scale * N(0, 1) from a hash of (seed, i) (Box-Muller): deterministic, on the device. */
__global__ void fill_normal(float* x, int64_t n, uint32_t seed, float scale) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    uint64_t h = (uint64_t)i * 0x9E3779B97F4A7C15ull ^ ((uint64_t)seed << 32);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    const float u1 = ((uint32_t)h + 1.0f) * 2.3283064e-10f, u2 = (uint32_t)(h >> 32) * 2.3283064e-10f;
    x[i] = scale * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
  }
}

void fill(float* x, int64_t n, uint32_t seed, float scale, cudaStream_t s) {
  fill_normal<<<(unsigned)std::min<int64_t>((n + 255) / 256, 4096), 256, 0, s>>>(x, n, seed, scale);
  CK(cudaGetLastError());
}

/** The benchmark's hyperparameters per kind (wire order, adamp/optim/<kind>.h). */
std::vector<double> hyper_for(const std::string& kind) {
  if (kind == "adamp") return {1e-3, 0.9, 0.999, 1e-8, 0.01, 0.1, 0.1, 0};
  if (kind == "sgdp") return {0.1, 0.9, 0, 1e-4, 0, 1e-8, 0.1, 0.1};
  if (kind == "adamw") return {1e-3, 0.9, 0.999, 1e-8, 0.01};
  if (kind == "sgd") return {0.1, 0.9, 0, 1e-4, 0};
  std::fprintf(stderr, "bench_cuda_step: no hyperparameters for kind '%s'\n", kind.c_str());
  std::exit(2);
}

/** One-pass bytes per element the bound is computed from (fp32 p, g, state; see native/cuda/README.md). */
double floor_bytes(const std::string& kind) { return kind == "adamp" || kind == "adamw" ? 28.0 : 20.0; }

/** A context holding one set's tensors, random params and grads made on the device. */
struct Bench {
  adamp_cuda_ctx* ctx = nullptr;
  std::vector<int> ids;
  std::vector<double> hyper;
  unsigned flags;
  Bench(const Set& set, const std::string& kind, const adamp_cuda_config& cfg, bool norms)
      : hyper(hyper_for(kind)), flags(norms ? 0u : ADAMP_CUDA_NO_NORMS) {
    CK(adamp_cuda_create(&ctx, kind.c_str(), 0, &cfg));
    cudaStream_t s = stream();
    uint32_t seed = 1;
    for (const auto& sh : set.shapes) {
      adamp_cuda_tensor_desc d;
      d.numel = 1;
      for (int64_t x : sh) d.numel *= x;
      d.eligible = sh.size() > 1;
      d.outer = 1;
      d.channels = d.eligible ? sh[0] : 1;
      d.inner = d.numel / d.channels;
      int id;
      CK(adamp_cuda_add_tensor(ctx, &d, &id));
      ids.push_back(id);
      fill(adamp_cuda_device_ptr(ctx, id, ADAMP_CUDA_P), d.numel, seed++, 0.02f, s);
      fill(adamp_cuda_device_ptr(ctx, id, ADAMP_CUDA_G), d.numel, seed++, 1e-3f, s);
    }
    CK(adamp_cuda_sync(ctx));
  }
  ~Bench() { adamp_cuda_destroy(ctx); }
  void step() { CK(adamp_cuda_step_ex(ctx, ids.data(), (int)ids.size(), hyper.data(), (int)hyper.size(), flags)); }
  cudaStream_t stream() { return (cudaStream_t)adamp_cuda_stream(ctx); }
};

/** Times `iters` single steps, each between two events. */
Stats time_steps(Bench& b, int iters) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int i = 0; i < 5; ++i) b.step();
  CK(adamp_cuda_sync(b.ctx));
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    CK(cudaEventRecord(e0, b.stream()));
    b.step();
    CK(cudaEventRecord(e1, b.stream()));
    CK(cudaEventSynchronize(e1));
    float t = 0;
    CK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return stats(ms);
}

/** The same step captured once in a CUDA graph and replayed (no launch overhead on the host). */
Stats time_graph(Bench& b, int iters, bool* ok) {
  cudaGraph_t g = nullptr;
  cudaGraphExec_t ge = nullptr;
  *ok = false;
  if (cudaStreamBeginCapture(b.stream(), cudaStreamCaptureModeThreadLocal) != cudaSuccess) return Stats();
  b.step();
  if (cudaStreamEndCapture(b.stream(), &g) != cudaSuccess) {
    cudaGetLastError();
    return Stats();
  }
  if (cudaGraphInstantiate(&ge, g, 0) != cudaSuccess) {
    cudaGetLastError();
    cudaGraphDestroy(g);
    return Stats();
  }
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int i = 0; i < 5; ++i) CK(cudaGraphLaunch(ge, b.stream()));
  CK(adamp_cuda_sync(b.ctx));
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    CK(cudaEventRecord(e0, b.stream()));
    CK(cudaGraphLaunch(ge, b.stream()));
    CK(cudaEventRecord(e1, b.stream()));
    CK(cudaEventSynchronize(e1));
    float t = 0;
    CK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  *ok = true;
  return stats(ms);
}

/** Device-to-device copy bandwidth (read + write bytes per second), 1 GiB each way. */
double copy_bandwidth_gbs() {
  const size_t bytes = size_t(1) << 30;
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
    cudaGetLastError();
    cudaFree(a);
    return 0;
  }
  cudaMemset(a, 1, bytes);
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int i = 0; i < 3; ++i) CK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
  std::vector<double> ms;
  for (int i = 0; i < 10; ++i) {
    CK(cudaEventRecord(e0));
    CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float t = 0;
    CK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  cudaFree(a);
  cudaFree(b);
  const Stats s = stats(ms);
  return 2.0 * bytes / (s.median * 1e-3) / 1e9;
}

std::string json_stats(const Stats& s) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "{\"median_ms\": %.5f, \"min_ms\": %.5f, \"mean_ms\": %.5f}", s.median, s.min, s.mean);
  return buf;
}

}  // namespace

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

int main(int argc, char** argv) {
  std::string shapes_path = "bench/shapes.json", out_path;
  int iters = 50;
  bool sweep = false, norms = false;
  std::vector<std::string> kinds = {"adamp", "sgdp", "adamw", "sgd"}, set_names = {"resnet50", "gpt2-small"};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--shapes") && i + 1 < argc) shapes_path = argv[++i];
    else if (!std::strcmp(argv[i], "--out") && i + 1 < argc) out_path = argv[++i];
    else if (!std::strcmp(argv[i], "--iters") && i + 1 < argc) iters = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--kinds") && i + 1 < argc) kinds = split(argv[++i]);
    else if (!std::strcmp(argv[i], "--sets") && i + 1 < argc) set_names = split(argv[++i]);
    else if (!std::strcmp(argv[i], "--sweep")) sweep = true;
    else if (!std::strcmp(argv[i], "--norms")) norms = true;
    else {
      std::fprintf(stderr, "usage: %s [--shapes F] [--out F] [--iters N] [--kinds a,b] [--sets a,b] [--sweep] [--norms]\n", argv[0]);
      return 2;
    }
  }
  int count = 0;
  const int rc = adamp_cuda_device_count(&count);
  if (rc != 0 || count == 0) {
    std::printf("SKIP: no usable CUDA device (cudaGetDeviceCount: %s (%d): %s)\n", adamp_cuda_error_name(rc), rc,
                adamp_cuda_error_string(rc));
    return 77;
  }
  std::ifstream f(shapes_path);
  if (!f) {
    std::fprintf(stderr, "cannot read %s\n", shapes_path.c_str());
    return 2;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  const mini_json::Value root = mini_json::parse(ss.str());
  std::vector<Set> sets;
  for (const std::string& name : set_names) {
    if (!root.has(name)) {
      std::fprintf(stderr, "%s has no set '%s'\n", shapes_path.c_str(), name.c_str());
      return 2;
    }
    Set s;
    s.name = name;
    for (const auto& sh : root[name]["shapes"].arr) {
      std::vector<int64_t> d;
      int64_t n = 1;
      for (const auto& x : sh.arr) {
        d.push_back((int64_t)x.number());
        n *= d.back();
      }
      s.numel += n;
      s.shapes.push_back(d);
    }
    sets.push_back(s);
  }

  char dev[256];
  int major = 0, minor = 0;
  size_t mem = 0;
  CK(adamp_cuda_device_info(0, dev, sizeof(dev), &major, &minor, &mem));
  int runtime = 0, driver = 0;
  adamp_cuda_versions(&runtime, &driver);
  const double bw = copy_bandwidth_gbs();
  std::printf("device: %s (sm_%d%d), copy bandwidth %.0f GB/s\n", dev, major, minor, bw);

  const adamp_cuda_config cfg = env_config();
  std::ostringstream js;
  js << "{\n  \"device\": \"" << dev << "\", \"compute_capability\": \"" << major << "." << minor
     << "\", \"cuda_runtime\": " << runtime << ", \"cuda_driver\": " << driver << ",\n  \"copy_bandwidth_GBps\": " << bw
     << ",\n  \"iters\": " << iters << ", \"norms\": " << (norms ? "true" : "false") << ",\n  \"config\": {\"chunk\": " << cfg.chunk
     << ", \"group\": " << cfg.group << ", \"lag\": " << cfg.lag << ", \"blocks_per_sm\": " << cfg.blocks_per_sm << "},\n  \"sets\": {";
  bool first = true;
  for (const Set& s : sets) {
    std::string entry;
    auto run = [&](const std::string& kind, bool with_norms, const char* key) {
      Bench b(s, kind, cfg, with_norms);
      const Stats st = time_steps(b, iters);
      bool gok = false;
      const Stats gs = time_graph(b, iters, &gok);
      const double bytes_floor = floor_bytes(kind);
      const double bound_ms = bytes_floor * (double)s.numel / (bw * 1e9) * 1e3;
      std::printf("%-10s %-12s: %.4f ms (graph %.4f ms); bound at %.0f B/elem %.4f ms -> %.0f%%\n", s.name.c_str(), key, st.median,
                  gok ? gs.median : NAN, bytes_floor, bound_ms, 100.0 * bound_ms / st.median);
      char buf[512];
      std::snprintf(buf, sizeof(buf),
                    "\"%s\": {\"stream\": %s, \"graph\": %s, \"bytes_per_elem_floor\": %.0f, \"bound_ms\": %.5f, "
                    "\"fraction_of_bound\": %.4f}",
                    key, json_stats(st).c_str(), gok ? json_stats(gs).c_str() : "null", bytes_floor, bound_ms, bound_ms / st.median);
      entry += (entry.empty() ? "" : ", ");
      entry += buf;
    };
    for (const std::string& kind : kinds) run(kind, false, kind.c_str());
    if (norms) run("adamp", true, "adamp_norms");
    if (sweep) {
      std::string sw;
      const int chunks[] = {4096, 8192, 16384};
      const int64_t groups[] = {int64_t(1) << 19, int64_t(1) << 20, int64_t(1) << 21};
      const int lags[] = {1, 2};
      for (int c : chunks)
        for (int64_t g : groups)
          for (int l : lags) {
            adamp_cuda_config k = {c, g, l, cfg.blocks_per_sm, 0};
            Bench b(s, "adamp", k, false);
            const Stats st = time_steps(b, std::max(10, iters / 2));
            char buf[200];
            std::snprintf(buf, sizeof(buf), "%s{\"chunk\": %d, \"group\": %lld, \"lag\": %d, \"median_ms\": %.5f}",
                          sw.empty() ? "" : ", ", c, (long long)g, l, st.median);
            sw += buf;
            std::printf("  sweep %s adamp chunk %d group %lld lag %d: %.4f ms\n", s.name.c_str(), c, (long long)g, l, st.median);
          }
      entry += ", \"adamp_sweep\": [" + sw + "]";
    }
    js << (first ? "" : ",") << "\n    \"" << s.name << "\": {\"tensors\": " << s.shapes.size() << ", \"numel\": " << s.numel
       << ", " << entry << "}";
    first = false;
  }
  js << "\n  }\n}\n";
  if (!out_path.empty()) {
    std::ofstream o(out_path);
    o << js.str();
  } else {
    std::printf("%s", js.str().c_str());
  }
  return 0;
}
