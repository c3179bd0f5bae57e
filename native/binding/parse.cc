#include "parse.h"

#include <math.h>
#include <stdint.h>

namespace adamp {
namespace binding {

const char* const kInvalidArgument = "ERR_ADAMP_INVALID_ARGUMENT";

void type_error(Napi::Env env, const std::string& msg) {
  Napi::Error e = Napi::TypeError::New(env, msg);
  e.Set("code", Napi::String::New(env, kInvalidArgument));
  throw e;
}

void range_error(Napi::Env env, const std::string& msg) {
  Napi::Error e = Napi::RangeError::New(env, msg);
  e.Set("code", Napi::String::New(env, kInvalidArgument));
  throw e;
}

namespace {

constexpr double kMaxSafeInteger = 9007199254740991.0;

std::string num(double d) {
  if (d != d) return "NaN";
  if (d == floor(d) && fabs(d) <= kMaxSafeInteger) return std::to_string((int64_t)d);
  return std::to_string(d);
}

Napi::Object as_object(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsObject() || v.IsArray() || v.IsTypedArray() || v.IsFunction()) type_error(env, what + " must be an object");
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
  if (!(d >= 0) || d != floor(d) || d > kMaxSafeInteger)
    range_error(env, what + "." + key + " must be a non-negative integer (got " + num(d) + ")");
  return (int64_t)d;
}

/** A Float32Array, not detached; `name` is what messages call it. */
Napi::TypedArray as_f32(Napi::Env env, Napi::Value v, const std::string& name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    type_error(env, name + " must be a Float32Array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.ArrayBuffer().IsDetached()) type_error(env, name + " is backed by a detached ArrayBuffer (transferred or resized away)");
  return ta;
}

float* data_of(Napi::TypedArray ta) {
  // ByteOffset is a multiple of 4 for every Float32Array, so the pointer is float-aligned.
  return reinterpret_cast<float*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

}  // namespace

OptKind parse_kind(Napi::Env env, Napi::Value v, const std::string& what) {
  OptKind kind;
  if (v.IsString() && cpu::kind_from_name(v.As<Napi::String>().Utf8Value().c_str(), &kind)) return kind;
  std::string names;
  for (const cpu::KindInfo& k : cpu::kinds()) names += (names.empty() ? "'" : ", '") + std::string(k.name) + "'";
  type_error(env, what + " must be one of " + names);
}

std::vector<double> parse_hyper(Napi::Env env, OptKind kind, Napi::Value v, const std::string& what) {
  const cpu::KindInfo& k = cpu::kinds()[(size_t)kind];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    type_error(env, what + " must be a Float64Array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.ArrayBuffer().IsDetached()) type_error(env, what + " is backed by a detached ArrayBuffer");
  if (ta.ElementLength() != (size_t)k.hyper_count) {
    std::string names;
    for (int i = 0; i < k.hyper_count; ++i) names += (i ? ", " : "") + std::string(cpu::hyper_name(kind, i));
    range_error(env, what + " has " + std::to_string(ta.ElementLength()) + " values; " + k.name + " takes " +
                         std::to_string(k.hyper_count) + " (" + names + ")");
  }
  const double* d = reinterpret_cast<const double*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
  std::vector<double> h(d, d + k.hyper_count);
  int field = -1;
  const char* bad = cpu::check_hyper(kind, h.data(), &field);
  if (bad != nullptr)
    range_error(env, what + "[" + std::to_string(field) + "] (" + cpu::hyper_name(kind, field) + ") " + bad + " (got " +
                         num(h[(size_t)(field >= 0 ? field : 0)]) + ")");
  return h;
}

cpu::TensorSlot parse_slot(Napi::Env env, OptKind kind, Napi::Value v, const std::string& what,
                           std::vector<Napi::Value>& arrays) {
  const int nslots = cpu::kinds()[(size_t)kind].slots;
  Napi::Object o = as_object(env, v, what);
  Napi::TypedArray p = as_f32(env, o.Get("p"), what + ".p"), g = as_f32(env, o.Get("g"), what + ".g");
  Napi::Value sv = o.Get("state");
  if (!sv.IsArray()) type_error(env, what + ".state must be an array of " + std::to_string(nslots) + " Float32Array");
  Napi::Array sa = sv.As<Napi::Array>();
  if (sa.Length() != (uint32_t)nslots)
    range_error(env, what + ".state has " + std::to_string(sa.Length()) + " arrays; " + cpu::kinds()[(size_t)kind].name +
                         " keeps " + std::to_string(nslots));
  std::vector<Napi::TypedArray> st;
  for (int k = 0; k < nslots; ++k) st.push_back(as_f32(env, sa.Get((uint32_t)k), what + ".state[" + std::to_string(k) + "]"));

  const size_t n = p.ElementLength();
  if (g.ElementLength() != n)
    range_error(env, what + ".g has " + std::to_string(g.ElementLength()) + " elements but p has " + std::to_string(n));
  for (int k = 0; k < nslots; ++k)
    if (st[(size_t)k].ElementLength() != n)
      range_error(env, what + ".state[" + std::to_string(k) + "] has " + std::to_string(st[(size_t)k].ElementLength()) +
                           " elements but p has " + std::to_string(n));

  cpu::TensorSlot s;
  s.numel = (int64_t)n;
  s.p = data_of(p);
  s.g = data_of(g);
  s.state[0] = s.state[1] = nullptr;
  for (int k = 0; k < nslots; ++k) s.state[k] = data_of(st[(size_t)k]);
  if (n > 0) {
    // p and the state are written, g is read: no two may share memory.
    std::vector<std::pair<const float*, std::string>> ranges = {{s.p, "p"}, {s.g, "g"}};
    for (int k = 0; k < nslots; ++k) ranges.push_back({s.state[k], "state[" + std::to_string(k) + "]"});
    for (size_t a = 0; a < ranges.size(); ++a)
      for (size_t b = a + 1; b < ranges.size(); ++b) {
        const uintptr_t x = (uintptr_t)ranges[a].first, y = (uintptr_t)ranges[b].first, bytes = n * sizeof(float);
        if (x < y + bytes && y < x + bytes)
          range_error(env, what + ": " + ranges[a].second + " and " + ranges[b].second +
                               " overlap; p, g and the state must be distinct arrays");
      }
  }
  s.outer = get_count(env, o, "outer", what);
  s.channels = get_count(env, o, "channels", what);
  s.inner = get_count(env, o, "inner", what);
  const double product = (double)s.outer * (double)s.channels * (double)s.inner;
  if (product != (double)n)
    range_error(env, what + ": outer * channels * inner = " + num(product) + " does not match p.length = " + std::to_string(n));
  s.eligible = get_bool(env, o, "eligible", what);
  s.step = get_number(env, o, "step", what);
  if (!(s.step >= 1) || s.step != floor(s.step) || s.step > kMaxSafeInteger)
    range_error(env, what + ".step must be an integer >= 1 (the count after this step's increment), got " + num(s.step));
  arrays.push_back(p);
  arrays.push_back(g);
  for (Napi::TypedArray& t : st) arrays.push_back(t);
  return s;
}

ParsedSlots parse_slots(Napi::Env env, OptKind kind, Napi::Value slots, const std::string& fn) {
  if (!slots.IsArray()) type_error(env, fn + ": slots must be an array");
  Napi::Array arr = slots.As<Napi::Array>();
  ParsedSlots out;
  const uint32_t count = arr.Length();
  out.slots.reserve(count);
  for (uint32_t j = 0; j < count; ++j)
    out.slots.push_back(parse_slot(env, kind, arr.Get(j), fn + ": slots[" + std::to_string(j) + "]", out.arrays));
  return out;
}

double* parse_info(Napi::Env env, Napi::Value v, size_t count, const std::string& fn) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    type_error(env, fn + ": info must be a Float64Array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.ArrayBuffer().IsDetached()) type_error(env, fn + ": info is backed by a detached ArrayBuffer");
  if (ta.ElementLength() < count * kInfoStride)
    range_error(env, fn + ": info has " + std::to_string(ta.ElementLength()) + " elements, needs " +
                         std::to_string(count * kInfoStride) + " (8 per slot)");
  return reinterpret_cast<double*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

cpu::StepConfig parse_step_options(Napi::Env env, Napi::Value v, const std::string& fn) {
  cpu::StepConfig cfg;
  if (v.IsUndefined()) return cfg;
  Napi::Object o = as_object(env, v, fn + ": options");
  Napi::Value t = o.Get("threads");
  if (!t.IsUndefined()) {
    if (!t.IsNumber()) type_error(env, fn + ": options.threads must be a number");
    const double d = t.As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= 256) || d != floor(d))
      range_error(env, fn + ": options.threads must be an integer in [0, 256] (0 = all hardware threads), got " + num(d));
    cfg.threads = (int)d;
  }
  Napi::Value nv = o.Get("norms");
  if (!nv.IsUndefined()) {
    if (!nv.IsBoolean()) type_error(env, fn + ": options.norms must be a boolean");
    cfg.norms = nv.As<Napi::Boolean>().Value();
  }
  return cfg;
}

cpu::protocol::Geometry parse_geometry(Napi::Env env, Napi::Value v, const std::string& what) {
  Napi::Object o = as_object(env, v, what);
  cpu::protocol::Geometry g;
  g.outer = get_count(env, o, "outer", what);
  g.channels = get_count(env, o, "channels", what);
  g.inner = get_count(env, o, "inner", what);
  g.eligible = get_bool(env, o, "eligible", what);
  g.numel = get_count(env, o, "numel", what);
  const double product = (double)g.outer * (double)g.channels * (double)g.inner;
  if (product != (double)g.numel)
    range_error(env, what + ": outer * channels * inner = " + num(product) + " does not match numel = " + std::to_string(g.numel));
  return g;
}

const double* parse_f64(Napi::Env env, Napi::Value v, const std::string& what, size_t* length) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    type_error(env, what + " must be a Float64Array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.ArrayBuffer().IsDetached()) type_error(env, what + " is backed by a detached ArrayBuffer");
  *length = ta.ElementLength();
  return reinterpret_cast<const double*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

int64_t parse_index(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsNumber()) type_error(env, what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != floor(d) || d > kMaxSafeInteger) range_error(env, what + " must be a non-negative integer (got " + num(d) + ")");
  return (int64_t)d;
}

}  // namespace binding
}  // namespace adamp
