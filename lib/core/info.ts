/**
 * The info record every engine writes per tensor and step: 8 doubles, the same layout as
 * `adamp::InfoField` in native/include/adamp/math.h. The facade turns them into `lastStepInfo`.
 */

/** Doubles written per slot into the info array. */
export const INFO_STRIDE = 8;

/** Offsets within one slot's info record. */
export const Info = {
  /** Decision code, see `Decision`. */
  decision: 0,
  /** max |cos| over channels (NaN when not evaluated). */
  channelMaxCos: 1,
  /** float32 threshold of the channel view (NaN when not evaluated). */
  channelThreshold: 2,
  /** |cos| of the layer view (NaN when not evaluated). */
  layerCos: 3,
  /** float32 threshold of the layer view (NaN when not evaluated). */
  layerThreshold: 4,
  /** ||p||^2 before the step (NaN when not computed). */
  normSqBefore: 5,
  /** ||p||^2 after the step (NaN when not computed). */
  normSqAfter: 6,
  /** ||p_after - p_before||^2 (NaN when not computed). */
  deltaSq: 7,
} as const;

/** Decision codes in `info[decision]`. `notApplicable`: the optimizer has no projection (AdamW, SGD). */
export const Decision = { none: 0, channel: 1, layer: 2, notEligible: 3, notApplicable: 4 } as const;
