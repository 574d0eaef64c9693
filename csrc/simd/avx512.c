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

#include <immintrin.h>
#include <math.h>
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
/*
 * accumulate(a, nan, w, g) -> the new a.  vmaxpd(t, a) keeps a when either
 * is NaN, so max tracks NaN apart: terms are >= 0 or NaN, so their running
 * sum in `nan` is NaN exactly when a term was, and NaN wins at the end
 * (spread_max_finish_512), whatever the order, as in the scalar spec.
 */
#define ACC_SUM_ONE_512(a, nan, w, g) _mm512_add_pd((a), (g))
#define ACC_SUM_512(a, nan, w, g) _mm512_fmadd_pd((w), (g), (a))
#define ACC_MAX_ONE_512(a, nan, w, g) ((nan) = _mm512_add_pd((nan), (g)), _mm512_max_pd((g), (a)))
#define ACC_MAX_512(a, nan, w, g) \
    ((nan) = _mm512_fmadd_pd((w), (g), (nan)), _mm512_max_pd(_mm512_mul_pd((w), (g)), (a)))

static inline __m512d spread_max_finish_512(__m512d a, __m512d nan) {
    return _mm512_mask_mov_pd(a, _mm512_cmp_pd_mask(nan, nan, _CMP_UNORD_Q), nan);
}

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

/*
 * One chunk's 8 sums (or maxima) over its slots; advances src and at.  (The
 * NaN tracking of max is dead code for sums.)
 */
#define CHUNK_SUMS_512(v, length, weight_of, accumulate, sum)                                     \
    do {                                                                                          \
        __m512d nan = _mm512_setzero_pd();                                                        \
        for (int32_t j = 0; j < (length); j++, src += LANES, at += LANES) {                       \
            const __m512d g = _mm512_i32gather_pd(_mm256_loadu_si256((const __m256i *)src), pulse, 8); \
            v = accumulate(v, nan, weight_of(at), g);                                             \
        }                                                                                         \
        if (!(sum)) v = spread_max_finish_512(v, nan);                                            \
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
            CHUNK_SUMS_512(v, p->chunk_length[c], weight_of, accumulate, sum);                    \
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
 * are added row by row (a scatter could not: padding lanes repeat a row),
 * and its maxima taken by spread_max_into_512.
 */
/*
 * Blocked max: x[rows[l]] = max(x[rows[l]], v[l]), NaN from either side
 * winning as in the scalar spec, without a branch per lane (the comparison
 * is a coin toss on dense hops): gather the rows' values, take the maxima,
 * store them from lane 7 down, so that lane 0 writes last where padding
 * lanes repeat its row (they computed from its old value).
 */
static inline void spread_max_into_512(double *x, const int32_t *rows, __m512d v) {
    const __m512d old = _mm512_i32gather_pd(_mm256_loadu_si256((const __m256i *)rows), x, 8);
    const __m512d m = _mm512_mask_mov_pd(_mm512_max_pd(v, old), _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q), v);
    double lanes[LANES];
    _mm512_storeu_pd(lanes, m);
    for (int l = LANES - 1; l >= 0; l--) x[rows[l]] = lanes[l];
}

#define DEFINE_ACCUMULATE_AVX512(name, weight_of, accumulate, sum)                                 \
    static void name(const engram_spread_pull *p, const double *pulse, size_t c0, size_t c1,     \
                     double *x) {                                                                 \
        int64_t at = p->chunk_offset[c0];                                                         \
        const int32_t *src = p->sources + at;                                                     \
        double sums[LANES];                                                                       \
        for (size_t c = c0; c < c1; c++) {                                                        \
            __m512d v = _mm512_setzero_pd();                                                      \
            CHUNK_SUMS_512(v, p->chunk_length[c], weight_of, accumulate, sum);                    \
            const int32_t *rows = p->chunk_rows + c * LANES;                                      \
            if (!(sum)) {                                                                         \
                spread_max_into_512(x, rows, v);                                                  \
                continue;                                                                         \
            }                                                                                     \
            _mm512_storeu_pd(sums, v);                                                            \
            for (int l = 0; l < LANES; l++) x[rows[l]] += sums[l];                                \
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

static size_t seeds_select_f32_avx512(const float *s, size_t n, float threshold, float *out,
                                int64_t *ids, size_t *count) {
    const __m512 zero = _mm512_setzero_ps(), t = _mm512_set1_ps(threshold);
    size_t k = *count, i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(s + i);
        if (seeds_ok_ps(v) != 0xFFFF) break;
        if (out) _mm512_storeu_ps(out + i, v);
        unsigned sel = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ) & _mm512_cmp_ps_mask(v, t, _CMP_GE_OQ);
        while (sel) {
            ids[k++] = (int64_t)(i + (size_t)__builtin_ctz(sel));
            sel &= sel - 1;
        }
    }
    *count = k;
    const size_t rest = engram_spread_select_f32_scalar(s + i, n - i, threshold, out ? out + i : NULL, ids, count);
    for (size_t j = k; j < *count; j++) ids[j] += (int64_t)i;
    return i + rest;
}

static size_t seeds_select_f64_avx512(const double *s, size_t n, double threshold, float *out,
                                int64_t *ids, size_t *count) {
    const __m512d zero = _mm512_setzero_pd(), t = _mm512_set1_pd(threshold);
    size_t k = *count, i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512d v = _mm512_loadu_pd(s + i);
        if (seeds_ok_pd(v) != 0xFF) break;
        if (out) _mm256_storeu_ps(out + i, _mm512_cvtpd_ps(v));
        unsigned sel = _mm512_cmp_pd_mask(v, zero, _CMP_GT_OQ) & _mm512_cmp_pd_mask(v, t, _CMP_GE_OQ);
        while (sel) {
            ids[k++] = (int64_t)(i + (size_t)__builtin_ctz(sel));
            sel &= sel - 1;
        }
    }
    *count = k;
    const size_t rest = engram_spread_select_f64_scalar(s + i, n - i, threshold, out ? out + i : NULL, ids, count);
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
    .select_f32 = seeds_select_f32_avx512,
    .select_f64 = seeds_select_f64_avx512,
    .first_bad_f32 = first_bad_f32_avx512,
    .first_bad_f64 = first_bad_f64_avx512,
};

#undef LANES

/* ==== end spread ==== */

/* ==== decay ==== */

#include <immintrin.h>
#include <math.h>

#include "../decay_internal.h"

/*
 * The driver hands over whole vectors (n a multiple of 16).  Ages of the
 * 64-bit integer types are converted with vcvt(u)qq2pd, which rounds to
 * nearest like a C cast.
 */
#define DECAY512_AGE_BROADCAST 4 /* pseudo age type: one age for every memory */
/* where the stabilities come from: a float32 array, a float64 array, one value */
#define DECAY512_STAB_F32 0
#define DECAY512_STAB_F64 1
#define DECAY512_STAB_BROADCAST 2
/* the exponential's quotient with a broadcast operand that is not a float32 value:
 * every vector divides in float64 */
#define DECAY512_STAB_WIDE 3
#define DECAY512_INLINE static inline __attribute__((always_inline))
/* 1 KB ahead of element p, per stream (prefetches never fault) */
#define DECAY512_PREFETCH(p) _mm_prefetch((const char *)(p) + 1024, _MM_HINT_T0)

DECAY512_INLINE __m512 decay512_join_ps(__m256 lo, __m256 hi) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

/* 8 ages from index i as float64, converted like a C cast. */
DECAY512_INLINE __m512d decay512_ages_pd(const void *age, size_t i, int type, double broadcast) {
    switch (type) {
        case ENGRAM_DECAY_F32: return _mm512_cvtps_pd(_mm256_loadu_ps((const float *)age + i));
        case ENGRAM_DECAY_F64: return _mm512_loadu_pd((const double *)age + i);
        case ENGRAM_DECAY_I64: return _mm512_cvtepi64_pd(_mm512_loadu_si512((const int64_t *)age + i));
        case ENGRAM_DECAY_U64: return _mm512_cvtepu64_pd(_mm512_loadu_si512((const uint64_t *)age + i));
        default: return _mm512_set1_pd(broadcast);
    }
}

/* 8 stabilities from index i as float64. */
DECAY512_INLINE __m512d decay512_stab_pd(const void *stab, size_t i, int mode, double broadcast) {
    switch (mode) {
        case DECAY512_STAB_F32: return _mm512_cvtps_pd(_mm256_loadu_ps((const float *)stab + i));
        case DECAY512_STAB_F64: return _mm512_loadu_pd((const double *)stab + i);
        default: return _mm512_set1_pd(broadcast);
    }
}

/* The stability mode of a block. */
DECAY512_INLINE int decay512_stab_mode(const engram_decay_params *p, const engram_decay_block *b) {
    if (!b->stability) return DECAY512_STAB_BROADCAST;
    return p->stability_type == ENGRAM_DECAY_F32 ? DECAY512_STAB_F32 : DECAY512_STAB_F64;
}

/* y = (float)((double)age / (double)stability) for 16 lanes by float64 division. */
static __attribute__((noinline)) __m512 decay512_quotient_wide(const engram_decay_params *p,
                                                               const engram_decay_block *b,
                                                               size_t i) {
    int age_type = b->age ? (int)p->age_type : DECAY512_AGE_BROADCAST;
    int stab_mode = decay512_stab_mode(p, b);
    __m512d lo = _mm512_div_pd(decay512_ages_pd(b->age, i, age_type, p->age),
                               decay512_stab_pd(b->stability, i, stab_mode, p->stability));
    __m512d hi = _mm512_div_pd(decay512_ages_pd(b->age, i + 8, age_type, p->age),
                               decay512_stab_pd(b->stability, i + 8, stab_mode, p->stability));
    return decay512_join_ps(_mm512_cvtpd_ps(lo), _mm512_cvtpd_ps(hi));
}

/* Broadcast operands of a block, prepared once. */
typedef struct decay512_operands {
    __m256 age, stability; /* the broadcast values rounded to float32 */
    __m512 quotient;       /* both broadcast: the argument itself */
} decay512_operands;

DECAY512_INLINE void decay512_operands_init(decay512_operands *o, const engram_decay_params *p,
                                            const engram_decay_block *b) {
    o->age = _mm256_set1_ps((float)p->age);
    o->stability = _mm256_set1_ps((float)p->stability);
    o->quotient = _mm512_set1_ps(b->age || b->stability ? 0.0f : (float)(p->age / p->stability));
}

/*
 * The float32 argument y = (float)((double)age / (double)stability) of 16
 * lanes.  Where every operand is a float32 value, two 256-bit float32
 * divisions give the same bits (double rounding of a quotient is
 * innocuous, decay_internal.h): on this core family a 512-bit vdivps
 * splits into more micro-ops for the same 16 quotients, and the divider,
 * not the polynomial, bounds the exponential's loop.  Other vectors (ages
 * beyond float32's 24 bits, float64 stabilities that are not float32
 * values) divide in float64, at ~3x the divider's time.
 */
DECAY512_INLINE __m512 decay512_quotient_ps(const engram_decay_params *p,
                                            const engram_decay_block *b, const void *age,
                                            const float *stab, size_t i, int age_type,
                                            int stab_mode, const decay512_operands *o) {
    if (stab_mode == DECAY512_STAB_WIDE || stab_mode == DECAY512_STAB_F64)
        return decay512_quotient_wide(p, b, i);
    if (age_type == DECAY512_AGE_BROADCAST && stab_mode == DECAY512_STAB_BROADCAST)
        return o->quotient;
    __m256 a_lo, a_hi, S_lo, S_hi;
    int exact = 1;
    if (age_type == ENGRAM_DECAY_F32) {
        a_lo = _mm256_loadu_ps((const float *)age + i);
        a_hi = _mm256_loadu_ps((const float *)age + i + 8);
    } else if (age_type == DECAY512_AGE_BROADCAST) {
        a_lo = a_hi = o->age;
    } else if (age_type == ENGRAM_DECAY_F64) {
        __m512d lo = _mm512_loadu_pd((const double *)age + i);
        __m512d hi = _mm512_loadu_pd((const double *)age + i + 8);
        a_lo = _mm512_cvtpd_ps(lo);
        a_hi = _mm512_cvtpd_ps(hi);
        exact = (_mm512_cmp_pd_mask(_mm512_cvtps_pd(a_lo), lo, _CMP_EQ_OQ) &
                 _mm512_cmp_pd_mask(_mm512_cvtps_pd(a_hi), hi, _CMP_EQ_OQ)) == 0xFF;
    } else {
        /* integers in [0, 2^24) (ages up to 194 days in seconds) are float32
         * values: one test of both halves */
        __m512i lo = _mm512_loadu_si512((const int64_t *)age + i);
        __m512i hi = _mm512_loadu_si512((const int64_t *)age + i + 8);
        /* both as unsigned: a negative int64 age (invalid; validate=False) divides in float64 */
        exact = _mm512_test_epi64_mask(_mm512_or_si512(lo, hi), _mm512_set1_epi64(-(1ll << 24))) == 0;
        /* their low 32 bits are then the values: one permute and one conversion,
         * and one 512-bit division (no halves to split and join) */
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        __m512 a = _mm512_cvtepi32_ps(_mm512_permutex2var_epi32(lo, even, hi));
        __m512 S = stab_mode == DECAY512_STAB_F32 ? _mm512_loadu_ps(stab + i)
                                                  : decay512_join_ps(o->stability, o->stability);
        if (ENGRAM_UNLIKELY(!exact)) return decay512_quotient_wide(p, b, i);
        return _mm512_div_ps(a, S);
    }
    if (stab_mode == DECAY512_STAB_F32) {
        S_lo = _mm256_loadu_ps(stab + i);
        S_hi = _mm256_loadu_ps(stab + i + 8);
    } else {
        S_lo = S_hi = o->stability;
    }
    if (ENGRAM_UNLIKELY(!exact)) return decay512_quotient_wide(p, b, i);
    return decay512_join_ps(_mm256_div_ps(a_lo, S_lo), _mm256_div_ps(a_hi, S_hi));
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
    size_t ss = p->stability_type == ENGRAM_DECAY_F32 ? 4 : 8;
    engram_decay_block lanes = {16, NULL, NULL, b->age ? (const char *)b->age + i * es : NULL,
                                b->stability ? (const char *)b->stability + i * ss : NULL};
    return engram_decay_first_invalid_block(p, &lanes);
}

/*
 * checking: validate as well (fresh output, float32 stabilities only).  A
 * fast lane has 0 <= y = age / stability and, tested here, stability > 0,
 * so its age is >= +0 as given; any other lane of a vector sends it to a
 * scalar check of the values as given before the general path.
 */
DECAY512_INLINE size_t decay512_exp_f32_body(const engram_decay_params *p,
                                             const engram_decay_block *b, int age_type,
                                             int stab_mode, int checking) {
    const size_t n = b->n;
    float *out = b->out;
    const float *str = b->strength;
    const void *age = b->age, *stab = b->stability;
    decay512_operands o;
    decay512_operands_init(&o, p, b);
    for (size_t i = 0; i < n; i += 16) {
        /* the loop spends ~13 cycles per line of each stream: from DRAM the
         * hardware prefetchers alone do not run far enough ahead */
        DECAY512_PREFETCH(str + i);
        if (stab_mode == DECAY512_STAB_F32) DECAY512_PREFETCH((const float *)stab + i);
        if (stab_mode == DECAY512_STAB_F64) {
            DECAY512_PREFETCH((const double *)stab + i);
            DECAY512_PREFETCH((const double *)stab + i + 8);
        }
        if (age_type == ENGRAM_DECAY_F32) DECAY512_PREFETCH((const float *)age + i);
        if (age_type == ENGRAM_DECAY_F64 || age_type == ENGRAM_DECAY_I64 ||
            age_type == ENGRAM_DECAY_U64) {
            DECAY512_PREFETCH((const double *)age + i);
            DECAY512_PREFETCH((const double *)age + i + 8);
        }
        __m512 y = decay512_quotient_ps(p, b, age, (const float *)stab, i, age_type, stab_mode, &o);
        __m512 s = _mm512_loadu_ps(str + i);
        __mmask16 fast = decay512_exp_fast(y, s);
        /* (the validating primitives see float32 stability arrays only) */
        if (checking && (stab_mode == DECAY512_STAB_F32 || (stab_mode == DECAY512_STAB_WIDE && stab)))
            fast = _mm512_mask_cmp_ps_mask(fast, _mm512_loadu_ps((const float *)stab + i),
                                           _mm512_setzero_ps(), _CMP_GT_OQ);
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

/* One instance per (age type, stability mode) so each loop is straight-line. */
#define DECAY512_DISPATCH_AGES(body, p, b, mode)                                          \
    do {                                                                                  \
        switch ((b)->age ? (int)(p)->age_type : DECAY512_AGE_BROADCAST) {                 \
            case ENGRAM_DECAY_F32: body(p, b, ENGRAM_DECAY_F32, mode); break;             \
            case ENGRAM_DECAY_F64: body(p, b, ENGRAM_DECAY_F64, mode); break;             \
            case ENGRAM_DECAY_I64: body(p, b, ENGRAM_DECAY_I64, mode); break;             \
            case ENGRAM_DECAY_U64: body(p, b, ENGRAM_DECAY_U64, mode); break;             \
            default: body(p, b, DECAY512_AGE_BROADCAST, mode); break;                     \
        }                                                                                 \
    } while (0)

#define DECAY512_DISPATCH(body, p, b)                                                     \
    do {                                                                                  \
        switch (decay512_stab_mode(p, b)) {                                               \
            case DECAY512_STAB_F32: DECAY512_DISPATCH_AGES(body, p, b, DECAY512_STAB_F32); break; \
            case DECAY512_STAB_F64: DECAY512_DISPATCH_AGES(body, p, b, DECAY512_STAB_F64); break; \
            default: DECAY512_DISPATCH_AGES(body, p, b, DECAY512_STAB_BROADCAST); break;  \
        }                                                                                 \
    } while (0)

/* Whether a broadcast operand of the block is not a float32 value (its quotient divides in float64). */
DECAY512_INLINE int decay512_broadcast_wide(const engram_decay_params *p, const engram_decay_block *b) {
    return (!b->age && !decay_is_f32(p->age)) || (!b->stability && !decay_is_f32(p->stability));
}

/* The exponential: float64 stabilities and broadcast values that are not float32 values
 * take one instance that divides every vector in float64. */
#define DECAY512_DISPATCH_EXP(body, p, b)                                                 \
    do {                                                                                  \
        int mode_ = decay512_stab_mode(p, b);                                             \
        if (mode_ == DECAY512_STAB_F64 || decay512_broadcast_wide(p, b))                  \
            body(p, b, DECAY512_AGE_BROADCAST, DECAY512_STAB_WIDE);                       \
        else if (mode_ == DECAY512_STAB_F32)                                              \
            DECAY512_DISPATCH_AGES(body, p, b, DECAY512_STAB_F32);                        \
        else                                                                              \
            DECAY512_DISPATCH_AGES(body, p, b, DECAY512_STAB_BROADCAST);                  \
    } while (0)

/* The validating primitives see float32 or broadcast stabilities only (the driver's rule). */
#define DECAY512_DISPATCH_CHECKED(body, p, b)                                             \
    do {                                                                                  \
        if ((b)->stability) DECAY512_DISPATCH_AGES(body, p, b, DECAY512_STAB_F32);        \
        else DECAY512_DISPATCH_AGES(body, p, b, DECAY512_STAB_BROADCAST);                 \
    } while (0)

#define DECAY512_EXP_F32(p, b, type, mode) decay512_exp_f32_body(p, b, type, mode, 0)
#define DECAY512_EXP_F32_CHECKED(p, b, type, mode) \
    checked = decay512_exp_f32_body(p, b, type, mode, 1)

static void decay_exp_f32_avx512(const engram_decay_params *p, const engram_decay_block *b) {
    DECAY512_DISPATCH_EXP(DECAY512_EXP_F32, p, b);
}

static size_t decay_exp_f32_checked_avx512(const engram_decay_params *p,
                                           const engram_decay_block *b) {
    size_t checked = b->n;
    DECAY512_DISPATCH_EXP(DECAY512_EXP_F32_CHECKED, p, b);
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
                                           int stab_mode) {
    const size_t n = b->n;
    double *out = b->out;
    const double *str = b->strength;
    const void *age = b->age, *stab = b->stability;
    const double age_b = p->age, stab_b = p->stability;
    for (size_t i = 0; i < n; i += 8) {
        __m512d a = decay512_ages_pd(age, i, age_type, age_b);
        __m512d S = decay512_stab_pd(stab, i, stab_mode, stab_b);
        _mm512_storeu_pd(out + i, decay512_exp_pd(_mm512_div_pd(a, S), _mm512_loadu_pd(str + i)));
    }
}

/* float64 strength: float64 stabilities, or one */
static void decay_exp_f64_avx512(const engram_decay_params *p, const engram_decay_block *b) {
    if (b->stability) DECAY512_DISPATCH_AGES(decay512_exp_f64_body, p, b, DECAY512_STAB_F64);
    else DECAY512_DISPATCH_AGES(decay512_exp_f64_body, p, b, DECAY512_STAB_BROADCAST);
}

/* ---- float32 power, in float64 ---- */

/* log(m) = -log(invc_j) + log1p(m * invc_j - 1) for m in [1, 2), j its top 4
 * fraction bits: row 0 is exactly 1 (log(1) = 0, decay_internal.h), rows
 * 1..15 the inverses of the centres 1 + (j + 1/2) / 16 */
static const double decay512_log_invc[16] __attribute__((aligned(64))) = {
    0x1.0000000000000p+0, 0x1.d41d41d41d41dp-1, 0x1.bacf914c1bad0p-1, 0x1.a41a41a41a41ap-1,
    0x1.8f9c18f9c18fap-1, 0x1.7d05f417d05f4p-1, 0x1.6c16c16c16c17p-1, 0x1.5c9882b931057p-1,
    0x1.4e5e0a72f0539p-1, 0x1.4141414141414p-1, 0x1.3521cfb2b78c1p-1, 0x1.29e4129e4129ep-1,
    0x1.1f7047dc11f70p-1, 0x1.15b1e5f75270dp-1, 0x1.0c9714fbcda3bp-1, 0x1.0410410410410p-1};
/* -log(invc_j), correctly rounded */
static const double decay512_log_logc[16] __attribute__((aligned(64))) = {
    0.0,                  0x1.6f0d28ae56b4ep-4, 0x1.29552f81ff521p-3, 0x1.9525a9cf456b6p-3,
    0x1.fb9186d5e3e29p-3, 0x1.2e8e2bae11d31p-2, 0x1.5d1bdbf5809cap-2, 0x1.89a3386c1425bp-2,
    0x1.b44f77bcc8f64p-2, 0x1.dd46a04c1c4a1p-2, 0x1.02552a5a5d0ffp-1, 0x1.154c3d2f4d5eap-1,
    0x1.2795e1289b11bp-1, 0x1.393e0d3562a1ap-1, 0x1.4a4f85db03ebbp-1, 0x1.5ad404c359f2dp-1};
/* 2^(j/16) */
static const double decay512_exp2_table[16] __attribute__((aligned(64))) = {
    0x1.0000000000000p+0, 0x1.0b5586cf9890fp+0, 0x1.172b83c7d517bp+0, 0x1.2387a6e756238p+0,
    0x1.306fe0a31b715p+0, 0x1.3dea64c123422p+0, 0x1.4bfdad5362a27p+0, 0x1.5ab07dd485429p+0,
    0x1.6a09e667f3bcdp+0, 0x1.7a11473eb0187p+0, 0x1.8ace5422aa0dbp+0, 0x1.9c49182a3f090p+0,
    0x1.ae89f995ad3adp+0, 0x1.c199bdd85529cp+0, 0x1.d5818dcfba487p+0, 0x1.ea4afa2a490dap+0};

/*
 * log(u) for 1 <= u < inf (0 at u = 1): the 16-row table in registers and
 * a polynomial of degree 6 (precise, for power > 1) or 4 (power <= 1),
 * each evaluated in Estrin's order (its latency, not its operation count,
 * would bound the loop).  Errors: decay_internal.h.
 */
DECAY512_INLINE __m512d decay512_log_pd(__m512d u, int precise) {
    __m512d e = _mm512_getexp_pd(u);
    __m512d m = _mm512_getmant_pd(u, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src);
    __m512i j = _mm512_srli_epi64(_mm512_castpd_si512(m), 48); /* permutes read bits 3:0 */
    __m512d invc = _mm512_permutex2var_pd(_mm512_load_pd(decay512_log_invc), j,
                                          _mm512_load_pd(decay512_log_invc + 8));
    __m512d logc = _mm512_permutex2var_pd(_mm512_load_pd(decay512_log_logc), j,
                                          _mm512_load_pd(decay512_log_logc + 8));
    /* rounded once; row 0: m - 1 exactly */
    __m512d r = _mm512_fmsub_pd(m, invc, _mm512_set1_pd(1.0));
    __m512d r2 = _mm512_mul_pd(r, r);
    __m512d t;
    if (precise) {
        __m512d r4 = _mm512_mul_pd(r2, r2);
        __m512d p01 = _mm512_fmadd_pd(_mm512_set1_pd(DECAY_POW_LOG6_P1), r, _mm512_set1_pd(DECAY_POW_LOG6_P0));
        __m512d p23 = _mm512_fmadd_pd(_mm512_set1_pd(DECAY_POW_LOG6_P3), r, _mm512_set1_pd(DECAY_POW_LOG6_P2));
        __m512d p45 = _mm512_fmadd_pd(_mm512_set1_pd(DECAY_POW_LOG6_P5), r, _mm512_set1_pd(DECAY_POW_LOG6_P4));
        __m512d p456 = _mm512_fmadd_pd(_mm512_set1_pd(DECAY_POW_LOG6_P6), r2, p45);
        t = _mm512_fmadd_pd(p456, r4, _mm512_fmadd_pd(p23, r2, p01));
    } else {
        __m512d p01 = _mm512_fmadd_pd(_mm512_set1_pd(DECAY_POW_LOG4_P1), r, _mm512_set1_pd(DECAY_POW_LOG4_P0));
        __m512d p23 = _mm512_fmadd_pd(_mm512_set1_pd(DECAY_POW_LOG4_P3), r, _mm512_set1_pd(DECAY_POW_LOG4_P2));
        __m512d p234 = _mm512_fmadd_pd(_mm512_set1_pd(DECAY_POW_LOG4_P4), r2, p23);
        t = _mm512_fmadd_pd(p234, r2, p01);
    }
    __m512d log1p_r = _mm512_fmadd_pd(t, r2, r);
    /* e ln2 + log(c) >= 0 and log1p(r) >= -1/35 > -(e ln2 + log(c)) / 2 where
     * either is nonzero: the sum cancels nothing */
    return _mm512_add_pd(_mm512_fmadd_pd(e, _mm512_set1_pd(DECAY_POW_LN2), logc), log1p_r);
}

/*
 * exp(max(-power * L, -700)) for L >= 0: 16-entry 2^(j/16) table and a
 * polynomial of degree 5 (relative error < 2^-42, precise) or 4 (2^-34).
 * The clamp also takes -inf (a power too large for power * L) and keeps
 * every double normal.
 */
DECAY512_INLINE __m512d decay512_exp_neg_pd(__m512d L, __m512d neg_power, int precise) {
    const __m512d shifter = _mm512_set1_pd(DECAY_F64_SHIFTER);
    __m512d Y = _mm512_max_pd(_mm512_mul_pd(L, neg_power), _mm512_set1_pd(DECAY_POW_Y_MIN));
    __m512d k = _mm512_fmadd_pd(Y, _mm512_set1_pd(16.0 * DECAY_F64_LOG2E), shifter);
    __m512d N = _mm512_sub_pd(k, shifter);
    __m512d w = _mm512_fmadd_pd(N, _mm512_set1_pd(-DECAY_POW_LN2 / 16), Y); /* |w| <= ln2/32 */
    /* 1 + w + w^2 (1/2 + w/6 + w^2 (1/24 + w/120)), in Estrin's order */
    __m512d w2 = _mm512_mul_pd(w, w);
    __m512d c45 = precise ? _mm512_fmadd_pd(_mm512_set1_pd(1.0 / 120), w, _mm512_set1_pd(1.0 / 24))
                          : _mm512_set1_pd(1.0 / 24);
    __m512d c23 = _mm512_fmadd_pd(_mm512_set1_pd(1.0 / 6), w, _mm512_set1_pd(0.5));
    __m512d c01 = _mm512_add_pd(w, _mm512_set1_pd(1.0));
    __m512d P = _mm512_fmadd_pd(_mm512_fmadd_pd(c45, w2, c23), w2, c01);
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

/* 8 lanes of strength * u^-power; *ok: lanes with 1 <= u < inf. */
DECAY512_INLINE __m256 decay512_pow_half(__m512d u, __m256 s, __m512d neg_power, int half_power,
                                         int precise, __mmask8 *ok) {
    const __m512d one = _mm512_set1_pd(1.0);
    __mmask8 good = _mm512_cmp_pd_mask(u, one, _CMP_GE_OQ);
    *ok = _mm512_mask_cmp_pd_mask(good, u, _mm512_set1_pd(INFINITY), _CMP_LT_OQ);
    __m512d P = half_power ? decay512_rsqrt_pd(u)
                           : decay512_exp_neg_pd(decay512_log_pd(u, precise), neg_power, precise);
    return _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtps_pd(s), P));
}

/* Lanes of [i, i + 16) off the vector path (u < 1, u = inf, NaN, infinite strength): the element definition. */
static __attribute__((noinline)) __m512 decay512_power_special(const engram_decay_params *p,
                                                               const engram_decay_block *b,
                                                               size_t i, __m512 r, __mmask16 ok) {
    float rb[16];
    _mm512_storeu_ps(rb, r);
    for (int l = 0; l < 16; l++)
        if (!(ok >> l & 1)) rb[l] = engram_decay_power_f32_element(p, b, i + (size_t)l);
    return _mm512_loadu_ps(rb);
}

/* Lanes of [i, i + 16) whose age (as given) is >= 0 and not NaN and whose float32 stability is > 0. */
DECAY512_INLINE __mmask16 decay512_valid_lanes(const void *age, const void *stab, size_t i,
                                               int age_type, int stab_mode) {
    __mmask16 valid = 0xFFFF;
    const __m512 zero = _mm512_setzero_ps();
    switch (age_type) {
        case ENGRAM_DECAY_F32:
            valid = _mm512_cmp_ps_mask(_mm512_loadu_ps((const float *)age + i), zero, _CMP_GE_OQ);
            break;
        case ENGRAM_DECAY_F64: {
            const double *a = (const double *)age + i;
            valid = (__mmask16)(_mm512_cmp_pd_mask(_mm512_loadu_pd(a), _mm512_setzero_pd(), _CMP_GE_OQ) |
                                (unsigned)_mm512_cmp_pd_mask(_mm512_loadu_pd(a + 8), _mm512_setzero_pd(),
                                                             _CMP_GE_OQ) << 8);
            break;
        }
        case ENGRAM_DECAY_I64: {
            const int64_t *a = (const int64_t *)age + i;
            const __m512i z = _mm512_setzero_si512();
            valid = (__mmask16)(_mm512_cmp_epi64_mask(_mm512_loadu_si512(a), z, _MM_CMPINT_NLT) |
                                (unsigned)_mm512_cmp_epi64_mask(_mm512_loadu_si512(a + 8), z,
                                                                _MM_CMPINT_NLT) << 8);
            break;
        }
        default: break; /* uint64 ages and a checked broadcast age are valid */
    }
    if (stab_mode == DECAY512_STAB_F32)
        valid &= _mm512_cmp_ps_mask(_mm512_loadu_ps((const float *)stab + i), zero,
                                    _CMP_GT_OQ);
    return valid;
}

/*
 * u = 1 + factor * age / stability three ways (decay_internal.h):
 *   exact_u      power > 1: (factor * a) / S + 1, the float64 evaluation's own u
 *   one value    power <= 1: fma(a, factor / S, 1)
 *   arrays       power <= 1: fma(y, factor, 1), y the float32 argument (the
 *                divider's float32 throughput, <= power ulp)
 * checking: validate as well (fresh output only); an invalid lane sends the
 * vector to a scalar check of the values as given.
 */
DECAY512_INLINE size_t decay512_power_f32_body2(const engram_decay_params *p,
                                                const engram_decay_block *b, int age_type,
                                                int stab_mode, int half_power, int exact_u,
                                                int checking) {
    const size_t n = b->n;
    float *out = b->out;
    const float *str = b->strength;
    const void *age = b->age, *stab = b->stability;
    const double age_b = p->age, stab_b = p->stability;
    const __m512d one = _mm512_set1_pd(1.0);
    const __m512d factor = _mm512_set1_pd(p->factor);
    const __m512d factor_over_stability = _mm512_set1_pd(p->factor / p->stability);
    const __m512d neg_power = _mm512_set1_pd(-p->power);
    decay512_operands o;
    decay512_operands_init(&o, p, b);
    const int wide = decay512_broadcast_wide(p, b);
    for (size_t i = 0; i < n; i += 16) {
        __m512d u_lo, u_hi;
        if (exact_u) {
            u_lo = _mm512_add_pd(_mm512_div_pd(_mm512_mul_pd(decay512_ages_pd(age, i, age_type, age_b), factor),
                                               decay512_stab_pd(stab, i, stab_mode, stab_b)),
                                 one);
            u_hi = _mm512_add_pd(_mm512_div_pd(_mm512_mul_pd(decay512_ages_pd(age, i + 8, age_type, age_b), factor),
                                               decay512_stab_pd(stab, i + 8, stab_mode, stab_b)),
                                 one);
        } else if (stab_mode == DECAY512_STAB_BROADCAST) {
            u_lo = _mm512_fmadd_pd(decay512_ages_pd(age, i, age_type, age_b), factor_over_stability, one);
            u_hi = _mm512_fmadd_pd(decay512_ages_pd(age, i + 8, age_type, age_b), factor_over_stability, one);
        } else {
            __m512 y = wide ? decay512_quotient_wide(p, b, i)
                            : decay512_quotient_ps(p, b, age, (const float *)stab, i, age_type,
                                                   stab_mode, &o);
            u_lo = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(y)), factor, one);
            u_hi = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(y, 1)), factor, one);
        }
        __m512 s = _mm512_loadu_ps(str + i);
        __mmask8 ok_lo, ok_hi;
        __m256 lo = decay512_pow_half(u_lo, _mm512_castps512_ps256(s), neg_power, half_power, exact_u, &ok_lo);
        __m256 hi = decay512_pow_half(u_hi, _mm512_extractf32x8_ps(s, 1), neg_power, half_power, exact_u, &ok_hi);
        __m512 r = decay512_join_ps(lo, hi);
        /* infinite strengths take the element definition: inf * u^-power is NaN where pow underflows */
        __mmask16 ok = (__mmask16)(ok_lo | (unsigned)ok_hi << 8) &
                       (__mmask16)~_mm512_fpclass_ps_mask(s, 0x18);
        if (checking) ok &= decay512_valid_lanes(age, stab, i, age_type, stab_mode);
        if (ENGRAM_UNLIKELY(ok != 0xFFFF)) {
            if (checking) {
                size_t bad = decay512_first_invalid_lane(p, b, i);
                if (bad < 16) return i + bad;
            }
            r = decay512_power_special(p, b, i, r, ok);
        }
        _mm512_storeu_ps(out + i, r);
    }
    return n;
}

/* power 0.5 (the FSRS curve) needs no logarithm: 1 / sqrt(u). */
DECAY512_INLINE size_t decay512_power_f32_body(const engram_decay_params *p,
                                               const engram_decay_block *b, int age_type,
                                               int stab_mode, int checking) {
    if (p->power == 0.5)
        return decay512_power_f32_body2(p, b, age_type, stab_mode, 1, 0, checking);
    if (p->power <= 1.0)
        return decay512_power_f32_body2(p, b, age_type, stab_mode, 0, 0, checking);
    return decay512_power_f32_body2(p, b, age_type, stab_mode, 0, 1, checking);
}

#define DECAY512_POWER_F32(p, b, type, mode) decay512_power_f32_body(p, b, type, mode, 0)
#define DECAY512_POWER_F32_CHECKED(p, b, type, mode) \
    checked = decay512_power_f32_body(p, b, type, mode, 1)

static void decay_power_f32_avx512(const engram_decay_params *p, const engram_decay_block *b) {
    DECAY512_DISPATCH(DECAY512_POWER_F32, p, b);
}

static size_t decay_power_f32_checked_avx512(const engram_decay_params *p,
                                             const engram_decay_block *b) {
    size_t checked = b->n;
    DECAY512_DISPATCH_CHECKED(DECAY512_POWER_F32_CHECKED, p, b);
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

