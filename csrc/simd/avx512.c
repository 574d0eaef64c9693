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

/* The classification of one chunk of 8 rows from their sums v (kept in a register). */
typedef struct classify_512 {
    __m512d threshold, send;
    const double *row_scale;
    const uint32_t *row_degree;
    __mmask8 refire;
    double *total, *pulse_next;
    uint8_t *fired;
    __m512i edge_sum;
    size_t count;
} classify_512;

static inline classify_512 classify_512_begin(const engram_spread_classify *k) {
    classify_512 cs = {
        .threshold = _mm512_set1_pd(k->threshold),
        .send = _mm512_set1_pd(k->send),
        .row_scale = k->row_scale,
        .row_degree = k->row_degree,
        .refire = k->revisit ? 0xFF : 0x00,
        .total = k->total,
        .pulse_next = k->pulse_next,
        .fired = k->fired,
        .edge_sum = _mm512_setzero_si512(),
        .count = 0,
    };
    return cs;
}

static inline void classify_512_chunk(classify_512 *cs, size_t c, __m512d v, int sum) {
    const __m512d zero = _mm512_setzero_pd();
    const size_t r = c * LANES;
    const __mmask8 before = cs->fired[c];
    const __mmask8 m = _mm512_cmp_pd_mask(v, zero, _CMP_GT_OQ) &
                       _mm512_cmp_pd_mask(v, cs->threshold, _CMP_GE_OQ) & (__mmask8)(cs->refire | ~before);
    if (m == 0) {
        _mm512_storeu_pd(cs->pulse_next + r, zero);
        return;
    }
    const __m512d t = _mm512_loadu_pd(cs->total + r);
    _mm512_storeu_pd(cs->total + r, sum ? _mm512_mask_add_pd(t, m, t, v) : _mm512_mask_max_pd(t, m, t, v));
    cs->fired[c] = (uint8_t)(before | m);
    __m512d out = _mm512_mul_pd(v, cs->send);
    if (cs->row_scale) out = _mm512_mul_pd(out, _mm512_loadu_pd(cs->row_scale + r));
    _mm512_storeu_pd(cs->pulse_next + r, _mm512_maskz_mov_pd(m, out));
    cs->count += (size_t)__builtin_popcount(m);
    const __m512i degree =
        _mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)(cs->row_degree + r)));
    cs->edge_sum = _mm512_mask_add_epi64(cs->edge_sum, m, cs->edge_sum, degree);
}

static inline size_t classify_512_end(classify_512 *cs, uint64_t *edges) {
    *edges += (uint64_t)_mm512_reduce_add_epi64(cs->edge_sum);
    return cs->count;
}

/* One chunk's 8 sums (or maxima) over its slots; advances src and at. */
#define CHUNK_SUMS_512(v, length, weight_of, accumulate)                                          \
    do {                                                                                          \
        for (int32_t j = 0; j < (length); j++, src += LANES, at += LANES) {                       \
            const __m512d g = _mm512_i32gather_pd(_mm256_loadu_si256((const __m256i *)src), pulse, 8); \
            v = accumulate(v, weight_of(at), g);                                                  \
        }                                                                                         \
    } while (0)

/*
 * Unblocked hop: the chunk's 8 sums stay in a register from the pull
 * straight into the classification: no round trip through memory.
 */
#define DEFINE_HOP_AVX512(name, weight_of, accumulate, sum)                                        \
    static size_t name(const engram_spread_pull *p, const double *pulse,                          \
                       const engram_spread_classify *k, size_t c0, size_t c1, uint64_t *edges) {  \
        classify_512 cs = classify_512_begin(k);                                                  \
        int64_t at = p->chunk_offset[c0];                                                         \
        const int32_t *src = p->sources + at;                                                     \
        for (size_t c = c0; c < c1; c++) {                                                        \
            __m512d v = _mm512_setzero_pd();                                                      \
            CHUNK_SUMS_512(v, p->chunk_length[c], weight_of, accumulate);                         \
            classify_512_chunk(&cs, c, v, sum);                                                   \
        }                                                                                         \
        return classify_512_end(&cs, edges);                                                      \
    }

DEFINE_HOP_AVX512(hop_sum_unweighted_avx512, W_ONE_512, ACC_SUM_ONE_512, 1)
DEFINE_HOP_AVX512(hop_sum_f32_avx512, W_F32_512, ACC_SUM_512, 1)
DEFINE_HOP_AVX512(hop_sum_f64_avx512, W_F64_512, ACC_SUM_512, 1)
DEFINE_HOP_AVX512(hop_max_unweighted_avx512, W_ONE_512, ACC_MAX_ONE_512, 0)
DEFINE_HOP_AVX512(hop_max_f32_avx512, W_F32_512, ACC_MAX_512, 0)
DEFINE_HOP_AVX512(hop_max_f64_avx512, W_F64_512, ACC_MAX_512, 0)

/*
 * Blocked layouts: a chunk's rows are anywhere in its window, so its sums
 * are added row by row (a scatter could not: padding lanes repeat a row).
 */
#define DEFINE_ACCUMULATE_AVX512(name, weight_of, accumulate, sum)                                 \
    static void name(const engram_spread_pull *p, const double *pulse, size_t c0, size_t c1,     \
                     double *x) {                                                                 \
        int64_t at = p->chunk_offset[c0];                                                         \
        const int32_t *src = p->sources + at;                                                     \
        double sums[LANES];                                                                       \
        for (size_t c = c0; c < c1; c++) {                                                        \
            __m512d v = _mm512_setzero_pd();                                                      \
            CHUNK_SUMS_512(v, p->chunk_length[c], weight_of, accumulate);                         \
            _mm512_storeu_pd(sums, v);                                                            \
            const int32_t *rows = p->chunk_rows + c * LANES;                                      \
            for (int l = 0; l < LANES; l++) {                                                     \
                if (sum) x[rows[l]] += sums[l];                                                   \
                else if (sums[l] > x[rows[l]]) x[rows[l]] = sums[l];                              \
            }                                                                                     \
        }                                                                                         \
    }

DEFINE_ACCUMULATE_AVX512(accumulate_sum_unweighted_avx512, W_ONE_512, ACC_SUM_ONE_512, 1)
DEFINE_ACCUMULATE_AVX512(accumulate_sum_f32_avx512, W_F32_512, ACC_SUM_512, 1)
DEFINE_ACCUMULATE_AVX512(accumulate_sum_f64_avx512, W_F64_512, ACC_SUM_512, 1)
DEFINE_ACCUMULATE_AVX512(accumulate_max_unweighted_avx512, W_ONE_512, ACC_MAX_ONE_512, 0)
DEFINE_ACCUMULATE_AVX512(accumulate_max_f32_avx512, W_F32_512, ACC_MAX_512, 0)
DEFINE_ACCUMULATE_AVX512(accumulate_max_f64_avx512, W_F64_512, ACC_MAX_512, 0)

static size_t classify_avx512(const engram_spread_classify *k, size_t c0, size_t c1, const double *x,
                              uint64_t *edges) {
    classify_512 cs = classify_512_begin(k);
    const int sum = k->combine == ENGRAM_SPREAD_SUM;
    for (size_t c = c0; c < c1; c++)
        classify_512_chunk(&cs, c, _mm512_loadu_pd(x + (c - c0) * LANES), sum);
    return classify_512_end(&cs, edges);
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
    .hop = {{hop_sum_unweighted_avx512, hop_sum_f32_avx512, hop_sum_f64_avx512},
            {hop_max_unweighted_avx512, hop_max_f32_avx512, hop_max_f64_avx512}},
    .accumulate = {{accumulate_sum_unweighted_avx512, accumulate_sum_f32_avx512, accumulate_sum_f64_avx512},
                   {accumulate_max_unweighted_avx512, accumulate_max_f32_avx512, accumulate_max_f64_avx512}},
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

