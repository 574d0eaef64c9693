/*
 * avx512 primitives of every kernel, compiled with this level's -m flags only.
 * Each section fills that kernel's table; the scalar version in csrc/<kernel>.c is the spec.
 */
#include "../engram.h"

/* ==== similarity ==== */

#include <immintrin.h>

/* Elements of d between float64 flushes: ENGRAM_SIM_F32_LANE_TERMS products per lane. */
#define SIM_F32_FLUSH (16 * ENGRAM_SIM_F32_LANE_TERMS)

/*
 * float32: 16-lane FMA accumulators, flushed into float64 every
 * SIM_F32_FLUSH elements of d, so no lane sums more than
 * ENGRAM_SIM_F32_LANE_TERMS products (see engram.h); tails use masked loads,
 * which never touch memory past the end of a row.
 */

static inline __mmask16 sim_mask16(size_t n) { return (__mmask16)((1u << n) - 1u); }
static inline __mmask8 sim_mask8(size_t n) { return (__mmask8)((1u << n) - 1u); }

/* The 16 float32 lanes of v added pairwise into 8 float64 lanes. */
static inline __m512d sim_widen_ps(__m512 v) {
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
    return _mm512_add_pd(lo, hi);
}

/*
 * Streaming rows from memory, the hardware prefetcher alone reaches ~70 %
 * of this machine's read bandwidth; also asking for the same offset of a
 * row at least 4 KB (and 4 rows) further on reaches 90-98 %.  Row-based,
 * so row-strided inputs do not fetch the gaps.  The address is formed as an
 * integer: it may lie past the end of the rows, and prefetches never fault.
 */
static inline ptrdiff_t sim_prefetch_ahead(ptrdiff_t row_bytes) {
    ptrdiff_t size = row_bytes < 0 ? -row_bytes : row_bytes, rows = 4;
    while (rows * size < 4096 && rows < 4096) rows += 4;
    return rows * row_bytes;
}
#define SIM_PREFETCH(p, ahead) _mm_prefetch((const char *)((uintptr_t)(p) + (uintptr_t)(ahead)), _MM_HINT_T0)
/* Keep v in a register: stops the compiler from re-loading it as a memory operand of each FMA. */
#define SIM_IN_REGISTER(v) __asm__("" : "+v"(v))

static void pair_f32_avx512(const float *x, const float *y, size_t d, double out[3]) {
    __m512d sxy = _mm512_setzero_pd(), sxx = sxy, syy = sxy;
    size_t i = 0;
    do {
        size_t end = d - i > SIM_F32_FLUSH ? i + SIM_F32_FLUSH : d;
        /* four accumulators per sum: 12 independent FMA chains hide the latency */
        __m512 xy0 = _mm512_setzero_ps(), xy1 = xy0, xy2 = xy0, xy3 = xy0;
        __m512 xx0 = xy0, xx1 = xy0, xx2 = xy0, xx3 = xy0;
        __m512 yy0 = xy0, yy1 = xy0, yy2 = xy0, yy3 = xy0;
        for (; i + 64 <= end; i += 64) {
            __m512 a0 = _mm512_loadu_ps(x + i), b0 = _mm512_loadu_ps(y + i);
            __m512 a1 = _mm512_loadu_ps(x + i + 16), b1 = _mm512_loadu_ps(y + i + 16);
            __m512 a2 = _mm512_loadu_ps(x + i + 32), b2 = _mm512_loadu_ps(y + i + 32);
            __m512 a3 = _mm512_loadu_ps(x + i + 48), b3 = _mm512_loadu_ps(y + i + 48);
            /* one load per vector: otherwise y is loaded again as an FMA memory operand */
            SIM_IN_REGISTER(b0);
            SIM_IN_REGISTER(b1);
            SIM_IN_REGISTER(b2);
            SIM_IN_REGISTER(b3);
            xy0 = _mm512_fmadd_ps(a0, b0, xy0);
            xx0 = _mm512_fmadd_ps(a0, a0, xx0);
            yy0 = _mm512_fmadd_ps(b0, b0, yy0);
            xy1 = _mm512_fmadd_ps(a1, b1, xy1);
            xx1 = _mm512_fmadd_ps(a1, a1, xx1);
            yy1 = _mm512_fmadd_ps(b1, b1, yy1);
            xy2 = _mm512_fmadd_ps(a2, b2, xy2);
            xx2 = _mm512_fmadd_ps(a2, a2, xx2);
            yy2 = _mm512_fmadd_ps(b2, b2, yy2);
            xy3 = _mm512_fmadd_ps(a3, b3, xy3);
            xx3 = _mm512_fmadd_ps(a3, a3, xx3);
            yy3 = _mm512_fmadd_ps(b3, b3, yy3);
        }
        for (; i < end; i += 16) {
            __mmask16 m = end - i >= 16 ? (__mmask16)0xFFFF : sim_mask16(end - i);
            __m512 a = _mm512_maskz_loadu_ps(m, x + i), b = _mm512_maskz_loadu_ps(m, y + i);
            xy0 = _mm512_fmadd_ps(a, b, xy0);
            xx0 = _mm512_fmadd_ps(a, a, xx0);
            yy0 = _mm512_fmadd_ps(b, b, yy0);
        }
        i = end;
        sxy = _mm512_add_pd(sxy, sim_widen_ps(_mm512_add_ps(_mm512_add_ps(xy0, xy1),
                                                            _mm512_add_ps(xy2, xy3))));
        sxx = _mm512_add_pd(sxx, sim_widen_ps(_mm512_add_ps(_mm512_add_ps(xx0, xx1),
                                                            _mm512_add_ps(xx2, xx3))));
        syy = _mm512_add_pd(syy, sim_widen_ps(_mm512_add_ps(_mm512_add_ps(yy0, yy1),
                                                            _mm512_add_ps(yy2, yy3))));
    } while (i < d);
    out[0] = _mm512_reduce_add_pd(sxy);
    out[1] = _mm512_reduce_add_pd(sxx);
    out[2] = _mm512_reduce_add_pd(syy);
}

static void pair_f64_avx512(const double *x, const double *y, size_t d, double out[3]) {
    __m512d xy0 = _mm512_setzero_pd(), xy1 = xy0, xx0 = xy0, xx1 = xy0, yy0 = xy0, yy1 = xy0;
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        __m512d a0 = _mm512_loadu_pd(x + i), b0 = _mm512_loadu_pd(y + i);
        __m512d a1 = _mm512_loadu_pd(x + i + 8), b1 = _mm512_loadu_pd(y + i + 8);
        xy0 = _mm512_fmadd_pd(a0, b0, xy0);
        xx0 = _mm512_fmadd_pd(a0, a0, xx0);
        yy0 = _mm512_fmadd_pd(b0, b0, yy0);
        xy1 = _mm512_fmadd_pd(a1, b1, xy1);
        xx1 = _mm512_fmadd_pd(a1, a1, xx1);
        yy1 = _mm512_fmadd_pd(b1, b1, yy1);
    }
    for (; i < d; i += 8) {
        __mmask8 m = d - i >= 8 ? (__mmask8)0xFF : sim_mask8(d - i);
        __m512d a = _mm512_maskz_loadu_pd(m, x + i), b = _mm512_maskz_loadu_pd(m, y + i);
        xy0 = _mm512_fmadd_pd(a, b, xy0);
        xx0 = _mm512_fmadd_pd(a, a, xx0);
        yy0 = _mm512_fmadd_pd(b, b, yy0);
    }
    out[0] = _mm512_reduce_add_pd(_mm512_add_pd(xy0, xy1));
    out[1] = _mm512_reduce_add_pd(_mm512_add_pd(xx0, xx1));
    out[2] = _mm512_reduce_add_pd(_mm512_add_pd(yy0, yy1));
}

/*
 * R rows against q at once: one dot and one norm accumulator per row, so
 * 2R independent FMA chains share each load of q.  A row's arithmetic is
 * the same whatever R is, so results do not depend on how rows group.
 */
static inline __attribute__((always_inline)) void
dot_norm_rows_f32_avx512(const float *q, const float *rows, ptrdiff_t stride, size_t d,
                         double *dot, double *norm2, ptrdiff_t ahead, const int R) {
    __m512d sd[4], sn[4];
    for (int r = 0; r < R; r++) sd[r] = sn[r] = _mm512_setzero_pd();
    size_t i = 0;
    do {
        size_t end = d - i > SIM_F32_FLUSH ? i + SIM_F32_FLUSH : d;
        __m512 ad[4], an[4];
        for (int r = 0; r < R; r++) ad[r] = an[r] = _mm512_setzero_ps();
        for (; i + 16 <= end; i += 16) {
            __m512 qv = _mm512_loadu_ps(q + i);
            for (int r = 0; r < R; r++) {
                SIM_PREFETCH(rows + r * stride + i, ahead);
                __m512 v = _mm512_loadu_ps(rows + r * stride + i);
                ad[r] = _mm512_fmadd_ps(v, qv, ad[r]);
                an[r] = _mm512_fmadd_ps(v, v, an[r]);
            }
        }
        if (i < end) {
            __mmask16 m = sim_mask16(end - i);
            __m512 qv = _mm512_maskz_loadu_ps(m, q + i);
            for (int r = 0; r < R; r++) {
                __m512 v = _mm512_maskz_loadu_ps(m, rows + r * stride + i);
                ad[r] = _mm512_fmadd_ps(v, qv, ad[r]);
                an[r] = _mm512_fmadd_ps(v, v, an[r]);
            }
            i = end;
        }
        for (int r = 0; r < R; r++) {
            sd[r] = _mm512_add_pd(sd[r], sim_widen_ps(ad[r]));
            sn[r] = _mm512_add_pd(sn[r], sim_widen_ps(an[r]));
        }
    } while (i < d);
    for (int r = 0; r < R; r++) {
        dot[r] = _mm512_reduce_add_pd(sd[r]);
        norm2[r] = _mm512_reduce_add_pd(sn[r]);
    }
}

static void one_to_many_f32_avx512(const float *q, const float *rows, ptrdiff_t stride, size_t n,
                                   size_t d, double *dot, double *norm2) {
    ptrdiff_t ahead = sim_prefetch_ahead(stride * (ptrdiff_t)sizeof(float));
    size_t r = 0;
    for (; r + 4 <= n; r += 4)
        dot_norm_rows_f32_avx512(q, rows + (ptrdiff_t)r * stride, stride, d, dot + r, norm2 + r,
                                 ahead, 4);
    for (; r < n; r++)
        dot_norm_rows_f32_avx512(q, rows + (ptrdiff_t)r * stride, stride, d, dot + r, norm2 + r,
                                 ahead, 1);
}

static inline __attribute__((always_inline)) void
dot_norm_rows_f64_avx512(const double *q, const double *rows, ptrdiff_t stride, size_t d,
                         double *dot, double *norm2, ptrdiff_t ahead, const int R) {
    __m512d ad[4], an[4];
    for (int r = 0; r < R; r++) ad[r] = an[r] = _mm512_setzero_pd();
    size_t i = 0;
    for (; i + 8 <= d; i += 8) {
        __m512d qv = _mm512_loadu_pd(q + i);
        for (int r = 0; r < R; r++) {
            SIM_PREFETCH(rows + r * stride + i, ahead);
            __m512d v = _mm512_loadu_pd(rows + r * stride + i);
            ad[r] = _mm512_fmadd_pd(v, qv, ad[r]);
            an[r] = _mm512_fmadd_pd(v, v, an[r]);
        }
    }
    if (i < d) {
        __mmask8 m = sim_mask8(d - i);
        __m512d qv = _mm512_maskz_loadu_pd(m, q + i);
        for (int r = 0; r < R; r++) {
            __m512d v = _mm512_maskz_loadu_pd(m, rows + r * stride + i);
            ad[r] = _mm512_fmadd_pd(v, qv, ad[r]);
            an[r] = _mm512_fmadd_pd(v, v, an[r]);
        }
    }
    for (int r = 0; r < R; r++) {
        dot[r] = _mm512_reduce_add_pd(ad[r]);
        norm2[r] = _mm512_reduce_add_pd(an[r]);
    }
}

static void one_to_many_f64_avx512(const double *q, const double *rows, ptrdiff_t stride,
                                   size_t n, size_t d, double *dot, double *norm2) {
    ptrdiff_t ahead = sim_prefetch_ahead(stride * (ptrdiff_t)sizeof(double));
    size_t r = 0;
    for (; r + 4 <= n; r += 4)
        dot_norm_rows_f64_avx512(q, rows + (ptrdiff_t)r * stride, stride, d, dot + r, norm2 + r,
                                 ahead, 4);
    for (; r < n; r++)
        dot_norm_rows_f64_avx512(q, rows + (ptrdiff_t)r * stride, stride, d, dot + r, norm2 + r,
                                 ahead, 1);
}

static inline __attribute__((always_inline)) void
norm_rows_f32_avx512(const float *rows, ptrdiff_t stride, size_t d, double *norm2, const int R) {
    __m512d sn[4];
    for (int r = 0; r < R; r++) sn[r] = _mm512_setzero_pd();
    size_t i = 0;
    do {
        size_t end = d - i > SIM_F32_FLUSH ? i + SIM_F32_FLUSH : d;
        __m512 an[4], bn[4];
        for (int r = 0; r < R; r++) an[r] = bn[r] = _mm512_setzero_ps();
        for (; i + 32 <= end; i += 32) {
            for (int r = 0; r < R; r++) {
                __m512 v = _mm512_loadu_ps(rows + r * stride + i);
                __m512 w = _mm512_loadu_ps(rows + r * stride + i + 16);
                an[r] = _mm512_fmadd_ps(v, v, an[r]);
                bn[r] = _mm512_fmadd_ps(w, w, bn[r]);
            }
        }
        for (; i < end; i += 16) {
            __mmask16 m = end - i >= 16 ? (__mmask16)0xFFFF : sim_mask16(end - i);
            for (int r = 0; r < R; r++) {
                __m512 v = _mm512_maskz_loadu_ps(m, rows + r * stride + i);
                an[r] = _mm512_fmadd_ps(v, v, an[r]);
            }
        }
        i = end;
        for (int r = 0; r < R; r++)
            sn[r] = _mm512_add_pd(sn[r], sim_widen_ps(_mm512_add_ps(an[r], bn[r])));
    } while (i < d);
    for (int r = 0; r < R; r++) norm2[r] = _mm512_reduce_add_pd(sn[r]);
}

static void norm2_rows_f32_avx512(const float *rows, ptrdiff_t stride, size_t n, size_t d,
                                  double *norm2) {
    size_t r = 0;
    for (; r + 4 <= n; r += 4)
        norm_rows_f32_avx512(rows + (ptrdiff_t)r * stride, stride, d, norm2 + r, 4);
    for (; r < n; r++) norm_rows_f32_avx512(rows + (ptrdiff_t)r * stride, stride, d, norm2 + r, 1);
}

static void norm2_rows_f64_avx512(const double *rows, ptrdiff_t stride, size_t n, size_t d,
                                  double *norm2) {
    for (size_t r = 0; r < n; r++) {
        const double *row = rows + (ptrdiff_t)r * stride;
        __m512d a = _mm512_setzero_pd(), b = a;
        size_t i = 0;
        for (; i + 16 <= d; i += 16) {
            __m512d v = _mm512_loadu_pd(row + i), w = _mm512_loadu_pd(row + i + 8);
            a = _mm512_fmadd_pd(v, v, a);
            b = _mm512_fmadd_pd(w, w, b);
        }
        for (; i < d; i += 8) {
            __mmask8 m = d - i >= 8 ? (__mmask8)0xFF : sim_mask8(d - i);
            __m512d v = _mm512_maskz_loadu_pd(m, row + i);
            a = _mm512_fmadd_pd(v, v, a);
        }
        norm2[r] = _mm512_reduce_add_pd(_mm512_add_pd(a, b));
    }
}

/*
 * Horizontal sums of 16 accumulators in one shuffle tree.  Every
 * accumulator's lanes are added in the same order, (l, l+8), then (l, l+4),
 * (l, l+2), (l, l+1), whichever slot it occupies, so a pair's value does
 * not depend on its place in the tile.  Lane 4b+j of the result holds the
 * sum of a[4j+b].
 */
static inline __m512 sim_pair_halves(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}
static inline __m512 sim_pair_quarters(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}
static inline __m512 sim_pair_eighths(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}
static inline __m512 sim_pair_lanes(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* Sums of a[0..7] (slots 8..15 of the tree repeat them). */
static inline __m512 sim_reduce8(const __m512 *a) {
    __m512 h0 = sim_pair_halves(a[0], a[1]), h1 = sim_pair_halves(a[2], a[3]);
    __m512 h2 = sim_pair_halves(a[4], a[5]), h3 = sim_pair_halves(a[6], a[7]);
    __m512 q0 = sim_pair_quarters(h0, h1), q1 = sim_pair_quarters(h2, h3);
    __m512 e0 = sim_pair_eighths(q0, q1);
    return sim_pair_lanes(e0, e0);
}

static inline __m512 sim_reduce16(const __m512 *a) {
    __m512 h[8];
    for (int i = 0; i < 8; i++) h[i] = sim_pair_halves(a[2 * i], a[2 * i + 1]);
    __m512 q0 = sim_pair_quarters(h[0], h[1]), q1 = sim_pair_quarters(h[2], h[3]);
    __m512 q2 = sim_pair_quarters(h[4], h[5]), q3 = sim_pair_quarters(h[6], h[7]);
    return sim_pair_lanes(sim_pair_eighths(q0, q1), sim_pair_eighths(q2, q3));
}

/*
 * Register tile: 3 x-rows by 8 y-rows of float32 accumulators along d
 * (24 zmm, plus 3 for x and 1 for y).  Per 16 elements: 3 loads of x rows
 * (from L2 in the driver's plan), 8 of y rows (from L1) and 24 FMAs, so
 * the FMA ports, not the loads, set the pace.  Measured with the y panel in
 * L1 and 256 x rows in L2: ~157 GFLOP/s, against ~149 for a 4 x 4 tile,
 * which loads 4 x rows from L2 per 16 FMAs.
 */
#define TILE_R 3
#define TILE_C 8

#define SIM_TILE_COLUMN(c, load)                                                              \
    do {                                                                                      \
        __m512 yv = load(yp##c + k);                                                          \
        SIM_IN_REGISTER(yv);                                                                  \
        a0##c = _mm512_fmadd_ps(x0, yv, a0##c);                                               \
        a1##c = _mm512_fmadd_ps(x1, yv, a1##c);                                               \
        a2##c = _mm512_fmadd_ps(x2, yv, a2##c);                                               \
    } while (0)

#define SIM_TILE_STEP(load)                                                                   \
    do {                                                                                      \
        __m512 x0 = load(xp0 + k), x1 = load(xp1 + k), x2 = load(xp2 + k);                    \
        SIM_TILE_COLUMN(0, load);                                                             \
        SIM_TILE_COLUMN(1, load);                                                             \
        SIM_TILE_COLUMN(2, load);                                                             \
        SIM_TILE_COLUMN(3, load);                                                             \
        SIM_TILE_COLUMN(4, load);                                                             \
        SIM_TILE_COLUMN(5, load);                                                             \
        SIM_TILE_COLUMN(6, load);                                                             \
        SIM_TILE_COLUMN(7, load);                                                             \
    } while (0)

/* Lane of a tree's result that holds slot t, as a permutation putting slots in order. */
static inline __m512i sim_tree_order(void) {
    return _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
}

/* Sums of 8 slots (float32, in slot order in the low half of v) added to or stored into a row. */
static inline void sim_store8(__m256 v, double *row, int accumulate) {
    __m512d sums = _mm512_cvtps_pd(v);
    if (accumulate) sums = _mm512_add_pd(_mm512_loadu_pd(row), sums);
    _mm512_storeu_pd(row, sums);
}

static void dot_tile_f32_avx512(const float *const *x, size_t x0, const float *const *y,
                                size_t len, double *out, size_t ldo, int accumulate) {
    /* x and y advance together: index x rows from x0, so one k serves both */
    const float *xp0 = x[0] + x0, *xp1 = x[1] + x0, *xp2 = x[2] + x0;
    const float *yp0 = y[0], *yp1 = y[1], *yp2 = y[2], *yp3 = y[3];
    const float *yp4 = y[4], *yp5 = y[5], *yp6 = y[6], *yp7 = y[7];
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a04 = a00, a05 = a00,
           a06 = a00, a07 = a00;
    __m512 a10 = a00, a11 = a00, a12 = a00, a13 = a00, a14 = a00, a15 = a00, a16 = a00,
           a17 = a00;
    __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00, a24 = a00, a25 = a00, a26 = a00,
           a27 = a00;
    size_t k = 0;
    for (; k + 16 <= len; k += 16) SIM_TILE_STEP(_mm512_loadu_ps);
    if (k < len) {
        __mmask16 m = sim_mask16(len - k);
#define SIM_MASKED_LOAD(p) _mm512_maskz_loadu_ps(m, p)
        SIM_TILE_STEP(SIM_MASKED_LOAD);
#undef SIM_MASKED_LOAD
    }
    __m512 rows01[16] = {a00, a01, a02, a03, a04, a05, a06, a07,
                         a10, a11, a12, a13, a14, a15, a16, a17};
    __m512 row2[8] = {a20, a21, a22, a23, a24, a25, a26, a27};
    __m512 sums01 = _mm512_permutexvar_ps(sim_tree_order(), sim_reduce16(rows01));
    __m512 sums2 = _mm512_permutexvar_ps(sim_tree_order(), sim_reduce8(row2));
    sim_store8(_mm512_castps512_ps256(sums01), out, accumulate);
    sim_store8(_mm512_extractf32x8_ps(sums01, 1), out + ldo, accumulate);
    sim_store8(_mm512_castps512_ps256(sums2), out + 2 * ldo, accumulate);
}

#undef SIM_TILE_STEP
#undef SIM_TILE_COLUMN

#define TILE64_R 4
#define TILE64_C 4

static void dot_tile_f64_avx512(const double *const *x, size_t x0, const double *const *y,
                                size_t len, double *out, size_t ldo, int accumulate) {
    __m512d acc[TILE64_R * TILE64_C];
    for (int t = 0; t < TILE64_R * TILE64_C; t++) acc[t] = _mm512_setzero_pd();
    const double *xp[TILE64_R];
    for (int r = 0; r < TILE64_R; r++) xp[r] = x[r] + x0;
    size_t k = 0;
    for (; k + 8 <= len; k += 8) {
        __m512d xv[TILE64_R];
        for (int r = 0; r < TILE64_R; r++) xv[r] = _mm512_loadu_pd(xp[r] + k);
        for (int c = 0; c < TILE64_C; c++) {
            __m512d yv = _mm512_loadu_pd(y[c] + k);
            for (int r = 0; r < TILE64_R; r++)
                acc[r * TILE64_C + c] = _mm512_fmadd_pd(xv[r], yv, acc[r * TILE64_C + c]);
        }
    }
    if (k < len) {
        __mmask8 m = sim_mask8(len - k);
        __m512d xv[TILE64_R];
        for (int r = 0; r < TILE64_R; r++) xv[r] = _mm512_maskz_loadu_pd(m, xp[r] + k);
        for (int c = 0; c < TILE64_C; c++) {
            __m512d yv = _mm512_maskz_loadu_pd(m, y[c] + k);
            for (int r = 0; r < TILE64_R; r++)
                acc[r * TILE64_C + c] = _mm512_fmadd_pd(xv[r], yv, acc[r * TILE64_C + c]);
        }
    }
    for (int t = 0; t < TILE64_R * TILE64_C; t++) {
        /* the same reduction sequence for every slot */
        double v = _mm512_reduce_add_pd(acc[t]);
        double *o = out + (size_t)(t / TILE64_C) * ldo + (size_t)(t % TILE64_C);
        *o = accumulate ? *o + v : v;
    }
}

/* Fully unrolled small loops keep per-row accumulator arrays in registers. */
#define SIM_UNROLL _Pragma("GCC unroll 8")

/*
 * Small d (see engram.h): R query rows against the 64 transposed corpus
 * rows of yt, vectorised across the corpus rows.  Per element of d: four
 * loads of yt, R broadcasts of x and 4R FMAs, and no horizontal sums at
 * all.  Every lane sums its products in order of k and flushes into float64
 * every ENGRAM_SIM_F32_LANE_TERMS of them, whatever R and the lane are.
 */
static inline __attribute__((always_inline)) void
dot_cols_rows_f32_avx512(const float *x, ptrdiff_t xs, const float *yt, size_t d, double *out,
                         size_t ldo, const int R) {
    size_t k = 0;
    int first = 1;
    do {
        size_t end = d - k > ENGRAM_SIM_F32_LANE_TERMS ? k + ENGRAM_SIM_F32_LANE_TERMS : d;
        __m512 acc[4][4];
        SIM_UNROLL for (int r = 0; r < R; r++)
            SIM_UNROLL for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
        for (; k < end; k++) {
            const float *yk = yt + k * ENGRAM_SIM_COLS;
            __m512 y0 = _mm512_loadu_ps(yk), y1 = _mm512_loadu_ps(yk + 16);
            __m512 y2 = _mm512_loadu_ps(yk + 32), y3 = _mm512_loadu_ps(yk + 48);
            SIM_UNROLL for (int r = 0; r < R; r++) {
                __m512 xv = _mm512_set1_ps(x[r * xs + (ptrdiff_t)k]);
                acc[r][0] = _mm512_fmadd_ps(xv, y0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(xv, y1, acc[r][1]);
                acc[r][2] = _mm512_fmadd_ps(xv, y2, acc[r][2]);
                acc[r][3] = _mm512_fmadd_ps(xv, y3, acc[r][3]);
            }
        }
        SIM_UNROLL for (int r = 0; r < R; r++)
            SIM_UNROLL for (int c = 0; c < 4; c++) {
                double *o = out + (size_t)r * ldo + (size_t)c * 16;
                __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(acc[r][c]));
                __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(acc[r][c], 1));
                if (!first) {
                    lo = _mm512_add_pd(_mm512_loadu_pd(o), lo);
                    hi = _mm512_add_pd(_mm512_loadu_pd(o + 8), hi);
                }
                _mm512_storeu_pd(o, lo);
                _mm512_storeu_pd(o + 8, hi);
            }
        first = 0;
    } while (k < d);
}

static void dot_cols_f32_avx512(const float *x, ptrdiff_t x_stride, size_t rows, const float *yt,
                                size_t d, double *out, size_t ldo) {
    size_t i = 0;
    for (; i + 4 <= rows; i += 4)
        dot_cols_rows_f32_avx512(x + (ptrdiff_t)i * x_stride, x_stride, yt, d, out + i * ldo, ldo, 4);
    for (; i < rows; i++)
        dot_cols_rows_f32_avx512(x + (ptrdiff_t)i * x_stride, x_stride, yt, d, out + i * ldo, ldo, 1);
}

/* float64: 8 vectors per row of 64 corpus rows, 2 rows per pass (16 accumulators). */
static inline __attribute__((always_inline)) void
dot_cols_rows_f64_avx512(const double *x, ptrdiff_t xs, const double *yt, size_t d, double *out,
                         size_t ldo, const int R) {
    __m512d acc[2][8];
    SIM_UNROLL for (int r = 0; r < R; r++)
        SIM_UNROLL for (int c = 0; c < 8; c++) acc[r][c] = _mm512_setzero_pd();
    for (size_t k = 0; k < d; k++) {
        const double *yk = yt + k * ENGRAM_SIM_COLS;
        __m512d xv[2];
        SIM_UNROLL for (int r = 0; r < R; r++) xv[r] = _mm512_set1_pd(x[r * xs + (ptrdiff_t)k]);
        SIM_UNROLL for (int c = 0; c < 8; c++) {
            __m512d yv = _mm512_loadu_pd(yk + 8 * c);
            SIM_UNROLL for (int r = 0; r < R; r++) acc[r][c] = _mm512_fmadd_pd(xv[r], yv, acc[r][c]);
        }
    }
    SIM_UNROLL for (int r = 0; r < R; r++)
        SIM_UNROLL for (int c = 0; c < 8; c++) _mm512_storeu_pd(out + (size_t)r * ldo + 8 * c, acc[r][c]);
}

static void dot_cols_f64_avx512(const double *x, ptrdiff_t x_stride, size_t rows,
                                const double *yt, size_t d, double *out, size_t ldo) {
    size_t i = 0;
    for (; i + 2 <= rows; i += 2)
        dot_cols_rows_f64_avx512(x + (ptrdiff_t)i * x_stride, x_stride, yt, d, out + i * ldo, ldo, 2);
    for (; i < rows; i++)
        dot_cols_rows_f64_avx512(x + (ptrdiff_t)i * x_stride, x_stride, yt, d, out + i * ldo, ldo, 1);
}

/* Cosine (or dot) scores of 8 pairs; NaN where an inverse norm is not > 0. */
static inline __m512d sim_scores8(__m512d dots, __m512d y_inv, __m512d x_inv, int x_fast,
                                  int metric) {
    __mmask8 fast = x_fast ? _mm512_cmp_pd_mask(y_inv, _mm512_setzero_pd(), _CMP_GT_OQ) : 0;
    __m512d s = dots;
    if (metric != ENGRAM_METRIC_DOT)
        s = _mm512_max_pd(_mm512_min_pd(_mm512_mul_pd(_mm512_mul_pd(dots, x_inv), y_inv),
                                        _mm512_set1_pd(1.0)),
                          _mm512_set1_pd(-1.0));
    return _mm512_mask_blend_pd(fast, _mm512_set1_pd(__builtin_nan("")), s);
}

static void scores_f32_avx512(const double *dots, const double *y_inv, double x_inv, size_t n,
                              int metric, float *out) {
    __m512d xi = _mm512_set1_pd(x_inv);
    int x_fast = x_inv > 0;
    for (size_t j = 0; j < n; j += 8) {
        __mmask8 m = n - j >= 8 ? (__mmask8)0xFF : sim_mask8(n - j);
        __m512d s = sim_scores8(_mm512_maskz_loadu_pd(m, dots + j),
                                _mm512_maskz_loadu_pd(m, y_inv + j), xi, x_fast, metric);
        _mm256_mask_storeu_ps(out + j, m, _mm512_cvtpd_ps(s));
    }
}

static void scores_f64_avx512(const double *dots, const double *y_inv, double x_inv, size_t n,
                              int metric, double *out) {
    __m512d xi = _mm512_set1_pd(x_inv);
    int x_fast = x_inv > 0;
    for (size_t j = 0; j < n; j += 8) {
        __mmask8 m = n - j >= 8 ? (__mmask8)0xFF : sim_mask8(n - j);
        __m512d s = sim_scores8(_mm512_maskz_loadu_pd(m, dots + j),
                                _mm512_maskz_loadu_pd(m, y_inv + j), xi, x_fast, metric);
        _mm512_mask_storeu_pd(out + j, m, s);
    }
}

/* !(s <= threshold) is the unordered not-less-or-equal compare: true above it and for NaN. */
static size_t select_f32_avx512(const float *s, size_t n, float threshold, uint32_t *idx) {
    __m512 t = _mm512_set1_ps(threshold);
    __m512i pos = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    size_t count = 0;
    for (size_t j = 0; j < n; j += 16) {
        __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : sim_mask16(n - j);
        __mmask16 hit = _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, s + j), t, _CMP_NLE_UQ);
        if (hit) {
            _mm512_mask_compressstoreu_epi32(idx + count, hit, pos);
            count += (size_t)__builtin_popcount(hit);
        }
        pos = _mm512_add_epi32(pos, _mm512_set1_epi32(16));
    }
    return count;
}

static size_t select_f64_avx512(const double *s, size_t n, double threshold, uint32_t *idx) {
    __m512d t = _mm512_set1_pd(threshold);
    __m256i pos = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    size_t count = 0;
    for (size_t j = 0; j < n; j += 8) {
        __mmask8 m = n - j >= 8 ? (__mmask8)0xFF : sim_mask8(n - j);
        __mmask8 hit = _mm512_mask_cmp_pd_mask(m, _mm512_maskz_loadu_pd(m, s + j), t, _CMP_NLE_UQ);
        if (hit) {
            _mm256_mask_compressstoreu_epi32(idx + count, hit, pos);
            count += (size_t)__builtin_popcount(hit);
        }
        pos = _mm256_add_epi32(pos, _mm256_set1_epi32(8));
    }
    return count;
}

/* out = (float)((double)x * s): the product rounded once in float64, then to float32. */
static void scale_f32_avx512(const float *x, double s, float *out, size_t d) {
    __m512d sv = _mm512_set1_pd(s);
    size_t i = 0;
    for (; i + 8 <= d; i += 8) {
        __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
        _mm256_storeu_ps(out + i, _mm512_cvtpd_ps(_mm512_mul_pd(v, sv)));
    }
    if (i < d) {
        __mmask8 m = sim_mask8(d - i);
        __m512d v = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, x + i));
        _mm256_mask_storeu_ps(out + i, m, _mm512_cvtpd_ps(_mm512_mul_pd(v, sv)));
    }
}

static void scale_f64_avx512(const double *x, double s, double *out, size_t d) {
    __m512d sv = _mm512_set1_pd(s);
    size_t i = 0;
    for (; i + 8 <= d; i += 8) _mm512_storeu_pd(out + i, _mm512_mul_pd(_mm512_loadu_pd(x + i), sv));
    if (i < d) {
        __mmask8 m = sim_mask8(d - i);
        _mm512_mask_storeu_pd(out + i, m, _mm512_mul_pd(_mm512_maskz_loadu_pd(m, x + i), sv));
    }
}

const engram_similarity_ops engram_similarity_ops_avx512 = {
    .level = "avx512",
    .pair_f32 = pair_f32_avx512,
    .pair_f64 = pair_f64_avx512,
    .one_to_many_f32 = one_to_many_f32_avx512,
    .one_to_many_f64 = one_to_many_f64_avx512,
    .norm2_rows_f32 = norm2_rows_f32_avx512,
    .norm2_rows_f64 = norm2_rows_f64_avx512,
    .dot_tile_f32 = dot_tile_f32_avx512,
    .dot_tile_f64 = dot_tile_f64_avx512,
    .tile_rows_f32 = TILE_R,
    .tile_cols_f32 = TILE_C,
    .tile_rows_f64 = TILE64_R,
    .tile_cols_f64 = TILE64_C,
    .f32_chunk = SIM_F32_FLUSH,
    .dot_cols_f32 = dot_cols_f32_avx512,
    .dot_cols_f64 = dot_cols_f64_avx512,
    /* dot_cols measured faster than the tiles up to d ~ 190 (f32) and ~ 96 (f64) on
     * Sapphire Rapids; capped so a transposed block (d x 64) fits a 32 KB L1 */
    .cols_max_d_f32 = 128,
    .cols_max_d_f64 = 64,
    .scores_f32 = scores_f32_avx512,
    .scores_f64 = scores_f64_avx512,
    .select_f32 = select_f32_avx512,
    .select_f64 = select_f64_avx512,
    .scale_f32 = scale_f32_avx512,
    .scale_f64 = scale_f64_avx512,
};

#undef TILE_R
#undef TILE_C
#undef TILE64_R
#undef TILE64_C
#undef SIM_PREFETCH
#undef SIM_IN_REGISTER

#undef SIM_UNROLL

/* ==== end similarity ==== */

/* ==== spread ==== */

const engram_spread_ops engram_spread_ops_avx512 = {
    .level = "avx512",
};

/* ==== end spread ==== */

/* ==== decay ==== */

const engram_decay_ops engram_decay_ops_avx512 = {
    .level = "avx512",
};

/* ==== end decay ==== */

