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

#include <immintrin.h>
#include <string.h>

/*
 * Pull: one zmm holds the 8 rows of a chunk; each slot step loads 8 source
 * rows, gathers their pulses (the slots' sources are random, so this is the
 * one place a gather pays: it replaces 8 dependent-free scalar loads and the
 * branchy per-row loop) and accumulates.  Two accumulators over even and
 * odd slots hide the FMA latency.
 */
#define LANES ENGRAM_SPREAD_LANES

#define W_ONE_512(base, slot) _mm512_set1_pd(1.0)
#define W_F32_512(base, slot) _mm512_cvtps_pd(_mm256_loadu_ps((const float *)p->weights + (base) + (slot)))
#define W_F64_512(base, slot) _mm512_loadu_pd((const double *)p->weights + (base) + (slot))
#define ACC_SUM_ONE_512(a, w, g) _mm512_add_pd((a), (g))
#define ACC_SUM_512(a, w, g) _mm512_fmadd_pd((w), (g), (a))
#define ACC_MAX_ONE_512(a, w, g) _mm512_max_pd((a), (g))
#define ACC_MAX_512(a, w, g) _mm512_max_pd((a), _mm512_mul_pd((w), (g)))
#define MERGE_SUM_512(a, b) _mm512_add_pd((a), (b))
#define MERGE_MAX_512(a, b) _mm512_max_pd((a), (b))

#define DEFINE_PULL_AVX512(name, weight_of, accumulate, merge)                                    \
    static void name(const engram_spread_pull *p, const double *pulse, size_t c0, size_t c1,     \
                     double *x) {                                                                 \
        for (size_t c = c0; c < c1; c++) {                                                        \
            const int64_t base = p->chunk_offset[c];                                              \
            const int32_t *src = p->sources + base;                                               \
            const size_t slots = (size_t)p->chunk_length[c] * LANES;                              \
            __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();                           \
            size_t j = 0;                                                                         \
            for (; j + 2 * LANES <= slots; j += 2 * LANES) {                                      \
                const __m256i i0 = _mm256_loadu_si256((const __m256i *)(src + j));                \
                const __m256i i1 = _mm256_loadu_si256((const __m256i *)(src + j + LANES));        \
                const __m512d g0 = _mm512_i32gather_pd(i0, pulse, 8);                             \
                const __m512d g1 = _mm512_i32gather_pd(i1, pulse, 8);                             \
                a0 = accumulate(a0, weight_of(base, (int64_t)j), g0);                             \
                a1 = accumulate(a1, weight_of(base, (int64_t)(j + LANES)), g1);                   \
            }                                                                                     \
            if (j < slots) {                                                                      \
                const __m256i i0 = _mm256_loadu_si256((const __m256i *)(src + j));                \
                a0 = accumulate(a0, weight_of(base, (int64_t)j), _mm512_i32gather_pd(i0, pulse, 8)); \
            }                                                                                     \
            _mm512_storeu_pd(x + (c - c0) * LANES, merge(a0, a1));                                \
        }                                                                                         \
    }

DEFINE_PULL_AVX512(pull_sum_unweighted_avx512, W_ONE_512, ACC_SUM_ONE_512, MERGE_SUM_512)
DEFINE_PULL_AVX512(pull_sum_f32_avx512, W_F32_512, ACC_SUM_512, MERGE_SUM_512)
DEFINE_PULL_AVX512(pull_sum_f64_avx512, W_F64_512, ACC_SUM_512, MERGE_SUM_512)
DEFINE_PULL_AVX512(pull_max_unweighted_avx512, W_ONE_512, ACC_MAX_ONE_512, MERGE_MAX_512)
DEFINE_PULL_AVX512(pull_max_f32_avx512, W_F32_512, ACC_MAX_512, MERGE_MAX_512)
DEFINE_PULL_AVX512(pull_max_f64_avx512, W_F64_512, ACC_MAX_512, MERGE_MAX_512)

static size_t classify_avx512(const engram_spread_classify *k, size_t c0, size_t c1,
                              const double *x, uint64_t *edges) {
    const __m512d zero = _mm512_setzero_pd(), threshold = _mm512_set1_pd(k->threshold);
    const __m512d send = _mm512_set1_pd(k->send);
    __m512i edge_sum = _mm512_setzero_si512();
    size_t count = 0;
    for (size_t c = c0; c < c1; c++) {
        const size_t r = c * LANES;
        const __m512d v = _mm512_loadu_pd(x + (c - c0) * LANES);
        __mmask8 m = _mm512_cmp_pd_mask(v, zero, _CMP_GT_OQ) &
                     _mm512_cmp_pd_mask(v, threshold, _CMP_GE_OQ);
        if (!k->revisit) m &= (__mmask8)~k->fired[c];
        if (m == 0) {
            _mm512_storeu_pd(k->pulse_next + r, zero);
            continue;
        }
        const __m512d t = _mm512_loadu_pd(k->total + r);
        _mm512_storeu_pd(k->total + r, k->combine == ENGRAM_SPREAD_SUM
                                           ? _mm512_mask_add_pd(t, m, t, v)
                                           : _mm512_mask_max_pd(t, m, t, v));
        k->fired[c] |= m;
        __m512d s = _mm512_mul_pd(v, send);
        if (k->row_scale) s = _mm512_mul_pd(s, _mm512_loadu_pd(k->row_scale + r));
        _mm512_storeu_pd(k->pulse_next + r, _mm512_maskz_mov_pd(m, s));
        count += (size_t)__builtin_popcount(m);
        const __m512i degree = _mm512_cvtepu32_epi64(
            _mm256_loadu_si256((const __m256i *)(k->row_degree + r)));
        edge_sum = _mm512_mask_add_epi64(edge_sum, m, edge_sum, degree);
    }
    *edges += (uint64_t)_mm512_reduce_add_epi64(edge_sum);
    return count;
}

/* Finite and >= 0 (false for NaN). */
static inline __mmask16 seeds_ok_ps(__m512 v) {
    return _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ) &
           _mm512_cmp_ps_mask(v, _mm512_set1_ps(3.40282346638528859812e+38f), _CMP_LE_OQ);
}
static inline __mmask8 seeds_ok_pd(__m512d v) {
    return _mm512_cmp_pd_mask(v, _mm512_setzero_pd(), _CMP_GE_OQ) &
           _mm512_cmp_pd_mask(v, _mm512_set1_pd(1.79769313486231570815e+308), _CMP_LE_OQ);
}

static size_t select_f32_avx512(const float *s, size_t n, float threshold, float *out,
                                int64_t *ids, size_t *count) {
    const __m512 zero = _mm512_setzero_ps(), t = _mm512_set1_ps(threshold);
    size_t k = *count, i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(s + i);
        if (seeds_ok_ps(v) != 0xFFFF) break;
        _mm512_storeu_ps(out + i, v);
        unsigned sel = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ) & _mm512_cmp_ps_mask(v, t, _CMP_GE_OQ);
        while (sel) {
            ids[k++] = (int64_t)(i + (size_t)__builtin_ctz(sel));
            sel &= sel - 1;
        }
    }
    *count = k;
    const size_t rest = engram_spread_select_f32_scalar(s + i, n - i, threshold, out + i, ids, count);
    for (size_t j = k; j < *count; j++) ids[j] += (int64_t)i;
    return i + rest;
}

static size_t select_f64_avx512(const double *s, size_t n, double threshold, float *out,
                                int64_t *ids, size_t *count) {
    const __m512d zero = _mm512_setzero_pd(), t = _mm512_set1_pd(threshold);
    size_t k = *count, i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512d v = _mm512_loadu_pd(s + i);
        if (seeds_ok_pd(v) != 0xFF) break;
        _mm256_storeu_ps(out + i, _mm512_cvtpd_ps(v));
        unsigned sel = _mm512_cmp_pd_mask(v, zero, _CMP_GT_OQ) & _mm512_cmp_pd_mask(v, t, _CMP_GE_OQ);
        while (sel) {
            ids[k++] = (int64_t)(i + (size_t)__builtin_ctz(sel));
            sel &= sel - 1;
        }
    }
    *count = k;
    const size_t rest = engram_spread_select_f64_scalar(s + i, n - i, threshold, out + i, ids, count);
    for (size_t j = k; j < *count; j++) ids[j] += (int64_t)i;
    return i + rest;
}

static size_t first_bad_f32_avx512(const float *s, size_t n) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const __mmask16 ok = seeds_ok_ps(_mm512_loadu_ps(s + i)) & seeds_ok_ps(_mm512_loadu_ps(s + i + 16)) &
                             seeds_ok_ps(_mm512_loadu_ps(s + i + 32)) & seeds_ok_ps(_mm512_loadu_ps(s + i + 48));
        if (ok != 0xFFFF) break;
    }
    return i + engram_spread_first_bad_f32_scalar(s + i, n - i);
}

static size_t first_bad_f64_avx512(const double *s, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __mmask8 ok = seeds_ok_pd(_mm512_loadu_pd(s + i)) & seeds_ok_pd(_mm512_loadu_pd(s + i + 8)) &
                            seeds_ok_pd(_mm512_loadu_pd(s + i + 16)) & seeds_ok_pd(_mm512_loadu_pd(s + i + 24));
        if (ok != 0xFF) break;
    }
    return i + engram_spread_first_bad_f64_scalar(s + i, n - i);
}

const engram_spread_ops engram_spread_ops_avx512 = {
    .level = "avx512",
    .pull = {{pull_sum_unweighted_avx512, pull_sum_f32_avx512, pull_sum_f64_avx512},
             {pull_max_unweighted_avx512, pull_max_f32_avx512, pull_max_f64_avx512}},
    .classify = classify_avx512,
    .select_f32 = select_f32_avx512,
    .select_f64 = select_f64_avx512,
    .first_bad_f32 = first_bad_f32_avx512,
    .first_bad_f64 = first_bad_f64_avx512,
};

#undef LANES

/* ==== end spread ==== */

/* ==== decay ==== */

const engram_decay_ops engram_decay_ops_avx512 = {
    .level = "avx512",
};

/* ==== end decay ==== */

