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

#include <immintrin.h>

#define SPREAD_LANES ENGRAM_SPREAD_LANES

/*
 * Pull with two ymm gathers per slot step (4 doubles each), then the same
 * classification as the scalar spec with the 8 sums in two registers.
 */
#define W1_256(at, half) _mm256_set1_pd(1.0)
#define WF32_256(at, half) _mm256_cvtps_pd(_mm_loadu_ps((const float *)p->weights + (at) + 4 * (half)))
#define WF64_256(at, half) _mm256_loadu_pd((const double *)p->weights + (at) + 4 * (half))
#define SUM1_256(a, w, g) _mm256_add_pd((a), (g))
#define SUMW_256(a, w, g) _mm256_fmadd_pd((w), (g), (a))
#define MAX1_256(a, w, g) _mm256_max_pd((a), (g))
#define MAXW_256(a, w, g) _mm256_max_pd((a), _mm256_mul_pd((w), (g)))

static inline unsigned spread_fires_256(__m256d v, __m256d threshold) {
    const __m256d ok = _mm256_and_pd(_mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_GT_OQ),
                                     _mm256_cmp_pd(v, threshold, _CMP_GE_OQ));
    return (unsigned)_mm256_movemask_pd(ok);
}

/* Lane masks of 4 bits as a blend mask. */
static inline __m256d spread_mask_256(unsigned bits) {
    const __m256i lane = _mm256_setr_epi64x(1, 2, 4, 8);
    return _mm256_castsi256_pd(
        _mm256_cmpeq_epi64(_mm256_and_si256(_mm256_set1_epi64x((long long)bits), lane), lane));
}

/* The classification of one chunk from its sums in two ymm (rows 0-3, 4-7). */
typedef struct classify_256 {
    __m256d threshold, send;
    const double *row_scale;
    const uint32_t *row_degree;
    unsigned refire;
    double *total, *pulse_next;
    uint8_t *fired;
    uint64_t edge_sum;
    size_t count;
} classify_256;

static inline classify_256 classify_256_begin(const engram_spread_classify *k) {
    classify_256 cs = {
        .threshold = _mm256_set1_pd(k->threshold),
        .send = _mm256_set1_pd(k->send),
        .row_scale = k->row_scale,
        .row_degree = k->row_degree,
        .refire = k->revisit ? 0xFFu : 0u,
        .total = k->total,
        .pulse_next = k->pulse_next,
        .fired = k->fired,
        .edge_sum = 0,
        .count = 0,
    };
    return cs;
}

static inline void classify_256_chunk(classify_256 *cs, size_t c, __m256d lo, __m256d hi, int sum) {
    const size_t r = c * SPREAD_LANES;
    const unsigned before = cs->fired[c];
    const unsigned m = (spread_fires_256(lo, cs->threshold) | spread_fires_256(hi, cs->threshold) << 4) &
                       (cs->refire | ~before) & 0xFFu;
    if (m == 0) {
        _mm256_storeu_pd(cs->pulse_next + r, _mm256_setzero_pd());
        _mm256_storeu_pd(cs->pulse_next + r + 4, _mm256_setzero_pd());
        return;
    }
    const __m256d m_lo = spread_mask_256(m & 15u), m_hi = spread_mask_256(m >> 4);
    const __m256d t_lo = _mm256_loadu_pd(cs->total + r), t_hi = _mm256_loadu_pd(cs->total + r + 4);
    const __m256d n_lo = sum ? _mm256_add_pd(t_lo, lo) : _mm256_max_pd(t_lo, lo);
    const __m256d n_hi = sum ? _mm256_add_pd(t_hi, hi) : _mm256_max_pd(t_hi, hi);
    _mm256_storeu_pd(cs->total + r, _mm256_blendv_pd(t_lo, n_lo, m_lo));
    _mm256_storeu_pd(cs->total + r + 4, _mm256_blendv_pd(t_hi, n_hi, m_hi));
    cs->fired[c] = (uint8_t)(before | m);
    __m256d s_lo = _mm256_mul_pd(lo, cs->send), s_hi = _mm256_mul_pd(hi, cs->send);
    if (cs->row_scale) {
        s_lo = _mm256_mul_pd(s_lo, _mm256_loadu_pd(cs->row_scale + r));
        s_hi = _mm256_mul_pd(s_hi, _mm256_loadu_pd(cs->row_scale + r + 4));
    }
    _mm256_storeu_pd(cs->pulse_next + r, _mm256_and_pd(s_lo, m_lo));
    _mm256_storeu_pd(cs->pulse_next + r + 4, _mm256_and_pd(s_hi, m_hi));
    cs->count += (size_t)__builtin_popcount(m);
    for (unsigned bits = m; bits; bits &= bits - 1)
        cs->edge_sum += cs->row_degree[r + (size_t)__builtin_ctz(bits)];
}

/* One chunk's sums over its slots into lo (rows 0-3) and hi (rows 4-7); advances src and at. */
#define CHUNK_SUMS_256(lo, hi, length, weight_of, accumulate)                                     \
    do {                                                                                          \
        for (int32_t j = 0; j < (length); j++, src += SPREAD_LANES, at += SPREAD_LANES) {         \
            const __m256d g0 = _mm256_i32gather_pd(pulse, _mm_loadu_si128((const __m128i *)src), 8); \
            const __m256d g1 =                                                                    \
                _mm256_i32gather_pd(pulse, _mm_loadu_si128((const __m128i *)(src + 4)), 8);       \
            lo = accumulate(lo, weight_of(at, 0), g0);                                            \
            hi = accumulate(hi, weight_of(at, 1), g1);                                            \
        }                                                                                         \
    } while (0)

#define DEFINE_HOP_AVX2(name, weight_of, accumulate, sum)                                          \
    static size_t name(const engram_spread_pull *p, const double *pulse,                          \
                       const engram_spread_classify *k, size_t c0, size_t c1, uint64_t *edges) {  \
        classify_256 cs = classify_256_begin(k);                                                  \
        int64_t at = p->chunk_offset[c0];                                                         \
        const int32_t *src = p->sources + at;                                                     \
        for (size_t c = c0; c < c1; c++) {                                                        \
            __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();                           \
            CHUNK_SUMS_256(lo, hi, p->chunk_length[c], weight_of, accumulate);                    \
            classify_256_chunk(&cs, c, lo, hi, sum);                                              \
        }                                                                                         \
        *edges += cs.edge_sum;                                                                    \
        return cs.count;                                                                          \
    }

DEFINE_HOP_AVX2(hop_sum_unweighted_avx2, W1_256, SUM1_256, 1)
DEFINE_HOP_AVX2(hop_sum_f32_avx2, WF32_256, SUMW_256, 1)
DEFINE_HOP_AVX2(hop_sum_f64_avx2, WF64_256, SUMW_256, 1)
DEFINE_HOP_AVX2(hop_max_unweighted_avx2, W1_256, MAX1_256, 0)
DEFINE_HOP_AVX2(hop_max_f32_avx2, WF32_256, MAXW_256, 0)
DEFINE_HOP_AVX2(hop_max_f64_avx2, WF64_256, MAXW_256, 0)

#define DEFINE_ACCUMULATE_AVX2(name, weight_of, accumulate, sum)                                   \
    static void name(const engram_spread_pull *p, const double *pulse, size_t c0, size_t c1,     \
                     double *x) {                                                                 \
        int64_t at = p->chunk_offset[c0];                                                         \
        const int32_t *src = p->sources + at;                                                     \
        double sums[SPREAD_LANES];                                                                \
        for (size_t c = c0; c < c1; c++) {                                                        \
            __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();                           \
            CHUNK_SUMS_256(lo, hi, p->chunk_length[c], weight_of, accumulate);                    \
            _mm256_storeu_pd(sums, lo);                                                           \
            _mm256_storeu_pd(sums + 4, hi);                                                       \
            const int32_t *rows = p->chunk_rows + c * SPREAD_LANES;                               \
            for (int l = 0; l < SPREAD_LANES; l++) {                                              \
                if (sum) x[rows[l]] += sums[l];                                                   \
                else if (sums[l] > x[rows[l]]) x[rows[l]] = sums[l];                              \
            }                                                                                     \
        }                                                                                         \
    }

DEFINE_ACCUMULATE_AVX2(accumulate_sum_unweighted_avx2, W1_256, SUM1_256, 1)
DEFINE_ACCUMULATE_AVX2(accumulate_sum_f32_avx2, WF32_256, SUMW_256, 1)
DEFINE_ACCUMULATE_AVX2(accumulate_sum_f64_avx2, WF64_256, SUMW_256, 1)
DEFINE_ACCUMULATE_AVX2(accumulate_max_unweighted_avx2, W1_256, MAX1_256, 0)
DEFINE_ACCUMULATE_AVX2(accumulate_max_f32_avx2, WF32_256, MAXW_256, 0)
DEFINE_ACCUMULATE_AVX2(accumulate_max_f64_avx2, WF64_256, MAXW_256, 0)

static size_t classify_avx2(const engram_spread_classify *k, size_t c0, size_t c1, const double *x,
                            uint64_t *edges) {
    classify_256 cs = classify_256_begin(k);
    const int sum = k->combine == ENGRAM_SPREAD_SUM;
    for (size_t c = c0; c < c1; c++) {
        const double *v = x + (c - c0) * SPREAD_LANES;
        classify_256_chunk(&cs, c, _mm256_loadu_pd(v), _mm256_loadu_pd(v + 4), sum);
    }
    *edges += cs.edge_sum;
    return cs.count;
}

/* Finite and >= 0 (false for NaN), 8 floats -> 8 bits. */
static inline unsigned spread_ok_ps_256(__m256 v) {
    const __m256 ok = _mm256_and_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GE_OQ),
                                    _mm256_cmp_ps(v, _mm256_set1_ps(3.40282346638528859812e+38f), _CMP_LE_OQ));
    return (unsigned)_mm256_movemask_ps(ok);
}
static inline unsigned spread_ok_pd_256(__m256d v) {
    const __m256d ok = _mm256_and_pd(_mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_GE_OQ),
                                     _mm256_cmp_pd(v, _mm256_set1_pd(1.79769313486231570815e+308), _CMP_LE_OQ));
    return (unsigned)_mm256_movemask_pd(ok);
}

static size_t select_f32_avx2(const float *s, size_t n, float threshold, float *out, int64_t *ids,
                              size_t *count) {
    const __m256 zero = _mm256_setzero_ps(), t = _mm256_set1_ps(threshold);
    size_t k = *count, i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(s + i);
        if (spread_ok_ps_256(v) != 0xFFu) break;
        _mm256_storeu_ps(out + i, v);
        unsigned sel = (unsigned)_mm256_movemask_ps(
            _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_GT_OQ), _mm256_cmp_ps(v, t, _CMP_GE_OQ)));
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

static size_t select_f64_avx2(const double *s, size_t n, double threshold, float *out, int64_t *ids,
                              size_t *count) {
    const __m256d zero = _mm256_setzero_pd(), t = _mm256_set1_pd(threshold);
    size_t k = *count, i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256d v = _mm256_loadu_pd(s + i);
        if (spread_ok_pd_256(v) != 0xFu) break;
        _mm_storeu_ps(out + i, _mm256_cvtpd_ps(v));
        unsigned sel = (unsigned)_mm256_movemask_pd(
            _mm256_and_pd(_mm256_cmp_pd(v, zero, _CMP_GT_OQ), _mm256_cmp_pd(v, t, _CMP_GE_OQ)));
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

static size_t first_bad_f32_avx2(const float *s, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const unsigned ok = spread_ok_ps_256(_mm256_loadu_ps(s + i)) & spread_ok_ps_256(_mm256_loadu_ps(s + i + 8)) &
                            spread_ok_ps_256(_mm256_loadu_ps(s + i + 16)) & spread_ok_ps_256(_mm256_loadu_ps(s + i + 24));
        if (ok != 0xFFu) break;
    }
    return i + engram_spread_first_bad_f32_scalar(s + i, n - i);
}

static size_t first_bad_f64_avx2(const double *s, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const unsigned ok = spread_ok_pd_256(_mm256_loadu_pd(s + i)) & spread_ok_pd_256(_mm256_loadu_pd(s + i + 4)) &
                            spread_ok_pd_256(_mm256_loadu_pd(s + i + 8)) & spread_ok_pd_256(_mm256_loadu_pd(s + i + 12));
        if (ok != 0xFu) break;
    }
    return i + engram_spread_first_bad_f64_scalar(s + i, n - i);
}

const engram_spread_ops engram_spread_ops_avx2 = {
    .level = "avx2",
    .hop = {{hop_sum_unweighted_avx2, hop_sum_f32_avx2, hop_sum_f64_avx2},
            {hop_max_unweighted_avx2, hop_max_f32_avx2, hop_max_f64_avx2}},
    .accumulate = {{accumulate_sum_unweighted_avx2, accumulate_sum_f32_avx2, accumulate_sum_f64_avx2},
                   {accumulate_max_unweighted_avx2, accumulate_max_f32_avx2, accumulate_max_f64_avx2}},
    .classify = classify_avx2,
    .select_f32 = select_f32_avx2,
    .select_f64 = select_f64_avx2,
    .first_bad_f32 = first_bad_f32_avx2,
    .first_bad_f64 = first_bad_f64_avx2,
};

#undef SPREAD_LANES

/* ==== end spread ==== */

/* ==== decay ==== */

const engram_decay_ops engram_decay_ops_avx2 = {
    .level = "avx2",
};

/* ==== end decay ==== */

