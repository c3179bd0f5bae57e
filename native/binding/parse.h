// Turning JavaScript arguments into the CPU core's POD structs, with every check the core relies
// on. Errors are Napi::Error (TypeError / RangeError) whose message names the argument, the
// slot and the problem; nothing here crashes on bad input.
#ifndef ADAMP_BINDING_PARSE_H
#define ADAMP_BINDING_PARSE_H

#include <napi.h>

#include <string>
#include <vector>

#include "../cpu/step.h"

namespace adamp {
namespace binding {

/** Parsed slots plus the typed arrays they point into (kept alive by async steps). */
struct ParsedSlots {
  std::vector<cpu::TensorSlot> slots;
  std::vector<Napi::Value> arrays;  // every Float32Array seen, for references
};

enum class Kind { AdamP, SGDP, Adam, SGD };

/**
 * `slots` must be an array of { p, g, m, v, outer, channels, inner, eligible, step }.
 * `fn` names the export in messages.
 */
ParsedSlots parse_slots(Napi::Env env, Napi::Value slots, Kind kind, const std::string& fn);
cpu::AdamPHyper parse_adamp_hyper(Napi::Env env, Napi::Value hp, const std::string& fn);
cpu::SGDPHyper parse_sgdp_hyper(Napi::Env env, Napi::Value hp, const std::string& fn);
cpu::AdamHyper parse_adam_hyper(Napi::Env env, Napi::Value hp, const std::string& fn);
cpu::SGDHyper parse_sgd_hyper(Napi::Env env, Napi::Value hp, const std::string& fn);
/** A Float64Array of at least `count * 8` elements. */
double* parse_info(Napi::Env env, Napi::Value info, size_t count, const std::string& fn);
/** undefined -> 0 (all hardware threads); otherwise an integer in [0, 256]. */
int parse_threads(Napi::Env env, Napi::Value threads, const std::string& fn);

}  // namespace binding
}  // namespace adamp

#endif  // ADAMP_BINDING_PARSE_H
