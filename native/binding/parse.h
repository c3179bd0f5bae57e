// Turning JavaScript arguments into the CPU core's POD structs, with every check the core relies
// on, for any optimizer of the registry (the kind string picks the policy; its kSlots, its
// kHyperCount and its check() drive the checks). Errors are TypeError / RangeError whose message
// names the export, the slot and the field, with `code: 'ERR_ADAMP_INVALID_ARGUMENT'`; nothing
// here crashes on bad input, and nothing is changed when it throws.
//
// Two phases. Reading an argument can run the caller's code (a getter on a slot object, an
// accessor on an array element, a Proxy) and that code can detach, transfer or resize a typed
// array read before it. So every export first *reads* all of its arguments (read_*: the JS values
// and numbers, kept as handles) and only then *binds* them (bind_*: detached checks, lengths,
// addresses, overlaps), which runs no JavaScript: no address is taken while the caller's code can
// still run, and nothing runs between binding and the step.
#ifndef ADAMP_BINDING_PARSE_H
#define ADAMP_BINDING_PARSE_H

#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "../cpu/step.h"

namespace adamp {
namespace binding {

/** The `code` of every argument error. */
extern const char* const kInvalidArgument;

[[noreturn]] void type_error(Napi::Env env, const std::string& msg);
[[noreturn]] void range_error(Napi::Env env, const std::string& msg);

/** The address of a typed array's first element, on an ArrayBuffer or a SharedArrayBuffer. */
void* typed_data(Napi::TypedArray ta);

/** A registered kind name ('adamp'); `what` names the argument in messages ("step: kind"). */
OptKind parse_kind(Napi::Env env, Napi::Value v, const std::string& what);

/** A Float64Array of exactly the policy's kHyperCount values that pass its check(); copied at once (no address is kept). */
std::vector<double> parse_hyper(Napi::Env env, OptKind kind, Napi::Value v, const std::string& what);

/** A slot's 16-bit storage as read (`half` of lib/binding/types.ts AddonSlot). */
struct HalfArgs {
  int dtype = 0;  // 1 bfloat16, 2 float16
  Napi::TypedArray p16, g16;
  bool has_g16 = false;
  bool scaled = false;
  float inv_scale = 1.0f;
  bool stochastic = false;
  uint32_t key = 0;
};

/** One slot as read: its arrays (type-checked handles) and its numbers. */
struct SlotArgs {
  std::string what;  // "step: slots[2]"
  Napi::TypedArray p, g;  // p: float32 (the master of a 16-bit slot); either may be absent (has_p, has_g) on a 16-bit slot
  bool has_p = true, has_g = true;
  bool has_half = false;
  HalfArgs half;
  std::vector<Napi::TypedArray> state;
  int64_t outer = 0, channels = 0, inner = 0;
  bool eligible = false;
  double step = 0;
};

/**
 * Reads one slot { p, g, state: Float32Array[kSlots], outer, channels, inner, eligible, step,
 * half? }: types, counts, step an integer >= 1. `geometry` false: outer/channels/inner are not
 * read (a shard's geometry is the whole tensor's, read apart). A 16-bit slot has `half: { dtype,
 * p16, g16?, invScale?, key? }`; then p is the float32 master or null (no master weights) and g is
 * a float32 grad or null (exactly one of g and half.g16).
 */
SlotArgs read_slot(Napi::Env env, OptKind kind, Napi::Value v, const std::string& what, bool geometry = true);

/**
 * Binds a slot read by read_slot: no array detached, all the same length, (with `geometry`)
 * outer * channels * inner == that length, no two overlapping. Runs no JavaScript. A 16-bit
 * slot's HalfSlot is appended to `halves` (which must outlive the step; TensorSlot::half points
 * into it).
 */
using HalfHold = std::vector<std::unique_ptr<cpu::HalfSlot>>;
cpu::TensorSlot bind_slot(Napi::Env env, OptKind kind, const SlotArgs& s, HalfHold& halves, bool geometry = true);

/** An array of slots, read; `fn` names the export. */
std::vector<SlotArgs> read_slots(Napi::Env env, OptKind kind, Napi::Value slots, const std::string& fn);

/** A typed array argument of a given type, read (type-checked) and bound later. */
struct ArrayArg {
  std::string what;
  Napi::TypedArray ta;
};

/** A Float64Array argument (type only; bind_f64 checks the rest). */
ArrayArg read_f64(Napi::Env env, Napi::Value v, const std::string& what);

/** A read Float64Array, bound: not detached; its data and length. Runs no JavaScript. */
double* bind_f64(Napi::Env env, const ArrayArg& a, size_t* length);

/** The info record of `count` slots: a bound Float64Array of at least `count * 8` elements. */
double* bind_info(Napi::Env env, const ArrayArg& a, size_t count, const std::string& fn);

/** The options of a step: { threads?: integer in [0, 256], norms?: boolean }. */
cpu::StepConfig parse_step_options(Napi::Env env, Napi::Value v, const std::string& fn);

/** { outer, channels, inner, eligible, numel } with numel == outer * channels * inner. */
cpu::protocol::Geometry parse_geometry(Napi::Env env, Napi::Value v, const std::string& what);

/** A non-negative integer (a unit index, an offset). */
int64_t parse_index(Napi::Env env, Napi::Value v, const std::string& what);

/**
 * Every typed array handle of the slots, in order (p, g, state..., p16, g16): what an async step
 * keeps references to.
 */
void collect_arrays(const std::vector<SlotArgs>& slots, std::vector<Napi::TypedArray>& out);

}  // namespace binding
}  // namespace adamp

#endif  // ADAMP_BINDING_PARSE_H
