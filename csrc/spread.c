/*
 * spread: entry points and the scalar primitive table (the spec every SIMD
 * level must match).
 */
#include "engram.h"

const engram_spread_ops engram_spread_ops_scalar = {
    .level = "scalar",
};
