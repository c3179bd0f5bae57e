// The N-API entry point: registers the exports, nothing else. Context-aware (Napi::Addon), so it
// loads in worker threads; C++ exceptions are on and any std::exception becomes a JS Error.
//
// Exports (typed in lib/binding/types.ts), for every optimizer of the C++ registry by kind name:
//   kinds()                                          the registry: name, state slots, hyperparameter names, projects
//   step(kind, slots, hyper, info, options?)         one group's step, synchronous
//   stepAsync(jobs, options?)                        several groups in order on a libuv worker: Promise
//   protocolUnits / protocolStats / protocolDecide / protocolApply / protocolFinish
//                                                    the step protocol on shards of one tensor
//   info()                                           version, kernels, threads, CUDA
//   setSimd('auto' | 'avx2' | 'portable')            choose the kernels
//   setSpeculation('on' | 'off')                     the speculative single pass
// The environment switches (ADAMP_SIMD, ADAMP_SPECULATE) are applied by the TS loader
// (lib/backends/native/index.ts) through setSimd / setSpeculation; the C++ reads no environment.
#include <napi.h>
#include <string.h>

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
  OptKind kind;
  ParsedSlots parsed;
  std::vector<double> hyper;
  double* info = nullptr;
};

Job parse_job(Napi::Env env, Napi::Value kind, Napi::Value slots, Napi::Value hyper, Napi::Value info, const std::string& fn) {
  Job job;
  job.kind = parse_kind(env, kind, fn + ": kind");
  job.parsed = parse_slots(env, job.kind, slots, fn);
  job.hyper = parse_hyper(env, job.kind, hyper, fn + ": hyper");
  job.info = parse_info(env, info, job.parsed.slots.size(), fn);
  job.parsed.arrays.push_back(info);
  return job;
}

void run_job(const Job& job, const cpu::StepConfig& cfg) {
  const auto& s = job.parsed.slots;
  cpu::step(job.kind, s.data(), s.size(), job.hyper.data(), job.info, cfg);
}

/**
 * Runs jobs on a libuv worker thread. Holds a strong reference to every typed array (and the
 * info array) until the promise settles, so the garbage collector cannot free them mid-step.
 */
class StepWorker : public Napi::AsyncWorker {
 public:
  StepWorker(Napi::Env env, std::vector<Job> jobs, const cpu::StepConfig& cfg)
      : Napi::AsyncWorker(env, "adamp:step"), deferred_(Napi::Promise::Deferred::New(env)), jobs_(std::move(jobs)), cfg_(cfg) {
    for (const Job& job : jobs_)
      for (const Napi::Value& v : job.parsed.arrays) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      for (const Job& job : jobs_) run_job(job, cfg_);
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
  cpu::StepConfig cfg_;
  std::vector<Napi::ObjectReference> refs_;
};

/** A new Float64Array holding v. */
Napi::Float64Array to_f64(Napi::Env env, const std::vector<double>& v) {
  Napi::Float64Array a = Napi::Float64Array::New(env, v.size());
  if (!v.empty()) memcpy(a.Data(), v.data(), v.size() * sizeof(double));
  return a;
}

/** A shard for the protocol: a slot plus `offset` and the whole tensor's `numel`; checked against the units [u0, u1). */
struct Shard {
  cpu::TensorSlot slot;
  cpu::protocol::Geometry geo;
  int64_t offset, u0, u1;
};

Shard parse_shard(Napi::Env env, OptKind kind, Napi::Value v, Napi::Value u0, Napi::Value u1, const std::string& fn) {
  Shard sh;
  std::vector<Napi::Value> arrays;
  const std::string what = fn + ": shard";
  sh.slot = [&] {
    // The shard's own arrays hold part of the tensor: its geometry is the whole tensor's, so the
    // slot check of outer * channels * inner == p.length does not apply. Parse the arrays with a
    // stand-in geometry, then the whole tensor's.
    if (!v.IsObject() || v.IsArray()) type_error(env, what + " must be an object");
    Napi::Object o = v.As<Napi::Object>();
    Napi::Object view = Napi::Object::New(env);
    for (const char* key : {"p", "g", "state", "eligible", "step"}) view.Set(key, o.Get(key));
    const Napi::Value p = o.Get("p");
    const double n = p.IsTypedArray() ? (double)p.As<Napi::TypedArray>().ElementLength() : 0.0;
    view.Set("outer", 1.0);
    view.Set("channels", 1.0);
    view.Set("inner", n);
    return parse_slot(env, kind, view, what, arrays);
  }();
  sh.geo = parse_geometry(env, v, what);
  sh.offset = parse_index(env, v.As<Napi::Object>().Get("offset"), what + ".offset");
  sh.u0 = parse_index(env, u0, fn + ": u0");
  sh.u1 = parse_index(env, u1, fn + ": u1");
  const char* bad = cpu::protocol::check_shard(kind, sh.geo, sh.offset, sh.slot.numel, sh.u0, sh.u1);
  if (bad != nullptr) {
    const std::vector<int64_t> starts = cpu::protocol::units(kind, sh.geo);
    std::string detail = " (the tensor has " + std::to_string(starts.size() - 1) + " units";
    if (sh.u0 <= sh.u1 && sh.u1 < (int64_t)starts.size())
      detail += "; units [" + std::to_string(sh.u0) + ", " + std::to_string(sh.u1) + ") are elements [" +
                std::to_string(starts[(size_t)sh.u0]) + ", " + std::to_string(starts[(size_t)sh.u1]) + ")";
    detail += "; the shard has offset " + std::to_string(sh.offset) + " and " + std::to_string(sh.slot.numel) + " elements)";
    range_error(env, fn + ": " + bad + detail);
  }
  return sh;
}

/** A decision record of this kind and geometry. */
const double* parse_decision(Napi::Env env, OptKind kind, const cpu::protocol::Geometry& geo, Napi::Value v,
                             const std::string& fn, size_t* n) {
  const double* d = parse_f64(env, v, fn + ": decision", n);
  const char* bad = cpu::protocol::check_decision(kind, geo, d, *n);
  if (bad != nullptr) range_error(env, fn + ": decision: " + bad + " (pass what protocolDecide returned for this tensor)");
  return d;
}

}  // namespace

class AdampAddon : public Napi::Addon<AdampAddon> {
 public:
  AdampAddon(Napi::Env env, Napi::Object exports) {
    (void)env;
    DefineAddon(exports, {
                             InstanceMethod("kinds", &AdampAddon::Kinds),
                             InstanceMethod("step", &AdampAddon::Step),
                             InstanceMethod("stepAsync", &AdampAddon::StepAsync),
                             InstanceMethod("protocolUnits", &AdampAddon::ProtocolUnits),
                             InstanceMethod("protocolStats", &AdampAddon::ProtocolStats),
                             InstanceMethod("protocolDecide", &AdampAddon::ProtocolDecide),
                             InstanceMethod("protocolApply", &AdampAddon::ProtocolApply),
                             InstanceMethod("protocolFinish", &AdampAddon::ProtocolFinish),
                             InstanceMethod("info", &AdampAddon::Info),
                             InstanceMethod("setSimd", &AdampAddon::SetSimd),
                             InstanceMethod("setSpeculation", &AdampAddon::SetSpeculation),
                         });
#if defined(ADAMP_HAVE_CUDA)
    if (&adamp::cuda::register_exports != nullptr) adamp::cuda::register_exports(env, exports);
#endif
  }

 private:
  Napi::Value Kinds(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto& ks = cpu::kinds();
    Napi::Array out = Napi::Array::New(env, ks.size());
    for (size_t i = 0; i < ks.size(); ++i) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", ks[i].name);
      o.Set("slots", ks[i].slots);
      Napi::Array names = Napi::Array::New(env, (size_t)ks[i].hyper_count);
      for (int h = 0; h < ks[i].hyper_count; ++h) names.Set((uint32_t)h, cpu::hyper_name(ks[i].kind, h));
      o.Set("hyper", names);
      o.Set("projects", ks[i].projects);
      out.Set((uint32_t)i, o);
    }
    return out;
  }

  Napi::Value Step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "step";
    const Job job = parse_job(env, info[0], info[1], info[2], info[3], fn);
    run_job(job, parse_step_options(env, info[4], fn));
    return env.Undefined();
  }

  Napi::Value StepAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "stepAsync";
    if (!info[0].IsArray()) type_error(env, fn + ": jobs must be an array");
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<Job> jobs;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      const std::string what = fn + ": jobs[" + std::to_string(i) + "]";
      Napi::Value jv = arr.Get(i);
      if (!jv.IsObject() || jv.IsArray()) type_error(env, what + " must be an object");
      Napi::Object jo = jv.As<Napi::Object>();
      jobs.push_back(parse_job(env, jo.Get("kind"), jo.Get("slots"), jo.Get("hyper"), jo.Get("info"), what));
    }
    const cpu::StepConfig cfg = parse_step_options(env, info[1], fn);
    auto* worker = new StepWorker(env, std::move(jobs), cfg);  // deletes itself after OnOK/OnError
    Napi::Promise promise = worker->promise();
    worker->Queue();
    return promise;
  }

  Napi::Value ProtocolUnits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "protocolUnits";
    const OptKind kind = parse_kind(env, info[0], fn + ": kind");
    const cpu::protocol::Geometry geo = parse_geometry(env, info[1], fn + ": slot");
    const std::vector<int64_t> starts = cpu::protocol::units(kind, geo);
    return to_f64(env, std::vector<double>(starts.begin(), starts.end()));
  }

  Napi::Value ProtocolStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "protocolStats";
    const OptKind kind = parse_kind(env, info[0], fn + ": kind");
    const Shard sh = parse_shard(env, kind, info[1], info[3], info[4], fn);
    const std::vector<double> hyper = parse_hyper(env, kind, info[2], fn + ": hyper");
    std::vector<double> out;
    cpu::protocol::stats(kind, sh.geo, sh.slot, sh.offset, hyper.data(), sh.u0, sh.u1, out);
    return to_f64(env, out);
  }

  Napi::Value ProtocolDecide(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "protocolDecide";
    const OptKind kind = parse_kind(env, info[0], fn + ": kind");
    const cpu::protocol::Geometry geo = parse_geometry(env, info[1], fn + ": slot");
    const std::vector<double> hyper = parse_hyper(env, kind, info[2], fn + ": hyper");
    size_t n = 0;
    const double* partials = parse_f64(env, info[3], fn + ": partials", &n);
    const size_t want = cpu::protocol::partials_length(kind, geo);
    if (n != want)
      range_error(env, fn + ": partials has " + std::to_string(n) + " values, this tensor's units give " + std::to_string(want) +
                           " (every unit's protocolStats record, concatenated in unit order)");
    std::vector<double> decision;
    cpu::protocol::decide(kind, geo, hyper.data(), partials, n, decision);
    return to_f64(env, decision);
  }

  Napi::Value ProtocolApply(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "protocolApply";
    const OptKind kind = parse_kind(env, info[0], fn + ": kind");
    const Shard sh = parse_shard(env, kind, info[1], info[4], info[5], fn);
    const std::vector<double> hyper = parse_hyper(env, kind, info[2], fn + ": hyper");
    size_t dn = 0;
    const double* d = parse_decision(env, kind, sh.geo, info[3], fn, &dn);
    const std::vector<double> decision(d, d + dn);  // a copy: the shard's arrays might share its buffer
    if (!info[6].IsBoolean()) type_error(env, fn + ": norms must be a boolean");
    std::vector<double> out;
    cpu::protocol::apply(kind, sh.geo, sh.slot, sh.offset, hyper.data(), decision.data(), dn, sh.u0, sh.u1,
                         info[6].As<Napi::Boolean>().Value(), out);
    return to_f64(env, out);
  }

  Napi::Value ProtocolFinish(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "protocolFinish";
    const OptKind kind = parse_kind(env, info[0], fn + ": kind");
    const cpu::protocol::Geometry geo = parse_geometry(env, info[1], fn + ": slot");
    size_t dn = 0, nn = 0;
    const double* d = parse_decision(env, kind, geo, info[2], fn, &dn);
    const double* norms = parse_f64(env, info[3], fn + ": norms", &nn);
    const size_t units = cpu::protocol::units(kind, geo).size() - 1;
    if (nn != 3 * units)
      range_error(env, fn + ": norms has " + std::to_string(nn) + " values, needs " + std::to_string(3 * units) +
                           " (3 per unit: every protocolApply result, concatenated in unit order)");
    size_t in = 0;
    parse_f64(env, info[4], fn + ": info", &in);
    const int64_t at = parse_index(env, info[5], fn + ": at");
    if ((size_t)at > in || in - (size_t)at < (size_t)kInfoStride)
      range_error(env, fn + ": info has " + std::to_string(in) + " elements, needs 8 at " + std::to_string(at));
    double* out = reinterpret_cast<double*>(
        static_cast<uint8_t*>(info[4].As<Napi::TypedArray>().ArrayBuffer().Data()) + info[4].As<Napi::TypedArray>().ByteOffset());
    double rec[kInfoStride];
    cpu::protocol::finish(kind, geo, d, dn, norms, rec);
    memcpy(out + at, rec, sizeof rec);
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
      type_error(env, "setSimd: level must be 'auto', 'avx2' or 'portable'");
    return Napi::String::New(env, cpu::simd_name(got));
  }

  Napi::Value SetSpeculation(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string want = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : std::string();
    if (want == "on")
      cpu::set_speculation(cpu::Speculation::On);
    else if (want == "off")
      cpu::set_speculation(cpu::Speculation::Off);
    else
      type_error(env, "setSpeculation: mode must be 'on' or 'off'");
    return env.Undefined();
  }
};

}  // namespace binding
}  // namespace adamp

using AdampAddon = adamp::binding::AdampAddon;
NODE_API_ADDON(AdampAddon)
