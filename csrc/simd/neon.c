/*
 * neon primitives of every kernel, compiled with this level's -m flags only.
 * Each section fills that kernel's table; the scalar version in csrc/<kernel>.c is the spec.
 */
#include "../engram.h"

/* ==== similarity ==== */

const engram_similarity_ops engram_similarity_ops_neon = {
    .level = "neon",
};

/* ==== end similarity ==== */

/* ==== spread ==== */

#include <arm_neon.h>

/*
 * NEON has no gather, so a dense hop's random pulse loads are scalar loads
 * either way: the hops use the scalar spec.  The seed scans are streaming
 * compares and run 4 (or 2) lanes at a time.
 */

static inline uint32_t spread_ok_all_f32x4(float32x4_t v) {
    /* finite and >= 0: false for NaN, negatives and infinities */
    const uint32x4_t ok = vandq_u32(vcgeq_f32(v, vdupq_n_f32(0.0f)),
                                    vcleq_f32(v, vdupq_n_f32(3.40282346638528859812e+38f)));
    return vminvq_u32(ok);
}

static inline uint64_t spread_ok_all_f64x2(float64x2_t v) {
    const uint64x2_t ok = vandq_u64(vcgeq_f64(v, vdupq_n_f64(0.0)),
                                    vcleq_f64(v, vdupq_n_f64(1.79769313486231570815e+308)));
    return vgetq_lane_u64(ok, 0) & vgetq_lane_u64(ok, 1);
}

static size_t select_f32_neon(const float *s, size_t n, float threshold, float *out, int64_t *ids,
                              size_t *count) {
    const float32x4_t zero = vdupq_n_f32(0.0f), t = vdupq_n_f32(threshold);
    size_t k = *count, i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(s + i);
        if (!spread_ok_all_f32x4(v)) break;
        vst1q_f32(out + i, v);
        const uint32x4_t sel = vandq_u32(vcgtq_f32(v, zero), vcgeq_f32(v, t));
        if (vmaxvq_u32(sel)) {
            if (vgetq_lane_u32(sel, 0)) ids[k++] = (int64_t)i;
            if (vgetq_lane_u32(sel, 1)) ids[k++] = (int64_t)(i + 1);
            if (vgetq_lane_u32(sel, 2)) ids[k++] = (int64_t)(i + 2);
            if (vgetq_lane_u32(sel, 3)) ids[k++] = (int64_t)(i + 3);
        }
    }
    *count = k;
    const size_t rest = engram_spread_select_f32_scalar(s + i, n - i, threshold, out + i, ids, count);
    for (size_t j = k; j < *count; j++) ids[j] += (int64_t)i;
    return i + rest;
}

static size_t select_f64_neon(const double *s, size_t n, double threshold, float *out, int64_t *ids,
                              size_t *count) {
    const float64x2_t zero = vdupq_n_f64(0.0), t = vdupq_n_f64(threshold);
    size_t k = *count, i = 0;
    for (; i + 2 <= n; i += 2) {
        const float64x2_t v = vld1q_f64(s + i);
        if (!spread_ok_all_f64x2(v)) break;
        vst1_f32(out + i, vcvt_f32_f64(v));
        const uint64x2_t sel = vandq_u64(vcgtq_f64(v, zero), vcgeq_f64(v, t));
        if (vgetq_lane_u64(sel, 0)) ids[k++] = (int64_t)i;
        if (vgetq_lane_u64(sel, 1)) ids[k++] = (int64_t)(i + 1);
    }
    *count = k;
    const size_t rest = engram_spread_select_f64_scalar(s + i, n - i, threshold, out + i, ids, count);
    for (size_t j = k; j < *count; j++) ids[j] += (int64_t)i;
    return i + rest;
}

static size_t first_bad_f32_neon(const float *s, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        if (!(spread_ok_all_f32x4(vld1q_f32(s + i)) & spread_ok_all_f32x4(vld1q_f32(s + i + 4)) &
              spread_ok_all_f32x4(vld1q_f32(s + i + 8)) & spread_ok_all_f32x4(vld1q_f32(s + i + 12))))
            break;
    }
    return i + engram_spread_first_bad_f32_scalar(s + i, n - i);
}

static size_t first_bad_f64_neon(const double *s, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        if (!(spread_ok_all_f64x2(vld1q_f64(s + i)) & spread_ok_all_f64x2(vld1q_f64(s + i + 2)) &
              spread_ok_all_f64x2(vld1q_f64(s + i + 4)) & spread_ok_all_f64x2(vld1q_f64(s + i + 6))))
            break;
    }
    return i + engram_spread_first_bad_f64_scalar(s + i, n - i);
}

const engram_spread_ops engram_spread_ops_neon = {
    .level = "neon",
    .hop = {{engram_spread_hop_sum_unweighted_scalar, engram_spread_hop_sum_f32_scalar,
             engram_spread_hop_sum_f64_scalar},
            {engram_spread_hop_max_unweighted_scalar, engram_spread_hop_max_f32_scalar,
             engram_spread_hop_max_f64_scalar}},
    .accumulate = {{engram_spread_accumulate_sum_unweighted_scalar, engram_spread_accumulate_sum_f32_scalar,
                    engram_spread_accumulate_sum_f64_scalar},
                   {engram_spread_accumulate_max_unweighted_scalar, engram_spread_accumulate_max_f32_scalar,
                    engram_spread_accumulate_max_f64_scalar}},
    .classify = engram_spread_classify_scalar,
    .select_f32 = select_f32_neon,
    .select_f64 = select_f64_neon,
    .first_bad_f32 = first_bad_f32_neon,
    .first_bad_f64 = first_bad_f64_neon,
};

/* ==== end spread ==== */

/* ==== decay ==== */

const engram_decay_ops engram_decay_ops_neon = {
    .level = "neon",
};

/* ==== end decay ==== */

