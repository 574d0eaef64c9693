/*
 * avx2 primitives of every kernel, compiled with this level's -m flags only.
 * Each section fills that kernel's table; the scalar version in csrc/<kernel>.c is the spec.
 */
#include "../engram.h"

/* ==== similarity ==== */

const engram_similarity_ops engram_similarity_ops_avx2 = {
    .level = "avx2",
};

/* ==== end similarity ==== */

/* ==== spread ==== */

const engram_spread_ops engram_spread_ops_avx2 = {
    .level = "avx2",
    .hop = {{engram_spread_hop_sum_unweighted_scalar, engram_spread_hop_sum_f32_scalar,
             engram_spread_hop_sum_f64_scalar},
            {engram_spread_hop_max_unweighted_scalar, engram_spread_hop_max_f32_scalar,
             engram_spread_hop_max_f64_scalar}},
    .select_f32 = engram_spread_select_f32_scalar,
    .select_f64 = engram_spread_select_f64_scalar,
    .first_bad_f32 = engram_spread_first_bad_f32_scalar,
    .first_bad_f64 = engram_spread_first_bad_f64_scalar,
};

/* ==== end spread ==== */

/* ==== decay ==== */

const engram_decay_ops engram_decay_ops_avx2 = {
    .level = "avx2",
};

/* ==== end decay ==== */

