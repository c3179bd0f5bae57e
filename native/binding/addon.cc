// The N-API entry point: registers the exports, nothing else. Context-aware (Napi::Addon), so it
// loads in worker threads; C++ exceptions are on and any std::exception becomes a JS Error.
//
// Exports (typed in lib/binding/types.ts):
//   adampStep(slots, hp, info, threads?)        synchronous AdamP step of one group
//   sgdpStep(slots, hp, info, threads?)         synchronous SGDP step of one group
//   adampStepAsync / sgdpStepAsync(...)          the same off the JS thread, returning a Promise
//   stepAsync(jobs, threads?)                    several groups in one worker: [{kind, slots, hp, info}]
//   adamStep(slots, hp, threads?), sgdStep(...)  one-pass AdamW / SGD-momentum floors (benchmark)
//   info()                                       version, kernels, threads, CUDA
//   setSimd('auto' | 'avx2' | 'portable')        choose the kernels (tests, benchmarks)
#include <napi.h>

#include <string>
#include <vector>

#include "../cpu/step.h"
#include "parse.h"

#ifndef ADAMP_VERSION
#define ADAMP_VERSION "0.0.0"
#endif

#if defined(ADAMP_HAVE_CUDA)
namespace adamp {
namespace cuda {
// note: the hook for the CUDA exports, implemented by a host source under native/cuda/ (compiled
// only when CUDA is found). Weak, so a CUDA build whose sources do not define it still links;
// the addon then simply has no CUDA exports.
__attribute__((weak)) void register_exports(Napi::Env env, Napi::Object exports);
}  // namespace cuda
}  // namespace adamp
#endif

namespace adamp {
namespace binding {

namespace {

/** One group's work, parsed on the JS thread. */
struct Job {
  Kind kind;
  ParsedSlots parsed;
  cpu::AdamPHyper adamp{};
  cpu::SGDPHyper sgdp{};
  double* info = nullptr;
};

Job parse_job(Napi::Env env, Kind kind, Napi::Value slots, Napi::Value hp, Napi::Value info, const std::string& fn) {
  Job job;
  job.kind = kind;
  job.parsed = parse_slots(env, slots, kind, fn);
  if (kind == Kind::AdamP)
    job.adamp = parse_adamp_hyper(env, hp, fn);
  else
    job.sgdp = parse_sgdp_hyper(env, hp, fn);
  job.info = parse_info(env, info, job.parsed.slots.size(), fn);
  job.parsed.arrays.push_back(info);
  return job;
}

void run_job(const Job& job, int threads) {
  const auto& s = job.parsed.slots;
  if (job.kind == Kind::AdamP)
    cpu::adamp_step(s.data(), s.size(), job.adamp, job.info, threads);
  else
    cpu::sgdp_step(s.data(), s.size(), job.sgdp, job.info, threads);
}

/**
 * Runs jobs on a libuv worker thread. Holds a strong reference to every typed array (and the
 * info array) until the promise settles, so the garbage collector cannot free them mid-step.
 */
class StepWorker : public Napi::AsyncWorker {
 public:
  StepWorker(Napi::Env env, std::vector<Job> jobs, int threads)
      : Napi::AsyncWorker(env, "adamp:step"), deferred_(Napi::Promise::Deferred::New(env)), jobs_(std::move(jobs)),
        threads_(threads) {
    for (const Job& job : jobs_)
      for (const Napi::Value& v : job.parsed.arrays) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      for (const Job& job : jobs_) run_job(job, threads_);
    } catch (const std::exception& e) {
      SetError(std::string("adamp native step failed: ") + e.what());
    }
  }
  void OnOK() override {
    // note: N-API cannot pin a backing store. A buffer transferred away mid-step keeps its memory
    // only as long as its new owner does; report it rather than resolve as if all were well.
    for (size_t i = 0; i < refs_.size(); ++i) {
      Napi::Value v = refs_[i].Value();
      if (v.IsTypedArray() && v.As<Napi::TypedArray>().ArrayBuffer().IsDetached()) {
        Napi::Error e = Napi::Error::New(Env(), "adamp: an array was detached (transferred) while the async step ran; "
                                                "do not transfer or resize params, grads or state until stepAsync() settles");
        e.Set("code", Napi::String::New(Env(), "ERR_ADAMP_DETACHED_DURING_STEP"));
        deferred_.Reject(e.Value());
        return;
      }
    }
    deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<Job> jobs_;
  int threads_;
  std::vector<Napi::ObjectReference> refs_;
};

Kind parse_kind(Napi::Env env, Napi::Value v, const std::string& what) {
  if (v.IsString()) {
    const std::string k = v.As<Napi::String>().Utf8Value();
    if (k == "adamp") return Kind::AdamP;
    if (k == "sgdp") return Kind::SGDP;
  }
  throw Napi::TypeError::New(env, what + ".kind must be 'adamp' or 'sgdp'");
}

}  // namespace

class AdampAddon : public Napi::Addon<AdampAddon> {
 public:
  AdampAddon(Napi::Env env, Napi::Object exports) {
    (void)env;
    DefineAddon(exports, {
                             InstanceMethod("adampStep", &AdampAddon::AdampStep),
                             InstanceMethod("sgdpStep", &AdampAddon::SgdpStep),
                             InstanceMethod("adampStepAsync", &AdampAddon::AdampStepAsync),
                             InstanceMethod("sgdpStepAsync", &AdampAddon::SgdpStepAsync),
                             InstanceMethod("stepAsync", &AdampAddon::StepAsync),
                             InstanceMethod("adamStep", &AdampAddon::AdamStep),
                             InstanceMethod("sgdStep", &AdampAddon::SgdStep),
                             InstanceMethod("info", &AdampAddon::Info),
                             InstanceMethod("setSimd", &AdampAddon::SetSimd),
                         });
#if defined(ADAMP_HAVE_CUDA)
    if (&adamp::cuda::register_exports != nullptr) adamp::cuda::register_exports(env, exports);
#endif
  }

 private:
  Napi::Value AdampStep(const Napi::CallbackInfo& info) { return SyncStep(info, Kind::AdamP, "adampStep"); }
  Napi::Value SgdpStep(const Napi::CallbackInfo& info) { return SyncStep(info, Kind::SGDP, "sgdpStep"); }
  Napi::Value AdampStepAsync(const Napi::CallbackInfo& info) { return AsyncStep(info, Kind::AdamP, "adampStepAsync"); }
  Napi::Value SgdpStepAsync(const Napi::CallbackInfo& info) { return AsyncStep(info, Kind::SGDP, "sgdpStepAsync"); }

  Napi::Value SyncStep(const Napi::CallbackInfo& info, Kind kind, const char* fn) {
    Napi::Env env = info.Env();
    const Job job = parse_job(env, kind, info[0], info[1], info[2], fn);
    run_job(job, parse_threads(env, info[3], fn));
    return env.Undefined();
  }

  Napi::Value AsyncStep(const Napi::CallbackInfo& info, Kind kind, const char* fn) {
    Napi::Env env = info.Env();
    std::vector<Job> jobs;
    jobs.push_back(parse_job(env, kind, info[0], info[1], info[2], fn));
    return Queue(env, std::move(jobs), parse_threads(env, info[3], fn));
  }

  Napi::Value StepAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "stepAsync";
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, fn + ": jobs must be an array");
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<Job> jobs;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      const std::string what = fn + ": jobs[" + std::to_string(i) + "]";
      Napi::Value jv = arr.Get(i);
      if (!jv.IsObject()) throw Napi::TypeError::New(env, what + " must be an object");
      Napi::Object jo = jv.As<Napi::Object>();
      jobs.push_back(parse_job(env, parse_kind(env, jo.Get("kind"), what), jo.Get("slots"), jo.Get("hp"),
                               jo.Get("info"), what));
    }
    return Queue(env, std::move(jobs), parse_threads(env, info[1], fn));
  }

  static Napi::Value Queue(Napi::Env env, std::vector<Job> jobs, int threads) {
    auto* worker = new StepWorker(env, std::move(jobs), threads);  // deletes itself after OnOK/OnError
    Napi::Promise promise = worker->promise();
    worker->Queue();
    return promise;
  }

  Napi::Value AdamStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "adamStep";
    const ParsedSlots parsed = parse_slots(env, info[0], Kind::Adam, fn);
    const cpu::AdamHyper hp = parse_adam_hyper(env, info[1], fn);
    cpu::adam_step(parsed.slots.data(), parsed.slots.size(), hp, parse_threads(env, info[2], fn));
    return env.Undefined();
  }

  Napi::Value SgdStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "sgdStep";
    const ParsedSlots parsed = parse_slots(env, info[0], Kind::SGD, fn);
    const cpu::SGDHyper hp = parse_sgd_hyper(env, info[1], fn);
    cpu::sgd_step(parsed.slots.data(), parsed.slots.size(), hp, parse_threads(env, info[2], fn));
    return env.Undefined();
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("version", ADAMP_VERSION);
    o.Set("simd", cpu::simd_name(cpu::simd()));
    o.Set("avx2", cpu::avx2_available());
    o.Set("hardwareThreads", cpu::default_threads());
#if defined(ADAMP_HAVE_CUDA)
    o.Set("cuda", true);
#else
    o.Set("cuda", false);
#endif
    o.Set("napiVersion", NAPI_VERSION);
#if defined(__clang__)
    o.Set("compiler", std::string("clang ") + __clang_version__);
#elif defined(__GNUC__)
    o.Set("compiler", std::string("gcc ") + __VERSION__);
#else
    o.Set("compiler", "unknown");
#endif
    return o;
  }

  Napi::Value SetSimd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string want = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : std::string();
    cpu::Simd got;
    if (want == "portable")
      got = cpu::set_simd(cpu::Simd::Portable);
    else if (want == "avx2" || want == "auto")
      got = cpu::set_simd(cpu::Simd::Avx2);
    else
      throw Napi::TypeError::New(env, "setSimd: level must be 'auto', 'avx2' or 'portable'");
    return Napi::String::New(env, cpu::simd_name(got));
  }
};

}  // namespace binding
}  // namespace adamp

using AdampAddon = adamp::binding::AdampAddon;
NODE_API_ADDON(AdampAddon)
