/*
 * similarity: entry points and the scalar primitive table (the spec every SIMD
 * level must match).
 */
#include "engram.h"

const engram_similarity_ops engram_similarity_ops_scalar = {
    .level = "scalar",
};
