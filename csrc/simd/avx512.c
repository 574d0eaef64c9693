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
 * rows, gathers their pulses and accumulates.  The sources are random, so
 * this is the one place a gather pays: measured here, a zmm gather of
 * doubles from L1 moves ~5 elements/ns against ~3 for scalar loads with 4
 * independent chains, and the pull runs at ~80% of the bare gather rate.
 * One accumulator per chunk: chunks are short (the mean in-degree) and
 * independent, so out-of-order execution overlaps them; a second
 * accumulator measured no faster.
 */
#define LANES ENGRAM_SPREAD_LANES

#define W_ONE_512(at) _mm512_set1_pd(1.0)
#define W_F32_512(at) _mm512_cvtps_pd(_mm256_loadu_ps((const float *)p->weights + (at)))
#define W_F64_512(at) _mm512_loadu_pd((const double *)p->weights + (at))
#define ACC_SUM_ONE_512(a, w, g) _mm512_add_pd((a), (g))
#define ACC_SUM_512(a, w, g) _mm512_fmadd_pd((w), (g), (a))
#define ACC_MAX_ONE_512(a, w, g) _mm512_max_pd((a), (g))
#define ACC_MAX_512(a, w, g) _mm512_max_pd((a), _mm512_mul_pd((w), (g)))
#define TOTAL_SUM_512(t, m, v) _mm512_mask_add_pd((t), (m), (t), (v))
#define TOTAL_MAX_512(t, m, v) _mm512_mask_max_pd((t), (m), (t), (v))

/*
 * The chunk's 8 sums stay in a register from the pull straight into the
 * classification: no round trip through memory, no second pass.
 */
#define DEFINE_HOP_AVX512(name, weight_of, accumulate, combine_total)                              \
    static size_t name(const engram_spread_pull *p, const double *pulse,                          \
                       const engram_spread_classify *k, size_t c0, size_t c1, uint64_t *edges) {  \
        const __m512d zero = _mm512_setzero_pd(), threshold = _mm512_set1_pd(k->threshold);       \
        const __m512d send = _mm512_set1_pd(k->send);                                             \
        const double *row_scale = k->row_scale;                                                   \
        const uint32_t *row_degree = k->row_degree;                                               \
        const __mmask8 refire = k->revisit ? 0xFF : 0x00;                                         \
        double *total = k->total, *pulse_next = k->pulse_next;                                    \
        uint8_t *fired = k->fired;                                                                \
        __m512i edge_sum = _mm512_setzero_si512();                                                \
        size_t count = 0;                                                                         \
        int64_t at = p->chunk_offset[c0];                                                         \
        const int32_t *src = p->sources + at;                                                     \
        for (size_t c = c0; c < c1; c++) {                                                        \
            const int32_t length = p->chunk_length[c];                                            \
            __m512d v = zero;                                                                     \
            for (int32_t j = 0; j < length; j++, src += LANES, at += LANES) {                     \
                const __m512d g = _mm512_i32gather_pd(_mm256_loadu_si256((const __m256i *)src),   \
                                                      pulse, 8);                                  \
                v = accumulate(v, weight_of(at), g);                                              \
            }                                                                                     \
            const size_t r = c * LANES;                                                           \
            const __mmask8 before = fired[c];                                                     \
            const __mmask8 m = _mm512_cmp_pd_mask(v, zero, _CMP_GT_OQ) &                          \
                               _mm512_cmp_pd_mask(v, threshold, _CMP_GE_OQ) &                     \
                               (__mmask8)(refire | ~before);                                      \
            if (m == 0) {                                                                         \
                _mm512_storeu_pd(pulse_next + r, zero);                                           \
                continue;                                                                         \
            }                                                                                     \
            const __m512d t = _mm512_loadu_pd(total + r);                                         \
            _mm512_storeu_pd(total + r, combine_total(t, m, v));                                  \
            fired[c] = (uint8_t)(before | m);                                                     \
            __m512d out = _mm512_mul_pd(v, send);                                                 \
            if (row_scale) out = _mm512_mul_pd(out, _mm512_loadu_pd(row_scale + r));              \
            _mm512_storeu_pd(pulse_next + r, _mm512_maskz_mov_pd(m, out));                        \
            count += (size_t)__builtin_popcount(m);                                               \
            const __m512i degree =                                                                \
                _mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)(row_degree + r)));     \
            edge_sum = _mm512_mask_add_epi64(edge_sum, m, edge_sum, degree);                      \
        }                                                                                         \
        *edges += (uint64_t)_mm512_reduce_add_epi64(edge_sum);                                    \
        return count;                                                                             \
    }

DEFINE_HOP_AVX512(hop_sum_unweighted_avx512, W_ONE_512, ACC_SUM_ONE_512, TOTAL_SUM_512)
DEFINE_HOP_AVX512(hop_sum_f32_avx512, W_F32_512, ACC_SUM_512, TOTAL_SUM_512)
DEFINE_HOP_AVX512(hop_sum_f64_avx512, W_F64_512, ACC_SUM_512, TOTAL_SUM_512)
DEFINE_HOP_AVX512(hop_max_unweighted_avx512, W_ONE_512, ACC_MAX_ONE_512, TOTAL_MAX_512)
DEFINE_HOP_AVX512(hop_max_f32_avx512, W_F32_512, ACC_MAX_512, TOTAL_MAX_512)
DEFINE_HOP_AVX512(hop_max_f64_avx512, W_F64_512, ACC_MAX_512, TOTAL_MAX_512)

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
    .hop = {{hop_sum_unweighted_avx512, hop_sum_f32_avx512, hop_sum_f64_avx512},
            {hop_max_unweighted_avx512, hop_max_f32_avx512, hop_max_f64_avx512}},
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

