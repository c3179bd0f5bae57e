// The CUDA exports of the addon (compiled only in CUDA builds; registered by
// native/binding/addon.cc through adamp::cuda::register_exports). Thin: argument checks, then the
// plain C API of adamp_cuda.h. Typed in lib/backends/cuda/binding.ts.
//
//   cudaStatus()                                   { available, reason, code, devices, versions }
//   cudaCreate(kind: 'adamp' | 'sgdp', config?)    context handle (freed by GC or cudaDestroy)
//   cudaAddTensor(h, numel, outer, channels, inner, eligible) -> id
//   cudaUpload(h, id, which, Float32Array) / cudaDownload(h, id, which, Float32Array)
//   cudaSetStep(h, id, completedSteps)
//   cudaStepAdamP(h, Int32Array ids, hp) / cudaStepSGDP(h, Int32Array ids, hp)   queued, no sync
//   cudaInfo(h, Int32Array ids, Float64Array out)  waits
//   cudaSync(h), cudaDestroy(h)
#include <napi.h>

#include <string>

#include "adamp_cuda.h"

namespace adamp {
namespace cuda {

namespace {

struct Handle {
  adamp_cuda_ctx* ctx = nullptr;
  int kind = 0;
};

void Finalize(Napi::Env, Handle* h) {
  if (h->ctx) adamp_cuda_destroy(h->ctx);
  delete h;
}

[[noreturn]] void ThrowCuda(Napi::Env env, const char* fn, int code) {
  Napi::Error e = Napi::Error::New(env, std::string("adamp CUDA backend: ") + fn + " failed: " +
                                            adamp_cuda_error_name(code) + " (" + std::to_string(code) + "): " +
                                            adamp_cuda_error_string(code));
  e.Set("code", Napi::String::New(env, "ERR_ADAMP_CUDA"));
  e.Set("cudaError", Napi::Number::New(env, code));
  throw e;
}

[[noreturn]] void ThrowType(Napi::Env env, const std::string& msg) {
  Napi::TypeError e = Napi::TypeError::New(env, "adamp CUDA backend: " + msg);
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

double GetNum(const Napi::Object& o, const char* key, double dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return dflt;
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? 1.0 : 0.0;
  if (!v.IsNumber()) ThrowType(o.Env(), std::string("hyperparameter '") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
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

Napi::Value Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) ThrowType(env, "cudaCreate: kind must be 'adamp' or 'sgdp'");
  const std::string kind = info[0].As<Napi::String>();
  int k;
  if (kind == "adamp") k = ADAMP_CUDA_ADAMP;
  else if (kind == "sgdp") k = ADAMP_CUDA_SGDP;
  else ThrowType(env, "cudaCreate: kind must be 'adamp' or 'sgdp', got '" + kind + "'");
  adamp_cuda_config cfg = {0, 0, 0, 0};
  int device = 0;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object c = info[1].As<Napi::Object>();
    cfg.chunk = (int)GetNum(c, "chunk", 0);
    cfg.group = (int64_t)GetNum(c, "group", 0);
    cfg.lag = (int)GetNum(c, "lag", 0);
    cfg.blocks_per_sm = (int)GetNum(c, "blocksPerSm", 0);
    device = (int)GetNum(c, "device", 0);
  }
  adamp_cuda_ctx* ctx = nullptr;
  Check(env, "cudaCreate", adamp_cuda_create(&ctx, k, device, &cfg));
  Handle* h = new Handle;
  h->ctx = ctx;
  h->kind = k;
  return Napi::External<Handle>::New(env, h, Finalize);
}

Napi::Value AddTensor(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaAddTensor");
  adamp_cuda_tensor_desc d;
  d.numel = GetInt(info, 1, "cudaAddTensor", "numel");
  d.outer = GetInt(info, 2, "cudaAddTensor", "outer");
  d.channels = GetInt(info, 3, "cudaAddTensor", "channels");
  d.inner = GetInt(info, 4, "cudaAddTensor", "inner");
  d.eligible = info.Length() > 5 && info[5].ToBoolean().Value() ? 1 : 0;
  int id = -1;
  Check(info.Env(), "cudaAddTensor", adamp_cuda_add_tensor(h->ctx, &d, &id));
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

Napi::Value StepAdamP(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaStepAdamP");
  Napi::Int32Array ids = GetIds(info, 1, "cudaStepAdamP");
  if (info.Length() < 3 || !info[2].IsObject()) ThrowType(info.Env(), "cudaStepAdamP: hp must be an object");
  Napi::Object o = info[2].As<Napi::Object>();
  adamp_cuda_adamp_hp hp;
  hp.lr = GetNum(o, "lr", 1e-3);
  hp.beta1 = GetNum(o, "beta1", 0.9);
  hp.beta2 = GetNum(o, "beta2", 0.999);
  hp.eps = GetNum(o, "eps", 1e-8);
  hp.weight_decay = GetNum(o, "weightDecay", 0);
  hp.delta = GetNum(o, "delta", 0.1);
  hp.wd_ratio = GetNum(o, "wdRatio", 0.1);
  hp.nesterov = GetNum(o, "nesterov", 0) != 0;
  Check(info.Env(), "cudaStepAdamP", adamp_cuda_step_adamp(h->ctx, ids.Data(), (int)ids.ElementLength(), &hp));
  return info.Env().Undefined();
}

Napi::Value StepSGDP(const Napi::CallbackInfo& info) {
  Handle* h = GetHandle(info, "cudaStepSGDP");
  Napi::Int32Array ids = GetIds(info, 1, "cudaStepSGDP");
  if (info.Length() < 3 || !info[2].IsObject()) ThrowType(info.Env(), "cudaStepSGDP: hp must be an object");
  Napi::Object o = info[2].As<Napi::Object>();
  adamp_cuda_sgdp_hp hp;
  hp.lr = GetNum(o, "lr", 0);
  hp.momentum = GetNum(o, "momentum", 0);
  hp.dampening = GetNum(o, "dampening", 0);
  hp.weight_decay = GetNum(o, "weightDecay", 0);
  hp.eps = GetNum(o, "eps", 1e-8);
  hp.delta = GetNum(o, "delta", 0.1);
  hp.wd_ratio = GetNum(o, "wdRatio", 0.1);
  hp.nesterov = GetNum(o, "nesterov", 0) != 0;
  Check(info.Env(), "cudaStepSGDP", adamp_cuda_step_sgdp(h->ctx, ids.Data(), (int)ids.ElementLength(), &hp));
  return info.Env().Undefined();
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

}  // namespace

void register_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaStatus", Napi::Function::New(env, Status, "cudaStatus"));
  exports.Set("cudaCreate", Napi::Function::New(env, Create, "cudaCreate"));
  exports.Set("cudaAddTensor", Napi::Function::New(env, AddTensor, "cudaAddTensor"));
  exports.Set("cudaUpload", Napi::Function::New(env, Upload, "cudaUpload"));
  exports.Set("cudaDownload", Napi::Function::New(env, Download, "cudaDownload"));
  exports.Set("cudaSetStep", Napi::Function::New(env, SetStep, "cudaSetStep"));
  exports.Set("cudaStepAdamP", Napi::Function::New(env, StepAdamP, "cudaStepAdamP"));
  exports.Set("cudaStepSGDP", Napi::Function::New(env, StepSGDP, "cudaStepSGDP"));
  exports.Set("cudaInfo", Napi::Function::New(env, Info, "cudaInfo"));
  exports.Set("cudaSync", Napi::Function::New(env, Sync, "cudaSync"));
  exports.Set("cudaDestroy", Napi::Function::New(env, Destroy, "cudaDestroy"));
}

}  // namespace cuda
}  // namespace adamp
