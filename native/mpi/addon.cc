// adamp_mpi.node: MPI collectives for lib/distributed/mpi.ts, with MPI loaded at run time (dlopen,
// ./mpi_abi.h), so this addon builds and loads on machines without MPI and says why it cannot run.
//
// Exports (typed in lib/distributed/mpi.ts):
//   load(library?)      dlopen libmpi (given, or the usual sonames); { flavor, library, version, cudaAware }
//   init()              MPI_Init_thread (FUNNELED) unless already initialized, then a private
//                       duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN; { rank, size, initializedHere }
//   allgatherv(send, recv, counts, dtype, timeoutMs, step, phase)
//   allreduce(buf, count, dtype, op, rankOrder, timeoutMs, step, phase)
//                       one collective with a deadline: { status: 0 ok | 1 timed out | 2 MPI error,
//                       error, elapsedMs, seq, answers }; buffers are typed arrays or device addresses
//                       (BigInt, for CUDA-aware MPI)
//   reducescatter(send, recv, counts, dtype, rankOrder, timeoutMs, step, phase)
//                       each rank's segment of the sum (rank order: all-to-all + fold)
//   abort(code)         MPI_Abort on the job
//   finalize()          MPI_Finalize when this addon initialized MPI and no call is pending
//   state()             { loaded, initialized, finalized, broken, seq }
//
// A call waits by polling MPI_Test (non-blocking collectives), so it can give up at its deadline:
// MPI itself has no timeout. While it waits it answers the census of other ranks; when it gives
// up, it asks every rank where it is (point-to-point messages on their own tags, with a grace
// period) and returns who answered: ranks that stay silent are dead or stalled. The pending call
// cannot be cancelled (MPI has no way to), so the communicator is unusable afterwards: every later
// call fails, and finalize() is skipped (MPI_Finalize would wait for it).
#include <dlfcn.h>
#include <napi.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include <array>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "mpi_abi.h"

namespace adamp {
namespace mpi {
namespace {

constexpr int kTagAsk = 31001;
constexpr int kTagReply = 31002;

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

/**
 * Between two polls of a waiting call: yield the core for the first 50 ms (MPI progresses its
 * transfers only inside our MPI_Test calls, so sleeping would slow every fragment of a large
 * message), then sleep 100 us per poll (a long wait: another rank is late; leave the core to it).
 */
void backoff(double waited_ms) {
  if (waited_ms < 50) {
    sched_yield();
    return;
  }
  struct timespec ts{0, 100000};
  nanosleep(&ts, nullptr);
}

/** Where another rank was when it answered a census. */
struct Answer {
  bool answered = false;
  int64_t seq = 0, step = -1, phase = 0;
};

struct Result {
  int status = 0;  // 0 ok, 1 timed out, 2 MPI error
  std::string error;
  double elapsed = 0;
  int64_t seq = 0;
  std::vector<Answer> answers;
};

/** The ABI-independent face of a loaded MPI. */
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string init(int* rank, int* size, bool* here) = 0;
  virtual Result allgatherv(const void* send, int n, int dtype, void* recv, const std::vector<int>& counts, double timeout_ms,
                            int64_t step, int64_t phase) = 0;
  virtual Result allreduce(void* buf, int n, int dtype, int op, bool rank_order, double timeout_ms, int64_t step, int64_t phase) = 0;
  virtual Result reducescatter(const void* send, void* recv, const std::vector<int>& counts, int dtype, bool rank_order, double timeout_ms,
                               int64_t step, int64_t phase) = 0;
  virtual void abort(int code) = 0;
  virtual bool finalize() = 0;
  bool initialized = false, finalized = false, broken = false, here = false;
  int64_t seq = 0;
  int rank = 0, size = 1;
};

template <class H>
class Impl : public Backend {
 public:
  using A = Api<H>;
  explicit Impl(const A& api) : api_(api) {}

  std::string init(int* rank, int* size, bool* here_out) override {
    int flag = 0;
    api_.Initialized(&flag);
    if (!flag) {
      int provided = 0;
      int rc = api_.Init_thread(nullptr, nullptr, kThreadFunneled, &provided);
      if (rc != 0) return "MPI_Init_thread failed: " + err(rc);
      here = true;
    }
    int rc = api_.Comm_dup(api_.world, &comm_);
    if (rc != 0) return "MPI_Comm_dup failed: " + err(rc);
    api_.Comm_set_errhandler(comm_, api_.errors_return);
    api_.Comm_rank(comm_, &rank_);
    api_.Comm_size(comm_, &size_);
    *rank = rank_;
    *size = size_;
    this->rank = rank_;
    this->size = size_;
    *here_out = here;
    initialized = true;
    return "";
  }

  Result allgatherv(const void* send, int n, int dtype, void* recv, const std::vector<int>& counts, double timeout_ms, int64_t step,
                    int64_t phase) override {
    Result res = begin(step, phase);
    std::vector<int> displs(counts.size());
    int at = 0;
    for (size_t k = 0; k < counts.size(); ++k) {
      displs[k] = at;
      at += counts[k];
    }
    typename H::Request req{};
    int rc = api_.Iallgatherv(n == 0 ? nullptr : send, n, type(dtype), recv, counts.data(), displs.data(), type(dtype), comm_, &req);
    if (rc != 0) return fail(res, "MPI_Iallgatherv", rc);
    wait(&req, timeout_ms, res);
    return res;
  }

  Result allreduce(void* buf, int n, int dtype, int op, bool rank_order, double timeout_ms, int64_t step, int64_t phase) override {
    Result res = begin(step, phase);
    if (!rank_order) {
      typename H::Request req{};
      int rc = api_.Iallreduce(api_.in_place, buf, n, type(dtype), op == 0 ? api_.sum : op == 1 ? api_.max : api_.min, comm_, &req);
      if (rc != 0) return fail(res, "MPI_Iallreduce", rc);
      wait(&req, timeout_ms, res);
      return res;
    }
    // Rank order: a reduce-scatter by all-to-all (rank k receives everyone's k-th segment and
    // folds it in rank order), then an all-gather of the folded segments. The same volume as a
    // ring all-reduce; every element is reduced by one rank, in rank order.
    const size_t es = dtype == 0 ? 4 : 8;
    const int N = size_;
    std::vector<int> cnt(N), start(N), rc_counts(N), rdispls(N);
    int at = 0;
    for (int k = 0; k < N; ++k) {
      cnt[k] = n / N + (k < n % N ? 1 : 0);
      start[k] = at;
      at += cnt[k];
    }
    const int mine = cnt[rank_];
    for (int k = 0; k < N; ++k) {
      rc_counts[k] = mine;
      rdispls[k] = k * mine;
    }
    // uninitialized (every byte is written before it is read): no zeroing of two buffer-sized arrays per call
    std::unique_ptr<char[]> tmp_buf(new char[(size_t)N * mine * es + 8]), out_buf(new char[(size_t)mine * es + 8]);
    char* tmp = tmp_buf.get();
    char* out = out_buf.get();
    const double t0 = now_ms();
    typename H::Request req{};
    int rc = api_.Ialltoallv(buf, cnt.data(), start.data(), type(dtype), tmp, rc_counts.data(), rdispls.data(), type(dtype), comm_, &req);
    if (rc != 0) return fail(res, "MPI_Ialltoallv", rc);
    wait(&req, timeout_ms, res);
    if (res.status != 0) return res;
    if (dtype == 0)
      fold<float>(reinterpret_cast<float*>(out), reinterpret_cast<const float*>(tmp), mine, N, op);
    else
      fold<double>(reinterpret_cast<double*>(out), reinterpret_cast<const double*>(tmp), mine, N, op);
    rc = api_.Iallgatherv(out, mine, type(dtype), buf, cnt.data(), start.data(), type(dtype), comm_, &req);
    if (rc != 0) return fail(res, "MPI_Iallgatherv", rc);
    wait(&req, timeout_ms - (now_ms() - t0), res);
    return res;
  }

  Result reducescatter(const void* send, void* recv, const std::vector<int>& counts, int dtype, bool rank_order, double timeout_ms, int64_t step,
                       int64_t phase) override {
    Result res = begin(step, phase);
    const int N = size_;
    const int mine = counts[(size_t)rank_];
    typename H::Request req{};
    if (!rank_order) {
      int rc = api_.Ireduce_scatter(send, recv, counts.data(), type(dtype), api_.sum, comm_, &req);
      if (rc != 0) return fail(res, "MPI_Ireduce_scatter", rc);
      wait(&req, timeout_ms, res);
      return res;
    }
    // rank k receives everyone's k-th segment, folds it in rank order
    std::vector<int> start((size_t)N), rcounts((size_t)N, mine), rdispls((size_t)N);
    int at = 0;
    for (int k = 0; k < N; ++k) {
      start[(size_t)k] = at;
      at += counts[(size_t)k];
      rdispls[(size_t)k] = k * mine;
    }
    const size_t es = dtype == 0 ? 4 : 8;
    std::unique_ptr<char[]> tmp(new char[(size_t)N * mine * es + 8]);
    int rc = api_.Ialltoallv(send, counts.data(), start.data(), type(dtype), tmp.get(), rcounts.data(), rdispls.data(), type(dtype), comm_, &req);
    if (rc != 0) return fail(res, "MPI_Ialltoallv", rc);
    wait(&req, timeout_ms, res);
    if (res.status != 0) return res;
    if (dtype == 0)
      fold<float>(reinterpret_cast<float*>(recv), reinterpret_cast<const float*>(tmp.get()), mine, N, 0);
    else
      fold<double>(reinterpret_cast<double*>(recv), reinterpret_cast<const double*>(tmp.get()), mine, N, 0);
    return res;
  }

  void abort(int code) override { api_.Abort(api_.world, code); }

  bool finalize() override {
    if (!initialized || finalized || broken || !here) return false;
    int flag = 0;
    api_.Finalized(&flag);
    if (!flag) api_.Finalize();
    finalized = true;
    return true;
  }

 private:
  template <class T>
  static void fold(T* out, const T* in, int n, int N, int op) {
    for (int i = 0; i < n; ++i) out[i] = in[i];
    for (int k = 1; k < N; ++k) {
      const T* x = in + (size_t)k * n;
      if (op == 0)
        for (int i = 0; i < n; ++i) out[i] = out[i] + x[i];
      else if (op == 1)
        for (int i = 0; i < n; ++i) out[i] = x[i] > out[i] ? x[i] : out[i];
      else
        for (int i = 0; i < n; ++i) out[i] = x[i] < out[i] ? x[i] : out[i];
    }
  }

  typename H::Datatype type(int dtype) const { return dtype == 0 ? api_.f32 : api_.f64; }

  std::string err(int rc) const {
    char buf[1024];
    int len = 0;
    if (api_.Error_string != nullptr && api_.Error_string(rc, buf, &len) == 0) return std::string(buf, (size_t)len);
    return "MPI error " + std::to_string(rc);
  }

  Result begin(int64_t step, int64_t phase) {
    Result res;
    res.seq = ++seq;
    cur_step_ = step;
    cur_phase_ = phase;
    return res;
  }

  Result& fail(Result& res, const char* what, int rc) {
    res.status = 2;
    res.error = std::string(what) + ": " + err(rc);
    broken = true;
    return res;
  }

  /** Polls `req` until it completes or the deadline passes (then runs the census). */
  void wait(typename H::Request* req, double timeout_ms, Result& res) {
    const double t0 = now_ms();
    for (int spins = 0;; ++spins) {
      int flag = 0;
      int rc = api_.Test(req, &flag, api_.status_ignore);
      if (rc != 0) {
        fail(res, "MPI_Test", rc);
        res.elapsed = now_ms() - t0;
        census(res, timeout_ms);
        return;
      }
      if (flag) {
        res.elapsed += now_ms() - t0;
        return;
      }
      const double el = now_ms() - t0;
      if (el >= timeout_ms) {
        res.status = 1;
        res.elapsed = el;
        broken = true;
        census(res, timeout_ms);
        return;
      }
      if ((spins & 31) == 31) answer();
      backoff(el);
    }
  }

  /** Answers every census question waiting: where this rank is. */
  void answer() {
    for (;;) {
      int flag = 0;
      int status[16] = {0};
      if (api_.Iprobe(api_.any_source, kTagAsk, comm_, &flag, status) != 0 || !flag) return;
      const int src = status[api_.status_source];
      std::array<int64_t, 4> q{};
      if (api_.Recv(q.data(), 4, api_.i64, src, kTagAsk, comm_, api_.status_ignore) != 0) return;
      sent_.push_back({seq, cur_step_, cur_phase_, 1});
      typename H::Request r{};
      if (api_.Isend(sent_.back().data(), 4, api_.i64, src, kTagReply, comm_, &r) == 0) api_.Request_free(&r);
    }
  }

  /** Asks every other rank where it is; waits a grace period for the answers. */
  void census(Result& res, double timeout_ms) {
    const int N = size_;
    res.answers.assign((size_t)N, Answer{});
    res.answers[(size_t)rank_] = Answer{true, seq, cur_step_, cur_phase_};
    std::vector<std::array<int64_t, 4>>& replies = replies_.emplace_back((size_t)N);
    std::vector<typename H::Request> reqs((size_t)N);
    std::vector<char> done((size_t)N, 1);
    for (int k = 0; k < N; ++k) {
      if (k == rank_) continue;
      sent_.push_back({seq, cur_step_, cur_phase_, rank_});
      typename H::Request s{};
      if (api_.Isend(sent_.back().data(), 4, api_.i64, k, kTagAsk, comm_, &s) == 0) api_.Request_free(&s);
      if (api_.Irecv(replies[(size_t)k].data(), 4, api_.i64, k, kTagReply, comm_, &reqs[(size_t)k]) == 0) done[(size_t)k] = 0;
    }
    const double grace = timeout_ms < 1000 ? 1000 : timeout_ms > 5000 ? 5000 : timeout_ms;
    const double t0 = now_ms();
    for (int spins = 0; now_ms() - t0 < grace; ++spins) {
      bool all = true;
      for (int k = 0; k < N; ++k) {
        if (done[(size_t)k]) continue;
        int flag = 0;
        if (api_.Test(&reqs[(size_t)k], &flag, api_.status_ignore) != 0) {
          done[(size_t)k] = 1;
          continue;
        }
        if (flag) {
          done[(size_t)k] = 1;
          const auto& a = replies[(size_t)k];
          res.answers[(size_t)k] = Answer{true, a[0], a[1], a[2]};
        } else {
          all = false;
        }
      }
      if (all) break;
      answer();
      backoff(1000);
    }
    // Receives still posted stay posted (their buffers are kept): the communicator is not used again.
  }

  A api_;
  typename H::Comm comm_{};
  int rank_ = 0, size_ = 1;
  int64_t cur_step_ = -1, cur_phase_ = 0;
  std::deque<std::array<int64_t, 4>> sent_;
  std::deque<std::vector<std::array<int64_t, 4>>> replies_;
};

// ------------------------------------------------------------------------------------------------
// Loading.

struct Loaded {
  void* handle = nullptr;
  std::string flavor, library, version;
  int cuda_aware = -1;  // 1 yes, 0 no, -1 unknown
  std::unique_ptr<Backend> backend;
};

Loaded* g_loaded = nullptr;

template <class F>
bool bind(void* h, const char* name, F& f, std::string& missing) {
  f = reinterpret_cast<F>(dlsym(h, name));
  if (f == nullptr) {
    if (!missing.empty()) missing += ", ";
    missing += name;
    return false;
  }
  return true;
}

template <class H>
bool bind_common(void* h, Api<H>& a, std::string& missing) {
  bool ok = true;
  ok &= bind(h, "MPI_Initialized", a.Initialized, missing);
  ok &= bind(h, "MPI_Finalized", a.Finalized, missing);
  ok &= bind(h, "MPI_Init_thread", a.Init_thread, missing);
  ok &= bind(h, "MPI_Finalize", a.Finalize, missing);
  ok &= bind(h, "MPI_Abort", a.Abort, missing);
  ok &= bind(h, "MPI_Comm_rank", a.Comm_rank, missing);
  ok &= bind(h, "MPI_Comm_size", a.Comm_size, missing);
  ok &= bind(h, "MPI_Comm_dup", a.Comm_dup, missing);
  ok &= bind(h, "MPI_Comm_set_errhandler", a.Comm_set_errhandler, missing);
  ok &= bind(h, "MPI_Iallgatherv", a.Iallgatherv, missing);
  ok &= bind(h, "MPI_Iallreduce", a.Iallreduce, missing);
  ok &= bind(h, "MPI_Ialltoallv", a.Ialltoallv, missing);
  ok &= bind(h, "MPI_Ireduce_scatter", a.Ireduce_scatter, missing);
  ok &= bind(h, "MPI_Isend", a.Isend, missing);
  ok &= bind(h, "MPI_Irecv", a.Irecv, missing);
  ok &= bind(h, "MPI_Recv", a.Recv, missing);
  ok &= bind(h, "MPI_Test", a.Test, missing);
  ok &= bind(h, "MPI_Iprobe", a.Iprobe, missing);
  ok &= bind(h, "MPI_Request_free", a.Request_free, missing);
  bind(h, "MPI_Error_string", a.Error_string, missing);  // optional
  return ok;
}

std::string library_version(void* h) {
  using Fn = int (*)(char*, int*);
  Fn f = reinterpret_cast<Fn>(dlsym(h, "MPI_Get_library_version"));
  if (f == nullptr) return "";
  std::vector<char> buf(8192 + 1, 0);
  int len = 0;
  if (f(buf.data(), &len) != 0) return "";
  std::string s(buf.data(), (size_t)(len > 0 ? len : 0));
  // the first line: MPICH's goes on with its whole configuration
  const size_t nl = s.find('\n');
  if (nl != std::string::npos) s.resize(nl);
  for (char& c : s)
    if (c == '\t') c = ' ';
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0' || s.back() == ' ')) s.pop_back();
  return s;
}

/** Loads `path`; fills `out` or returns why not. */
std::string try_load(const std::string& path, Loaded& out) {
  dlerror();
  // RTLD_GLOBAL: Open MPI's components (plugins it dlopens itself) resolve symbols of libmpi.
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (h == nullptr) {
    const char* e = dlerror();
    return path + ": " + (e ? e : "dlopen failed");
  }
  std::string missing;
  if (dlsym(h, "ompi_mpi_comm_world") != nullptr) {
    Api<OmpiHandles> a;
    bool ok = bind_common(h, a, missing);
    auto sym = [&](const char* n) -> void* {
      void* p = dlsym(h, n);
      if (p == nullptr) {
        ok = false;
        missing += std::string(missing.empty() ? "" : ", ") + n;
      }
      return p;
    };
    a.world = sym("ompi_mpi_comm_world");
    a.f32 = sym("ompi_mpi_float");
    a.f64 = sym("ompi_mpi_double");
    a.i64 = sym("ompi_mpi_long_long_int");
    a.sum = sym("ompi_mpi_op_sum");
    a.max = sym("ompi_mpi_op_max");
    a.min = sym("ompi_mpi_op_min");
    a.errors_return = sym("ompi_mpi_errors_return");
    a.in_place = reinterpret_cast<void*>(1);
    a.status_ignore = nullptr;
    a.any_source = -1;
    a.status_source = 0;
    if (!ok) {
      dlclose(h);
      return path + ": Open MPI without " + missing;
    }
    out.flavor = "Open MPI";
    using Q = int (*)();
    Q q = reinterpret_cast<Q>(dlsym(h, "MPIX_Query_cuda_support"));
    out.cuda_aware = q == nullptr ? -1 : -2;  // queried after MPI_Init (the answer is only valid then)
    out.backend.reset(new Impl<OmpiHandles>(a));
  } else if (dlsym(h, "MPI_Init_thread") != nullptr) {
    const std::string v = library_version(h);
    const bool mpich = v.find("MPICH") != std::string::npos || v.find("Intel(R) MPI") != std::string::npos ||
                       v.find("MVAPICH") != std::string::npos || dlsym(h, "MPIR_Err_return_comm") != nullptr;
    if (!mpich) {
      dlclose(h);
      return path + ": an MPI of unknown ABI (" + (v.empty() ? "no MPI_Get_library_version" : v.substr(0, 80)) +
             "); adamp knows Open MPI's and MPICH's (Intel MPI, MVAPICH2, Cray MPICH)";
    }
    Api<MpichHandles> a;
    bool ok = bind_common(h, a, missing);
    if (!ok) {
      dlclose(h);
      return path + ": an MPICH-ABI library without " + missing;
    }
    a.world = kMpichCommWorld;
    a.f32 = kMpichFloat;
    a.f64 = kMpichDouble;
    a.i64 = kMpichLongLong;
    a.sum = kMpichSum;
    a.max = kMpichMax;
    a.min = kMpichMin;
    a.errors_return = kMpichErrorsReturn;
    a.in_place = reinterpret_cast<void*>(-1);
    a.status_ignore = reinterpret_cast<void*>(1);
    a.any_source = -2;
    a.status_source = 2;
    out.flavor = "MPICH";
    out.cuda_aware = dlsym(h, "MPIX_GPU_query_support") == nullptr ? -1 : -3;
    out.backend.reset(new Impl<MpichHandles>(a));
  } else {
    dlclose(h);
    return path + ": not an MPI library (no MPI_Init_thread)";
  }
  out.handle = h;
  out.library = path;
  out.version = library_version(h);
  return "";
}

// ------------------------------------------------------------------------------------------------
// N-API.

[[noreturn]] void throw_error(Napi::Env env, const std::string& msg, const char* code = "ERR_ADAMP_BACKEND_UNAVAILABLE") {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  throw e;
}

Backend& backend(Napi::Env env, bool need_init = true) {
  if (g_loaded == nullptr) throw_error(env, "MPI is not loaded (call load() first)");
  if (need_init && !g_loaded->backend->initialized) throw_error(env, "MPI is not initialized (call init() first)");
  return *g_loaded->backend;
}

/** A buffer argument: a typed array (host) or a BigInt device address. */
void* pointer_of(Napi::Env env, Napi::Value v, const char* what) {
  if (v.IsBigInt()) {
    bool lossless = true;
    const uint64_t p = v.As<Napi::BigInt>().Uint64Value(&lossless);
    return reinterpret_cast<void*>(static_cast<uintptr_t>(p));
  }
  if (!v.IsTypedArray()) throw_error(env, std::string(what) + " must be a typed array or a device address (BigInt)", "ERR_ADAMP_INVALID_ARGUMENT");
  napi_typedarray_type t;
  size_t length = 0;
  void* data = nullptr;
  napi_value ab;
  size_t off = 0;
  if (napi_get_typedarray_info(env, v, &t, &length, &data, &ab, &off) != napi_ok) throw_error(env, std::string(what) + ": unreadable typed array", "ERR_ADAMP_INVALID_ARGUMENT");
  return data;
}

int int_arg(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsNumber()) throw_error(env, std::string(what) + " must be a number", "ERR_ADAMP_INVALID_ARGUMENT");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 2147483647.0)) throw_error(env, std::string(what) + " must be in [0, 2^31)", "ERR_ADAMP_INVALID_ARGUMENT");
  return (int)d;
}

Napi::Object result_object(Napi::Env env, const Result& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("status", r.status);
  o.Set("error", r.error);
  o.Set("elapsedMs", r.elapsed);
  o.Set("seq", (double)r.seq);
  if (!r.answers.empty()) {
    Napi::Array a = Napi::Array::New(env, r.answers.size());
    for (size_t k = 0; k < r.answers.size(); ++k) {
      if (!r.answers[k].answered) {
        a.Set((uint32_t)k, env.Null());
        continue;
      }
      Napi::Object x = Napi::Object::New(env);
      x.Set("seq", (double)r.answers[k].seq);
      x.Set("step", (double)r.answers[k].step);
      x.Set("phase", (double)r.answers[k].phase);
      a.Set((uint32_t)k, x);
    }
    o.Set("answers", a);
  }
  return o;
}

Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_loaded != nullptr) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("flavor", g_loaded->flavor);
    o.Set("library", g_loaded->library);
    o.Set("version", g_loaded->version);
    return o;
  }
  std::vector<std::string> candidates;
  if (info.Length() > 0 && info[0].IsString()) {
    candidates.push_back(info[0].As<Napi::String>().Utf8Value());
  } else {
#if defined(__APPLE__)
    candidates = {"libmpi.40.dylib", "libmpi.12.dylib", "libmpi.dylib"};
#else
    candidates = {"libmpi.so.40", "libmpi.so.12", "libmpich.so.12", "libmpi.so"};
#endif
  }
  std::string why;
  for (const std::string& c : candidates) {
    std::unique_ptr<Loaded> l(new Loaded());
    std::string e = try_load(c, *l);
    if (e.empty()) {
      g_loaded = l.release();
      Napi::Object o = Napi::Object::New(env);
      o.Set("flavor", g_loaded->flavor);
      o.Set("library", g_loaded->library);
      o.Set("version", g_loaded->version);
      return o;
    }
    why += (why.empty() ? "" : "\n") + e;
  }
  throw_error(env, "no usable MPI library: " + why);
}

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Backend& b = backend(env, false);
  int rank = 0, size = 1;
  bool here = false;
  if (!b.initialized) {
    std::string e = b.init(&rank, &size, &here);
    if (!e.empty()) throw_error(env, e, "ERR_ADAMP_COLLECTIVE");
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("rank", b.rank);
  o.Set("size", b.size);
  o.Set("initializedHere", b.here);
  // CUDA-awareness can only be asked once MPI is initialized.
  if (g_loaded->cuda_aware == -2) {
    using Q = int (*)();
    g_loaded->cuda_aware = reinterpret_cast<Q>(dlsym(g_loaded->handle, "MPIX_Query_cuda_support"))() ? 1 : 0;
  } else if (g_loaded->cuda_aware == -3) {
    using Q = int (*)(int, int*);
    int yes = 0;
    g_loaded->cuda_aware = reinterpret_cast<Q>(dlsym(g_loaded->handle, "MPIX_GPU_query_support"))(0, &yes) == 0 && yes ? 1 : 0;
  }
  return o;
}

// What every collective export starts with: the backend, refused once a failed call broke it.
Backend& usable_backend(Napi::Env env) {
  Backend& b = backend(env);
  if (b.broken) throw_error(env, "the MPI communicator is unusable after a failed call", "ERR_ADAMP_COLLECTIVE");
  return b;
}

// The per-rank counts of a v-collective (an Int32Array).
std::vector<int> counts_arg(Napi::Env env, Napi::Value v) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw_error(env, "counts must be an Int32Array", "ERR_ADAMP_INVALID_ARGUMENT");
  }
  Napi::Int32Array ca = v.As<Napi::Int32Array>();
  return std::vector<int>(ca.Data(), ca.Data() + ca.ElementLength());
}

// The last three arguments of every collective: timeout (seconds), step and phase (for the error's message).
struct CallTail {
  double timeout;
  int64_t step, phase;
};
CallTail tail_args(Napi::Env env, const Napi::CallbackInfo& info, size_t at) {
  for (size_t i = at; i < at + 3; ++i) {
    if (!info[i].IsNumber()) throw_error(env, "timeout, step and phase must be numbers", "ERR_ADAMP_INVALID_ARGUMENT");
  }
  return CallTail{info[at].As<Napi::Number>().DoubleValue(), (int64_t)info[at + 1].As<Napi::Number>().DoubleValue(),
                  (int64_t)info[at + 2].As<Napi::Number>().DoubleValue()};
}

Napi::Value AllGatherV(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Backend& b = usable_backend(env);
  void* send = pointer_of(env, info[0], "send");
  void* recv = pointer_of(env, info[1], "recv");
  const std::vector<int> counts = counts_arg(env, info[2]);
  const int n = int_arg(env, info[3], "count");
  const int dtype = int_arg(env, info[4], "dtype");
  const CallTail t = tail_args(env, info, 5);
  return result_object(env, b.allgatherv(send, n, dtype, recv, counts, t.timeout, t.step, t.phase));
}

Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Backend& b = usable_backend(env);
  void* buf = pointer_of(env, info[0], "buf");
  const int n = int_arg(env, info[1], "count");
  const int dtype = int_arg(env, info[2], "dtype");
  const int op = int_arg(env, info[3], "op");
  const bool rank_order = info[4].ToBoolean().Value();
  const CallTail t = tail_args(env, info, 5);
  return result_object(env, b.allreduce(buf, n, dtype, op, rank_order, t.timeout, t.step, t.phase));
}

Napi::Value ReduceScatter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Backend& b = usable_backend(env);
  void* send = pointer_of(env, info[0], "send");
  void* recv = pointer_of(env, info[1], "recv");
  const std::vector<int> counts = counts_arg(env, info[2]);
  if ((int)counts.size() != b.size) throw_error(env, "counts must hold one count per rank", "ERR_ADAMP_INVALID_ARGUMENT");
  const int dtype = int_arg(env, info[3], "dtype");
  const bool rank_order = info[4].ToBoolean().Value();
  const CallTail t = tail_args(env, info, 5);
  return result_object(env, b.reducescatter(send, recv, counts, dtype, rank_order, t.timeout, t.step, t.phase));
}

Napi::Value Abort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  backend(env, false).abort(info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1);
  return env.Undefined();
}

Napi::Value Finalize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_loaded == nullptr) return Napi::Boolean::New(env, false);
  return Napi::Boolean::New(env, g_loaded->backend->finalize());
}

Napi::Value State(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("loaded", g_loaded != nullptr);
  if (g_loaded != nullptr) {
    Backend& b = *g_loaded->backend;
    o.Set("initialized", b.initialized);
    o.Set("initializedHere", b.here);
    o.Set("finalized", b.finalized);
    o.Set("broken", b.broken);
    o.Set("seq", (double)b.seq);
    o.Set("cudaAware", g_loaded->cuda_aware == 1 ? Napi::Value(Napi::Boolean::New(env, true))
                       : g_loaded->cuda_aware == 0 ? Napi::Value(Napi::Boolean::New(env, false))
                                                   : Napi::Value(Napi::String::New(env, "unknown")));
  }
  return o;
}

}  // namespace

Napi::Object Register(Napi::Env env, Napi::Object exports) {
  exports.Set("load", Napi::Function::New(env, Load, "load"));
  exports.Set("init", Napi::Function::New(env, Init, "init"));
  exports.Set("allgatherv", Napi::Function::New(env, AllGatherV, "allgatherv"));
  exports.Set("allreduce", Napi::Function::New(env, AllReduce, "allreduce"));
  exports.Set("reducescatter", Napi::Function::New(env, ReduceScatter, "reducescatter"));
  exports.Set("abort", Napi::Function::New(env, Abort, "abort"));
  exports.Set("finalize", Napi::Function::New(env, Finalize, "finalize"));
  exports.Set("state", Napi::Function::New(env, State, "state"));
  return exports;
}

}  // namespace mpi
}  // namespace adamp

static Napi::Object RegisterAdampMpi(Napi::Env env, Napi::Object exports) { return adamp::mpi::Register(env, exports); }

NODE_API_MODULE(adamp_mpi, RegisterAdampMpi)
