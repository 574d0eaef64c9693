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

const engram_spread_ops engram_spread_ops_neon = {
    .level = "neon",
};

/* ==== end spread ==== */

/* ==== decay ==== */

#include <arm_neon.h>
#include <math.h>

#include "../decay_internal.h"

/*
 * Same schemes as the x86 sections (the driver hands over whole vectors
 * of 16), in 4 float32 / 2 float64 lanes.  NEON's min/max propagate NaN
 * and subnormals cost no assist, but the lanes take the same paths as on
 * x86 so every level gives the same float32 exponential bits.
 */
#define DECAYN_AGE_BROADCAST 4
#define DECAYN_INLINE static inline __attribute__((always_inline))

DECAYN_INLINE uint64x2_t decayn_not_u64(uint64x2_t x) {
    return vreinterpretq_u64_u32(vmvnq_u32(vreinterpretq_u32_u64(x)));
}

/* u64 lanes to float32 with one correct rounding (round to odd at 53 bits
 * first: the double is then exact and 53 >= 24 + 2). */
DECAYN_INLINE float64x2_t decayn_u64_to_f64_odd(uint64x2_t v) {
    const uint64x2_t low_bits = vdupq_n_u64(0x7ff);
    uint64x2_t small = vceqq_u64(vshrq_n_u64(v, 53), vdupq_n_u64(0));
    uint64x2_t sticky = vbicq_u64(vdupq_n_u64(0x800), vceqq_u64(vandq_u64(v, low_bits), vdupq_n_u64(0)));
    uint64x2_t odd = vorrq_u64(vbicq_u64(v, low_bits), sticky);
    return vcvtq_f64_u64(vbslq_u64(small, v, odd));
}

DECAYN_INLINE float32x2_t decayn_u64_to_f32(uint64x2_t v) {
    return vcvt_f32_f64(decayn_u64_to_f64_odd(v));
}

DECAYN_INLINE float32x2_t decayn_i64_to_f32(int64x2_t v) {
    uint64x2_t neg = vcltzq_s64(v);
    float64x2_t d = decayn_u64_to_f64_odd(vreinterpretq_u64_s64(vabsq_s64(v)));
    d = vreinterpretq_f64_u64(vorrq_u64(vreinterpretq_u64_f64(d),
                                        vandq_u64(neg, vdupq_n_u64(0x8000000000000000ull))));
    return vcvt_f32_f64(d);
}

/* 4 ages from index i as float32. */
DECAYN_INLINE float32x4_t decayn_ages_f32(const void *age, size_t i, int type, float broadcast) {
    switch (type) {
        case ENGRAM_DECAY_F32: return vld1q_f32((const float *)age + i);
        case ENGRAM_DECAY_F64: {
            const double *d = (const double *)age + i;
            return vcvt_high_f32_f64(vcvt_f32_f64(vld1q_f64(d)), vld1q_f64(d + 2));
        }
        case ENGRAM_DECAY_I64: {
            const int64_t *v = (const int64_t *)age + i;
            return vcombine_f32(decayn_i64_to_f32(vld1q_s64(v)), decayn_i64_to_f32(vld1q_s64(v + 2)));
        }
        case ENGRAM_DECAY_U64: {
            const uint64_t *v = (const uint64_t *)age + i;
            return vcombine_f32(decayn_u64_to_f32(vld1q_u64(v)), decayn_u64_to_f32(vld1q_u64(v + 2)));
        }
        default: return vdupq_n_f32(broadcast);
    }
}

/* 2 ages from index i as float64 (scvtf/ucvtf round to nearest). */
DECAYN_INLINE float64x2_t decayn_ages_f64(const void *age, size_t i, int type, double broadcast) {
    switch (type) {
        case ENGRAM_DECAY_F32: return vcvt_f64_f32(vld1_f32((const float *)age + i));
        case ENGRAM_DECAY_F64: return vld1q_f64((const double *)age + i);
        case ENGRAM_DECAY_I64: return vcvtq_f64_s64(vld1q_s64((const int64_t *)age + i));
        case ENGRAM_DECAY_U64: return vcvtq_f64_u64(vld1q_u64((const uint64_t *)age + i));
        default: return vdupq_n_f64(broadcast);
    }
}

/* ---- float32 exponential ---- */

/* q = exp(-w) - 1; *k_out holds n in its low mantissa bits. */
DECAYN_INLINE float32x4_t decayn_exp_q_f32(float32x4_t y, float32x4_t *k_out) {
    const float32x4_t shifter = vdupq_n_f32(DECAY_F32_SHIFTER);
    float32x4_t k = vfmsq_f32(shifter, y, vdupq_n_f32(DECAY_F32_LOG2E));
    float32x4_t n = vsubq_f32(k, shifter);
    float32x4_t w = vfmaq_f32(y, n, vdupq_n_f32(DECAY_F32_LN2_HI));
    w = vfmaq_f32(w, n, vdupq_n_f32(DECAY_F32_LN2_LO));
    float32x4_t w2 = vmulq_f32(w, w);
    float32x4_t t = vfmaq_f32(vdupq_n_f32(DECAY_F32_T3), vdupq_n_f32(DECAY_F32_T4), w);
    t = vfmaq_f32(vdupq_n_f32(DECAY_F32_T2), t, w);
    t = vfmaq_f32(vdupq_n_f32(DECAY_F32_T1), t, w);
    t = vfmaq_f32(vdupq_n_f32(DECAY_F32_T0), t, w);
    *k_out = k;
    return vfmaq_f32(vnegq_f32(w), t, w2);
}

/* strength (1 + q) 2^n for 2 lanes, formed in float64 and rounded once. */
DECAYN_INLINE float64x2_t decayn_scale_f64(float64x2_t q, float64x2_t s, int64x2_t n) {
    float64x2_t m = vfmaq_f64(s, q, s); /* s q is exact: one rounding */
    m = vreinterpretq_f64_u64(vorrq_u64(vreinterpretq_u64_f64(m),
                                        vandq_u64(vreinterpretq_u64_f64(s), vdupq_n_u64(0x8000000000000000ull))));
    float64x2_t e = vreinterpretq_f64_s64(vshlq_n_s64(vaddq_s64(n, vdupq_n_s64(1023)), 52));
    return vmulq_f64(m, e);
}

/*
 * Lanes off the fast path: strength (1 + q) in float64, scaled exactly and
 * rounded once (the same lanes and operations as the x86 levels); then the
 * float64 product's rules for NaN and infinities.  No lane goes scalar.
 */
static __attribute__((noinline)) float32x4_t decayn_exp_f32_general(float32x4_t y, float32x4_t s) {
    float32x4_t yc = vmaxq_f32(vdupq_n_f32(DECAY_F32_Y_MIN), vminq_f32(vdupq_n_f32(DECAY_F32_Y_MAX), y));
    uint32x4_t tiny = vcaltq_f32(yc, vdupq_n_f32(DECAY_F32_Y_TINY));
    yc = vbslq_f32(tiny, vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(yc), vdupq_n_u32(0x80000000u))), yc);
    float32x4_t k, q = decayn_exp_q_f32(yc, &k);
    const int32_t limit = (int32_t)DECAY_F32_N_LIMIT;
    int32x4_t n = vsubq_s32(vreinterpretq_s32_f32(k), vreinterpretq_s32_f32(vdupq_n_f32(DECAY_F32_SHIFTER)));
    n = vmaxq_s32(vdupq_n_s32(-limit), vminq_s32(vdupq_n_s32(limit), n));
    float64x2_t lo = decayn_scale_f64(vcvt_f64_f32(vget_low_f32(q)), vcvt_f64_f32(vget_low_f32(s)),
                                      vmovl_s32(vget_low_s32(n)));
    float64x2_t hi = decayn_scale_f64(vcvt_high_f64_f32(q), vcvt_high_f64_f32(s), vmovl_high_s32(n));
    float32x4_t r = vcvt_high_f32_f64(vcvt_f32_f64(lo), hi);
    /* the float64 product's rules (engram_decay_exp_f32_lane), lane-wise */
    const float32x4_t nan = vdupq_n_f32(NAN);
    uint32x4_t nan_in = vmvnq_u32(vandq_u32(vceqq_f32(y, y), vceqq_f32(s, s)));
    uint32x4_t inf_s = vceqq_f32(vabsq_f32(s), vdupq_n_f32(INFINITY));
    uint32x4_t zero_s = vceqzq_f32(s);
    r = vbslq_f32(inf_s, s, r);
    r = vbslq_f32(vandq_u32(inf_s, vcgeq_f32(y, vdupq_n_f32(DECAY_F32_Y_ZERO))), nan, r);
    r = vbslq_f32(vandq_u32(zero_s, vcleq_f32(y, vdupq_n_f32(DECAY_F32_Y_INF))), nan, r);
    return vbslq_f32(nan_in, vaddq_f32(y, s), r);
}

DECAYN_INLINE float32x4_t decayn_exp_f32(float32x4_t y, float32x4_t s) {
    uint32x4_t fast = vcleq_u32(vreinterpretq_u32_f32(y), vdupq_n_u32(DECAY_F32_FAST_Y_MAX_BITS));
    fast = vandq_u32(fast, vcltq_u32(vsubq_u32(vreinterpretq_u32_f32(s), vdupq_n_u32(DECAY_F32_FAST_S_MIN_BITS)),
                                     vdupq_n_u32(DECAY_F32_FAST_S_SPAN_BITS)));
    if (ENGRAM_UNLIKELY(vminvq_u32(fast) == 0)) return decayn_exp_f32_general(y, s);
    float32x4_t k, q = decayn_exp_q_f32(y, &k);
    float32x4_t m = vfmaq_f32(s, q, s);
    uint32x4_t pow2 = vaddq_u32(vshlq_n_u32(vreinterpretq_u32_f32(k), 23), vdupq_n_u32(0x3f800000));
    return vmulq_f32(m, vreinterpretq_f32_u32(pow2));
}

DECAYN_INLINE void decayn_exp_f32_body(const engram_decay_params *p, const engram_decay_block *b,
                                       int age_type, int stability_broadcast) {
    float *out = b->out;
    const float *str = b->strength, *stab = b->stability;
    const float32x4_t stab_b = vdupq_n_f32(p->stability_f32);
    for (size_t i = 0; i < b->n; i += 4) {
        float32x4_t a = decayn_ages_f32(b->age, i, age_type, p->age_f32);
        float32x4_t S = stability_broadcast ? stab_b : vld1q_f32(stab + i);
        vst1q_f32(out + i, decayn_exp_f32(vdivq_f32(a, S), vld1q_f32(str + i)));
    }
}

#define DECAYN_DISPATCH(body, p, b)                                                       \
    do {                                                                                  \
        int type_ = (b)->age ? (int)(p)->age_type : DECAYN_AGE_BROADCAST;                 \
        if ((b)->stability) {                                                             \
            switch (type_) {                                                              \
                case ENGRAM_DECAY_F32: body(p, b, ENGRAM_DECAY_F32, 0); break;            \
                case ENGRAM_DECAY_F64: body(p, b, ENGRAM_DECAY_F64, 0); break;            \
                case ENGRAM_DECAY_I64: body(p, b, ENGRAM_DECAY_I64, 0); break;            \
                case ENGRAM_DECAY_U64: body(p, b, ENGRAM_DECAY_U64, 0); break;            \
                default: body(p, b, DECAYN_AGE_BROADCAST, 0); break;                      \
            }                                                                             \
        } else {                                                                          \
            switch (type_) {                                                              \
                case ENGRAM_DECAY_F32: body(p, b, ENGRAM_DECAY_F32, 1); break;            \
                case ENGRAM_DECAY_F64: body(p, b, ENGRAM_DECAY_F64, 1); break;            \
                case ENGRAM_DECAY_I64: body(p, b, ENGRAM_DECAY_I64, 1); break;            \
                case ENGRAM_DECAY_U64: body(p, b, ENGRAM_DECAY_U64, 1); break;            \
                default: body(p, b, DECAYN_AGE_BROADCAST, 1); break;                      \
            }                                                                             \
        }                                                                                 \
    } while (0)

static void decay_exp_f32_neon(const engram_decay_params *p, const engram_decay_block *b) {
    DECAYN_DISPATCH(decayn_exp_f32_body, p, b);
}

/* ---- float64 exponential ---- */

DECAYN_INLINE float64x2_t decayn_exp_f64(float64x2_t y, float64x2_t s) {
    float64x2_t as = vabsq_f64(s);
    uint64x2_t fast = vandq_u64(vcgezq_f64(y), vcleq_f64(y, vdupq_n_f64(DECAY_F64_FAST_Y_MAX)));
    fast = vandq_u64(fast, vcgeq_f64(as, vdupq_n_f64(DECAY_F64_FAST_S_MIN)));
    fast = vandq_u64(fast, vcleq_f64(as, vdupq_n_f64(DECAY_F64_FAST_S_MAX)));
    const float64x2_t shifter = vdupq_n_f64(DECAY_F64_SHIFTER);
    float64x2_t k = vfmsq_f64(shifter, y, vdupq_n_f64(DECAY_F64_LOG2E));
    float64x2_t n = vsubq_f64(k, shifter);
    float64x2_t w = vfmaq_f64(y, n, vdupq_n_f64(DECAY_F64_LN2_HI));
    w = vfmaq_f64(w, n, vdupq_n_f64(DECAY_F64_LN2_LO));
    float64x2_t w2 = vmulq_f64(w, w);
    float64x2_t t = vfmaq_f64(vdupq_n_f64(DECAY_F64_T10), vdupq_n_f64(DECAY_F64_T11), w);
    t = vfmaq_f64(vdupq_n_f64(DECAY_F64_T9), t, w);
    t = vfmaq_f64(vdupq_n_f64(DECAY_F64_T8), t, w);
    t = vfmaq_f64(vdupq_n_f64(DECAY_F64_T7), t, w);
    t = vfmaq_f64(vdupq_n_f64(DECAY_F64_T6), t, w);
    t = vfmaq_f64(vdupq_n_f64(DECAY_F64_T5), t, w);
    t = vfmaq_f64(vdupq_n_f64(DECAY_F64_T4), t, w);
    t = vfmaq_f64(vdupq_n_f64(DECAY_F64_T3), t, w);
    t = vfmaq_f64(vdupq_n_f64(DECAY_F64_T2), t, w);
    t = vfmaq_f64(vdupq_n_f64(DECAY_F64_T1), t, w);
    t = vfmaq_f64(vdupq_n_f64(DECAY_F64_T0), t, w);
    float64x2_t q = vfmaq_f64(vnegq_f64(w), t, w2);
    float64x2_t m = vfmaq_f64(s, q, s);
    uint64x2_t pow2 = vaddq_u64(vshlq_n_u64(vreinterpretq_u64_f64(k), 52), vdupq_n_u64(0x3ff0000000000000ull));
    float64x2_t r = vmulq_f64(m, vreinterpretq_f64_u64(vandq_u64(pow2, fast)));
    uint64_t lanes[2];
    vst1q_u64(lanes, fast);
    if (ENGRAM_LIKELY(lanes[0] && lanes[1])) return r;
    /* NaN in, NaN out without the element path (missing values stay fast) */
    uint64x2_t nan_in = decayn_not_u64(vandq_u64(vceqq_f64(y, y), vceqq_f64(s, s)));
    r = vbslq_f64(nan_in, vaddq_f64(y, s), r);
    fast = vorrq_u64(fast, nan_in);
    vst1q_u64(lanes, fast);
    if (lanes[0] && lanes[1]) return r;
    double yb[2], sb[2], rb[2];
    vst1q_f64(yb, y);
    vst1q_f64(sb, s);
    vst1q_f64(rb, r);
    for (int l = 0; l < 2; l++)
        if (!lanes[l]) rb[l] = engram_decay_exp_f64_lane(yb[l], sb[l]);
    return vld1q_f64(rb);
}

DECAYN_INLINE void decayn_exp_f64_body(const engram_decay_params *p, const engram_decay_block *b,
                                       int age_type, int stability_broadcast) {
    double *out = b->out;
    const double *str = b->strength, *stab = b->stability;
    const float64x2_t stab_b = vdupq_n_f64(p->stability_f64);
    for (size_t i = 0; i < b->n; i += 2) {
        float64x2_t a = decayn_ages_f64(b->age, i, age_type, p->age_f64);
        float64x2_t S = stability_broadcast ? stab_b : vld1q_f64(stab + i);
        vst1q_f64(out + i, decayn_exp_f64(vdivq_f64(a, S), vld1q_f64(str + i)));
    }
}

static void decay_exp_f64_neon(const engram_decay_params *p, const engram_decay_block *b) {
    DECAYN_DISPATCH(decayn_exp_f64_body, p, b);
}

/* ---- float32 power, in float64 ---- */

/* log(u) for u >= 1 to ~2^-35: u = 2^k z, z in [sqrt(1/2), sqrt(2)), log(z) = 2 atanh(s). */
DECAYN_INLINE float64x2_t decayn_log_f64(float64x2_t u) {
    uint64x2_t ix = vreinterpretq_u64_f64(u);
    uint64x2_t tmp = vsubq_u64(ix, vdupq_n_u64(DECAY_POW_LOG_OFFSET));
    float64x2_t kd = vcvtq_f64_u64(vshrq_n_u64(tmp, 52)); /* u >= 1: tmp > 0 */
    uint64x2_t iz = vsubq_u64(ix, vandq_u64(tmp, vdupq_n_u64(0xfff0000000000000ull)));
    float64x2_t f = vsubq_f64(vreinterpretq_f64_u64(iz), vdupq_n_f64(1.0));
    float64x2_t s = vdivq_f64(f, vaddq_f64(f, vdupq_n_f64(2.0)));
    float64x2_t s2 = vmulq_f64(s, s);
    float64x2_t P = vfmaq_f64(vdupq_n_f64(1.0 / 9), vdupq_n_f64(1.0 / 11), s2);
    P = vfmaq_f64(vdupq_n_f64(1.0 / 7), P, s2);
    P = vfmaq_f64(vdupq_n_f64(1.0 / 5), P, s2);
    P = vfmaq_f64(vdupq_n_f64(1.0 / 3), P, s2);
    float64x2_t ts = vaddq_f64(s, s);
    float64x2_t log1p = vfmaq_f64(ts, vmulq_f64(ts, s2), P);
    return vfmaq_f64(log1p, kd, vdupq_n_f64(0x1.62e42fefa39efp-1));
}

/* exp(-power * L) for L >= 0 to ~2^-37: Cody-Waite and a degree-9 Taylor polynomial. */
DECAYN_INLINE float64x2_t decayn_exp_neg_f64(float64x2_t L, float64x2_t neg_power, float64x2_t l_max) {
    const float64x2_t shifter = vdupq_n_f64(DECAY_F64_SHIFTER);
    float64x2_t Y = vmulq_f64(vminq_f64(L, l_max), neg_power); /* >= -700 */
    float64x2_t k = vfmaq_f64(shifter, Y, vdupq_n_f64(DECAY_F64_LOG2E));
    float64x2_t N = vsubq_f64(k, shifter);
    float64x2_t w = vfmaq_f64(Y, N, vdupq_n_f64(-0x1.62e42fefa39efp-1));
    float64x2_t P = vfmaq_f64(vdupq_n_f64(1.0 / 40320), vdupq_n_f64(1.0 / 362880), w);
    P = vfmaq_f64(vdupq_n_f64(1.0 / 5040), P, w);
    P = vfmaq_f64(vdupq_n_f64(1.0 / 720), P, w);
    P = vfmaq_f64(vdupq_n_f64(1.0 / 120), P, w);
    P = vfmaq_f64(vdupq_n_f64(1.0 / 24), P, w);
    P = vfmaq_f64(vdupq_n_f64(1.0 / 6), P, w);
    P = vfmaq_f64(vdupq_n_f64(0.5), P, w);
    P = vfmaq_f64(vdupq_n_f64(1.0), P, w);
    P = vfmaq_f64(vdupq_n_f64(1.0), P, w);
    uint64x2_t pow2 = vaddq_u64(vshlq_n_u64(vreinterpretq_u64_f64(k), 52), vdupq_n_u64(0x3ff0000000000000ull));
    return vmulq_f64(P, vreinterpretq_f64_u64(pow2));
}

typedef struct decayn_pow_consts {
    float64x2_t factor, factor_over_stability, neg_power, l_max;
} decayn_pow_consts;

/* 2 lanes of strength * u^-power; ok: all-ones lanes where 1 <= u < inf. */
DECAYN_INLINE float64x2_t decayn_pow_pair(float64x2_t a, float64x2_t S, float64x2_t s,
                                          const decayn_pow_consts *c, int stability_broadcast,
                                          int half_power, uint64x2_t *ok) {
    const float64x2_t one = vdupq_n_f64(1.0);
    float64x2_t u = stability_broadcast ? vfmaq_f64(one, a, c->factor_over_stability)
                                        : vaddq_f64(vdivq_f64(vmulq_f64(a, c->factor), S), one);
    *ok = vandq_u64(vcgeq_f64(u, one), vcltq_f64(u, vdupq_n_f64(INFINITY)));
    float64x2_t P = half_power ? vdivq_f64(one, vsqrtq_f64(u))
                               : decayn_exp_neg_f64(decayn_log_f64(u), c->neg_power, c->l_max);
    return vmulq_f64(s, P);
}

DECAYN_INLINE float32x4_t decayn_pow_f32(float32x4_t a, float32x4_t S, float32x4_t s,
                                         const engram_decay_params *p, const decayn_pow_consts *c,
                                         int stability_broadcast, int half_power) {
    uint64x2_t ok_lo, ok_hi;
    float64x2_t lo = decayn_pow_pair(vcvt_f64_f32(vget_low_f32(a)), vcvt_f64_f32(vget_low_f32(S)),
                                     vcvt_f64_f32(vget_low_f32(s)), c, stability_broadcast,
                                     half_power, &ok_lo);
    float64x2_t hi = decayn_pow_pair(vcvt_high_f64_f32(a), vcvt_high_f64_f32(S),
                                     vcvt_high_f64_f32(s), c, stability_broadcast, half_power,
                                     &ok_hi);
    float32x4_t r = vcvt_high_f32_f64(vcvt_f32_f64(lo), hi);
    /* infinite strengths take the element spec: inf * u^-power is NaN where pow underflows */
    uint32x4_t ok = vcombine_u32(vmovn_u64(ok_lo), vmovn_u64(ok_hi));
    ok = vandq_u32(ok, vcltq_f32(vabsq_f32(s), vdupq_n_f32(INFINITY)));
    if (ENGRAM_LIKELY(vminvq_u32(ok) != 0)) return r;
    float ab[4], Sb[4], sb[4], rb[4];
    uint32_t lanes[4];
    vst1q_f32(ab, a);
    vst1q_f32(Sb, S);
    vst1q_f32(sb, s);
    vst1q_f32(rb, r);
    vst1q_u32(lanes, ok);
    for (int l = 0; l < 4; l++)
        if (!lanes[l]) rb[l] = engram_decay_power_f32_lane(ab[l], Sb[l], sb[l], p->power, p->factor);
    return vld1q_f32(rb);
}

DECAYN_INLINE void decayn_power_f32_body2(const engram_decay_params *p, const engram_decay_block *b,
                                          int age_type, int stability_broadcast, int half_power) {
    float *out = b->out;
    const float *str = b->strength, *stab = b->stability;
    const float32x4_t stab_b = vdupq_n_f32(p->stability_f32);
    decayn_pow_consts c;
    c.factor = vdupq_n_f64(p->factor);
    c.factor_over_stability = vdupq_n_f64(p->factor / (double)p->stability_f32);
    c.neg_power = vdupq_n_f64(-p->power);
    c.l_max = vdupq_n_f64(-DECAY_POW_Y_MIN / p->power);
    for (size_t i = 0; i < b->n; i += 4) {
        float32x4_t a = decayn_ages_f32(b->age, i, age_type, p->age_f32);
        float32x4_t S = stability_broadcast ? stab_b : vld1q_f32(stab + i);
        vst1q_f32(out + i, decayn_pow_f32(a, S, vld1q_f32(str + i), p, &c, stability_broadcast, half_power));
    }
}

/* power 0.5 (the FSRS curve) needs no logarithm: 1 / sqrt(u). */
DECAYN_INLINE void decayn_power_f32_body(const engram_decay_params *p, const engram_decay_block *b,
                                         int age_type, int stability_broadcast) {
    if (p->power == 0.5) decayn_power_f32_body2(p, b, age_type, stability_broadcast, 1);
    else decayn_power_f32_body2(p, b, age_type, stability_broadcast, 0);
}

static void decay_power_f32_neon(const engram_decay_params *p, const engram_decay_block *b) {
    DECAYN_DISPATCH(decayn_power_f32_body, p, b);
}

/* ---- validation ---- */

/* Validation by a scan of the block just ahead of the computation (in cache). */
static size_t decay_exp_f32_checked_neon(const engram_decay_params *p, const engram_decay_block *b) {
    size_t bad = engram_decay_first_invalid_block(p, b);
    if (bad < b->n) return bad;
    decay_exp_f32_neon(p, b);
    return b->n;
}

static size_t decay_power_f32_checked_neon(const engram_decay_params *p, const engram_decay_block *b) {
    size_t bad = engram_decay_first_invalid_block(p, b);
    if (bad < b->n) return bad;
    decay_power_f32_neon(p, b);
    return b->n;
}

static size_t decay_first_invalid_f32_neon(const float *age, const float *stab, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32x4_t ok = vdupq_n_u32(0xffffffffu);
        if (age) ok = vcgezq_f32(vld1q_f32(age + i));
        if (stab) ok = vandq_u32(ok, vcgtzq_f32(vld1q_f32(stab + i)));
        if (vminvq_u32(ok) == 0) break; /* NaN compares false: caught too */
    }
    for (; i < n; i++)
        if ((age && !(age[i] >= 0.0f)) || (stab && !(stab[i] > 0.0f))) return i;
    return n;
}

static size_t decay_first_invalid_f64_neon(const double *age, const double *stab, size_t n) {
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        uint64x2_t ok = vdupq_n_u64(~0ull);
        if (age) ok = vcgezq_f64(vld1q_f64(age + i));
        if (stab) ok = vandq_u64(ok, vcgtzq_f64(vld1q_f64(stab + i)));
        if ((vgetq_lane_u64(ok, 0) & vgetq_lane_u64(ok, 1)) == 0) break;
    }
    for (; i < n; i++)
        if ((age && !(age[i] >= 0.0)) || (stab && !(stab[i] > 0.0))) return i;
    return n;
}

const engram_decay_ops engram_decay_ops_neon = {
    .level = "neon",
    .exp_f32 = decay_exp_f32_neon,
    .power_f32 = decay_power_f32_neon,
    .exp_f64 = decay_exp_f64_neon,
    .power_f64 = engram_decay_power_f64_generic,
    .exp_f32_checked = decay_exp_f32_checked_neon,
    .power_f32_checked = decay_power_f32_checked_neon,
    .first_invalid_f32 = decay_first_invalid_f32_neon,
    .first_invalid_f64 = decay_first_invalid_f64_neon,
};

/* ==== end decay ==== */

