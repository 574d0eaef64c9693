/*
 * decay: entry points and the scalar primitive table (the spec every SIMD
 * level must match).
 */
#include "engram.h"

const engram_decay_ops engram_decay_ops_scalar = {
    .level = "scalar",
};
