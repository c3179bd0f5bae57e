// Turning JavaScript arguments into the CPU core's POD structs, with every check the core relies
// on, for any optimizer of the registry (the kind string picks the policy; its kSlots, its
// kHyperCount and its check() drive the checks). Errors are TypeError / RangeError whose message
// names the export, the slot and the field, with `code: 'ERR_ADAMP_INVALID_ARGUMENT'`; nothing
// here crashes on bad input, and nothing is changed when it throws.
#ifndef ADAMP_BINDING_PARSE_H
#define ADAMP_BINDING_PARSE_H

#include <napi.h>

#include <string>
#include <vector>

#include "../cpu/step.h"

namespace adamp {
namespace binding {

/** The `code` of every argument error. */
extern const char* const kInvalidArgument;

[[noreturn]] void type_error(Napi::Env env, const std::string& msg);
[[noreturn]] void range_error(Napi::Env env, const std::string& msg);

/** Parsed slots plus the typed arrays they point into (kept alive by async steps). */
struct ParsedSlots {
  std::vector<cpu::TensorSlot> slots;
  std::vector<Napi::Value> arrays;  // every typed array seen, for references
};

/** A registered kind name ('adamp'); `what` names the argument in messages ("step: kind"). */
OptKind parse_kind(Napi::Env env, Napi::Value v, const std::string& what);

/** A Float64Array of exactly the policy's kHyperCount values that pass its check(); copied. */
std::vector<double> parse_hyper(Napi::Env env, OptKind kind, Napi::Value v, const std::string& what);

/**
 * One slot { p, g, state: Float32Array[kSlots], outer, channels, inner, eligible, step }: the arrays
 * the same length (outer * channels * inner), not overlapping; step an integer >= 1. `what` names
 * it ("step: slots[2]"); its typed arrays are appended to `arrays`.
 */
cpu::TensorSlot parse_slot(Napi::Env env, OptKind kind, Napi::Value v, const std::string& what,
                           std::vector<Napi::Value>& arrays);

/** An array of slots; `fn` names the export. */
ParsedSlots parse_slots(Napi::Env env, OptKind kind, Napi::Value slots, const std::string& fn);

/** A Float64Array of at least `count * 8` elements. */
double* parse_info(Napi::Env env, Napi::Value info, size_t count, const std::string& fn);

/** The options of a step: { threads?: integer in [0, 256], norms?: boolean }. */
cpu::StepConfig parse_step_options(Napi::Env env, Napi::Value v, const std::string& fn);

/** { outer, channels, inner, eligible, numel } with numel == outer * channels * inner. */
cpu::protocol::Geometry parse_geometry(Napi::Env env, Napi::Value v, const std::string& what);

/** A Float64Array (not detached): its data and length. */
const double* parse_f64(Napi::Env env, Napi::Value v, const std::string& what, size_t* length);

/** A non-negative integer (a unit index, an offset). */
int64_t parse_index(Napi::Env env, Napi::Value v, const std::string& what);

}  // namespace binding
}  // namespace adamp

#endif  // ADAMP_BINDING_PARSE_H
