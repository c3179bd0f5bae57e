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

#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "../cpu/step.h"
#include "async_task.h"
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
  std::vector<cpu::TensorSlot> slots;
  HalfHold halves;  // the 16-bit slots' HalfSlot (slots point into it)
  std::vector<double> hyper;
  double* info = nullptr;
};

/** One group's arguments as read (phase 1 of parse.h: the caller's code may run meanwhile). */
struct JobArgs {
  OptKind kind;
  std::vector<SlotArgs> slots;
  std::vector<double> hyper;  // copied at once
  ArrayArg info;
};

JobArgs read_job(Napi::Env env, Napi::Value kind, Napi::Value slots, Napi::Value hyper, Napi::Value info, const std::string& fn) {
  JobArgs a;
  a.kind = parse_kind(env, kind, fn + ": kind");
  a.slots = read_slots(env, a.kind, slots, fn);
  a.hyper = parse_hyper(env, a.kind, hyper, fn + ": hyper");
  a.info = read_f64(env, info, fn + ": info");
  return a;
}

/** The jobs of stepAsync and stepJobs: an array of {kind, slots, hyper, info}. */
std::vector<JobArgs> read_jobs(Napi::Env env, Napi::Value v, const std::string& fn) {
  if (!v.IsArray()) type_error(env, fn + ": jobs must be an array");
  Napi::Array arr = v.As<Napi::Array>();
  std::vector<JobArgs> args;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    const std::string what = fn + ": jobs[" + std::to_string(i) + "]";
    Napi::Value jv = arr.Get(i);
    if (!jv.IsObject() || jv.IsArray()) type_error(env, what + " must be an object");
    Napi::Object jo = jv.As<Napi::Object>();
    args.push_back(read_job(env, jo.Get("kind"), jo.Get("slots"), jo.Get("hyper"), jo.Get("info"), what));
  }
  return args;
}

/** Phase 2: addresses and lengths, once no more of the caller's code can run before the step. */
Job bind_job(Napi::Env env, const JobArgs& a, const std::string& fn) {
  Job job;
  job.kind = a.kind;
  job.slots.reserve(a.slots.size());
  for (const SlotArgs& s : a.slots) job.slots.push_back(bind_slot(env, a.kind, s, job.halves));
  job.hyper = a.hyper;
  job.info = bind_info(env, a.info, job.slots.size(), fn);
  return job;
}

/** Every job (group) as one step of the core: all or nothing across the groups (step.h). */
void run_jobs(const std::vector<Job>& jobs, const cpu::StepConfig& cfg) {
  std::vector<cpu::StepGroup> groups;
  groups.reserve(jobs.size());
  for (const Job& job : jobs) groups.push_back(cpu::StepGroup{job.kind, job.slots.data(), job.slots.size(), job.hyper.data(), job.info});
  cpu::step(groups.data(), groups.size(), cfg);
}

/**
 * The code of a step the core could not run: it allocates scratch memory and may start threads,
 * all before it changes anything (step.h), so a failed step has changed no param and no state.
 */
const char* const kNativeFailure = "ERR_ADAMP_NATIVE";

std::string failure_message(const char* what) {
  return std::string("adamp: the native core could not run the step (") + what + "); no param or state was changed";
}

/**
 * An async step: jobs bound on the JS thread, run on a libuv worker thread (Run), settled on the
 * JS thread. Raw N-API rather than Napi::AsyncWorker, whose completion throws a C++ exception when
 * a call into JavaScript fails; when the environment is being torn down (a worker terminated or
 * calling process.exit() while a step is in flight) every such call fails, and the exception
 * escaping the completion callback aborted the process. The ordering protocol that prevents it is
 * async_task.h's; what it means for a step:
 *
 * - Memory: the step writes into the callers' ArrayBuffers, which die with the environment's
 *   isolate. Node waits for every queued work item to complete before it frees the environment
 *   (Environment::CleanupHandles), and an env cleanup hook (Teardown) blocks until Execute has
 *   returned as well, so the worker thread never writes into memory V8 has freed, whatever the
 *   order of teardown. We wait rather than copy: a step owning copies of its arrays would double
 *   their memory and copy them twice per step, and the wait lasts at most one step.
 * - GC: a strong reference to every typed array keeps them alive until the step settles. Transfer
 *   (postMessage / structuredClone) is what N-API cannot prevent: NativeEngine marks the buffers
 *   untransferable before it calls stepAsync; direct callers of the addon must not transfer or
 *   resize an array until the promise settles (resizable buffers are refused here).
 */
class StepTask final : public AsyncTask<StepTask> {
 public:
  static Napi::Value Start(Napi::Env env, std::vector<Job> jobs, const cpu::StepConfig& cfg,
                           const std::vector<Napi::TypedArray>& arrays) {
    std::unique_ptr<StepTask> t(new StepTask(std::move(jobs), cfg));
    napi_value promise = nullptr;
    napi_status s = napi_ok;
    t->refs_.reserve(arrays.size());  // push_back below cannot throw: no reference is made that is not recorded
    for (const Napi::TypedArray& a : arrays) {
      napi_ref r = nullptr;
      s = napi_create_reference(env, a, 1, &r);
      if (s != napi_ok) break;
      t->refs_.push_back(r);
    }
    if (s == napi_ok) s = Queue(env, t.get(), "adamp:step", &promise);  // releases what it made on failure
    if (s != napi_ok) {
      t->ReleaseOwn(env);  // Nothing runs: the references made before the failure go too.
      Napi::Error err = Napi::Error::New(env, "adamp: the async step could not be queued (N-API status " + std::to_string((int)s) + ")");
      err.Set("code", Napi::String::New(env, kNativeFailure));
      throw err;
    }
    t.release();  // Complete deletes it
    return Napi::Value(env, promise);
  }

 private:
  friend class AsyncTask<StepTask>;
  StepTask(std::vector<Job> jobs, const cpu::StepConfig& cfg) : jobs_(std::move(jobs)), cfg_(cfg) {}

  /** Worker thread: no N-API here. */
  void Run() {
    try {
      run_jobs(jobs_, cfg_);
    } catch (const std::exception& e) {
      error_ = failure_message(e.what());
    } catch (...) {
      error_ = failure_message("unknown failure");
    }
  }

  /** The error to reject with, if any (JS thread). */
  napi_value Outcome(napi_env env, napi_status status, bool* failed) {
    *failed = true;
    if (status == napi_cancelled) return MakeError(env, "adamp: the async step was cancelled before it ran", kNativeFailure);
    if (!error_.empty()) return MakeError(env, error_.c_str(), kNativeFailure);
    if (AnyDetached(env)) {
      return MakeError(env, "adamp: an array was detached (transferred) while the async step ran; do not transfer or resize "
                            "params, grads or state until stepAsync() settles (NativeEngine marks them untransferable)",
                       "ERR_ADAMP_DETACHED_DURING_STEP");
    }
    *failed = false;
    return nullptr;
  }

  bool AnyDetached(napi_env env) {
    for (napi_ref r : refs_) {
      napi_value v;
      if (napi_get_reference_value(env, r, &v) != napi_ok || v == nullptr) continue;
      napi_typedarray_type type;
      size_t length = 0, offset = 0;
      void* data = nullptr;
      napi_value buffer;
      if (napi_get_typedarray_info(env, v, &type, &length, &data, &buffer, &offset) != napi_ok) continue;
      bool detached = false;
      if (napi_is_detached_arraybuffer(env, buffer, &detached) == napi_ok && detached) return true;
    }
    return false;
  }

  void ReleaseOwn(napi_env env) {
    for (napi_ref r : refs_) napi_delete_reference(env, r);
    refs_.clear();
  }
  /** The environment is gone: its teardown reclaims the references. */
  void Abandon() {}

  std::vector<Job> jobs_;
  cpu::StepConfig cfg_;
  std::vector<napi_ref> refs_;
  std::string error_;  // written by Run, read by Outcome after it (libuv orders them)
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
  HalfHold halves;
  cpu::protocol::Geometry geo;
  int64_t offset, u0, u1;
};

/** A shard as read (phase 1). */
struct ShardArgs {
  SlotArgs slot;
  cpu::protocol::Geometry geo;
  int64_t offset, u0, u1;
};

ShardArgs read_shard(Napi::Env env, OptKind kind, Napi::Value v, Napi::Value u0, Napi::Value u1, const std::string& fn) {
  ShardArgs a;
  const std::string what = fn + ": shard";
  // The shard's arrays hold part of the tensor: its geometry is the whole tensor's, read apart.
  a.slot = read_slot(env, kind, v, what, false);
  a.geo = parse_geometry(env, v, what);
  a.offset = parse_index(env, v.As<Napi::Object>().Get("offset"), what + ".offset");
  a.u0 = parse_index(env, u0, fn + ": u0");
  a.u1 = parse_index(env, u1, fn + ": u1");
  return a;
}

Shard bind_shard(Napi::Env env, OptKind kind, const ShardArgs& a, const std::string& fn) {
  Shard sh;
  sh.slot = bind_slot(env, kind, a.slot, sh.halves, false);
  sh.geo = a.geo;
  sh.offset = a.offset;
  sh.u0 = a.u0;
  sh.u1 = a.u1;
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

/** A decision record of this kind and geometry, bound and copied (the shard's arrays might share its buffer). */
std::vector<double> bind_decision(Napi::Env env, OptKind kind, const cpu::protocol::Geometry& geo, const ArrayArg& a,
                                  const std::string& fn) {
  size_t n = 0;
  const double* d = bind_f64(env, a, &n);
  const char* bad = cpu::protocol::check_decision(kind, geo, d, n);
  if (bad != nullptr) range_error(env, fn + ": decision: " + bad + " (pass what protocolDecide returned for this tensor)");
  return std::vector<double>(d, d + n);
}

/** Runs the core; a failure of the core itself (memory, threads) becomes an Error with a code. */
template <typename F>
void run_core(Napi::Env env, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    Napi::Error err = Napi::Error::New(env, failure_message(e.what()));
    err.Set("code", Napi::String::New(env, kNativeFailure));
    throw err;
  }
}

}  // namespace

class AdampAddon : public Napi::Addon<AdampAddon> {
 public:
  AdampAddon(Napi::Env env, Napi::Object exports) {
    // The built-in getter of ArrayBuffer.prototype.resizable, taken now: calling it later runs no
    // caller code (a getter redefined on a buffer or on the prototype afterwards is not consulted).
    Napi::Value ab = env.Global().Get("ArrayBuffer");
    Napi::Value object = env.Global().Get("Object");
    if (ab.IsFunction() && object.IsObject()) {
      Napi::Value gopd = object.As<Napi::Object>().Get("getOwnPropertyDescriptor");
      Napi::Value proto = ab.As<Napi::Object>().Get("prototype");
      if (gopd.IsFunction() && proto.IsObject()) {
        Napi::Value desc = gopd.As<Napi::Function>().Call(object, {proto, Napi::String::New(env, "resizable")});
        if (desc.IsObject()) {
          Napi::Value get = desc.As<Napi::Object>().Get("get");
          if (get.IsFunction()) resizable_ = Napi::Persistent(get.As<Napi::Function>());
        }
      }
    }
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
                             InstanceMethod("stepJobs", &AdampAddon::StepJobs),
                             InstanceMethod("testOnlyFailAllocation", &AdampAddon::TestOnlyFailAllocation),
                         });
#if defined(ADAMP_HAVE_CUDA)
    if (&adamp::cuda::register_exports != nullptr) adamp::cuda::register_exports(env, exports);
#endif
  }

 private:
  Napi::FunctionReference resizable_;

  /**
   * An async step cannot run on a resizable ArrayBuffer: shrinking it while the worker thread
   * writes would fault (a growable SharedArrayBuffer only grows, in place: it is fine).
   */
  void RefuseResizable(Napi::Env env, const Napi::TypedArray& ta, const std::string& what) {
    if (resizable_.IsEmpty()) return;  // no resizable buffers in this runtime
    napi_value buffer;
    napi_typedarray_type type;
    size_t length = 0, offset = 0;
    void* data = nullptr;
    if (napi_get_typedarray_info(env, ta, &type, &length, &data, &buffer, &offset) != napi_ok) return;
    bool is_ab = false;
    if (napi_is_arraybuffer(env, buffer, &is_ab) != napi_ok || !is_ab) return;
    Napi::Value r = resizable_.Call(Napi::Value(env, buffer), {});
    if (r.IsBoolean() && r.As<Napi::Boolean>().Value())
      type_error(env, what + " is backed by a resizable ArrayBuffer; async steps need fixed-size buffers (use step())");
  }

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
    const JobArgs args = read_job(env, info[0], info[1], info[2], info[3], fn);
    const cpu::StepConfig cfg = parse_step_options(env, info[4], fn);
    std::vector<Job> jobs;
    jobs.push_back(bind_job(env, args, fn));
    run_core(env, [&] { run_jobs(jobs, cfg); });
    return env.Undefined();
  }

  /** step() of several groups at once, as one step: all or nothing across them (the facade's synchronous step). */
  Napi::Value StepJobs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "stepJobs";
    const std::vector<JobArgs> args = read_jobs(env, info[0], fn);
    const cpu::StepConfig cfg = parse_step_options(env, info[1], fn);
    std::vector<Job> jobs;
    for (size_t i = 0; i < args.size(); ++i) jobs.push_back(bind_job(env, args[i], fn + ": jobs[" + std::to_string(i) + "]"));
    run_core(env, [&] { run_jobs(jobs, cfg); });
    return env.Undefined();
  }

  /**
   * TEST ONLY (test/all-or-nothing.test.ts; the facade never calls it): cpu::testing::fail_allocation(n):
   * n > 0 fails the n-th allocation of the core's steps from now on, 0 counts them, -1 is off (the
   * default). Returns the allocations counted since the previous call.
   */
  Napi::Value TestOnlyFailAllocation(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "testOnlyFailAllocation";
    if (!info[0].IsNumber()) type_error(env, fn + ": n must be a number");
    const double n = info[0].As<Napi::Number>().DoubleValue();
    if (!(n >= -1 && n <= 1e15 && n == (double)(int64_t)n)) range_error(env, fn + ": n must be an integer >= -1");
    const int64_t seen = cpu::testing::allocations();
    cpu::testing::fail_allocation((int64_t)n);
    return Napi::Number::New(env, (double)seen);
  }

  Napi::Value StepAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "stepAsync";
    std::vector<JobArgs> args = read_jobs(env, info[0], fn);
    const cpu::StepConfig cfg = parse_step_options(env, info[1], fn);
    // Phase 2: no more of the caller's code runs from here until the step is queued.
    std::vector<Job> jobs;
    std::vector<Napi::TypedArray> arrays;
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string what = fn + ": jobs[" + std::to_string(i) + "]";
      jobs.push_back(bind_job(env, args[i], what));
      collect_arrays(args[i].slots, arrays);
      arrays.push_back(args[i].info.ta);
      for (const SlotArgs& s : args[i].slots) {
        if (s.has_p) RefuseResizable(env, s.p, s.what + ".p");
        if (s.has_g) RefuseResizable(env, s.g, s.what + ".g");
        if (s.has_half) RefuseResizable(env, s.half.p16, s.what + ".half.p16");
        if (s.has_half && s.half.has_g16) RefuseResizable(env, s.half.g16, s.what + ".half.g16");
        for (size_t k = 0; k < s.state.size(); ++k) RefuseResizable(env, s.state[k], s.what + ".state[" + std::to_string(k) + "]");
      }
      RefuseResizable(env, args[i].info.ta, args[i].info.what);
    }
    return StepTask::Start(env, std::move(jobs), cfg, arrays);
  }

  Napi::Value ProtocolUnits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "protocolUnits";
    const OptKind kind = parse_kind(env, info[0], fn + ": kind");
    const cpu::protocol::Geometry geo = parse_geometry(env, info[1], fn + ": slot");
    std::vector<int64_t> starts;
    run_core(env, [&] { starts = cpu::protocol::units(kind, geo); });
    return to_f64(env, std::vector<double>(starts.begin(), starts.end()));
  }

  Napi::Value ProtocolStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "protocolStats";
    const OptKind kind = parse_kind(env, info[0], fn + ": kind");
    const ShardArgs args = read_shard(env, kind, info[1], info[3], info[4], fn);
    const std::vector<double> hyper = parse_hyper(env, kind, info[2], fn + ": hyper");
    const Shard sh = bind_shard(env, kind, args, fn);
    std::vector<double> out;
    run_core(env, [&] { cpu::protocol::stats(kind, sh.geo, sh.slot, sh.offset, hyper.data(), sh.u0, sh.u1, out); });
    return to_f64(env, out);
  }

  Napi::Value ProtocolDecide(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "protocolDecide";
    const OptKind kind = parse_kind(env, info[0], fn + ": kind");
    const cpu::protocol::Geometry geo = parse_geometry(env, info[1], fn + ": slot");
    const std::vector<double> hyper = parse_hyper(env, kind, info[2], fn + ": hyper");
    const ArrayArg pa = read_f64(env, info[3], fn + ": partials");
    size_t n = 0;
    const double* partials = bind_f64(env, pa, &n);
    size_t want = 0;
    run_core(env, [&] { want = cpu::protocol::partials_length(kind, geo); });
    if (n != want)
      range_error(env, fn + ": partials has " + std::to_string(n) + " values, this tensor's units give " + std::to_string(want) +
                           " (every unit's protocolStats record, concatenated in unit order)");
    std::vector<double> decision;
    run_core(env, [&] { cpu::protocol::decide(kind, geo, hyper.data(), partials, n, decision); });
    return to_f64(env, decision);
  }

  Napi::Value ProtocolApply(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "protocolApply";
    const OptKind kind = parse_kind(env, info[0], fn + ": kind");
    const ShardArgs args = read_shard(env, kind, info[1], info[4], info[5], fn);
    const std::vector<double> hyper = parse_hyper(env, kind, info[2], fn + ": hyper");
    const ArrayArg da = read_f64(env, info[3], fn + ": decision");
    if (!info[6].IsBoolean()) type_error(env, fn + ": norms must be a boolean");
    const bool norms = info[6].As<Napi::Boolean>().Value();
    const Shard sh = bind_shard(env, kind, args, fn);
    const std::vector<double> decision = bind_decision(env, kind, sh.geo, da, fn);
    std::vector<double> out;
    run_core(env, [&] {
      cpu::protocol::apply(kind, sh.geo, sh.slot, sh.offset, hyper.data(), decision.data(), decision.size(), sh.u0, sh.u1, norms, out);
    });
    return to_f64(env, out);
  }

  Napi::Value ProtocolFinish(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string fn = "protocolFinish";
    const OptKind kind = parse_kind(env, info[0], fn + ": kind");
    const cpu::protocol::Geometry geo = parse_geometry(env, info[1], fn + ": slot");
    const ArrayArg da = read_f64(env, info[2], fn + ": decision");
    const ArrayArg na = read_f64(env, info[3], fn + ": norms");
    const ArrayArg ia = read_f64(env, info[4], fn + ": info");
    const int64_t at = parse_index(env, info[5], fn + ": at");
    const std::vector<double> d = bind_decision(env, kind, geo, da, fn);
    size_t nn = 0, in = 0;
    const double* norms = bind_f64(env, na, &nn);
    double* out = bind_f64(env, ia, &in);
    size_t units = 0;
    run_core(env, [&] { units = cpu::protocol::units(kind, geo).size() - 1; });
    if (nn != 3 * units)
      range_error(env, fn + ": norms has " + std::to_string(nn) + " values, needs " + std::to_string(3 * units) +
                           " (3 per unit: every protocolApply result, concatenated in unit order)");
    if ((uint64_t)at > in || in - (size_t)at < (size_t)kInfoStride)
      range_error(env, fn + ": info has " + std::to_string(in) + " elements, needs 8 at " + std::to_string(at));
    double rec[kInfoStride];
    run_core(env, [&] { cpu::protocol::finish(kind, geo, d.data(), d.size(), norms, rec); });
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
