// The CUDA exports of the addon (compiled only in CUDA builds; registered by
// native/binding/addon.cc through adamp::cuda::register_exports). Thin: argument checks, then the
// plain C API of adamp_cuda.h. Typed in lib/backends/cuda/binding.ts. Nothing here knows an
// optimizer: kinds, hyperparameter names and their checks come from the C++ registry.
//
//   cudaStatus()                                   { available, reason, code, devices, versions }
//   cudaKinds()                                    [{ name, slots, hyper: [names], projects }] in kind order
//   cudaCreate(kind: string, config?)              context handle (freed by GC or cudaDestroy)
//   cudaAddTensor(h, numel, outer, channels, inner, eligible, external?) -> id
//   cudaUpload(h, id, which, Float32Array) / cudaDownload(h, id, which, Float32Array)   which: 0 p, 1 g, 2 + k state slot k
//   cudaSetStep(h, id, completedSteps)
//   cudaStep(h, Int32Array ids, Float64Array hyper, { norms }?)   queued, no sync; hyper checked by the policy
//   cudaInfo(h, Int32Array ids, Float64Array out)  waits
//   cudaSync(h), cudaDestroy(h)
// Device tensors and external memory (device_memory.cu):
//   cudaAlloc(device, bytes, stream?) -> buffer handle (freed by GC or cudaBufferFree); cudaBufferAddress(b) -> bigint
//   cudaCopyToDevice(device, ptr, shape, strides | null, Float32Array) / cudaCopyToHost(...)   synchronous
//   cudaPointerInfo(ptr) -> { kind, device }, cudaMemInfo(device) -> { free, total }, cudaMemoryStats()
//   cudaAddTensor(..., external) / cudaBind(h, id, which, ptr) / cudaCopyStrided(h, dst, ds, src, ss, shape)
//   cudaSetStream(h, ptr | null), cudaGetStream(h) -> bigint, cudaWhenDone(h) -> Promise (an event, waited off-thread;
//   nothing aborts when the environment is torn down meanwhile: WhenDoneTask)
// Finalizers never wait for the device (adamp_cuda_destroy and adamp_cuda_free hand buffers to a
// freeing thread).
#include <napi.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "../binding/async_task.h"
#include "adamp_cuda.h"

namespace adamp {
namespace cuda {

namespace {

struct Handle {
  adamp_cuda_ctx* ctx = nullptr;
  int kind = 0;
};

std::string KindList() {
  std::string s;
  for (int k = 0; k < adamp_cuda_kind_count(); ++k) s += (k ? ", '" : "'") + std::string(adamp_cuda_kind_name(k)) + "'";
  return s;
}

/**
 * Finalizers (GC, or the environment's teardown when a worker ends or the process exits, maybe
 * with a cudaWhenDone wait or a step still in flight): no N-API call, no wait for the device
 * (adamp_cuda_destroy and adamp_cuda_free hand the memory to a freeing thread), and no exception
 * escapes (one would abort the process where nobody can catch it).
 */
void Finalize(Napi::Env, Handle* h) {
  try {
    if (h->ctx) adamp_cuda_destroy(h->ctx);
  } catch (...) {
  }
  delete h;
}

constexpr int kOutOfMemory = 2;  // cudaErrorMemoryAllocation

[[noreturn]] void ThrowCuda(Napi::Env env, const char* fn, int code, const std::string& detail = "") {
  Napi::Error e = Napi::Error::New(env, std::string("adamp CUDA backend: ") + fn + " failed: " +
                                            adamp_cuda_error_name(code) + " (" + std::to_string(code) + "): " +
                                            adamp_cuda_error_string(code) + detail);
  // The C API's own refusal of an argument is the caller's error, not the device's.
  e.Set("code", Napi::String::New(env, code == kOutOfMemory         ? "ERR_ADAMP_CUDA_OOM"
                                       : code == ADAMP_CUDA_E_INVALID ? "ERR_ADAMP_INVALID_ARGUMENT"
                                                                      : "ERR_ADAMP_CUDA"));
  e.Set("cudaError", Napi::Number::New(env, code));
  throw e;
}

[[noreturn]] void ThrowType(Napi::Env env, const std::string& msg) {
  Napi::TypeError e = Napi::TypeError::New(env, "adamp CUDA backend: " + msg);
  e.Set("code", Napi::String::New(env, "ERR_ADAMP_INVALID_ARGUMENT"));
  throw e;
}

[[noreturn]] void ThrowRange(Napi::Env env, const std::string& msg) {
  Napi::RangeError e = Napi::RangeError::New(env, "adamp CUDA backend: " + msg);
  e.Set("code", Napi::String::New(env, "ERR_ADAMP_INVALID_ARGUMENT"));
  throw e;
}

void Check(Napi::Env env, const char* fn, int code) {
  if (code != 0) ThrowCuda(env, fn, code);
}

Handle* GetHandle(const Napi::CallbackInfo& info, const char* fn) {
  if (info.Length() < 1 || !info[0].IsExternal()) ThrowType(info.Env(), std::string(fn) + ": the first argument must be a context handle");
  Handle* h = info[0].As<Napi::External<Handle>>().Data();
  if (!h->ctx) ThrowType(info.Env(), std::string(fn) + ": the context was destroyed");
  return h;
}

int64_t GetInt(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber()) ThrowType(info.Env(), std::string(fn) + ": " + what + " must be a number");
  const double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= -9007199254740991.0 && d <= 9007199254740991.0) || d != (double)(int64_t)d)
    ThrowType(info.Env(), std::string(fn) + ": " + what + " must be an integer");
  return (int64_t)d;
}

/** A config knob: an integer >= 0, 0 when absent. */
int64_t GetKnob(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return 0;
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1.0;
  if (!(d >= 0 && d <= 9007199254740991.0) || d != (double)(int64_t)d)
    ThrowType(o.Env(), std::string("cudaCreate: config.") + key + " must be an integer >= 0");
  return (int64_t)d;
}

Napi::Int32Array GetIds(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    ThrowType(info.Env(), std::string(fn) + ": tensor ids must be an Int32Array");
  return info[i].As<Napi::Int32Array>();
}

Napi::Float32Array GetF32(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    ThrowType(info.Env(), std::string(fn) + ": the buffer must be a Float32Array");
  return info[i].As<Napi::Float32Array>();
}

std::string Reason(int code, int count) {
  if (code == 35)
    return "the NVIDIA driver is missing or older than this build's CUDA 13 runtime needs (cudaGetDeviceCount: "
           "cudaErrorInsufficientDriver, 35); install driver R580 or newer";
  if (code == 100) return "no CUDA device is visible (cudaGetDeviceCount: cudaErrorNoDevice, 100); check CUDA_VISIBLE_DEVICES";
  if (code != 0)
    return std::string("cudaGetDeviceCount failed: ") + adamp_cuda_error_name(code) + " (" + std::to_string(code) +
           "): " + adamp_cuda_error_string(code);
  if (count == 0) return "no CUDA device";
  return "";
}

Napi::Value Status(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  int count = 0;
  const int code = adamp_cuda_device_count(&count);
  int runtime = 0, driver = 0;
  adamp_cuda_versions(&runtime, &driver);
  o.Set("code", code);
  o.Set("deviceCount", count);
  o.Set("runtimeVersion", runtime);
  o.Set("driverVersion", driver);
  Napi::Array devs = Napi::Array::New(env);
  bool usable = false;
  std::string why = Reason(code, count);
  for (int d = 0; d < count; ++d) {
    char name[256];
    int major = 0, minor = 0;
    size_t mem = 0;
    if (adamp_cuda_device_info(d, name, sizeof(name), &major, &minor, &mem) != 0) continue;
    Napi::Object dv = Napi::Object::New(env);
    dv.Set("name", name);
    dv.Set("computeCapability", std::to_string(major) + "." + std::to_string(minor));
    dv.Set("totalMemory", (double)mem);
    devs.Set(devs.Length(), dv);
    if (major * 10 + minor >= 75) usable = true;
    else if (why.empty()) why = std::string(name) + " has compute capability " + std::to_string(major) + "." +
                                std::to_string(minor) + "; this build needs 7.5 or newer";
  }
  o.Set("devices", devs);
  o.Set("available", usable);
  o.Set("reason", usable ? std::string("") : why);
  return o;
}

Napi::Value Kinds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  for (int k = 0; k < adamp_cuda_kind_count(); ++k) {
    int slots = 0, nhyper = 0, projects = 0;
    adamp_cuda_kind_info(k, &slots, &nhyper, &projects);
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", adamp_cuda_kind_name(k));
    o.Set("slots", slots);
    Napi::Array names = Napi::Array::New(env);
    for (int i = 0; i < nhyper; ++i) names.Set(i, adamp_cuda_kind_hyper_name(k, i));
    o.Set("hyper", names);
    o.Set("projects", projects != 0);
    out.Set(k, o);
  }
  return out;
}

Napi::Value Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) ThrowType(env, "cudaCreate: kind must be a string, one of " + KindList());
  const std::string kind = info[0].As<Napi::String>();
  const int k = adamp_cuda_kind_of(kind.c_str());
  if (k < 0) ThrowType(env, "cudaCreate: kind must be one of " + KindList() + ", got '" + kind + "'");
  adamp_cuda_config cfg = {0, 0, 0, 0, 0};  // every knob: 0 = the default
  int device = 0;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object c = info[1].As<Napi::Object>();
    cfg.chunk = (int)std::min<int64_t>(GetKnob(c, "chunk"), 1 << 30);
    cfg.group = GetKnob(c, "group");
    cfg.lag = (int)std::min<int64_t>(GetKnob(c, "lag"), 1 << 20);
    cfg.blocks_per_sm = (int)std::min<int64_t>(GetKnob(c, "blocksPerSm"), 64);
    device = (int)std::min<int64_t>(GetKnob(c, "device"), 1 << 20);
  }
  adamp_cuda_ctx* ctx = nullptr;
  Check(env, "cudaCreate", adamp_cuda_create(&ctx, kind.c_str(), device, &cfg));
  Handle* h = new Handle;
  h->ctx = ctx;
  h->kind = adamp_cuda_kind(ctx);
  return Napi::External<Handle>::New(env, h, Finalize);
}

/** " (requested N bytes; F of T bytes free on device D)" for out-of-memory messages. */
std::string MemoryDetail(int device, double requested) {
  size_t f = 0, t = 0;
  std::string s = " (";
  if (requested >= 0) s += "requested " + std::to_string((long long)requested) + " bytes; ";
  if (adamp_cuda_mem_info(device, &f, &t) == 0)
    s += std::to_string(f) + " of " + std::to_string(t) + " bytes free on device " + std::to_string(device);
  else
    s += "device " + std::to_string(device);
  return s + ")";
}

void CheckAlloc(Napi::Env env, const char* fn, int code, int device, double requested) {
  if (code == kOutOfMemory) ThrowCuda(env, fn, code, MemoryDetail(device, requested));
  Check(env, fn, code);
}

void* GetPtr(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* what) {
  if (info.Length() <= i || !info[i].IsBigInt()) ThrowType(info.Env(), std::string(fn) + ": " + what + " must be a bigint");
  bool lossless = false;
  const uint64_t v = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) ThrowType(info.Env(), std::string(fn) + ": " + what + " is not a 64-bit address");
  return reinterpret_cast<void*>(static_cast<uintptr_t>(v));
}

/** An optional bigint device address (undefined/null: none). */
void* GetOptPtr(const Napi::Value& v, const char* fn, const char* what) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  if (!v.IsBigInt()) ThrowType(v.Env(), std::string(fn) + ": " + what + " must be a bigint device address");
  bool lossless = false;
  const uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless || x == 0) ThrowType(v.Env(), std::string(fn) + ": " + what + " is not a 64-bit device address");
  return reinterpret_cast<void*>(static_cast<uintptr_t>(x));
}

/** A device (or managed) address: a plain host address would fault the kernel that writes it. */
void* DevOnly(Napi::Env env, void* p, const char* fn, const char* what) {
  int kind = 0, device = -1;
  if (adamp_cuda_pointer_info(p, &kind, &device) != 0 || (kind != 2 && kind != 3))
    ThrowRange(env, std::string(fn) + ": " + what + " is not CUDA device memory");
  return p;
}

/** An int64 list from a JS array of integers (shape, strides); `allow_null` maps null/undefined to an empty list. */
std::vector<int64_t> GetDims(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* what, bool* is_null) {
  std::vector<int64_t> out;
  if (is_null) *is_null = false;
  if (is_null && (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined())) {
    *is_null = true;
    return out;
  }
  if (info.Length() <= i || !info[i].IsArray()) ThrowType(info.Env(), std::string(fn) + ": " + what + " must be an array");
  Napi::Array a = info[i].As<Napi::Array>();
  if (a.Length() > ADAMP_CUDA_MAX_DIMS)
    ThrowType(info.Env(), std::string(fn) + ": " + what + " has more than " + std::to_string(ADAMP_CUDA_MAX_DIMS) + " dimensions");
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value v = a.Get(k);
    const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1.5;
    if (d != (double)(int64_t)d || d < 0) ThrowType(info.Env(), std::string(fn) + ": " + what + " must hold non-negative integers");
    out.push_back((int64_t)d);
  }
  return out;
}

Napi::Value AddTensor(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaAddTensor");
  adamp_cuda_tensor_desc d;
  d.numel = GetInt(info, 1, "cudaAddTensor", "numel");
  d.outer = GetInt(info, 2, "cudaAddTensor", "outer");
  d.channels = GetInt(info, 3, "cudaAddTensor", "channels");
  d.inner = GetInt(info, 4, "cudaAddTensor", "inner");
  d.eligible = info.Length() > 5 && info[5].ToBoolean().Value() ? 1 : 0;
  const int external = info.Length() > 6 && !info[6].IsUndefined() ? (int)GetInt(info, 6, "cudaAddTensor", "external") : 0;
  int id = -1;
  CheckAlloc(info.Env(), "cudaAddTensor", adamp_cuda_add_tensor_ex(h->ctx, &d, external, &id), 0, -1);
  return Napi::Number::New(info.Env(), id);
}

Napi::Value Upload(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaUpload");
  const int id = (int)GetInt(info, 1, "cudaUpload", "id");
  const int which = (int)GetInt(info, 2, "cudaUpload", "which");
  Napi::Float32Array a = GetF32(info, 3, "cudaUpload");
  Check(info.Env(), "cudaUpload", adamp_cuda_upload(h->ctx, id, which, a.Data(), (int64_t)a.ElementLength()));
  return info.Env().Undefined();
}

Napi::Value Download(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaDownload");
  const int id = (int)GetInt(info, 1, "cudaDownload", "id");
  const int which = (int)GetInt(info, 2, "cudaDownload", "which");
  Napi::Float32Array a = GetF32(info, 3, "cudaDownload");
  Check(info.Env(), "cudaDownload", adamp_cuda_download(h->ctx, id, which, a.Data(), (int64_t)a.ElementLength()));
  return info.Env().Undefined();
}

Napi::Value SetStep(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaSetStep");
  const int id = (int)GetInt(info, 1, "cudaSetStep", "id");
  const int64_t steps = GetInt(info, 2, "cudaSetStep", "completedSteps");
  Check(info.Env(), "cudaSetStep", adamp_cuda_set_step(h->ctx, id, steps));
  return info.Env().Undefined();
}

Napi::Value Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h = GetHandle(info, "cudaStep");
  Napi::Int32Array ids = GetIds(info, 1, "cudaStep");
  if (info.Length() < 3 || !info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    ThrowType(env, "cudaStep: hyper must be a Float64Array");
  Napi::Float64Array hyper = info[2].As<Napi::Float64Array>();
  int slots = 0, nhyper = 0;
  adamp_cuda_kind_info(h->kind, &slots, &nhyper, nullptr);
  const std::string kind = adamp_cuda_kind_name(h->kind);
  if ((int)hyper.ElementLength() != nhyper) {
    std::string names;
    for (int i = 0; i < nhyper; ++i) names += (i ? ", " : "") + std::string(adamp_cuda_kind_hyper_name(h->kind, i));
    ThrowType(env, "cudaStep: " + kind + " takes " + std::to_string(nhyper) + " hyperparameters (" + names + "), got " +
                       std::to_string(hyper.ElementLength()));
  }
  int field = -1;
  const char* why = nullptr;
  if (adamp_cuda_check_hyper(h->kind, hyper.Data(), nhyper, &field, &why) != 0) {
    char value[64];
    std::snprintf(value, sizeof(value), "%.17g", field >= 0 ? hyper.Data()[field] : 0.0);
    ThrowRange(env, "cudaStep: " + kind + " hyperparameter '" + adamp_cuda_kind_hyper_name(h->kind, field) + "' (hyper[" +
                       std::to_string(field) + "] = " + value + ") " + why);
  }
  unsigned flags = 0;
  if (info.Length() > 3 && info[3].IsObject()) {
    Napi::Value n = info[3].As<Napi::Object>().Get("norms");
    if (!n.IsUndefined() && !n.IsBoolean()) ThrowType(env, "cudaStep: options.norms must be a boolean");
    if (n.IsBoolean() && !n.As<Napi::Boolean>().Value()) flags |= ADAMP_CUDA_NO_NORMS;
  }
  void* scale = nullptr;
  void* found = nullptr;
  if (info.Length() > 3 && info[3].IsObject()) {
    scale = GetOptPtr(info[3].As<Napi::Object>().Get("scale"), "cudaStep", "options.scale");
    found = GetOptPtr(info[3].As<Napi::Object>().Get("found"), "cudaStep", "options.found");
    // found alone: a step on grads already unscaled (cudaUnscaleGrads), skipped when the flag is set
    if (scale != nullptr && found == nullptr) ThrowType(env, "cudaStep: options.scale needs options.found");
    if (scale) DevOnly(env, scale, "cudaStep", "options.scale");
    if (found) DevOnly(env, found, "cudaStep", "options.found");
  }
  if (found) {
    Check(env, "cudaStep", adamp_cuda_step_scaled(h->ctx, ids.Data(), (int)ids.ElementLength(), hyper.Data(), nhyper, flags,
                                                  static_cast<const float*>(scale), static_cast<const int*>(found)));
    return env.Undefined();
  }
  Check(env, "cudaStep", adamp_cuda_step_ex(h->ctx, ids.Data(), (int)ids.ElementLength(), hyper.Data(), nhyper, flags));
  return env.Undefined();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaInfo");
  Napi::Int32Array ids = GetIds(info, 1, "cudaInfo");
  if (info.Length() < 3 || !info[2].IsTypedArray() ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    ThrowType(info.Env(), "cudaInfo: out must be a Float64Array");
  Napi::Float64Array out = info[2].As<Napi::Float64Array>();
  if (out.ElementLength() < ids.ElementLength() * ADAMP_CUDA_INFO_STRIDE)
    ThrowType(info.Env(), "cudaInfo: out is too short (" + std::to_string(out.ElementLength()) + " < " +
                              std::to_string(ids.ElementLength() * ADAMP_CUDA_INFO_STRIDE) + ")");
  Check(info.Env(), "cudaInfo", adamp_cuda_info(h->ctx, ids.Data(), (int)ids.ElementLength(), out.Data()));
  return info.Env().Undefined();
}

Napi::Value Sync(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaSync");
  Check(info.Env(), "cudaSync", adamp_cuda_sync(h->ctx));
  return info.Env().Undefined();
}

Napi::Value Destroy(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) ThrowType(info.Env(), "cudaDestroy: the argument must be a context handle");
  Handle* h = info[0].As<Napi::External<Handle>>().Data();
  if (h->ctx) adamp_cuda_destroy(h->ctx);
  h->ctx = nullptr;
  return info.Env().Undefined();
}


// ---- device buffers and external memory ------------------------------------------------------

struct DevBuf {
  void* ptr = nullptr;
  int device = 0;
};

/** A device buffer's finalizer (see Finalize). */
void FinalizeBuf(Napi::Env, DevBuf* b) {
  try {
    if (b->ptr) adamp_cuda_free(b->device, b->ptr);
  } catch (...) {
  }
  delete b;
}

DevBuf* GetBuf(const Napi::CallbackInfo& info, const char* fn) {
  if (info.Length() < 1 || !info[0].IsExternal()) ThrowType(info.Env(), std::string(fn) + ": the first argument must be a buffer handle");
  return info[0].As<Napi::External<DevBuf>>().Data();
}

Napi::Value Alloc(const Napi::CallbackInfo& info) {
  const int device = (int)GetInt(info, 0, "cudaAlloc", "device");
  const int64_t bytes = GetInt(info, 1, "cudaAlloc", "bytes");
  if (bytes < 0) ThrowType(info.Env(), "cudaAlloc: bytes must be >= 0");
  void* stream = info.Length() > 2 && !info[2].IsNull() && !info[2].IsUndefined() ? GetPtr(info, 2, "cudaAlloc", "stream") : nullptr;
  void* p = nullptr;
  CheckAlloc(info.Env(), "cudaAlloc", adamp_cuda_alloc(device, bytes, stream, &p), device, (double)bytes);
  DevBuf* b = new DevBuf;
  b->ptr = p;
  b->device = device;
  return Napi::External<DevBuf>::New(info.Env(), b, FinalizeBuf);
}

Napi::Value BufferFree(const Napi::CallbackInfo& info) {
  DevBuf* b = GetBuf(info, "cudaBufferFree");
  if (b->ptr) Check(info.Env(), "cudaBufferFree", adamp_cuda_free(b->device, b->ptr));
  b->ptr = nullptr;
  return info.Env().Undefined();
}

Napi::Value BufferAddress(const Napi::CallbackInfo& info) {
  DevBuf* b = GetBuf(info, "cudaBufferAddress");
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(b->ptr)));
}

/** A device view from arguments (device, pointer, shape, strides | null) at positions 0..3. */
struct View {
  int device = 0;
  float* ptr = nullptr;
  std::vector<int64_t> shape, strides;
  bool row_major = false;
  const int64_t* st() const { return row_major ? nullptr : strides.data(); }
  int ndim() const { return (int)shape.size(); }
};

View GetView(const Napi::CallbackInfo& info, const char* fn) {
  View v;
  v.device = (int)GetInt(info, 0, fn, "device");
  v.ptr = static_cast<float*>(GetPtr(info, 1, fn, "pointer"));
  v.shape = GetDims(info, 2, fn, "shape", nullptr);
  v.strides = GetDims(info, 3, fn, "strides", &v.row_major);
  if (!v.row_major && v.strides.size() != v.shape.size()) ThrowType(info.Env(), std::string(fn) + ": strides and shape differ in length");
  return v;
}

Napi::Value CopyHost(const Napi::CallbackInfo& info, bool to_device) {
  const char* fn = to_device ? "cudaCopyToDevice" : "cudaCopyToHost";
  const View v = GetView(info, fn);
  Napi::Float32Array a = GetF32(info, 4, fn);
  int64_t n = 1;
  for (int64_t d : v.shape) n *= d;
  if ((int64_t)a.ElementLength() != n)
    ThrowType(info.Env(), std::string(fn) + ": the Float32Array has " + std::to_string(a.ElementLength()) +
                              " elements, the shape " + std::to_string(n));
  const int rc = to_device ? adamp_cuda_copy_to_device(v.device, v.ptr, v.shape.data(), v.st(), v.ndim(), a.Data(), nullptr)
                           : adamp_cuda_copy_to_host(v.device, a.Data(), v.ptr, v.shape.data(), v.st(), v.ndim(), nullptr);
  CheckAlloc(info.Env(), fn, rc, v.device, -1);
  return info.Env().Undefined();
}

Napi::Value Zero(const Napi::CallbackInfo& info) {
  const View v = GetView(info, "cudaZero");
  CheckAlloc(info.Env(), "cudaZero", adamp_cuda_zero(v.device, v.ptr, v.shape.data(), v.st(), v.ndim(), nullptr), v.device, -1);
  return info.Env().Undefined();
}

Napi::Value CopyToDevice(const Napi::CallbackInfo& info) { return CopyHost(info, true); }
Napi::Value CopyToHost(const Napi::CallbackInfo& info) { return CopyHost(info, false); }

Napi::Value PointerInfo(const Napi::CallbackInfo& info) {
  void* p = GetPtr(info, 0, "cudaPointerInfo", "pointer");
  int kind = 0, device = -1;
  const int rc = adamp_cuda_pointer_info(p, &kind, &device);
  Napi::Object o = Napi::Object::New(info.Env());
  static const char* kinds[] = {"unregistered", "host", "device", "managed"};
  o.Set("kind", rc == 0 ? kinds[kind] : "unknown");
  o.Set("device", device);
  o.Set("code", rc);
  return o;
}

Napi::Value MemInfo(const Napi::CallbackInfo& info) {
  const int device = (int)GetInt(info, 0, "cudaMemInfo", "device");
  size_t f = 0, t = 0;
  Check(info.Env(), "cudaMemInfo", adamp_cuda_mem_info(device, &f, &t));
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("free", (double)f);
  o.Set("total", (double)t);
  return o;
}

Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  adamp_cuda_memory_stats m;
  adamp_cuda_get_memory_stats(&m);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("liveAllocations", (double)m.live_allocations);
  o.Set("liveBytes", (double)m.live_bytes);
  o.Set("totalAllocations", (double)m.total_allocations);
  o.Set("peakBytes", (double)m.peak_bytes);
  return o;
}

Napi::Value DeviceAddress(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaDeviceAddress");
  const int id = (int)GetInt(info, 1, "cudaDeviceAddress", "id");
  const int which = (int)GetInt(info, 2, "cudaDeviceAddress", "which");
  if (id < 0 || id >= adamp_cuda_num_tensors(h->ctx)) ThrowType(info.Env(), "cudaDeviceAddress: no tensor " + std::to_string(id));
  float* p = adamp_cuda_device_ptr(h->ctx, id, which);
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)));
}

Napi::Value Bind(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaBind");
  const int id = (int)GetInt(info, 1, "cudaBind", "id");
  const int which = (int)GetInt(info, 2, "cudaBind", "which");
  float* p = static_cast<float*>(GetPtr(info, 3, "cudaBind", "pointer"));
  Check(info.Env(), "cudaBind", adamp_cuda_bind(h->ctx, id, which, p));
  return info.Env().Undefined();
}

Napi::Value CopyStrided(const Napi::CallbackInfo& info) {
  const char* fn = "cudaCopyStrided";
  Handle* h = GetHandle(info, fn);
  float* dst = static_cast<float*>(GetPtr(info, 1, fn, "dst"));
  bool dn = false, sn = false;
  std::vector<int64_t> ds = GetDims(info, 2, fn, "dstStrides", &dn);
  const float* src = static_cast<const float*>(GetPtr(info, 3, fn, "src"));
  std::vector<int64_t> ss = GetDims(info, 4, fn, "srcStrides", &sn);
  std::vector<int64_t> shape = GetDims(info, 5, fn, "shape", nullptr);
  if ((!dn && ds.size() != shape.size()) || (!sn && ss.size() != shape.size()))
    ThrowType(info.Env(), std::string(fn) + ": strides and shape differ in length");
  int device = 0;
  int kind = 0;
  adamp_cuda_pointer_info(dst, &kind, &device);
  Check(info.Env(), fn, adamp_cuda_copy_strided(device < 0 ? 0 : device, dst, dn ? nullptr : ds.data(), src, sn ? nullptr : ss.data(),
                                                shape.data(), (int)shape.size(), adamp_cuda_stream(h->ctx)));
  return info.Env().Undefined();
}

Napi::Value SetStream(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaSetStream");
  void* s = info.Length() > 1 && !info[1].IsNull() && !info[1].IsUndefined() ? GetPtr(info, 1, "cudaSetStream", "stream") : nullptr;
  Check(info.Env(), "cudaSetStream", adamp_cuda_set_stream(h->ctx, s));
  return info.Env().Undefined();
}

Napi::Value GetStream(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaGetStream");
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(adamp_cuda_stream(h->ctx))));
}

/**
 * cudaWhenDone's wait: an event waited for on a libuv worker thread (Run), the promise settled on
 * the JS thread, so the JS thread never blocks. Raw N-API with the ordering protocol of
 * native/binding/async_task.h (the CPU addon's async step uses the same), rather than
 * Napi::AsyncWorker, whose completion throws a C++ exception when a call into JavaScript fails:
 * while the environment is torn down (a worker terminated or calling process.exit() with a wait
 * in flight) every such call fails, and the exception escaping the completion callback aborted
 * the process (`terminate called after throwing an instance of 'Napi::Error'`). What it means here:
 *
 * - The env cleanup hook waits until Run returned (the event completes when the device has
 *   finished the work queued before it). Run touches no JavaScript memory: host gradients went
 *   through the context's staging buffers and host params are read back synchronously, so the
 *   wait is only for ordering.
 * - The event is owned here: Run frees it (adamp_cuda_event_wait), or, when the work never ran
 *   (cancelled, or queueing failed), the release frees it without waiting. It does not depend on
 *   the context: a context destroyed or collected meanwhile leaves the wait valid.
 */
class WhenDoneTask final : public AsyncTask<WhenDoneTask> {
 public:
  static Napi::Value Start(Napi::Env env, void* event) {
    std::unique_ptr<WhenDoneTask> t(new WhenDoneTask(event));
    napi_value promise = nullptr;
    const napi_status s = Queue(env, t.get(), "adamp:cudaWhenDone", &promise);  // frees the event on failure
    if (s != napi_ok) {
      Napi::Error e = Napi::Error::New(env, "adamp CUDA backend: cudaWhenDone could not queue its wait (N-API status " +
                                                std::to_string((int)s) + ")");
      e.Set("code", Napi::String::New(env, "ERR_ADAMP_CUDA"));
      throw e;
    }
    t.release();  // Complete deletes it
    return Napi::Value(env, promise);
  }

 private:
  friend class AsyncTask<WhenDoneTask>;
  explicit WhenDoneTask(void* event) : event_(event) {}

  /** Worker thread: no N-API here. */
  void Run() {
    code_ = adamp_cuda_event_wait(event_);  // frees the event
    event_ = nullptr;
  }

  /** The error to reject with, if any (JS thread): ERR_ADAMP_CUDA, with `cudaError` when the device reported one. */
  napi_value Outcome(napi_env env, napi_status status, bool* failed) {
    *failed = status != napi_ok || !ran() || code_ != 0;
    if (!*failed) return nullptr;
    if (code_ == 0) return MakeError(env, "adamp CUDA backend: cudaWhenDone's wait did not run (cancelled)", "ERR_ADAMP_CUDA");
    const std::string msg = std::string("adamp CUDA backend: the queued step failed: ") + adamp_cuda_error_name(code_) + " (" +
                            std::to_string(code_) + "): " + adamp_cuda_error_string(code_);
    napi_value err = MakeError(env, msg.c_str(), "ERR_ADAMP_CUDA");
    napi_value n;
    if (err == nullptr || napi_create_int32(env, code_, &n) != napi_ok) return nullptr;
    if (napi_set_named_property(env, err, "cudaError", n) != napi_ok) return nullptr;
    return err;
  }

  void ReleaseOwn(napi_env) { Abandon(); }
  /** Frees the event if the wait never ran. */
  void Abandon() {
    if (event_ != nullptr) adamp_cuda_event_free(event_);
    event_ = nullptr;
  }

  void* event_;   // owned until Run frees it
  int code_ = 0;  // written by Run, read by Outcome after it (libuv orders them)
};

Napi::Value WhenDone(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaWhenDone");
  void* ev = nullptr;
  Check(info.Env(), "cudaWhenDone", adamp_cuda_record(h->ctx, &ev));
  return WhenDoneTask::Start(info.Env(), ev);
}

Napi::Value SetStorage(const Napi::CallbackInfo& info) {
  const char* fn = "cudaSetStorage";
  Handle* h = GetHandle(info, fn);
  const int id = (int)GetInt(info, 1, fn, "id");
  const int64_t storage = GetInt(info, 2, fn, "storage");
  const int64_t seed = GetInt(info, 3, fn, "seed");
  const int64_t index = GetInt(info, 4, fn, "index");
  if (id < 0 || id >= adamp_cuda_num_tensors(h->ctx)) ThrowRange(info.Env(), std::string(fn) + ": no tensor " + std::to_string(id));
  if (storage < 0 || storage > 63) ThrowRange(info.Env(), std::string(fn) + ": storage must be an integer in [0, 63]");
  if (seed < 0 || seed > 0xffffffffLL || index < 0 || index > 0xffffffffLL)
    ThrowRange(info.Env(), std::string(fn) + ": seed and index must be integers in [0, 2^32)");
  CheckAlloc(info.Env(), fn, adamp_cuda_set_storage(h->ctx, id, (int)storage, (uint32_t)seed, (uint32_t)index), 0, -1);
  return info.Env().Undefined();
}

Napi::Value GetStorage(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaGetStorage");
  const int id = (int)GetInt(info, 1, "cudaGetStorage", "id");
  const int st = adamp_cuda_get_storage(h->ctx, id);
  if (st < 0) ThrowRange(info.Env(), "cudaGetStorage: no tensor " + std::to_string(id));
  return Napi::Number::New(info.Env(), st);
}

Napi::Value InitMaster(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaInitMaster");
  const int id = (int)GetInt(info, 1, "cudaInitMaster", "id");
  Check(info.Env(), "cudaInitMaster", adamp_cuda_init_master(h->ctx, id));
  return info.Env().Undefined();
}

Napi::Value CheckGrads(const Napi::CallbackInfo& info) {
  const char* fn = "cudaCheckGrads";
  Handle* h = GetHandle(info, fn);
  Napi::Int32Array ids = GetIds(info, 1, fn);
  void* found = GetOptPtr(info.Length() > 2 ? info[2] : info.Env().Undefined(), fn, "found");
  if (!found) ThrowType(info.Env(), std::string(fn) + ": found must be a bigint device address");
  DevOnly(info.Env(), found, fn, "found");
  const bool reset = info.Length() > 3 && info[3].ToBoolean().Value();
  Check(info.Env(), fn, adamp_cuda_check_grads(h->ctx, ids.Data(), (int)ids.ElementLength(), static_cast<int*>(found), reset ? 1 : 0));
  return info.Env().Undefined();
}

/** cudaUnscaleGrads(h, grads: Array<{ pointer, shape, strides }>, scale, found, reset): float32 device grads unscaled in place. */
Napi::Value UnscaleGrads(const Napi::CallbackInfo& info) {
  const char* fn = "cudaUnscaleGrads";
  Napi::Env env = info.Env();
  Handle* h = GetHandle(info, fn);
  if (info.Length() < 2 || !info[1].IsArray()) ThrowType(env, std::string(fn) + ": grads must be an array of device views");
  Napi::Array list = info[1].As<Napi::Array>();
  const uint32_t n = list.Length();
  std::vector<std::vector<int64_t>> dims(2 * (size_t)n);
  std::vector<adamp_cuda_grad_view> views(n);
  for (uint32_t i = 0; i < n; ++i) {
    Napi::Value v = list.Get(i);
    const std::string what = "grads[" + std::to_string(i) + "]";
    if (!v.IsObject()) ThrowType(env, std::string(fn) + ": " + what + " must be a device view { pointer, shape, strides }");
    Napi::Object o = v.As<Napi::Object>();
    Napi::Value shape = o.Get("shape"), strides = o.Get("strides");
    for (int k = 0; k < 2; ++k) {
      Napi::Value a = k == 0 ? shape : strides;
      if (k == 1 && (a.IsNull() || a.IsUndefined())) continue;
      if (!a.IsArray()) ThrowType(env, std::string(fn) + ": " + what + (k == 0 ? ".shape" : ".strides") + " must be an array");
      Napi::Array arr = a.As<Napi::Array>();
      if (arr.Length() > ADAMP_CUDA_MAX_DIMS)
        ThrowType(env, std::string(fn) + ": " + what + " has more than " + std::to_string(ADAMP_CUDA_MAX_DIMS) + " dimensions");
      for (uint32_t d = 0; d < arr.Length(); ++d) {
        Napi::Value x = arr.Get(d);
        const double f = x.IsNumber() ? x.As<Napi::Number>().DoubleValue() : -1.5;
        if (f != (double)(int64_t)f || f < (k == 0 ? 0 : 1)) ThrowType(env, std::string(fn) + ": " + what + (k == 0 ? ".shape must hold non-negative" : ".strides must hold positive") + " integers");
        dims[2 * i + k].push_back((int64_t)f);
      }
    }
    if (!strides.IsNull() && !strides.IsUndefined() && dims[2 * i + 1].size() != dims[2 * i].size())
      ThrowType(env, std::string(fn) + ": " + what + ".strides must have one entry per dimension");
    void* p = GetOptPtr(o.Get("pointer"), fn, (what + ".pointer").c_str());
    if (!p) ThrowType(env, std::string(fn) + ": " + what + ".pointer must be a bigint device address");
    DevOnly(env, p, fn, (what + ".pointer").c_str());
    views[i].g = static_cast<float*>(p);
    views[i].shape = dims[2 * i].data();
    views[i].strides = strides.IsNull() || strides.IsUndefined() ? nullptr : dims[2 * i + 1].data();
    views[i].ndim = (int)dims[2 * i].size();
  }
  void* scale = GetOptPtr(info.Length() > 2 ? info[2] : env.Undefined(), fn, "scale");
  void* found = GetOptPtr(info.Length() > 3 ? info[3] : env.Undefined(), fn, "found");
  if (!scale || !found) ThrowType(env, std::string(fn) + ": scale and found must be bigint device addresses");
  DevOnly(env, scale, fn, "scale");
  DevOnly(env, found, fn, "found");
  const bool reset = info.Length() > 4 && info[4].ToBoolean().Value();
  Check(env, fn, adamp_cuda_unscale_grads(h->ctx, views.data(), (int)n, static_cast<const float*>(scale), static_cast<int*>(found), reset ? 1 : 0));
  return env.Undefined();
}

Napi::Value GetSteps(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaGetSteps");
  Napi::Int32Array ids = GetIds(info, 1, "cudaGetSteps");
  Napi::Float64Array out = Napi::Float64Array::New(info.Env(), ids.ElementLength());
  Check(info.Env(), "cudaGetSteps", adamp_cuda_get_steps(h->ctx, ids.Data(), (int)ids.ElementLength(), out.Data()));
  return out;
}

Napi::Value LastSkipped(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaLastSkipped");
  const int id = (int)GetInt(info, 1, "cudaLastSkipped", "id");
  int skipped = 0;
  Check(info.Env(), "cudaLastSkipped", adamp_cuda_last_skipped(h->ctx, id, &skipped));
  return Napi::Boolean::New(info.Env(), skipped != 0);
}

Napi::Value ScalerUpdate(const Napi::CallbackInfo& info) {
  const char* fn = "cudaScalerUpdate";
  Handle* h = GetHandle(info, fn);
  void* state = DevOnly(info.Env(), GetPtr(info, 1, fn, "state"), fn, "state");
  const int64_t mask = GetInt(info, 2, fn, "mask");
  const bool host_found = info.Length() > 3 && info[3].ToBoolean().Value();
  if (info.Length() < 7 || !info[4].IsNumber() || !info[5].IsNumber()) ThrowType(info.Env(), std::string(fn) + ": growth and backoff must be numbers");
  const double growth = info[4].As<Napi::Number>().DoubleValue(), backoff = info[5].As<Napi::Number>().DoubleValue();
  const int64_t interval = GetInt(info, 6, fn, "interval");
  if (mask < 0 || mask >= (1LL << 16)) ThrowRange(info.Env(), std::string(fn) + ": mask must be an integer in [0, 2^16)");
  if (!(growth > 1.0) || !(backoff > 0.0 && backoff < 1.0) || interval < 1)
    ThrowRange(info.Env(), std::string(fn) + ": growth must be > 1, backoff in (0, 1), interval >= 1");
  Check(info.Env(), fn, adamp_cuda_scaler_update(h->ctx, state, (unsigned)mask, host_found ? 1 : 0, growth, backoff, interval));
  return info.Env().Undefined();
}

/** cudaCopyBytes(device, pointer, host: Uint16Array, toDevice): contiguous 16-bit data between host and device. */
Napi::Value CopyBytes(const Napi::CallbackInfo& info) {
  const char* fn = "cudaCopyBytes";
  const int device = (int)GetInt(info, 0, fn, "device");
  void* ptr = DevOnly(info.Env(), GetPtr(info, 1, fn, "pointer"), fn, "pointer");
  if (info.Length() < 3 || !info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array)
    ThrowType(info.Env(), std::string(fn) + ": the host buffer must be a Uint16Array");
  Napi::Uint16Array a = info[2].As<Napi::Uint16Array>();
  const bool to_device = info.Length() > 3 && info[3].ToBoolean().Value();
  if (device < 0) ThrowRange(info.Env(), std::string(fn) + ": device must be >= 0");
  const int64_t bytes = (int64_t)a.ElementLength() * 2;
  const int rc = to_device ? adamp_cuda_copy_bytes(device, ptr, a.Data(), bytes, 1, nullptr)
                           : adamp_cuda_copy_bytes(device, a.Data(), ptr, bytes, 0, nullptr);
  CheckAlloc(info.Env(), fn, rc, device, -1);
  return info.Env().Undefined();
}

Napi::Value ZeroBytes(const Napi::CallbackInfo& info) {
  const char* fn = "cudaZeroBytes";
  const int device = (int)GetInt(info, 0, fn, "device");
  void* ptr = DevOnly(info.Env(), GetPtr(info, 1, fn, "pointer"), fn, "pointer");
  const int64_t bytes = GetInt(info, 2, fn, "bytes");
  if (device < 0 || bytes < 0) ThrowRange(info.Env(), std::string(fn) + ": device and bytes must be >= 0");
  CheckAlloc(info.Env(), fn, adamp_cuda_zero_bytes(device, ptr, bytes, nullptr), device, -1);
  return info.Env().Undefined();
}

}  // namespace

void register_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaStatus", Napi::Function::New(env, Status, "cudaStatus"));
  exports.Set("cudaCreate", Napi::Function::New(env, Create, "cudaCreate"));
  exports.Set("cudaAddTensor", Napi::Function::New(env, AddTensor, "cudaAddTensor"));
  exports.Set("cudaUpload", Napi::Function::New(env, Upload, "cudaUpload"));
  exports.Set("cudaDownload", Napi::Function::New(env, Download, "cudaDownload"));
  exports.Set("cudaSetStep", Napi::Function::New(env, SetStep, "cudaSetStep"));
  exports.Set("cudaKinds", Napi::Function::New(env, Kinds, "cudaKinds"));
  exports.Set("cudaStep", Napi::Function::New(env, Step, "cudaStep"));
  exports.Set("cudaInfo", Napi::Function::New(env, Info, "cudaInfo"));
  exports.Set("cudaSync", Napi::Function::New(env, Sync, "cudaSync"));
  exports.Set("cudaDestroy", Napi::Function::New(env, Destroy, "cudaDestroy"));
  exports.Set("cudaAlloc", Napi::Function::New(env, Alloc, "cudaAlloc"));
  exports.Set("cudaBufferFree", Napi::Function::New(env, BufferFree, "cudaBufferFree"));
  exports.Set("cudaBufferAddress", Napi::Function::New(env, BufferAddress, "cudaBufferAddress"));
  exports.Set("cudaCopyToDevice", Napi::Function::New(env, CopyToDevice, "cudaCopyToDevice"));
  exports.Set("cudaCopyToHost", Napi::Function::New(env, CopyToHost, "cudaCopyToHost"));
  exports.Set("cudaZero", Napi::Function::New(env, Zero, "cudaZero"));
  exports.Set("cudaPointerInfo", Napi::Function::New(env, PointerInfo, "cudaPointerInfo"));
  exports.Set("cudaMemInfo", Napi::Function::New(env, MemInfo, "cudaMemInfo"));
  exports.Set("cudaMemoryStats", Napi::Function::New(env, MemoryStats, "cudaMemoryStats"));
  exports.Set("cudaDeviceAddress", Napi::Function::New(env, DeviceAddress, "cudaDeviceAddress"));
  exports.Set("cudaBind", Napi::Function::New(env, Bind, "cudaBind"));
  exports.Set("cudaCopyStrided", Napi::Function::New(env, CopyStrided, "cudaCopyStrided"));
  exports.Set("cudaSetStream", Napi::Function::New(env, SetStream, "cudaSetStream"));
  exports.Set("cudaGetStream", Napi::Function::New(env, GetStream, "cudaGetStream"));
  exports.Set("cudaWhenDone", Napi::Function::New(env, WhenDone, "cudaWhenDone"));
  exports.Set("cudaSetStorage", Napi::Function::New(env, SetStorage, "cudaSetStorage"));
  exports.Set("cudaGetStorage", Napi::Function::New(env, GetStorage, "cudaGetStorage"));
  exports.Set("cudaInitMaster", Napi::Function::New(env, InitMaster, "cudaInitMaster"));
  exports.Set("cudaCheckGrads", Napi::Function::New(env, CheckGrads, "cudaCheckGrads"));
  exports.Set("cudaUnscaleGrads", Napi::Function::New(env, UnscaleGrads, "cudaUnscaleGrads"));
  exports.Set("cudaGetSteps", Napi::Function::New(env, GetSteps, "cudaGetSteps"));
  exports.Set("cudaLastSkipped", Napi::Function::New(env, LastSkipped, "cudaLastSkipped"));
  exports.Set("cudaScalerUpdate", Napi::Function::New(env, ScalerUpdate, "cudaScalerUpdate"));
  exports.Set("cudaCopyBytes", Napi::Function::New(env, CopyBytes, "cudaCopyBytes"));
  exports.Set("cudaZeroBytes", Napi::Function::New(env, ZeroBytes, "cudaZeroBytes"));
}

}  // namespace cuda
}  // namespace adamp
