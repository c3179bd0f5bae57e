#include "parse.h"

#include <math.h>

namespace adamp {
namespace binding {

namespace {

[[noreturn]] void type_error(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }
[[noreturn]] void range_error(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

Napi::Object as_object(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsObject() || v.IsArray()) type_error(env, what + " must be an object");
  return v.As<Napi::Object>();
}

double get_number(Napi::Env env, Napi::Object o, const char* key, const std::string& what) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) type_error(env, what + "." + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool get_bool(Napi::Env env, Napi::Object o, const char* key, const std::string& what) {
  Napi::Value v = o.Get(key);
  if (!v.IsBoolean()) type_error(env, what + "." + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

int64_t get_count(Napi::Env env, Napi::Object o, const char* key, const std::string& what) {
  const double d = get_number(env, o, key, what);
  if (!(d >= 0) || d != floor(d) || d > 9007199254740991.0)
    range_error(env, what + "." + key + " must be a non-negative integer (got " + std::to_string(d) + ")");
  return (int64_t)d;
}

Napi::TypedArray get_f32(Napi::Env env, Napi::Object o, const char* key, const std::string& what) {
  Napi::Value v = o.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    type_error(env, what + "." + key + " must be a Float32Array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.ArrayBuffer().IsDetached())
    type_error(env, what + "." + key + " is backed by a detached ArrayBuffer (transferred or resized away)");
  return ta;
}

float* data_of(Napi::TypedArray ta) {
  // ByteOffset is a multiple of 4 for every Float32Array, so the pointer is float-aligned.
  return reinterpret_cast<float*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

}  // namespace

ParsedSlots parse_slots(Napi::Env env, Napi::Value slots, Kind kind, const std::string& fn) {
  if (!slots.IsArray()) type_error(env, fn + ": slots must be an array");
  Napi::Array arr = slots.As<Napi::Array>();
  ParsedSlots out;
  const uint32_t count = arr.Length();
  out.slots.reserve(count);
  for (uint32_t j = 0; j < count; ++j) {
    const std::string what = fn + ": slots[" + std::to_string(j) + "]";
    Napi::Object o = as_object(env, arr.Get(j), what);
    Napi::TypedArray p = get_f32(env, o, "p", what), g = get_f32(env, o, "g", what), m = get_f32(env, o, "m", what);
    const bool needs_v = kind == Kind::AdamP || kind == Kind::Adam;
    Napi::TypedArray v = needs_v ? get_f32(env, o, "v", what) : Napi::TypedArray();
    const size_t n = p.ElementLength();
    if (g.ElementLength() != n)
      range_error(env, what + ".g has " + std::to_string(g.ElementLength()) + " elements but p has " + std::to_string(n));
    if (m.ElementLength() != n)
      range_error(env, what + ".m has " + std::to_string(m.ElementLength()) + " elements but p has " + std::to_string(n));
    if (needs_v && v.ElementLength() != n)
      range_error(env, what + ".v has " + std::to_string(v.ElementLength()) + " elements but p has " + std::to_string(n));

    cpu::TensorSlot s;
    s.numel = (int64_t)n;
    s.p = data_of(p);
    s.g = data_of(g);
    s.m = data_of(m);
    s.v = needs_v ? data_of(v) : nullptr;
    if (n > 0 && (s.p == s.m || s.p == s.g || s.m == s.g || (needs_v && (s.v == s.m || s.v == s.p || s.v == s.g))))
      range_error(env, what + ": p, g, m" + std::string(needs_v ? " and v" : "") + " must be distinct arrays");
    if (kind == Kind::AdamP || kind == Kind::SGDP) {
      s.outer = get_count(env, o, "outer", what);
      s.channels = get_count(env, o, "channels", what);
      s.inner = get_count(env, o, "inner", what);
      const double product = (double)s.outer * (double)s.channels * (double)s.inner;
      if (product != (double)n)
        range_error(env, what + ": outer * channels * inner = " + std::to_string((int64_t)product) +
                             " does not match p.length = " + std::to_string(n));
      s.eligible = get_bool(env, o, "eligible", what);
    } else {
      s.outer = 1;
      s.channels = 1;
      s.inner = (int64_t)n;
      s.eligible = false;
    }
    s.step = 0;
    if (needs_v) {
      s.step = get_number(env, o, "step", what);
      if (!(s.step >= 1) || s.step != floor(s.step))
        range_error(env, what + ".step must be an integer >= 1 (the count after this step's increment)");
    }
    out.slots.push_back(s);
    out.arrays.push_back(p);
    out.arrays.push_back(g);
    out.arrays.push_back(m);
    if (needs_v) out.arrays.push_back(v);
  }
  return out;
}

cpu::AdamPHyper parse_adamp_hyper(Napi::Env env, Napi::Value v, const std::string& fn) {
  const std::string what = fn + ": hp";
  Napi::Object o = as_object(env, v, what);
  cpu::AdamPHyper h;
  h.lr = get_number(env, o, "lr", what);
  h.beta1 = get_number(env, o, "beta1", what);
  h.beta2 = get_number(env, o, "beta2", what);
  h.eps = get_number(env, o, "eps", what);
  h.weight_decay = get_number(env, o, "weightDecay", what);
  h.delta = get_number(env, o, "delta", what);
  h.wd_ratio = get_number(env, o, "wdRatio", what);
  h.nesterov = get_bool(env, o, "nesterov", what);
  return h;
}

cpu::SGDPHyper parse_sgdp_hyper(Napi::Env env, Napi::Value v, const std::string& fn) {
  const std::string what = fn + ": hp";
  Napi::Object o = as_object(env, v, what);
  cpu::SGDPHyper h;
  h.lr = get_number(env, o, "lr", what);
  h.momentum = get_number(env, o, "momentum", what);
  h.dampening = get_number(env, o, "dampening", what);
  h.weight_decay = get_number(env, o, "weightDecay", what);
  h.eps = get_number(env, o, "eps", what);
  h.delta = get_number(env, o, "delta", what);
  h.wd_ratio = get_number(env, o, "wdRatio", what);
  h.nesterov = get_bool(env, o, "nesterov", what);
  return h;
}

cpu::AdamHyper parse_adam_hyper(Napi::Env env, Napi::Value v, const std::string& fn) {
  const std::string what = fn + ": hp";
  Napi::Object o = as_object(env, v, what);
  cpu::AdamHyper h;
  h.lr = get_number(env, o, "lr", what);
  h.beta1 = get_number(env, o, "beta1", what);
  h.beta2 = get_number(env, o, "beta2", what);
  h.eps = get_number(env, o, "eps", what);
  h.weight_decay = get_number(env, o, "weightDecay", what);
  return h;
}

cpu::SGDHyper parse_sgd_hyper(Napi::Env env, Napi::Value v, const std::string& fn) {
  const std::string what = fn + ": hp";
  Napi::Object o = as_object(env, v, what);
  cpu::SGDHyper h;
  h.lr = get_number(env, o, "lr", what);
  h.momentum = get_number(env, o, "momentum", what);
  h.dampening = get_number(env, o, "dampening", what);
  h.weight_decay = get_number(env, o, "weightDecay", what);
  h.nesterov = get_bool(env, o, "nesterov", what);
  return h;
}

double* parse_info(Napi::Env env, Napi::Value v, size_t count, const std::string& fn) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    type_error(env, fn + ": info must be a Float64Array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.ArrayBuffer().IsDetached()) type_error(env, fn + ": info is backed by a detached ArrayBuffer");
  if (ta.ElementLength() < count * 8)
    range_error(env, fn + ": info has " + std::to_string(ta.ElementLength()) + " elements, needs " +
                         std::to_string(count * 8) + " (8 per slot)");
  return reinterpret_cast<double*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

int parse_threads(Napi::Env env, Napi::Value v, const std::string& fn) {
  if (v.IsUndefined()) return 0;
  if (!v.IsNumber()) type_error(env, fn + ": threads must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 256) || d != floor(d))
    range_error(env, fn + ": threads must be an integer in [0, 256] (0 = all hardware threads), got " + std::to_string(d));
  return (int)d;
}

}  // namespace binding
}  // namespace adamp
