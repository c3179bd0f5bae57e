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

/** A typed array of `type` (phase 1: its type only); `name` is what messages call it. */
Napi::TypedArray as_typed(Napi::Env env, Napi::Value v, napi_typedarray_type type, const char* type_name, const std::string& name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) type_error(env, name + " must be a " + type_name);
  return v.As<Napi::TypedArray>();
}

/** Phase 2: the array's current element count and address; refuses a detached buffer. Runs no JavaScript. */
void* bound(Napi::Env env, Napi::TypedArray ta, const std::string& name, size_t* length) {
  napi_typedarray_type type;
  size_t n = 0, offset = 0;
  void* data = nullptr;
  napi_value buffer;
  if (napi_get_typedarray_info(env, ta, &type, &n, &data, &buffer, &offset) != napi_ok)
    type_error(env, name + ": its memory could not be read");
  bool detached = false;
  // A SharedArrayBuffer cannot be detached (and napi_is_detached_arraybuffer says false for it).
  if (napi_is_detached_arraybuffer(env, buffer, &detached) == napi_ok && detached)
    type_error(env, name + " is backed by a detached ArrayBuffer (transferred or resized away)");
  *length = n;
  return data;
}

/**
 * Geometry checks shared by slots and the protocol: the product is `numel`, and an empty tensor has
 * at most one row (outer * channels <= 1), so no geometry of zero elements makes the core walk
 * billions of empty units.
 */
void check_geometry(Napi::Env env, int64_t outer, int64_t channels, int64_t inner, int64_t numel, const std::string& what,
                    const char* numel_name) {
  const double product = (double)outer * (double)channels * (double)inner;
  if (product != (double)numel)
    range_error(env, what + ": outer * channels * inner = " + num(product) + " does not match " + numel_name + " = " +
                         std::to_string(numel));
  if (numel == 0 && (double)outer * (double)channels > 1)
    range_error(env, what + ": outer * channels = " + num((double)outer * (double)channels) +
                         " rows for an empty tensor; an empty tensor has at most one row (e.g. outer 1, channels 1, inner 0)");
}

}  // namespace

void* typed_data(Napi::TypedArray ta) {
  // napi_get_typedarray_info gives the first element's address for arrays on an ArrayBuffer and on
  // a SharedArrayBuffer alike (Napi::ArrayBuffer::Data() refuses the latter).
  napi_typedarray_type type;
  size_t length = 0, offset = 0;
  void* data = nullptr;
  napi_value buffer;
  if (napi_get_typedarray_info(ta.Env(), ta, &type, &length, &data, &buffer, &offset) != napi_ok)
    type_error(ta.Env(), "adamp: could not read a typed array's memory");
  return data;
}

OptKind parse_kind(Napi::Env env, Napi::Value v, const std::string& what) {
  OptKind kind;
  if (v.IsString() && cpu::kind_from_name(v.As<Napi::String>().Utf8Value().c_str(), &kind)) return kind;
  std::string names;
  for (const cpu::KindInfo& k : cpu::kinds()) names += (names.empty() ? "'" : ", '") + std::string(k.name) + "'";
  type_error(env, what + " must be one of " + names);
}

std::vector<double> parse_hyper(Napi::Env env, OptKind kind, Napi::Value v, const std::string& what) {
  const cpu::KindInfo& k = cpu::kinds()[(size_t)kind];
  Napi::TypedArray ta = as_typed(env, v, napi_float64_array, "Float64Array", what);
  size_t n = 0;
  const double* d = static_cast<const double*>(bound(env, ta, what, &n));
  if (n != (size_t)k.hyper_count) {
    std::string names;
    for (int i = 0; i < k.hyper_count; ++i) names += (i ? ", " : "") + std::string(cpu::hyper_name(kind, i));
    range_error(env, what + " has " + std::to_string(n) + " values; " + k.name + " takes " + std::to_string(k.hyper_count) + " (" +
                         names + ")");
  }
  std::vector<double> h(d, d + k.hyper_count);  // copied now: no address of it is kept
  int field = -1;
  const char* bad = cpu::check_hyper(kind, h.data(), &field);
  if (bad != nullptr)
    range_error(env, what + "[" + std::to_string(field) + "] (" + cpu::hyper_name(kind, field) + ") " + bad + " (got " +
                         num(h[(size_t)(field >= 0 ? field : 0)]) + ")");
  return h;
}

SlotArgs read_slot(Napi::Env env, OptKind kind, Napi::Value v, const std::string& what, bool geometry) {
  const int nslots = cpu::kinds()[(size_t)kind].slots;
  SlotArgs s;
  s.what = what;
  Napi::Object o = as_object(env, v, what);
  Napi::Value hv = o.Get("half");
  s.has_half = !hv.IsUndefined() && !hv.IsNull();
  Napi::Value pv = o.Get("p"), gv = o.Get("g");
  if (s.has_half) {
    // A 16-bit slot: p is its float32 master or null, g a float32 grad or null.
    const std::string hw = what + ".half";
    Napi::Object ho = as_object(env, hv, hw);
    Napi::Value dv = ho.Get("dtype");
    const std::string dt = dv.IsString() ? dv.As<Napi::String>().Utf8Value() : "";
    if (dt == "bfloat16")
      s.half.dtype = 1;
    else if (dt == "float16")
      s.half.dtype = 2;
    else
      type_error(env, hw + ".dtype must be 'bfloat16' or 'float16'");
    s.half.p16 = as_typed(env, ho.Get("p16"), napi_uint16_array, "Uint16Array", hw + ".p16");
    Napi::Value g16 = ho.Get("g16");
    s.half.has_g16 = !g16.IsUndefined() && !g16.IsNull();
    if (s.half.has_g16) s.half.g16 = as_typed(env, g16, napi_uint16_array, "Uint16Array", hw + ".g16");
    Napi::Value iv = ho.Get("invScale");
    if (!iv.IsUndefined()) {
      if (!iv.IsNumber()) type_error(env, hw + ".invScale must be a number");
      const double d = iv.As<Napi::Number>().DoubleValue();
      if (!(d > 0) || !(d <= 3.4028234663852886e38) || (double)(float)d != d)
        range_error(env, hw + ".invScale must be a finite float32 value > 0 (got " + num(d) + ")");
      s.half.scaled = true;
      s.half.inv_scale = (float)d;
    }
    Napi::Value kv = ho.Get("key");
    if (!kv.IsUndefined()) {
      if (!kv.IsNumber()) type_error(env, hw + ".key must be a number");
      const double d = kv.As<Napi::Number>().DoubleValue();
      if (!(d >= 0 && d <= 4294967295.0) || d != floor(d))
        range_error(env, hw + ".key must be an integer in [0, 2^32) (got " + num(d) + ")");
      if (s.half.dtype != 1) range_error(env, hw + ".key (stochastic rounding) is for bfloat16 only");
      s.half.stochastic = true;
      s.half.key = (uint32_t)d;
    }
    s.has_p = !pv.IsNull() && !pv.IsUndefined();
    s.has_g = !gv.IsNull() && !gv.IsUndefined();
    if (s.has_g == s.half.has_g16)
      type_error(env, what + ": a 16-bit slot needs exactly one grad, g (Float32Array) or half.g16 (Uint16Array)");
  }
  if (s.has_p) s.p = as_typed(env, pv, napi_float32_array, "Float32Array", what + ".p");
  if (s.has_g) s.g = as_typed(env, gv, napi_float32_array, "Float32Array", what + ".g");
  Napi::Value sv = o.Get("state");
  if (!sv.IsArray()) type_error(env, what + ".state must be an array of " + std::to_string(nslots) + " Float32Array");
  Napi::Array sa = sv.As<Napi::Array>();
  if (sa.Length() != (uint32_t)nslots)
    range_error(env, what + ".state has " + std::to_string(sa.Length()) + " arrays; " + cpu::kinds()[(size_t)kind].name + " keeps " +
                         std::to_string(nslots));
  for (int k = 0; k < nslots; ++k)
    s.state.push_back(as_typed(env, sa.Get((uint32_t)k), napi_float32_array, "Float32Array", what + ".state[" + std::to_string(k) + "]"));
  if (geometry) {
    s.outer = get_count(env, o, "outer", what);
    s.channels = get_count(env, o, "channels", what);
    s.inner = get_count(env, o, "inner", what);
  }
  s.eligible = get_bool(env, o, "eligible", what);
  s.step = get_number(env, o, "step", what);
  if (!(s.step >= 1) || s.step != floor(s.step) || s.step > kMaxSafeInteger)
    range_error(env, what + ".step must be an integer >= 1 (the count after this step's increment), got " + num(s.step));
  return s;
}

cpu::TensorSlot bind_slot(Napi::Env env, OptKind kind, const SlotArgs& a, HalfHold& halves, bool geometry) {
  const int nslots = cpu::kinds()[(size_t)kind].slots;
  const std::string& what = a.what;
  cpu::TensorSlot s;
  s.state[0] = s.state[1] = nullptr;
  s.p = nullptr;
  s.g = nullptr;
  size_t n = 0, m = 0;
  // The element count: p16's for a 16-bit slot, else p's; every other array must match it.
  uint16_t* p16 = nullptr;
  const uint16_t* g16 = nullptr;
  std::string first = "p";
  if (a.has_half) {
    p16 = static_cast<uint16_t*>(bound(env, a.half.p16, what + ".half.p16", &n));
    first = "half.p16";
  }
  auto same = [&](const std::string& name, size_t len) {
    if (len != n) range_error(env, what + "." + name + " has " + std::to_string(len) + " elements but " + first + " has " + std::to_string(n));
  };
  if (a.has_p) {
    s.p = static_cast<float*>(bound(env, a.p, what + ".p", a.has_half ? &m : &n));
    if (a.has_half) same("p", m);
  }
  if (a.has_g) {
    s.g = static_cast<float*>(bound(env, a.g, what + ".g", &m));
    same("g", m);
  }
  if (a.has_half && a.half.has_g16) {
    g16 = static_cast<const uint16_t*>(bound(env, a.half.g16, what + ".half.g16", &m));
    same("half.g16", m);
  }
  for (int k = 0; k < nslots; ++k) {
    const std::string name = "state[" + std::to_string(k) + "]";
    s.state[k] = static_cast<float*>(bound(env, a.state[(size_t)k], what + "." + name, &m));
    same(name, m);
  }
  s.numel = (int64_t)n;
  if (n > 0) {
    // p, p16 and the state are written, g and g16 are read: no two may share memory.
    struct Range {
      const void* at;
      size_t bytes;
      std::string name;
    };
    std::vector<Range> ranges;
    if (s.p != nullptr) ranges.push_back({s.p, n * 4, "p"});
    if (s.g != nullptr) ranges.push_back({s.g, n * 4, "g"});
    for (int k = 0; k < nslots; ++k) ranges.push_back({s.state[k], n * 4, "state[" + std::to_string(k) + "]"});
    if (p16 != nullptr) ranges.push_back({p16, n * 2, "half.p16"});
    if (g16 != nullptr) ranges.push_back({g16, n * 2, "half.g16"});
    for (size_t x = 0; x < ranges.size(); ++x)
      for (size_t y = x + 1; y < ranges.size(); ++y) {
        const uintptr_t u = (uintptr_t)ranges[x].at, v = (uintptr_t)ranges[y].at;
        if (u < v + ranges[y].bytes && v < u + ranges[x].bytes)
          range_error(env, what + ": " + ranges[x].name + " and " + ranges[y].name +
                               " overlap; p, g, the state and the 16-bit arrays must be distinct arrays");
      }
  }
  if (a.has_half) {
    std::unique_ptr<cpu::HalfSlot> h(new cpu::HalfSlot());
    h->dtype = a.half.dtype;
    h->p16 = p16;
    h->g16 = g16;
    h->master = s.p != nullptr;
    h->scaled = a.half.scaled;
    h->inv_scale = a.half.inv_scale;
    h->stochastic = a.half.stochastic;
    h->key = a.half.key;
    s.half = h.get();
    halves.push_back(std::move(h));
  }
  s.outer = a.outer;
  s.channels = a.channels;
  s.inner = a.inner;
  if (geometry) check_geometry(env, s.outer, s.channels, s.inner, s.numel, what, a.has_half ? "half.p16.length" : "p.length");
  s.eligible = a.eligible;
  s.step = a.step;
  return s;
}

std::vector<SlotArgs> read_slots(Napi::Env env, OptKind kind, Napi::Value slots, const std::string& fn) {
  if (!slots.IsArray()) type_error(env, fn + ": slots must be an array");
  Napi::Array arr = slots.As<Napi::Array>();
  std::vector<SlotArgs> out;
  // Not reserved from the length: a sparse array may claim 2^32 - 1 elements (its first hole fails).
  for (uint32_t j = 0; j < arr.Length(); ++j) out.push_back(read_slot(env, kind, arr.Get(j), fn + ": slots[" + std::to_string(j) + "]"));
  return out;
}

ArrayArg read_f64(Napi::Env env, Napi::Value v, const std::string& what) {
  return ArrayArg{what, as_typed(env, v, napi_float64_array, "Float64Array", what)};
}

double* bind_f64(Napi::Env env, const ArrayArg& a, size_t* length) { return static_cast<double*>(bound(env, a.ta, a.what, length)); }

double* bind_info(Napi::Env env, const ArrayArg& a, size_t count, const std::string& fn) {
  size_t n = 0;
  double* d = bind_f64(env, a, &n);
  if (n / kInfoStride < count)
    range_error(env, fn + ": info has " + std::to_string(n) + " elements, needs " + std::to_string(count * kInfoStride) + " (8 per slot)");
  return d;
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
  check_geometry(env, g.outer, g.channels, g.inner, g.numel, what, "numel");
  return g;
}

int64_t parse_index(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsNumber()) type_error(env, what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != floor(d) || d > kMaxSafeInteger) range_error(env, what + " must be a non-negative integer (got " + num(d) + ")");
  return (int64_t)d;
}

void collect_arrays(const std::vector<SlotArgs>& slots, std::vector<Napi::TypedArray>& out) {
  for (const SlotArgs& s : slots) {
    if (s.has_p) out.push_back(s.p);
    if (s.has_g) out.push_back(s.g);
    for (const Napi::TypedArray& t : s.state) out.push_back(t);
    if (s.has_half) {
      out.push_back(s.half.p16);
      if (s.half.has_g16) out.push_back(s.half.g16);
    }
  }
}

}  // namespace binding
}  // namespace adamp
