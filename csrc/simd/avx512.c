/*
 * avx512 primitives of every kernel, compiled with this level's -m flags only.
 * Each section fills that kernel's table; the scalar version in csrc/<kernel>.c is the spec.
 */
#include "../engram.h"

/* ==== similarity ==== */

const engram_similarity_ops engram_similarity_ops_avx512 = {
    .level = "avx512",
};

/* ==== end similarity ==== */

/* ==== spread ==== */

const engram_spread_ops engram_spread_ops_avx512 = {
    .level = "avx512",
};

/* ==== end spread ==== */

/* ==== decay ==== */

#include <immintrin.h>
#include <math.h>

#include "../decay_internal.h"

/*
 * The driver hands over whole vectors (n a multiple of 16).  Ages of the
 * 64-bit integer types are converted with vcvt(u)qq2ps / vcvt(u)qq2pd,
 * which round to nearest like a C cast.
 */
#define DECAY512_AGE_BROADCAST 4 /* pseudo age type: one age for every memory */
#define DECAY512_INLINE static inline __attribute__((always_inline))
/* 1 KB ahead of element p, per stream (prefetches never fault) */
#define DECAY512_PREFETCH(p) _mm_prefetch((const char *)(p) + 1024, _MM_HINT_T0)

DECAY512_INLINE __m512 decay512_join_ps(__m256 lo, __m256 hi) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

/* 16 ages from index i as float32, in two halves (the divisions run on halves). */
DECAY512_INLINE void decay512_ages_ps(const void *age, size_t i, int type, float broadcast,
                                      __m256 *lo, __m256 *hi) {
    switch (type) {
        case ENGRAM_DECAY_F32:
            *lo = _mm256_loadu_ps((const float *)age + i);
            *hi = _mm256_loadu_ps((const float *)age + i + 8);
            return;
        case ENGRAM_DECAY_F64:
            *lo = _mm512_cvtpd_ps(_mm512_loadu_pd((const double *)age + i));
            *hi = _mm512_cvtpd_ps(_mm512_loadu_pd((const double *)age + i + 8));
            return;
        case ENGRAM_DECAY_I64:
            *lo = _mm512_cvtepi64_ps(_mm512_loadu_si512((const int64_t *)age + i));
            *hi = _mm512_cvtepi64_ps(_mm512_loadu_si512((const int64_t *)age + i + 8));
            return;
        case ENGRAM_DECAY_U64:
            *lo = _mm512_cvtepu64_ps(_mm512_loadu_si512((const uint64_t *)age + i));
            *hi = _mm512_cvtepu64_ps(_mm512_loadu_si512((const uint64_t *)age + i + 8));
            return;
        default: *lo = *hi = _mm256_set1_ps(broadcast); return;
    }
}

/* 8 ages from index i as float64. */
DECAY512_INLINE __m512d decay512_ages_pd(const void *age, size_t i, int type, double broadcast) {
    switch (type) {
        case ENGRAM_DECAY_F32: return _mm512_cvtps_pd(_mm256_loadu_ps((const float *)age + i));
        case ENGRAM_DECAY_F64: return _mm512_loadu_pd((const double *)age + i);
        case ENGRAM_DECAY_I64: return _mm512_cvtepi64_pd(_mm512_loadu_si512((const int64_t *)age + i));
        case ENGRAM_DECAY_U64: return _mm512_cvtepu64_pd(_mm512_loadu_si512((const uint64_t *)age + i));
        default: return _mm512_set1_pd(broadcast);
    }
}

/* ---- float32 exponential ---- */

/* q = exp(-w) - 1 and n of the reduction y = w - n ln2 (decay_internal.h). */
DECAY512_INLINE __m512 decay512_exp_q_ps(__m512 y, __m512 *n_out) {
    const __m512 shifter = _mm512_set1_ps(DECAY_F32_SHIFTER);
    __m512 k = _mm512_fnmadd_ps(y, _mm512_set1_ps(DECAY_F32_LOG2E), shifter);
    __m512 n = _mm512_sub_ps(k, shifter);
    __m512 w = _mm512_fmadd_ps(n, _mm512_set1_ps(DECAY_F32_LN2_HI), y);
    w = _mm512_fmadd_ps(n, _mm512_set1_ps(DECAY_F32_LN2_LO), w);
    __m512 w2 = _mm512_mul_ps(w, w);
    __m512 t = _mm512_fmadd_ps(_mm512_set1_ps(DECAY_F32_T4), w, _mm512_set1_ps(DECAY_F32_T3));
    t = _mm512_fmadd_ps(t, w, _mm512_set1_ps(DECAY_F32_T2));
    t = _mm512_fmadd_ps(t, w, _mm512_set1_ps(DECAY_F32_T1));
    t = _mm512_fmadd_ps(t, w, _mm512_set1_ps(DECAY_F32_T0));
    *n_out = n;
    return _mm512_fmsub_ps(t, w2, w);
}

/* strength (1 + q) 2^n for 8 lanes, formed in float64 and rounded once. */
DECAY512_INLINE __m256 decay512_scale_pd(__m256 q, __m256 s, __m256 n) {
    __m512d sd = _mm512_cvtps_pd(s); /* conversions take subnormals without an assist */
    __m512d m = _mm512_fmadd_pd(_mm512_cvtps_pd(q), sd, sd); /* s q is exact: one rounding */
    m = _mm512_or_pd(m, _mm512_and_pd(sd, _mm512_set1_pd(-0.0))); /* 0 (1 + q) keeps the sign */
    return _mm512_cvtpd_ps(_mm512_scalef_pd(m, _mm512_cvtps_pd(n)));
}

/*
 * Lanes off the fast path: strength (1 + q) in float64, scaled exactly and
 * rounded once, so no float32 operation meets a subnormal (a microcode
 * assist of ~150 cycles on x86); then the float64 product's rules for NaN
 * and infinities.  Every lane is finished here, none goes scalar.
 */
static __attribute__((noinline)) __m512 decay512_exp_ps_general(__m512 y, __m512 s) {
    __m512 yc = _mm512_max_ps(_mm512_set1_ps(DECAY_F32_Y_MIN),
                              _mm512_min_ps(_mm512_set1_ps(DECAY_F32_Y_MAX), y));
    __mmask16 tiny = _mm512_cmp_ps_mask(_mm512_abs_ps(yc), _mm512_set1_ps(DECAY_F32_Y_TINY),
                                        _CMP_LT_OQ);
    yc = _mm512_mask_and_ps(yc, tiny, yc, _mm512_set1_ps(-0.0f));
    __m512 n, q = decay512_exp_q_ps(yc, &n);
    n = _mm512_max_ps(_mm512_set1_ps(-DECAY_F32_N_LIMIT),
                      _mm512_min_ps(_mm512_set1_ps(DECAY_F32_N_LIMIT), n));
    __m512 r = decay512_join_ps(
        decay512_scale_pd(_mm512_castps512_ps256(q), _mm512_castps512_ps256(s),
                          _mm512_castps512_ps256(n)),
        decay512_scale_pd(_mm512_extractf32x8_ps(q, 1), _mm512_extractf32x8_ps(s, 1),
                          _mm512_extractf32x8_ps(n, 1)));
    /* the float64 product's rules (engram_decay_exp_f32_lane), lane-wise */
    const __m512 nan = _mm512_set1_ps(NAN);
    __mmask16 nan_in = _mm512_cmp_ps_mask(y, s, _CMP_UNORD_Q);
    __mmask16 inf_s = _mm512_fpclass_ps_mask(s, 0x18);
    __mmask16 zero_s = _mm512_fpclass_ps_mask(s, 0x06);
    r = _mm512_mask_mov_ps(r, inf_s, s);
    r = _mm512_mask_mov_ps(
        r, _mm512_mask_cmp_ps_mask(inf_s, y, _mm512_set1_ps(DECAY_F32_Y_ZERO), _CMP_GE_OQ), nan);
    r = _mm512_mask_mov_ps(
        r, _mm512_mask_cmp_ps_mask(zero_s, y, _mm512_set1_ps(DECAY_F32_Y_INF), _CMP_LE_OQ), nan);
    return _mm512_mask_add_ps(r, nan_in, y, s);
}

/* Lanes with 0 <= y <= 76 and 2^-16 <= s <= 2^100 (tested on the bit patterns). */
DECAY512_INLINE __mmask16 decay512_exp_fast(__m512 y, __m512 s) {
    __mmask16 fast = _mm512_cmp_epu32_mask(_mm512_castps_si512(y),
                                           _mm512_set1_epi32((int)DECAY_F32_FAST_Y_MAX_BITS),
                                           _MM_CMPINT_LE);
    return _mm512_mask_cmp_epu32_mask(
        fast,
        _mm512_sub_epi32(_mm512_castps_si512(s), _mm512_set1_epi32((int)DECAY_F32_FAST_S_MIN_BITS)),
        _mm512_set1_epi32((int)DECAY_F32_FAST_S_SPAN_BITS), _MM_CMPINT_LT);
}

/* strength * exp(-y) in the fast lanes (0 elsewhere). */
DECAY512_INLINE __m512 decay512_exp_ps(__m512 y, __m512 s, __mmask16 fast) {
    __m512 n, q = decay512_exp_q_ps(y, &n);
    /* masked: lanes off the fast path (a subnormal strength, an underflowing
     * result) must not reach the product or the scaling (subnormal assists) */
    return _mm512_maskz_scalef_ps(fast, _mm512_maskz_fmadd_ps(fast, q, s, s), n);
}

/* Index of the first invalid element of [i, i + 16), or 16. */
static __attribute__((noinline)) size_t decay512_first_invalid_lane(const engram_decay_params *p,
                                                                    const engram_decay_block *b,
                                                                    size_t i) {
    size_t es = p->age_type == ENGRAM_DECAY_F32 ? 4 : 8;
    engram_decay_block lanes = {16, NULL, NULL, b->age ? (const char *)b->age + i * es : NULL,
                                b->stability ? (const float *)b->stability + i : NULL};
    return engram_decay_first_invalid_block(p, &lanes);
}

/*
 * The quotient as two 256-bit divisions: on this core family a 512-bit
 * vdivps splits into more micro-ops for the same 16 quotients, and the
 * divider, not the polynomial, bounds the loop.
 *
 * checking: validate as well (fresh output only).  A fast lane has
 * 0 <= y = age / stability and, tested here, stability > 0, so its age is
 * >= +0 as given; any other lane of a vector sends it to a scalar check
 * of the values as given before the general path.
 */
DECAY512_INLINE size_t decay512_exp_f32_body(const engram_decay_params *p,
                                             const engram_decay_block *b, int age_type,
                                             int stability_broadcast, int checking) {
    const size_t n = b->n;
    float *out = b->out;
    const float *str = b->strength, *stab = b->stability;
    const void *age = b->age;
    const __m256 stab_b = _mm256_set1_ps(p->stability_f32);
    const float age_b = p->age_f32;
    for (size_t i = 0; i < n; i += 16) {
        /* the loop spends ~13 cycles per line of each stream: from DRAM the
         * hardware prefetchers alone do not run far enough ahead */
        DECAY512_PREFETCH(str + i);
        if (!stability_broadcast) DECAY512_PREFETCH(stab + i);
        if (age_type == ENGRAM_DECAY_F32) DECAY512_PREFETCH((const float *)age + i);
        if (age_type == ENGRAM_DECAY_F64 || age_type == ENGRAM_DECAY_I64 ||
            age_type == ENGRAM_DECAY_U64) {
            DECAY512_PREFETCH((const double *)age + i);
            DECAY512_PREFETCH((const double *)age + i + 8);
        }
        __m256 a_lo, a_hi;
        decay512_ages_ps(age, i, age_type, age_b, &a_lo, &a_hi);
        __m256 S_lo = stability_broadcast ? stab_b : _mm256_loadu_ps(stab + i);
        __m256 S_hi = stability_broadcast ? stab_b : _mm256_loadu_ps(stab + i + 8);
        __m512 y = decay512_join_ps(_mm256_div_ps(a_lo, S_lo), _mm256_div_ps(a_hi, S_hi));
        __m512 s = _mm512_loadu_ps(str + i);
        __mmask16 fast = decay512_exp_fast(y, s);
        if (checking && !stability_broadcast)
            fast = _mm512_mask_cmp_ps_mask(fast, _mm512_loadu_ps(stab + i), _mm512_setzero_ps(),
                                           _CMP_GT_OQ);
        __m512 r = decay512_exp_ps(y, s, fast);
        if (ENGRAM_UNLIKELY(fast != 0xFFFF)) {
            if (checking) {
                size_t bad = decay512_first_invalid_lane(p, b, i);
                if (bad < 16) return i + bad;
            }
            r = decay512_exp_ps_general(y, s);
        }
        _mm512_storeu_ps(out + i, r);
    }
    return n;
}

/* One instance per (age type, stability broadcast) so each loop is straight-line. */
#define DECAY512_DISPATCH(body, p, b)                                                     \
    do {                                                                                  \
        int type_ = (b)->age ? (int)(p)->age_type : DECAY512_AGE_BROADCAST;               \
        if ((b)->stability) {                                                             \
            switch (type_) {                                                              \
                case ENGRAM_DECAY_F32: body(p, b, ENGRAM_DECAY_F32, 0); break;            \
                case ENGRAM_DECAY_F64: body(p, b, ENGRAM_DECAY_F64, 0); break;            \
                case ENGRAM_DECAY_I64: body(p, b, ENGRAM_DECAY_I64, 0); break;            \
                case ENGRAM_DECAY_U64: body(p, b, ENGRAM_DECAY_U64, 0); break;            \
                default: body(p, b, DECAY512_AGE_BROADCAST, 0); break;                    \
            }                                                                             \
        } else {                                                                          \
            switch (type_) {                                                              \
                case ENGRAM_DECAY_F32: body(p, b, ENGRAM_DECAY_F32, 1); break;            \
                case ENGRAM_DECAY_F64: body(p, b, ENGRAM_DECAY_F64, 1); break;            \
                case ENGRAM_DECAY_I64: body(p, b, ENGRAM_DECAY_I64, 1); break;            \
                case ENGRAM_DECAY_U64: body(p, b, ENGRAM_DECAY_U64, 1); break;            \
                default: body(p, b, DECAY512_AGE_BROADCAST, 1); break;                    \
            }                                                                             \
        }                                                                                 \
    } while (0)

#define DECAY512_EXP_F32(p, b, type, broadcast) decay512_exp_f32_body(p, b, type, broadcast, 0)
#define DECAY512_EXP_F32_CHECKED(p, b, type, broadcast) \
    checked = decay512_exp_f32_body(p, b, type, broadcast, 1)

static void decay_exp_f32_avx512(const engram_decay_params *p, const engram_decay_block *b) {
    DECAY512_DISPATCH(DECAY512_EXP_F32, p, b);
}

static size_t decay_exp_f32_checked_avx512(const engram_decay_params *p,
                                           const engram_decay_block *b) {
    size_t checked = b->n;
    DECAY512_DISPATCH(DECAY512_EXP_F32_CHECKED, p, b);
    return checked;
}

/* ---- float64 exponential ---- */

DECAY512_INLINE __m512d decay512_exp_pd(__m512d y, __m512d s) {
    __m512d as = _mm512_abs_pd(s);
    __mmask8 fast = _mm512_cmp_pd_mask(y, _mm512_setzero_pd(), _CMP_GE_OQ);
    fast = _mm512_mask_cmp_pd_mask(fast, y, _mm512_set1_pd(DECAY_F64_FAST_Y_MAX), _CMP_LE_OQ);
    fast = _mm512_mask_cmp_pd_mask(fast, as, _mm512_set1_pd(DECAY_F64_FAST_S_MIN), _CMP_GE_OQ);
    fast = _mm512_mask_cmp_pd_mask(fast, as, _mm512_set1_pd(DECAY_F64_FAST_S_MAX), _CMP_LE_OQ);
    const __m512d shifter = _mm512_set1_pd(DECAY_F64_SHIFTER);
    __m512d k = _mm512_fnmadd_pd(y, _mm512_set1_pd(DECAY_F64_LOG2E), shifter);
    __m512d n = _mm512_sub_pd(k, shifter);
    __m512d w = _mm512_fmadd_pd(n, _mm512_set1_pd(DECAY_F64_LN2_HI), y);
    w = _mm512_fmadd_pd(n, _mm512_set1_pd(DECAY_F64_LN2_LO), w);
    __m512d w2 = _mm512_mul_pd(w, w);
    __m512d t = _mm512_fmadd_pd(_mm512_set1_pd(DECAY_F64_T11), w, _mm512_set1_pd(DECAY_F64_T10));
    t = _mm512_fmadd_pd(t, w, _mm512_set1_pd(DECAY_F64_T9));
    t = _mm512_fmadd_pd(t, w, _mm512_set1_pd(DECAY_F64_T8));
    t = _mm512_fmadd_pd(t, w, _mm512_set1_pd(DECAY_F64_T7));
    t = _mm512_fmadd_pd(t, w, _mm512_set1_pd(DECAY_F64_T6));
    t = _mm512_fmadd_pd(t, w, _mm512_set1_pd(DECAY_F64_T5));
    t = _mm512_fmadd_pd(t, w, _mm512_set1_pd(DECAY_F64_T4));
    t = _mm512_fmadd_pd(t, w, _mm512_set1_pd(DECAY_F64_T3));
    t = _mm512_fmadd_pd(t, w, _mm512_set1_pd(DECAY_F64_T2));
    t = _mm512_fmadd_pd(t, w, _mm512_set1_pd(DECAY_F64_T1));
    t = _mm512_fmadd_pd(t, w, _mm512_set1_pd(DECAY_F64_T0));
    __m512d q = _mm512_fmsub_pd(t, w2, w);
    __m512d m = _mm512_fmadd_pd(q, s, s);
    __m512d r = _mm512_maskz_scalef_pd(fast, m, n);
    if (ENGRAM_LIKELY(fast == 0xFF)) return r;
    /* NaN in, NaN out without the element path (missing values stay fast) */
    __mmask8 nan_in = _mm512_cmp_pd_mask(y, s, _CMP_UNORD_Q);
    r = _mm512_mask_add_pd(r, nan_in, y, s);
    fast |= nan_in;
    if (fast == 0xFF) return r;
    double yb[8], sb[8], rb[8];
    _mm512_storeu_pd(yb, y);
    _mm512_storeu_pd(sb, s);
    _mm512_storeu_pd(rb, r);
    for (int l = 0; l < 8; l++)
        if (!(fast >> l & 1)) rb[l] = engram_decay_exp_f64_lane(yb[l], sb[l]);
    return _mm512_loadu_pd(rb);
}

DECAY512_INLINE void decay512_exp_f64_body(const engram_decay_params *p,
                                           const engram_decay_block *b, int age_type,
                                           int stability_broadcast) {
    const size_t n = b->n;
    double *out = b->out;
    const double *str = b->strength, *stab = b->stability;
    const void *age = b->age;
    const __m512d stab_b = _mm512_set1_pd(p->stability_f64);
    const double age_b = p->age_f64;
    for (size_t i = 0; i < n; i += 8) {
        __m512d a = decay512_ages_pd(age, i, age_type, age_b);
        __m512d S = stability_broadcast ? stab_b : _mm512_loadu_pd(stab + i);
        _mm512_storeu_pd(out + i, decay512_exp_pd(_mm512_div_pd(a, S), _mm512_loadu_pd(str + i)));
    }
}

static void decay_exp_f64_avx512(const engram_decay_params *p, const engram_decay_block *b) {
    DECAY512_DISPATCH(decay512_exp_f64_body, p, b);
}

/* ---- float32 power, in float64 ---- */

/* log(m) = -log(invc_j) + log1p(m * invc_j - 1) for m in [1, 2), j its top 4 mantissa bits */
static const double decay512_log_invc[16] __attribute__((aligned(64))) = {
    0x1.f07c1f07c1f08p-1, 0x1.d41d41d41d41dp-1, 0x1.bacf914c1bad0p-1, 0x1.a41a41a41a41ap-1,
    0x1.8f9c18f9c18fap-1, 0x1.7d05f417d05f4p-1, 0x1.6c16c16c16c17p-1, 0x1.5c9882b931057p-1,
    0x1.4e5e0a72f0539p-1, 0x1.4141414141414p-1, 0x1.3521cfb2b78c1p-1, 0x1.29e4129e4129ep-1,
    0x1.1f7047dc11f70p-1, 0x1.15b1e5f75270dp-1, 0x1.0c9714fbcda3bp-1, 0x1.0410410410410p-1};
static const double decay512_log_logc[16] __attribute__((aligned(64))) = {
    0x1.f829b0e7832f8p-6, 0x1.6f0d28ae56b4ep-4, 0x1.29552f81ff521p-3, 0x1.9525a9cf456b6p-3,
    0x1.fb9186d5e3e29p-3, 0x1.2e8e2bae11d31p-2, 0x1.5d1bdbf5809cap-2, 0x1.89a3386c1425bp-2,
    0x1.b44f77bcc8f64p-2, 0x1.dd46a04c1c4a1p-2, 0x1.02552a5a5d0ffp-1, 0x1.154c3d2f4d5eap-1,
    0x1.2795e1289b11bp-1, 0x1.393e0d3562a1ap-1, 0x1.4a4f85db03ebbp-1, 0x1.5ad404c359f2dp-1};
/* 2^(j/16) */
static const double decay512_exp2_table[16] __attribute__((aligned(64))) = {
    0x1.0000000000000p+0, 0x1.0b5586cf9890fp+0, 0x1.172b83c7d517bp+0, 0x1.2387a6e756238p+0,
    0x1.306fe0a31b715p+0, 0x1.3dea64c123422p+0, 0x1.4bfdad5362a27p+0, 0x1.5ab07dd485429p+0,
    0x1.6a09e667f3bcdp+0, 0x1.7a11473eb0187p+0, 0x1.8ace5422aa0dbp+0, 0x1.9c49182a3f090p+0,
    0x1.ae89f995ad3adp+0, 0x1.c199bdd85529cp+0, 0x1.d5818dcfba487p+0, 0x1.ea4afa2a490dap+0};

/* log(u) for u >= 1 to ~2^-36 absolute: 16-entry table held in registers. */
DECAY512_INLINE __m512d decay512_log_pd(__m512d u) {
    __m512d e = _mm512_getexp_pd(u);
    __m512d m = _mm512_getmant_pd(u, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src);
    __m512i j = _mm512_srli_epi64(_mm512_castpd_si512(m), 48); /* permutes read bits 3:0 */
    __m512d invc = _mm512_permutex2var_pd(_mm512_load_pd(decay512_log_invc), j,
                                          _mm512_load_pd(decay512_log_invc + 8));
    __m512d logc = _mm512_permutex2var_pd(_mm512_load_pd(decay512_log_logc), j,
                                          _mm512_load_pd(decay512_log_logc + 8));
    __m512d r = _mm512_fmsub_pd(m, invc, _mm512_set1_pd(1.0)); /* |r| <= 1/32 */
    __m512d r2 = _mm512_mul_pd(r, r);
    __m512d t = _mm512_fmadd_pd(_mm512_set1_pd(-1.0 / 6), r, _mm512_set1_pd(1.0 / 5));
    t = _mm512_fmadd_pd(t, r, _mm512_set1_pd(-1.0 / 4));
    t = _mm512_fmadd_pd(t, r, _mm512_set1_pd(1.0 / 3));
    t = _mm512_fmadd_pd(t, r, _mm512_set1_pd(-1.0 / 2));
    __m512d log1p_r = _mm512_fmadd_pd(t, r2, r);
    return _mm512_add_pd(_mm512_fmadd_pd(e, _mm512_set1_pd(0x1.62e42fefa39efp-1), logc), log1p_r);
}

/* exp(-power * L) for L >= 0, relative error ~2^-34: 16-entry 2^(j/16) table, degree 4. */
DECAY512_INLINE __m512d decay512_exp_neg_pd(__m512d L, __m512d power, __m512d l_max,
                                            __m512d k_scale) {
    const __m512d shifter = _mm512_set1_pd(DECAY_F64_SHIFTER);
    L = _mm512_min_pd(L, l_max); /* -power * L >= -700 */
    __m512d k = _mm512_fmadd_pd(L, k_scale, shifter); /* k_scale = -power * 16 / ln2 */
    __m512d N = _mm512_sub_pd(k, shifter);
    __m512d Y = _mm512_mul_pd(L, power); /* power holds -power */
    __m512d w = _mm512_fmadd_pd(N, _mm512_set1_pd(-0x1.62e42fefa39efp-5), Y); /* |w| <= ln2/32 */
    __m512d P = _mm512_fmadd_pd(_mm512_set1_pd(1.0 / 24), w, _mm512_set1_pd(1.0 / 6));
    P = _mm512_fmadd_pd(P, w, _mm512_set1_pd(0.5));
    P = _mm512_fmadd_pd(P, w, _mm512_set1_pd(1.0));
    P = _mm512_fmadd_pd(P, w, _mm512_set1_pd(1.0));
    __m512d T = _mm512_permutex2var_pd(_mm512_load_pd(decay512_exp2_table),
                                       _mm512_castpd_si512(k),
                                       _mm512_load_pd(decay512_exp2_table + 8));
    /* scalef takes floor(N / 16): N = 16 floor(N / 16) + j */
    return _mm512_scalef_pd(_mm512_mul_pd(P, T), _mm512_mul_pd(N, _mm512_set1_pd(1.0 / 16)));
}

/* 1 / sqrt(u) for u >= 1: rsqrt14 and one Newton step, 2^-14 -> 2^-27 (float32 results). */
DECAY512_INLINE __m512d decay512_rsqrt_pd(__m512d u) {
    __m512d r = _mm512_rsqrt14_pd(u);
    __m512d e = _mm512_fnmadd_pd(_mm512_mul_pd(_mm512_mul_pd(u, _mm512_set1_pd(0.5)), r), r,
                                 _mm512_set1_pd(0.5));
    return _mm512_fmadd_pd(r, e, r);
}

/* 1 / S: rcp14 and one Newton step, 2^-14 -> 2^-28. */
DECAY512_INLINE __m512d decay512_recip_pd(__m512d S) {
    __m512d r = _mm512_rcp14_pd(S);
    return _mm512_fmadd_pd(r, _mm512_fnmadd_pd(S, r, _mm512_set1_pd(1.0)), r);
}

typedef struct decay512_pow_consts {
    __m512d factor, factor_over_stability, neg_power, l_max, k_scale;
} decay512_pow_consts;

/*
 * 8 lanes of strength * u^-power, u = 1 + factor a / S; *ok: lanes with
 * 1 <= u < inf.  float32 output needs u to ~2^-30 only when power is
 * large: for power <= 1 the IEEE float32 quotient a / S (relative error
 * 2^-24, the divider otherwise idles here) costs at most power * 1 ulp,
 * else 1 / S comes from rcp14 and a Newton step in float64.
 */
DECAY512_INLINE __m256 decay512_pow_half(__m256 a, __m256 S, __m256 s,
                                         const decay512_pow_consts *c, int stability_broadcast,
                                         int half_power, int float_quotient, __mmask8 *ok) {
    const __m512d one = _mm512_set1_pd(1.0);
    __m512d u;
    if (stability_broadcast)
        u = _mm512_fmadd_pd(_mm512_cvtps_pd(a), c->factor_over_stability, one);
    else if (float_quotient)
        u = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_div_ps(a, S)), c->factor, one);
    else
        u = _mm512_fmadd_pd(_mm512_mul_pd(_mm512_cvtps_pd(a), c->factor),
                            decay512_recip_pd(_mm512_cvtps_pd(S)), one);
    __mmask8 good = _mm512_cmp_pd_mask(u, one, _CMP_GE_OQ);
    *ok = _mm512_mask_cmp_pd_mask(good, u, _mm512_set1_pd(INFINITY), _CMP_LT_OQ);
    __m512d P = half_power ? decay512_rsqrt_pd(u)
                           : decay512_exp_neg_pd(decay512_log_pd(u), c->neg_power, c->l_max,
                                                 c->k_scale);
    return _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtps_pd(s), P));
}

/*
 * checking: validate as well (fresh output only).  A lane stays on the
 * vector path only with a sign-free, non-NaN age and (an array's)
 * stability > 0; others send the vector to a scalar check of the values as
 * given.  Returns the first invalid lane in *bad (16 if none).
 */
DECAY512_INLINE __m512 decay512_pow_ps(__m256 a_lo, __m256 a_hi, __m256 S_lo, __m256 S_hi,
                                       __m512 s, const engram_decay_params *p,
                                       const decay512_pow_consts *c, int stability_broadcast,
                                       int half_power, int float_quotient, int checking,
                                       const engram_decay_block *b, size_t i, size_t *bad) {
    __mmask8 ok_lo, ok_hi;
    __m256 lo = decay512_pow_half(a_lo, S_lo, _mm512_castps512_ps256(s), c, stability_broadcast,
                                  half_power, float_quotient, &ok_lo);
    __m256 hi = decay512_pow_half(a_hi, S_hi, _mm512_extractf32x8_ps(s, 1), c,
                                  stability_broadcast, half_power, float_quotient, &ok_hi);
    __m512 r = decay512_join_ps(lo, hi);
    /* infinite strengths take the element spec: inf * u^-power is NaN where pow underflows */
    __mmask16 ok = (__mmask16)(ok_lo | (unsigned)ok_hi << 8) &
                   (__mmask16)~_mm512_fpclass_ps_mask(s, 0x18);
    if (checking) {
        const __m256i inf_bits = _mm256_set1_epi32(0x7f800000);
        __mmask16 valid = (__mmask16)(
            _mm256_cmp_epu32_mask(_mm256_castps_si256(a_lo), inf_bits, _MM_CMPINT_LE) |
            (unsigned)_mm256_cmp_epu32_mask(_mm256_castps_si256(a_hi), inf_bits, _MM_CMPINT_LE) << 8);
        if (!stability_broadcast)
            valid &= (__mmask16)(_mm256_cmp_ps_mask(S_lo, _mm256_setzero_ps(), _CMP_GT_OQ) |
                                 (unsigned)_mm256_cmp_ps_mask(S_hi, _mm256_setzero_ps(), _CMP_GT_OQ) << 8);
        ok &= valid;
    }
    if (ENGRAM_LIKELY(ok == 0xFFFF)) return r;
    if (checking && (*bad = decay512_first_invalid_lane(p, b, i)) < 16) return r;
    float ab[16], Sb[16], sb[16], rb[16];
    _mm256_storeu_ps(ab, a_lo);
    _mm256_storeu_ps(ab + 8, a_hi);
    _mm256_storeu_ps(Sb, S_lo);
    _mm256_storeu_ps(Sb + 8, S_hi);
    _mm512_storeu_ps(sb, s);
    _mm512_storeu_ps(rb, r);
    for (int l = 0; l < 16; l++)
        if (!(ok >> l & 1))
            rb[l] = engram_decay_power_f32_lane(ab[l], Sb[l], sb[l], p->power, p->factor);
    return _mm512_loadu_ps(rb);
}

DECAY512_INLINE size_t decay512_power_f32_body2(const engram_decay_params *p,
                                                const engram_decay_block *b, int age_type,
                                                int stability_broadcast, int half_power,
                                                int float_quotient, int checking) {
    const size_t n = b->n;
    float *out = b->out;
    const float *str = b->strength, *stab = b->stability;
    const void *age = b->age;
    const __m256 stab_b = _mm256_set1_ps(p->stability_f32);
    const float age_b = p->age_f32;
    decay512_pow_consts c;
    c.factor = _mm512_set1_pd(p->factor);
    c.factor_over_stability = _mm512_set1_pd(p->factor / (double)p->stability_f32);
    c.neg_power = _mm512_set1_pd(-p->power);
    c.l_max = _mm512_set1_pd(-DECAY_POW_Y_MIN / p->power);
    c.k_scale = _mm512_set1_pd(-p->power * 16.0 * DECAY_F64_LOG2E);
    for (size_t i = 0; i < n; i += 16) {
        __m256 a_lo, a_hi;
        decay512_ages_ps(age, i, age_type, age_b, &a_lo, &a_hi);
        __m256 S_lo = stability_broadcast ? stab_b : _mm256_loadu_ps(stab + i);
        __m256 S_hi = stability_broadcast ? stab_b : _mm256_loadu_ps(stab + i + 8);
        size_t bad = 16;
        __m512 r = decay512_pow_ps(a_lo, a_hi, S_lo, S_hi, _mm512_loadu_ps(str + i), p, &c,
                                   stability_broadcast, half_power, float_quotient, checking, b,
                                   i, &bad);
        if (checking && bad < 16) return i + bad;
        _mm512_storeu_ps(out + i, r);
    }
    return n;
}

/* power 0.5 (the FSRS curve) needs no logarithm: 1 / sqrt(u). */
DECAY512_INLINE size_t decay512_power_f32_body(const engram_decay_params *p,
                                               const engram_decay_block *b, int age_type,
                                               int stability_broadcast, int checking) {
    if (p->power == 0.5)
        return decay512_power_f32_body2(p, b, age_type, stability_broadcast, 1, 1, checking);
    if (p->power <= 1.0)
        return decay512_power_f32_body2(p, b, age_type, stability_broadcast, 0, 1, checking);
    return decay512_power_f32_body2(p, b, age_type, stability_broadcast, 0, 0, checking);
}

#define DECAY512_POWER_F32(p, b, type, broadcast) decay512_power_f32_body(p, b, type, broadcast, 0)
#define DECAY512_POWER_F32_CHECKED(p, b, type, broadcast) \
    checked = decay512_power_f32_body(p, b, type, broadcast, 1)

static void decay_power_f32_avx512(const engram_decay_params *p, const engram_decay_block *b) {
    DECAY512_DISPATCH(DECAY512_POWER_F32, p, b);
}

static size_t decay_power_f32_checked_avx512(const engram_decay_params *p,
                                             const engram_decay_block *b) {
    size_t checked = b->n;
    DECAY512_DISPATCH(DECAY512_POWER_F32_CHECKED, p, b);
    return checked;
}

/* ---- validation scans ---- */

static size_t decay_first_invalid_f32_avx512(const float *age, const float *stab, size_t n) {
    const __m512 zero = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __mmask16 bad = 0;
        if (age) bad = _mm512_cmp_ps_mask(_mm512_loadu_ps(age + i), zero, _CMP_NGE_UQ);
        if (stab) bad |= _mm512_cmp_ps_mask(_mm512_loadu_ps(stab + i), zero, _CMP_NGT_UQ);
        if (bad) return i + (size_t)__builtin_ctz(bad);
    }
    for (; i < n; i++)
        if ((age && !(age[i] >= 0.0f)) || (stab && !(stab[i] > 0.0f))) return i;
    return n;
}

static size_t decay_first_invalid_f64_avx512(const double *age, const double *stab, size_t n) {
    const __m512d zero = _mm512_setzero_pd();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __mmask8 bad = 0;
        if (age) bad = _mm512_cmp_pd_mask(_mm512_loadu_pd(age + i), zero, _CMP_NGE_UQ);
        if (stab) bad |= _mm512_cmp_pd_mask(_mm512_loadu_pd(stab + i), zero, _CMP_NGT_UQ);
        if (bad) return i + (size_t)__builtin_ctz(bad);
    }
    for (; i < n; i++)
        if ((age && !(age[i] >= 0.0)) || (stab && !(stab[i] > 0.0))) return i;
    return n;
}

const engram_decay_ops engram_decay_ops_avx512 = {
    .level = "avx512",
    .exp_f32 = decay_exp_f32_avx512,
    .power_f32 = decay_power_f32_avx512,
    .exp_f64 = decay_exp_f64_avx512,
    .power_f64 = engram_decay_power_f64_generic,
    .exp_f32_checked = decay_exp_f32_checked_avx512,
    .power_f32_checked = decay_power_f32_checked_avx512,
    .first_invalid_f32 = decay_first_invalid_f32_avx512,
    .first_invalid_f64 = decay_first_invalid_f64_avx512,
};

/* ==== end decay ==== */

