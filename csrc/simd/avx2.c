/*
 * avx2 primitives of every kernel, compiled with this level's -m flags only.
 * Each section fills that kernel's table; the scalar version in csrc/<kernel>.c is the spec.
 */
#include "../engram.h"

/* ==== similarity ==== */

#include <immintrin.h>

/* Elements of d between float64 flushes: ENGRAM_SIM_F32_LANE_TERMS products per lane. */
#define SIM_F32_FLUSH (8 * ENGRAM_SIM_F32_LANE_TERMS)

/*
 * float32: 8-lane FMA accumulators, flushed into float64 every
 * SIM_F32_FLUSH elements of d, so no lane sums more than
 * ENGRAM_SIM_F32_LANE_TERMS products (see engram.h).  Tails use vmaskmov loads,
 * which never fault on the masked-off elements past the end of a row.
 */

static const int32_t sim_tail_bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* Mask of the first n (< 8) float32 lanes. */
static inline __m256i sim_mask_ps(size_t n) {
    return _mm256_loadu_si256((const __m256i *)(sim_tail_bits + 8 - n));
}
/* Mask of the first n (< 4) float64 lanes. */
static inline __m256i sim_mask_pd(size_t n) {
    return _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(sim_tail_bits + 8 - n)));
}

/* The 8 float32 lanes of v added pairwise into 4 float64 lanes. */
static inline __m256d sim_widen_ps(__m256 v) {
    return _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                         _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

static inline double sim_hsum_pd(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/*
 * Streaming rows from memory, the hardware prefetcher alone reaches ~70 %
 * of the read bandwidth; also asking for the same offset of a row at least
 * 4 KB (and 4 rows) further on reaches 90 % and more.  Row-based, so
 * row-strided inputs do not fetch the gaps.  The address is formed as an
 * integer: it may lie past the end of the rows, and prefetches never fault.
 */
static inline ptrdiff_t sim_prefetch_ahead(ptrdiff_t row_bytes) {
    ptrdiff_t size = row_bytes < 0 ? -row_bytes : row_bytes, rows = 4;
    while (rows * size < 4096 && rows < 4096) rows += 4;
    return rows * row_bytes;
}
#define SIM_PREFETCH(p, ahead) _mm_prefetch((const char *)((uintptr_t)(p) + (uintptr_t)(ahead)), _MM_HINT_T0)

static void pair_f32_avx2(const float *x, const float *y, size_t d, double out[3]) {
    __m256d sxy = _mm256_setzero_pd(), sxx = sxy, syy = sxy;
    size_t i = 0;
    do {
        size_t end = d - i > SIM_F32_FLUSH ? i + SIM_F32_FLUSH : d;
        __m256 xy0 = _mm256_setzero_ps(), xy1 = xy0, xx0 = xy0, xx1 = xy0, yy0 = xy0, yy1 = xy0;
        for (; i + 16 <= end; i += 16) {
            __m256 a0 = _mm256_loadu_ps(x + i), b0 = _mm256_loadu_ps(y + i);
            __m256 a1 = _mm256_loadu_ps(x + i + 8), b1 = _mm256_loadu_ps(y + i + 8);
            xy0 = _mm256_fmadd_ps(a0, b0, xy0);
            xx0 = _mm256_fmadd_ps(a0, a0, xx0);
            yy0 = _mm256_fmadd_ps(b0, b0, yy0);
            xy1 = _mm256_fmadd_ps(a1, b1, xy1);
            xx1 = _mm256_fmadd_ps(a1, a1, xx1);
            yy1 = _mm256_fmadd_ps(b1, b1, yy1);
        }
        for (; i < end; i += 8) {
            __m256 a, b;
            if (end - i >= 8) {
                a = _mm256_loadu_ps(x + i);
                b = _mm256_loadu_ps(y + i);
            } else {
                __m256i m = sim_mask_ps(end - i);
                a = _mm256_maskload_ps(x + i, m);
                b = _mm256_maskload_ps(y + i, m);
            }
            xy0 = _mm256_fmadd_ps(a, b, xy0);
            xx0 = _mm256_fmadd_ps(a, a, xx0);
            yy0 = _mm256_fmadd_ps(b, b, yy0);
        }
        i = end;
        sxy = _mm256_add_pd(sxy, sim_widen_ps(_mm256_add_ps(xy0, xy1)));
        sxx = _mm256_add_pd(sxx, sim_widen_ps(_mm256_add_ps(xx0, xx1)));
        syy = _mm256_add_pd(syy, sim_widen_ps(_mm256_add_ps(yy0, yy1)));
    } while (i < d);
    out[0] = sim_hsum_pd(sxy);
    out[1] = sim_hsum_pd(sxx);
    out[2] = sim_hsum_pd(syy);
}

static void pair_f64_avx2(const double *x, const double *y, size_t d, double out[3]) {
    __m256d xy0 = _mm256_setzero_pd(), xy1 = xy0, xx0 = xy0, xx1 = xy0, yy0 = xy0, yy1 = xy0;
    size_t i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256d a0 = _mm256_loadu_pd(x + i), b0 = _mm256_loadu_pd(y + i);
        __m256d a1 = _mm256_loadu_pd(x + i + 4), b1 = _mm256_loadu_pd(y + i + 4);
        xy0 = _mm256_fmadd_pd(a0, b0, xy0);
        xx0 = _mm256_fmadd_pd(a0, a0, xx0);
        yy0 = _mm256_fmadd_pd(b0, b0, yy0);
        xy1 = _mm256_fmadd_pd(a1, b1, xy1);
        xx1 = _mm256_fmadd_pd(a1, a1, xx1);
        yy1 = _mm256_fmadd_pd(b1, b1, yy1);
    }
    for (; i < d; i += 4) {
        __m256d a, b;
        if (d - i >= 4) {
            a = _mm256_loadu_pd(x + i);
            b = _mm256_loadu_pd(y + i);
        } else {
            __m256i m = sim_mask_pd(d - i);
            a = _mm256_maskload_pd(x + i, m);
            b = _mm256_maskload_pd(y + i, m);
        }
        xy0 = _mm256_fmadd_pd(a, b, xy0);
        xx0 = _mm256_fmadd_pd(a, a, xx0);
        yy0 = _mm256_fmadd_pd(b, b, yy0);
    }
    out[0] = sim_hsum_pd(_mm256_add_pd(xy0, xy1));
    out[1] = sim_hsum_pd(_mm256_add_pd(xx0, xx1));
    out[2] = sim_hsum_pd(_mm256_add_pd(yy0, yy1));
}

/* R rows against q: one dot and one norm accumulator per row (same arithmetic for any R). */
static inline __attribute__((always_inline)) void
dot_norm_rows_f32_avx2(const float *q, const float *rows, ptrdiff_t stride, size_t d,
                       double *dot, double *norm2, ptrdiff_t ahead, const int R) {
    __m256d sd[4], sn[4];
    for (int r = 0; r < R; r++) sd[r] = sn[r] = _mm256_setzero_pd();
    size_t i = 0;
    do {
        size_t end = d - i > SIM_F32_FLUSH ? i + SIM_F32_FLUSH : d;
        __m256 ad[4], an[4];
        for (int r = 0; r < R; r++) ad[r] = an[r] = _mm256_setzero_ps();
        for (; i + 8 <= end; i += 8) {
            __m256 qv = _mm256_loadu_ps(q + i);
            for (int r = 0; r < R; r++) {
                if (i % 16 == 0) SIM_PREFETCH(rows + r * stride + i, ahead);
                __m256 v = _mm256_loadu_ps(rows + r * stride + i);
                ad[r] = _mm256_fmadd_ps(v, qv, ad[r]);
                an[r] = _mm256_fmadd_ps(v, v, an[r]);
            }
        }
        if (i < end) {
            __m256i m = sim_mask_ps(end - i);
            __m256 qv = _mm256_maskload_ps(q + i, m);
            for (int r = 0; r < R; r++) {
                __m256 v = _mm256_maskload_ps(rows + r * stride + i, m);
                ad[r] = _mm256_fmadd_ps(v, qv, ad[r]);
                an[r] = _mm256_fmadd_ps(v, v, an[r]);
            }
            i = end;
        }
        for (int r = 0; r < R; r++) {
            sd[r] = _mm256_add_pd(sd[r], sim_widen_ps(ad[r]));
            sn[r] = _mm256_add_pd(sn[r], sim_widen_ps(an[r]));
        }
    } while (i < d);
    for (int r = 0; r < R; r++) {
        dot[r] = sim_hsum_pd(sd[r]);
        norm2[r] = sim_hsum_pd(sn[r]);
    }
}

static void one_to_many_f32_avx2(const float *q, const float *rows, ptrdiff_t stride, size_t n,
                                 size_t d, double *dot, double *norm2) {
    ptrdiff_t ahead = sim_prefetch_ahead(stride * (ptrdiff_t)sizeof(float));
    size_t r = 0;
    for (; r + 4 <= n; r += 4)
        dot_norm_rows_f32_avx2(q, rows + (ptrdiff_t)r * stride, stride, d, dot + r, norm2 + r,
                               ahead, 4);
    for (; r < n; r++)
        dot_norm_rows_f32_avx2(q, rows + (ptrdiff_t)r * stride, stride, d, dot + r, norm2 + r,
                               ahead, 1);
}

static inline __attribute__((always_inline)) void
dot_norm_rows_f64_avx2(const double *q, const double *rows, ptrdiff_t stride, size_t d,
                       double *dot, double *norm2, ptrdiff_t ahead, const int R) {
    __m256d ad[4], an[4];
    for (int r = 0; r < R; r++) ad[r] = an[r] = _mm256_setzero_pd();
    size_t i = 0;
    for (; i + 4 <= d; i += 4) {
        __m256d qv = _mm256_loadu_pd(q + i);
        for (int r = 0; r < R; r++) {
            if (i % 8 == 0) SIM_PREFETCH(rows + r * stride + i, ahead);
            __m256d v = _mm256_loadu_pd(rows + r * stride + i);
            ad[r] = _mm256_fmadd_pd(v, qv, ad[r]);
            an[r] = _mm256_fmadd_pd(v, v, an[r]);
        }
    }
    if (i < d) {
        __m256i m = sim_mask_pd(d - i);
        __m256d qv = _mm256_maskload_pd(q + i, m);
        for (int r = 0; r < R; r++) {
            __m256d v = _mm256_maskload_pd(rows + r * stride + i, m);
            ad[r] = _mm256_fmadd_pd(v, qv, ad[r]);
            an[r] = _mm256_fmadd_pd(v, v, an[r]);
        }
    }
    for (int r = 0; r < R; r++) {
        dot[r] = sim_hsum_pd(ad[r]);
        norm2[r] = sim_hsum_pd(an[r]);
    }
}

static void one_to_many_f64_avx2(const double *q, const double *rows, ptrdiff_t stride, size_t n,
                                 size_t d, double *dot, double *norm2) {
    ptrdiff_t ahead = sim_prefetch_ahead(stride * (ptrdiff_t)sizeof(double));
    size_t r = 0;
    for (; r + 4 <= n; r += 4)
        dot_norm_rows_f64_avx2(q, rows + (ptrdiff_t)r * stride, stride, d, dot + r, norm2 + r,
                               ahead, 4);
    for (; r < n; r++)
        dot_norm_rows_f64_avx2(q, rows + (ptrdiff_t)r * stride, stride, d, dot + r, norm2 + r,
                               ahead, 1);
}

static void norm2_rows_f32_avx2(const float *rows, ptrdiff_t stride, size_t n, size_t d,
                                double *norm2) {
    for (size_t r = 0; r < n; r++) {
        const float *row = rows + (ptrdiff_t)r * stride;
        __m256d s = _mm256_setzero_pd();
        size_t i = 0;
        do {
            size_t end = d - i > SIM_F32_FLUSH ? i + SIM_F32_FLUSH : d;
            __m256 a = _mm256_setzero_ps(), b = a;
            for (; i + 16 <= end; i += 16) {
                __m256 v = _mm256_loadu_ps(row + i), w = _mm256_loadu_ps(row + i + 8);
                a = _mm256_fmadd_ps(v, v, a);
                b = _mm256_fmadd_ps(w, w, b);
            }
            for (; i < end; i += 8) {
                __m256 v = end - i >= 8 ? _mm256_loadu_ps(row + i)
                                        : _mm256_maskload_ps(row + i, sim_mask_ps(end - i));
                a = _mm256_fmadd_ps(v, v, a);
            }
            i = end;
            s = _mm256_add_pd(s, sim_widen_ps(_mm256_add_ps(a, b)));
        } while (i < d);
        norm2[r] = sim_hsum_pd(s);
    }
}

static void norm2_rows_f64_avx2(const double *rows, ptrdiff_t stride, size_t n, size_t d,
                                double *norm2) {
    for (size_t r = 0; r < n; r++) {
        const double *row = rows + (ptrdiff_t)r * stride;
        __m256d a = _mm256_setzero_pd(), b = a;
        size_t i = 0;
        for (; i + 8 <= d; i += 8) {
            __m256d v = _mm256_loadu_pd(row + i), w = _mm256_loadu_pd(row + i + 4);
            a = _mm256_fmadd_pd(v, v, a);
            b = _mm256_fmadd_pd(w, w, b);
        }
        for (; i < d; i += 4) {
            __m256d v = d - i >= 4 ? _mm256_loadu_pd(row + i)
                                   : _mm256_maskload_pd(row + i, sim_mask_pd(d - i));
            a = _mm256_fmadd_pd(v, v, a);
        }
        norm2[r] = sim_hsum_pd(_mm256_add_pd(a, b));
    }
}

/*
 * Horizontal sums of 8 accumulators in one shuffle tree.  Every
 * accumulator's lanes are added in the same order, (l, l+4), then (l, l+2),
 * (l, l+1), whichever slot it occupies, so a pair's value does not depend
 * on its place in the tile.  Lane 4 * (t % 2) + t / 2 holds the sum of a[t].
 */
static inline __m256 sim_pair_halves(__m256 a, __m256 b) {
    return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}
static inline __m256 sim_pair_quarters(__m256 a, __m256 b) {
    return _mm256_add_ps(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}
static inline __m256 sim_pair_lanes(__m256 a, __m256 b) {
    return _mm256_add_ps(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}
static inline __m256 sim_reduce8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4,
                                 __m256 a5, __m256 a6, __m256 a7) {
    __m256 h0 = sim_pair_halves(a0, a1), h1 = sim_pair_halves(a2, a3);
    __m256 h2 = sim_pair_halves(a4, a5), h3 = sim_pair_halves(a6, a7);
    return sim_pair_lanes(sim_pair_quarters(h0, h1), sim_pair_quarters(h2, h3));
}

/*
 * Register tile: 2 x-rows by 4 y-rows (8 ymm accumulators + 2 for x and 1
 * for y, within the 16 registers): per 8 elements 6 loads and 8 FMAs.
 */
#define TILE_R 2
#define TILE_C 4

#define SIM_IN_REGISTER(v) __asm__("" : "+x"(v))

static void dot_tile_f32_avx2(const float *const *x, size_t x0, const float *const *y,
                              size_t len, double *out, size_t ldo, int accumulate) {
    const float *xp0 = x[0] + x0, *xp1 = x[1] + x0;
    const float *yp0 = y[0], *yp1 = y[1], *yp2 = y[2], *yp3 = y[3];
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
#define SIM_TILE_COLUMN(c, yv)                                                                \
    do {                                                                                      \
        SIM_IN_REGISTER(yv);                                                                  \
        a0##c = _mm256_fmadd_ps(x0, yv, a0##c);                                               \
        a1##c = _mm256_fmadd_ps(x1, yv, a1##c);                                               \
    } while (0)
    size_t k = 0;
    for (; k + 8 <= len; k += 8) {
        __m256 x0 = _mm256_loadu_ps(xp0 + k), x1 = _mm256_loadu_ps(xp1 + k);
        __m256 y0 = _mm256_loadu_ps(yp0 + k);
        SIM_TILE_COLUMN(0, y0);
        __m256 y1 = _mm256_loadu_ps(yp1 + k);
        SIM_TILE_COLUMN(1, y1);
        __m256 y2 = _mm256_loadu_ps(yp2 + k);
        SIM_TILE_COLUMN(2, y2);
        __m256 y3 = _mm256_loadu_ps(yp3 + k);
        SIM_TILE_COLUMN(3, y3);
    }
    if (k < len) {
        __m256i m = sim_mask_ps(len - k);
        __m256 x0 = _mm256_maskload_ps(xp0 + k, m), x1 = _mm256_maskload_ps(xp1 + k, m);
        __m256 y0 = _mm256_maskload_ps(yp0 + k, m);
        SIM_TILE_COLUMN(0, y0);
        __m256 y1 = _mm256_maskload_ps(yp1 + k, m);
        SIM_TILE_COLUMN(1, y1);
        __m256 y2 = _mm256_maskload_ps(yp2 + k, m);
        SIM_TILE_COLUMN(2, y2);
        __m256 y3 = _mm256_maskload_ps(yp3 + k, m);
        SIM_TILE_COLUMN(3, y3);
    }
#undef SIM_TILE_COLUMN
    /* slots in order: row 0 in the low half, row 1 in the high half */
    __m256 sums = _mm256_permutevar8x32_ps(sim_reduce8(a00, a01, a02, a03, a10, a11, a12, a13),
                                           _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    __m256d row0 = _mm256_cvtps_pd(_mm256_castps256_ps128(sums));
    __m256d row1 = _mm256_cvtps_pd(_mm256_extractf128_ps(sums, 1));
    if (accumulate) {
        row0 = _mm256_add_pd(_mm256_loadu_pd(out), row0);
        row1 = _mm256_add_pd(_mm256_loadu_pd(out + ldo), row1);
    }
    _mm256_storeu_pd(out, row0);
    _mm256_storeu_pd(out + ldo, row1);
}

static void dot_tile_f64_avx2(const double *const *x, size_t x0, const double *const *y,
                              size_t len, double *out, size_t ldo, int accumulate) {
    const double *xp0 = x[0] + x0, *xp1 = x[1] + x0;
    const double *yp0 = y[0], *yp1 = y[1], *yp2 = y[2], *yp3 = y[3];
    __m256d a00 = _mm256_setzero_pd(), a01 = a00, a02 = a00, a03 = a00;
    __m256d a10 = a00, a11 = a00, a12 = a00, a13 = a00;
#define SIM_TILE_COLUMN(c, yv)                                                                \
    do {                                                                                      \
        SIM_IN_REGISTER(yv);                                                                  \
        a0##c = _mm256_fmadd_pd(x0, yv, a0##c);                                               \
        a1##c = _mm256_fmadd_pd(x1, yv, a1##c);                                               \
    } while (0)
    size_t k = 0;
    for (; k + 4 <= len; k += 4) {
        __m256d x0 = _mm256_loadu_pd(xp0 + k), x1 = _mm256_loadu_pd(xp1 + k);
        __m256d y0 = _mm256_loadu_pd(yp0 + k);
        SIM_TILE_COLUMN(0, y0);
        __m256d y1 = _mm256_loadu_pd(yp1 + k);
        SIM_TILE_COLUMN(1, y1);
        __m256d y2 = _mm256_loadu_pd(yp2 + k);
        SIM_TILE_COLUMN(2, y2);
        __m256d y3 = _mm256_loadu_pd(yp3 + k);
        SIM_TILE_COLUMN(3, y3);
    }
    if (k < len) {
        __m256i m = sim_mask_pd(len - k);
        __m256d x0 = _mm256_maskload_pd(xp0 + k, m), x1 = _mm256_maskload_pd(xp1 + k, m);
        __m256d y0 = _mm256_maskload_pd(yp0 + k, m);
        SIM_TILE_COLUMN(0, y0);
        __m256d y1 = _mm256_maskload_pd(yp1 + k, m);
        SIM_TILE_COLUMN(1, y1);
        __m256d y2 = _mm256_maskload_pd(yp2 + k, m);
        SIM_TILE_COLUMN(2, y2);
        __m256d y3 = _mm256_maskload_pd(yp3 + k, m);
        SIM_TILE_COLUMN(3, y3);
    }
#undef SIM_TILE_COLUMN
    __m256d acc[8] = {a00, a01, a02, a03, a10, a11, a12, a13};
    for (int t = 0; t < TILE_R * TILE_C; t++) {
        double v = sim_hsum_pd(acc[t]);
        double *o = out + (size_t)(t / TILE_C) * ldo + (size_t)(t % TILE_C);
        *o = accumulate ? *o + v : v;
    }
}

/* Fully unrolled small loops keep per-row accumulator arrays in registers. */
#define SIM_UNROLL _Pragma("GCC unroll 8")

/*
 * Small d (see engram.h): query rows against the 64 transposed corpus rows
 * of yt, vectorised across the corpus rows, in two halves of 32 (4 vectors)
 * so two rows' accumulators, their broadcasts and a load fit the 16
 * registers.  Every lane sums its products in order of k and flushes into
 * float64 every ENGRAM_SIM_F32_LANE_TERMS of them, whatever R and the lane are.
 */
static inline __attribute__((always_inline)) void
dot_cols_half_f32_avx2(const float *x, ptrdiff_t xs, const float *yt, size_t d, double *out,
                       size_t ldo, const int R) {
    size_t k = 0;
    int first = 1;
    do {
        size_t end = d - k > ENGRAM_SIM_F32_LANE_TERMS ? k + ENGRAM_SIM_F32_LANE_TERMS : d;
        __m256 acc[2][4];
        SIM_UNROLL for (int r = 0; r < R; r++)
            SIM_UNROLL for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_ps();
        for (; k < end; k++) {
            const float *yk = yt + k * ENGRAM_SIM_COLS;
            __m256 xv[2];
            SIM_UNROLL for (int r = 0; r < R; r++) xv[r] = _mm256_broadcast_ss(x + r * xs + (ptrdiff_t)k);
            SIM_UNROLL for (int c = 0; c < 4; c++) {
                __m256 yv = _mm256_loadu_ps(yk + 8 * c);
                SIM_UNROLL for (int r = 0; r < R; r++) acc[r][c] = _mm256_fmadd_ps(xv[r], yv, acc[r][c]);
            }
        }
        SIM_UNROLL for (int r = 0; r < R; r++)
            SIM_UNROLL for (int c = 0; c < 4; c++) {
                double *o = out + (size_t)r * ldo + (size_t)c * 8;
                __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(acc[r][c]));
                __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(acc[r][c], 1));
                if (!first) {
                    lo = _mm256_add_pd(_mm256_loadu_pd(o), lo);
                    hi = _mm256_add_pd(_mm256_loadu_pd(o + 4), hi);
                }
                _mm256_storeu_pd(o, lo);
                _mm256_storeu_pd(o + 4, hi);
            }
        first = 0;
    } while (k < d);
}

static void dot_cols_f32_avx2(const float *x, ptrdiff_t x_stride, size_t rows, const float *yt,
                              size_t d, double *out, size_t ldo) {
    for (size_t h = 0; h < ENGRAM_SIM_COLS; h += 32) {
        size_t i = 0;
        for (; i + 2 <= rows; i += 2)
            dot_cols_half_f32_avx2(x + (ptrdiff_t)i * x_stride, x_stride, yt + h, d,
                                   out + i * ldo + h, ldo, 2);
        for (; i < rows; i++)
            dot_cols_half_f32_avx2(x + (ptrdiff_t)i * x_stride, x_stride, yt + h, d,
                                   out + i * ldo + h, ldo, 1);
    }
}

/* float64: quarters of 16 corpus rows (4 vectors), two rows at a time. */
static inline __attribute__((always_inline)) void
dot_cols_quarter_f64_avx2(const double *x, ptrdiff_t xs, const double *yt, size_t d, double *out,
                          size_t ldo, const int R) {
    __m256d acc[2][4];
    SIM_UNROLL for (int r = 0; r < R; r++)
        SIM_UNROLL for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_pd();
    for (size_t k = 0; k < d; k++) {
        const double *yk = yt + k * ENGRAM_SIM_COLS;
        __m256d xv[2];
        SIM_UNROLL for (int r = 0; r < R; r++) xv[r] = _mm256_broadcast_sd(x + r * xs + (ptrdiff_t)k);
        SIM_UNROLL for (int c = 0; c < 4; c++) {
            __m256d yv = _mm256_loadu_pd(yk + 4 * c);
            SIM_UNROLL for (int r = 0; r < R; r++) acc[r][c] = _mm256_fmadd_pd(xv[r], yv, acc[r][c]);
        }
    }
    SIM_UNROLL for (int r = 0; r < R; r++)
        SIM_UNROLL for (int c = 0; c < 4; c++) _mm256_storeu_pd(out + (size_t)r * ldo + 4 * c, acc[r][c]);
}

static void dot_cols_f64_avx2(const double *x, ptrdiff_t x_stride, size_t rows, const double *yt,
                              size_t d, double *out, size_t ldo) {
    for (size_t h = 0; h < ENGRAM_SIM_COLS; h += 16) {
        size_t i = 0;
        for (; i + 2 <= rows; i += 2)
            dot_cols_quarter_f64_avx2(x + (ptrdiff_t)i * x_stride, x_stride, yt + h, d,
                                      out + i * ldo + h, ldo, 2);
        for (; i < rows; i++)
            dot_cols_quarter_f64_avx2(x + (ptrdiff_t)i * x_stride, x_stride, yt + h, d,
                                      out + i * ldo + h, ldo, 1);
    }
}

/* Cosine (or dot) scores of 4 pairs; NaN where an inverse norm is not > 0. */
static inline __m256d sim_scores4(__m256d dots, __m256d y_inv, __m256d x_inv, int x_fast,
                                  int metric) {
    __m256d fast = x_fast ? _mm256_cmp_pd(y_inv, _mm256_setzero_pd(), _CMP_GT_OQ)
                          : _mm256_setzero_pd();
    __m256d s = dots;
    if (metric != ENGRAM_METRIC_DOT)
        s = _mm256_max_pd(_mm256_min_pd(_mm256_mul_pd(_mm256_mul_pd(dots, x_inv), y_inv),
                                        _mm256_set1_pd(1.0)),
                          _mm256_set1_pd(-1.0));
    return _mm256_blendv_pd(_mm256_set1_pd(__builtin_nan("")), s, fast);
}

static inline double sim_score1(double dot, double y_inv, double x_inv, int metric) {
    if (!(x_inv > 0 && y_inv > 0)) return __builtin_nan("");
    if (metric == ENGRAM_METRIC_DOT) return dot;
    double c = dot * x_inv * y_inv;
    return c > 1.0 ? 1.0 : c < -1.0 ? -1.0 : c;
}

static void scores_f32_avx2(const double *dots, const double *y_inv, double x_inv, size_t n,
                            int metric, float *out) {
    __m256d xi = _mm256_set1_pd(x_inv);
    int x_fast = x_inv > 0;
    size_t j = 0;
    for (; j + 4 <= n; j += 4)
        _mm_storeu_ps(out + j, _mm256_cvtpd_ps(sim_scores4(_mm256_loadu_pd(dots + j),
                                                           _mm256_loadu_pd(y_inv + j), xi, x_fast,
                                                           metric)));
    for (; j < n; j++) out[j] = (float)sim_score1(dots[j], y_inv[j], x_inv, metric);
}

static void scores_f64_avx2(const double *dots, const double *y_inv, double x_inv, size_t n,
                            int metric, double *out) {
    __m256d xi = _mm256_set1_pd(x_inv);
    int x_fast = x_inv > 0;
    size_t j = 0;
    for (; j + 4 <= n; j += 4)
        _mm256_storeu_pd(out + j, sim_scores4(_mm256_loadu_pd(dots + j), _mm256_loadu_pd(y_inv + j),
                                              xi, x_fast, metric));
    for (; j < n; j++) out[j] = sim_score1(dots[j], y_inv[j], x_inv, metric);
}

/* !(s <= threshold) is the unordered not-less-or-equal compare: true above it and for NaN. */
static size_t select_f32_avx2(const float *s, size_t n, float threshold, uint32_t *idx) {
    __m256 t = _mm256_set1_ps(threshold);
    size_t count = 0, j = 0;
    for (; j + 8 <= n; j += 8) {
        unsigned hit = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + j), t, _CMP_NLE_UQ));
        while (hit) {
            idx[count++] = (uint32_t)(j + (size_t)__builtin_ctz(hit));
            hit &= hit - 1;
        }
    }
    for (; j < n; j++)
        if (!(s[j] <= threshold)) idx[count++] = (uint32_t)j;
    return count;
}

static size_t select_f64_avx2(const double *s, size_t n, double threshold, uint32_t *idx) {
    __m256d t = _mm256_set1_pd(threshold);
    size_t count = 0, j = 0;
    for (; j + 4 <= n; j += 4) {
        unsigned hit = (unsigned)_mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(s + j), t, _CMP_NLE_UQ));
        while (hit) {
            idx[count++] = (uint32_t)(j + (size_t)__builtin_ctz(hit));
            hit &= hit - 1;
        }
    }
    for (; j < n; j++)
        if (!(s[j] <= threshold)) idx[count++] = (uint32_t)j;
    return count;
}

/* out = (float)((double)x * s): the product rounded once in float64, then to float32. */
static void scale_f32_avx2(const float *x, double s, float *out, size_t d) {
    __m256d sv = _mm256_set1_pd(s);
    size_t i = 0;
    for (; i + 4 <= d; i += 4) {
        __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
        _mm_storeu_ps(out + i, _mm256_cvtpd_ps(_mm256_mul_pd(v, sv)));
    }
    for (; i < d; i++) out[i] = (float)((double)x[i] * s);
}

static void scale_f64_avx2(const double *x, double s, double *out, size_t d) {
    __m256d sv = _mm256_set1_pd(s);
    size_t i = 0;
    for (; i + 4 <= d; i += 4) _mm256_storeu_pd(out + i, _mm256_mul_pd(_mm256_loadu_pd(x + i), sv));
    for (; i < d; i++) out[i] = x[i] * s;
}

const engram_similarity_ops engram_similarity_ops_avx2 = {
    .level = "avx2",
    .pair_f32 = pair_f32_avx2,
    .pair_f64 = pair_f64_avx2,
    .one_to_many_f32 = one_to_many_f32_avx2,
    .one_to_many_f64 = one_to_many_f64_avx2,
    .norm2_rows_f32 = norm2_rows_f32_avx2,
    .norm2_rows_f64 = norm2_rows_f64_avx2,
    .dot_tile_f32 = dot_tile_f32_avx2,
    .dot_tile_f64 = dot_tile_f64_avx2,
    .tile_rows_f32 = TILE_R,
    .tile_cols_f32 = TILE_C,
    .tile_rows_f64 = TILE_R,
    .tile_cols_f64 = TILE_C,
    .f32_chunk = SIM_F32_FLUSH,
    .dot_cols_f32 = dot_cols_f32_avx2,
    .dot_cols_f64 = dot_cols_f64_avx2,
    /* dot_cols measured faster than the tiles up to d ~ 80 (f32) and ~ 64 (f64) */
    .cols_max_d_f32 = 64,
    .cols_max_d_f64 = 48,
    .scores_f32 = scores_f32_avx2,
    .scores_f64 = scores_f64_avx2,
    .select_f32 = select_f32_avx2,
    .select_f64 = select_f64_avx2,
    .scale_f32 = scale_f32_avx2,
    .scale_f64 = scale_f64_avx2,
};

#undef TILE_R
#undef TILE_C
#undef SIM_IN_REGISTER
#undef SIM_PREFETCH

#undef SIM_UNROLL

/* ==== end similarity ==== */

/* ==== spread ==== */

#include <immintrin.h>
#include <math.h>

#define SPREAD_LANES ENGRAM_SPREAD_LANES

/*
 * Pull with two ymm gathers per slot step (4 doubles each), then the same
 * classification as the scalar spec with the 8 sums in two registers.
 */
#define W1_256(at, half) _mm256_set1_pd(1.0)
#define WF32_256(at, half) _mm256_cvtps_pd(_mm_loadu_ps((const float *)p->weights + (at) + 4 * (half)))
#define WF64_256(at, half) _mm256_loadu_pd((const double *)p->weights + (at) + 4 * (half))
/*
 * accumulate(a, nan, w, g) -> the new a.  vmaxpd(t, a) keeps a when either
 * is NaN, so max tracks NaN apart: terms are >= 0 or NaN, so their running
 * sum in `nan` is NaN exactly when a term was, and NaN wins at the end
 * (spread_max_finish), whatever the order, as in the scalar spec.
 */
#define SUM1_256(a, nan, w, g) _mm256_add_pd((a), (g))
#define SUMW_256(a, nan, w, g) _mm256_fmadd_pd((w), (g), (a))
#define MAX1_256(a, nan, w, g) ((nan) = _mm256_add_pd((nan), (g)), _mm256_max_pd((g), (a)))
#define MAXW_256(a, nan, w, g) \
    ((nan) = _mm256_fmadd_pd((w), (g), (nan)), _mm256_max_pd(_mm256_mul_pd((w), (g)), (a)))

static inline __m256d spread_max_finish_256(__m256d a, __m256d nan) {
    return _mm256_blendv_pd(a, nan, _mm256_cmp_pd(nan, nan, _CMP_UNORD_Q));
}

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

/*
 * One chunk's sums over its slots into lo (rows 0-3) and hi (rows 4-7);
 * advances src and at.  (The NaN tracking of max is dead code for sums.)
 */
#define CHUNK_SUMS_256(lo, hi, length, weight_of, accumulate, sum)                                \
    do {                                                                                          \
        __m256d nan_lo = _mm256_setzero_pd(), nan_hi = _mm256_setzero_pd();                       \
        for (int32_t j = 0; j < (length); j++, src += SPREAD_LANES, at += SPREAD_LANES) {         \
            const __m256d g0 = _mm256_i32gather_pd(pulse, _mm_loadu_si128((const __m128i *)src), 8); \
            const __m256d g1 =                                                                    \
                _mm256_i32gather_pd(pulse, _mm_loadu_si128((const __m128i *)(src + 4)), 8);       \
            lo = accumulate(lo, nan_lo, weight_of(at, 0), g0);                                    \
            hi = accumulate(hi, nan_hi, weight_of(at, 1), g1);                                    \
        }                                                                                         \
        if (!(sum)) {                                                                             \
            lo = spread_max_finish_256(lo, nan_lo);                                               \
            hi = spread_max_finish_256(hi, nan_hi);                                               \
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
            CHUNK_SUMS_256(lo, hi, p->chunk_length[c], weight_of, accumulate, sum);               \
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

/* max(a, v) with NaN from either side winning, as ACC_MAX(a, v) of the scalar spec. */
static inline __m256d spread_max_nan_256(__m256d a, __m256d v) {
    return _mm256_blendv_pd(_mm256_max_pd(v, a), v, _mm256_cmp_pd(v, v, _CMP_UNORD_Q));
}

/*
 * Blocked max: x[rows[l]] = max(x[rows[l]], lane l) without a branch per lane
 * (the comparison is a coin toss on dense hops): gather the rows' values,
 * take the maxima, store them from lane 7 down, so that lane 0 writes last
 * where padding lanes repeat its row (they computed from its old value).
 */
static inline void spread_max_into_256(double *x, const int32_t *rows, __m256d lo, __m256d hi) {
    const __m256d old_lo = _mm256_i32gather_pd(x, _mm_loadu_si128((const __m128i *)rows), 8);
    const __m256d old_hi = _mm256_i32gather_pd(x, _mm_loadu_si128((const __m128i *)(rows + 4)), 8);
    double m[SPREAD_LANES];
    _mm256_storeu_pd(m, spread_max_nan_256(old_lo, lo));
    _mm256_storeu_pd(m + 4, spread_max_nan_256(old_hi, hi));
    for (int l = SPREAD_LANES - 1; l >= 0; l--) x[rows[l]] = m[l];
}

#define DEFINE_ACCUMULATE_AVX2(name, weight_of, accumulate, sum)                                   \
    static void name(const engram_spread_pull *p, const double *pulse, size_t c0, size_t c1,     \
                     double *x) {                                                                 \
        int64_t at = p->chunk_offset[c0];                                                         \
        const int32_t *src = p->sources + at;                                                     \
        double sums[SPREAD_LANES];                                                                \
        for (size_t c = c0; c < c1; c++) {                                                        \
            __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();                           \
            CHUNK_SUMS_256(lo, hi, p->chunk_length[c], weight_of, accumulate, sum);               \
            const int32_t *rows = p->chunk_rows + c * SPREAD_LANES;                               \
            if (!(sum)) {                                                                         \
                spread_max_into_256(x, rows, lo, hi);                                             \
                continue;                                                                         \
            }                                                                                     \
            _mm256_storeu_pd(sums, lo);                                                           \
            _mm256_storeu_pd(sums + 4, hi);                                                       \
            for (int l = 0; l < SPREAD_LANES; l++) x[rows[l]] += sums[l];                         \
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

static size_t seeds_select_f32_avx2(const float *s, size_t n, float threshold, float *out, int64_t *ids,
                              size_t *count) {
    const __m256 zero = _mm256_setzero_ps(), t = _mm256_set1_ps(threshold);
    size_t k = *count, i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(s + i);
        if (spread_ok_ps_256(v) != 0xFFu) break;
        if (out) _mm256_storeu_ps(out + i, v);
        unsigned sel = (unsigned)_mm256_movemask_ps(
            _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_GT_OQ), _mm256_cmp_ps(v, t, _CMP_GE_OQ)));
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

static size_t seeds_select_f64_avx2(const double *s, size_t n, double threshold, float *out, int64_t *ids,
                              size_t *count) {
    const __m256d zero = _mm256_setzero_pd(), t = _mm256_set1_pd(threshold);
    size_t k = *count, i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256d v = _mm256_loadu_pd(s + i);
        if (spread_ok_pd_256(v) != 0xFu) break;
        if (out) _mm_storeu_ps(out + i, _mm256_cvtpd_ps(v));
        unsigned sel = (unsigned)_mm256_movemask_pd(
            _mm256_and_pd(_mm256_cmp_pd(v, zero, _CMP_GT_OQ), _mm256_cmp_pd(v, t, _CMP_GE_OQ)));
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
    .select_f32 = seeds_select_f32_avx2,
    .select_f64 = seeds_select_f64_avx2,
    .first_bad_f32 = first_bad_f32_avx2,
    .first_bad_f64 = first_bad_f64_avx2,
};

#undef SPREAD_LANES

/* ==== end spread ==== */

/* ==== decay ==== */

#include <immintrin.h>
#include <math.h>

#include "../decay_internal.h"

/*
 * Same schemes as the AVX-512 section (the driver hands over whole
 * vectors of 16), in 8 float32 / 4 float64 lanes.  AVX2 has no 64-bit
 * integer conversions: they are built from exact double arithmetic below.
 */
#define DECAY2_AGE_BROADCAST 4
/* where the stabilities come from: a float32 array, a float64 array, one value */
#define DECAY2_STAB_F32 0
#define DECAY2_STAB_F64 1
#define DECAY2_STAB_BROADCAST 2
/* the exponential's quotient with a broadcast operand that is not a float32 value:
 * every vector divides in float64 */
#define DECAY2_STAB_WIDE 3
#define DECAY2_INLINE static inline __attribute__((always_inline))

/* u64 lanes to double with one rounding: 2^84 + hi * 2^32 and 2^52 + lo are
 * exact doubles, and the final add rounds their sum once. */
DECAY2_INLINE __m256d decay2_u64_to_pd(__m256i v) {
    __m256i hi = _mm256_or_si256(_mm256_srli_epi64(v, 32),
                                 _mm256_castpd_si256(_mm256_set1_pd(0x1p84)));
    __m256i lo = _mm256_blend_epi32(v, _mm256_castpd_si256(_mm256_set1_pd(0x1p52)), 0xAA);
    __m256d h = _mm256_sub_pd(_mm256_castsi256_pd(hi), _mm256_set1_pd(0x1p84 + 0x1p52));
    return _mm256_add_pd(h, _mm256_castsi256_pd(lo));
}

/* |v| of int64 lanes (as u64) and the sign bit of each lane as a double's sign. */
DECAY2_INLINE __m256i decay2_abs_epi64(__m256i v, __m256i *sign_bit) {
    __m256i neg = _mm256_cmpgt_epi64(_mm256_setzero_si256(), v);
    *sign_bit = _mm256_and_si256(neg, _mm256_set1_epi64x((long long)0x8000000000000000ull));
    return _mm256_sub_epi64(_mm256_xor_si256(v, neg), neg);
}

DECAY2_INLINE __m256d decay2_i64_to_pd(__m256i v) {
    __m256i sign;
    __m256d d = decay2_u64_to_pd(decay2_abs_epi64(v, &sign));
    return _mm256_or_pd(d, _mm256_castsi256_pd(sign));
}

/* 4 ages from index i as float64, converted like a C cast. */
DECAY2_INLINE __m256d decay2_ages_pd(const void *age, size_t i, int type, double broadcast) {
    switch (type) {
        case ENGRAM_DECAY_F32: return _mm256_cvtps_pd(_mm_loadu_ps((const float *)age + i));
        case ENGRAM_DECAY_F64: return _mm256_loadu_pd((const double *)age + i);
        case ENGRAM_DECAY_I64:
            return decay2_i64_to_pd(_mm256_loadu_si256((const __m256i *)((const int64_t *)age + i)));
        case ENGRAM_DECAY_U64:
            return decay2_u64_to_pd(_mm256_loadu_si256((const __m256i *)((const uint64_t *)age + i)));
        default: return _mm256_set1_pd(broadcast);
    }
}

/* 4 stabilities from index i as float64. */
DECAY2_INLINE __m256d decay2_stab_pd(const void *stab, size_t i, int mode, double broadcast) {
    switch (mode) {
        case DECAY2_STAB_F32: return _mm256_cvtps_pd(_mm_loadu_ps((const float *)stab + i));
        case DECAY2_STAB_F64: return _mm256_loadu_pd((const double *)stab + i);
        default: return _mm256_set1_pd(broadcast);
    }
}

DECAY2_INLINE int decay2_stab_mode(const engram_decay_params *p, const engram_decay_block *b) {
    if (!b->stability) return DECAY2_STAB_BROADCAST;
    return p->stability_type == ENGRAM_DECAY_F32 ? DECAY2_STAB_F32 : DECAY2_STAB_F64;
}

/* y = (float)((double)age / (double)stability) for 8 lanes by float64 division. */
static __attribute__((noinline)) __m256 decay2_quotient_wide(const engram_decay_params *p,
                                                             const engram_decay_block *b, size_t i) {
    int age_type = b->age ? (int)p->age_type : DECAY2_AGE_BROADCAST;
    int stab_mode = decay2_stab_mode(p, b);
    __m256d lo = _mm256_div_pd(decay2_ages_pd(b->age, i, age_type, p->age),
                               decay2_stab_pd(b->stability, i, stab_mode, p->stability));
    __m256d hi = _mm256_div_pd(decay2_ages_pd(b->age, i + 4, age_type, p->age),
                               decay2_stab_pd(b->stability, i + 4, stab_mode, p->stability));
    return _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
}

/* Broadcast operands of a block, prepared once. */
typedef struct decay2_operands {
    __m256 age, stability; /* the broadcast values rounded to float32 */
    __m256 quotient;       /* both broadcast: the argument itself */
} decay2_operands;

DECAY2_INLINE void decay2_operands_init(decay2_operands *o, const engram_decay_params *p,
                                        const engram_decay_block *b) {
    o->age = _mm256_set1_ps((float)p->age);
    o->stability = _mm256_set1_ps((float)p->stability);
    o->quotient = _mm256_set1_ps(b->age || b->stability ? 0.0f : (float)(p->age / p->stability));
}

/* Whether a broadcast operand of the block is not a float32 value (its quotient divides in float64). */
DECAY2_INLINE int decay2_broadcast_wide(const engram_decay_params *p, const engram_decay_block *b) {
    return (!b->age && !decay_is_f32(p->age)) || (!b->stability && !decay_is_f32(p->stability));
}

/* 4 float64 lanes as float32, and whether each converts exactly (bits of a movemask). */
DECAY2_INLINE __m128 decay2_narrow(__m256d x, int *exact) {
    __m128 f = _mm256_cvtpd_ps(x);
    *exact = _mm256_movemask_pd(_mm256_cmp_pd(_mm256_cvtps_pd(f), x, _CMP_EQ_OQ));
    return f;
}

/* The low 32 bits of 8 64-bit lanes (two vectors) as 8 int32 lanes, in order. */
DECAY2_INLINE __m256i decay2_low_dwords(__m256i lo, __m256i hi) {
    __m256 packed = _mm256_shuffle_ps(_mm256_castsi256_ps(lo), _mm256_castsi256_ps(hi),
                                      _MM_SHUFFLE(2, 0, 2, 0)); /* lo0 lo1 hi0 hi1 | lo2 lo3 hi2 hi3 */
    return _mm256_permute4x64_epi64(_mm256_castps_si256(packed), _MM_SHUFFLE(3, 1, 2, 0));
}

/*
 * The float32 argument y = (float)((double)age / (double)stability) of 8
 * lanes: a float32 division where every operand is a float32 value (the
 * same bits, decay_internal.h), else float64 divisions.  stab_mode WIDE:
 * a broadcast operand that is not a float32 value, or float64
 * stabilities: every vector divides in float64.
 */
DECAY2_INLINE __m256 decay2_quotient_ps(const engram_decay_params *p, const engram_decay_block *b,
                                        const void *age, const float *stab, size_t i,
                                        int age_type, int stab_mode, const decay2_operands *o) {
    if (stab_mode == DECAY2_STAB_WIDE || stab_mode == DECAY2_STAB_F64) return decay2_quotient_wide(p, b, i);
    if (age_type == DECAY2_AGE_BROADCAST && stab_mode == DECAY2_STAB_BROADCAST) return o->quotient;
    __m256 a, S;
    int exact = 1;
    if (age_type == ENGRAM_DECAY_F32) {
        a = _mm256_loadu_ps((const float *)age + i);
    } else if (age_type == DECAY2_AGE_BROADCAST) {
        a = o->age;
    } else if (age_type == ENGRAM_DECAY_F64) {
        int ex_lo, ex_hi;
        __m128 lo = decay2_narrow(_mm256_loadu_pd((const double *)age + i), &ex_lo);
        __m128 hi = decay2_narrow(_mm256_loadu_pd((const double *)age + i + 4), &ex_hi);
        a = _mm256_set_m128(hi, lo);
        exact = (ex_lo & ex_hi) == 0xF;
    } else {
        /* integers in [0, 2^24) (ages up to 194 days in seconds) are float32
         * values, and their low 32 bits are the value: one test of both vectors
         * (as unsigned: a negative int64 age, invalid, divides in float64) */
        __m256i lo = _mm256_loadu_si256((const __m256i *)((const int64_t *)age + i));
        __m256i hi = _mm256_loadu_si256((const __m256i *)((const int64_t *)age + i + 4));
        exact = _mm256_testz_si256(_mm256_or_si256(lo, hi), _mm256_set1_epi64x(-(1ll << 24)));
        a = _mm256_cvtepi32_ps(decay2_low_dwords(lo, hi));
    }
    S = stab_mode == DECAY2_STAB_F32 ? _mm256_loadu_ps(stab + i) : o->stability;
    if (ENGRAM_UNLIKELY(!exact)) return decay2_quotient_wide(p, b, i);
    return _mm256_div_ps(a, S);
}

/* ---- float32 exponential ---- */

/* q = exp(-w) - 1; *k_out holds n in its low mantissa bits. */
DECAY2_INLINE __m256 decay2_exp_q_ps(__m256 y, __m256 *k_out) {
    const __m256 shifter = _mm256_set1_ps(DECAY_F32_SHIFTER);
    __m256 k = _mm256_fnmadd_ps(y, _mm256_set1_ps(DECAY_F32_LOG2E), shifter);
    __m256 n = _mm256_sub_ps(k, shifter);
    __m256 w = _mm256_fmadd_ps(n, _mm256_set1_ps(DECAY_F32_LN2_HI), y);
    w = _mm256_fmadd_ps(n, _mm256_set1_ps(DECAY_F32_LN2_LO), w);
    __m256 w2 = _mm256_mul_ps(w, w);
    __m256 t = _mm256_fmadd_ps(_mm256_set1_ps(DECAY_F32_T4), w, _mm256_set1_ps(DECAY_F32_T3));
    t = _mm256_fmadd_ps(t, w, _mm256_set1_ps(DECAY_F32_T2));
    t = _mm256_fmadd_ps(t, w, _mm256_set1_ps(DECAY_F32_T1));
    t = _mm256_fmadd_ps(t, w, _mm256_set1_ps(DECAY_F32_T0));
    *k_out = k;
    return _mm256_fmsub_ps(t, w2, w);
}

/* strength (1 + q) 2^n for 4 lanes, formed in float64 and rounded once. */
DECAY2_INLINE __m128 decay2_scale_pd(__m128 q, __m128 s, __m128i n) {
    __m256d sd = _mm256_cvtps_pd(s); /* conversions take subnormals without an assist */
    __m256d m = _mm256_fmadd_pd(_mm256_cvtps_pd(q), sd, sd); /* s q is exact: one rounding */
    m = _mm256_or_pd(m, _mm256_and_pd(sd, _mm256_set1_pd(-0.0))); /* 0 (1 + q) keeps the sign */
    __m256i e = _mm256_slli_epi64(
        _mm256_add_epi64(_mm256_cvtepi32_epi64(n), _mm256_set1_epi64x(1023)), 52);
    return _mm256_cvtpd_ps(_mm256_mul_pd(m, _mm256_castsi256_pd(e)));
}

/*
 * Lanes off the fast path: strength (1 + q) in float64, scaled exactly and
 * rounded once, so no float32 operation meets a subnormal (a microcode
 * assist of ~150 cycles on x86); then the float64 product's rules for NaN
 * and infinities.  Every lane is finished here, none goes scalar.
 */
static __attribute__((noinline)) __m256 decay2_exp_ps_general(__m256 y, __m256 s) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 yc = _mm256_max_ps(_mm256_set1_ps(DECAY_F32_Y_MIN),
                              _mm256_min_ps(_mm256_set1_ps(DECAY_F32_Y_MAX), y));
    __m256 tiny = _mm256_cmp_ps(_mm256_and_ps(yc, abs_mask), _mm256_set1_ps(DECAY_F32_Y_TINY),
                                _CMP_LT_OQ);
    yc = _mm256_blendv_ps(yc, _mm256_andnot_ps(abs_mask, yc), tiny);
    __m256 k, q = decay2_exp_q_ps(yc, &k);
    const int limit = (int)DECAY_F32_N_LIMIT;
    __m256i n = _mm256_sub_epi32(_mm256_castps_si256(k),
                                 _mm256_castps_si256(_mm256_set1_ps(DECAY_F32_SHIFTER)));
    n = _mm256_max_epi32(_mm256_set1_epi32(-limit), _mm256_min_epi32(_mm256_set1_epi32(limit), n));
    __m256 r = _mm256_set_m128(
        decay2_scale_pd(_mm256_extractf128_ps(q, 1), _mm256_extractf128_ps(s, 1),
                        _mm256_extracti128_si256(n, 1)),
        decay2_scale_pd(_mm256_castps256_ps128(q), _mm256_castps256_ps128(s),
                        _mm256_castsi256_si128(n)));
    /* the float64 product's rules (engram_decay_exp_f32_lane), lane-wise */
    const __m256 nan = _mm256_set1_ps(NAN);
    __m256 nan_in = _mm256_cmp_ps(y, s, _CMP_UNORD_Q);
    __m256 inf_s = _mm256_cmp_ps(_mm256_and_ps(s, abs_mask), _mm256_set1_ps(INFINITY), _CMP_EQ_OQ);
    __m256 zero_s = _mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_EQ_OQ);
    r = _mm256_blendv_ps(r, s, inf_s);
    r = _mm256_blendv_ps(r, nan, _mm256_and_ps(inf_s, _mm256_cmp_ps(y, _mm256_set1_ps(DECAY_F32_Y_ZERO), _CMP_GE_OQ)));
    r = _mm256_blendv_ps(r, nan, _mm256_and_ps(zero_s, _mm256_cmp_ps(y, _mm256_set1_ps(DECAY_F32_Y_INF), _CMP_LE_OQ)));
    return _mm256_blendv_ps(r, _mm256_add_ps(y, s), nan_in);
}

/* x <= limit as unsigned 32-bit lanes */
DECAY2_INLINE __m256i decay2_le_epu32(__m256i x, __m256i limit) {
    return _mm256_cmpeq_epi32(_mm256_min_epu32(x, limit), x);
}

/* All-ones lanes with 0 <= y <= 76 and 2^-16 <= s <= 2^100 (tested on the bit patterns). */
DECAY2_INLINE __m256i decay2_exp_fast(__m256 y, __m256 s) {
    __m256i fast = decay2_le_epu32(_mm256_castps_si256(y),
                                   _mm256_set1_epi32((int)DECAY_F32_FAST_Y_MAX_BITS));
    return _mm256_and_si256(
        fast, decay2_le_epu32(_mm256_sub_epi32(_mm256_castps_si256(s),
                                               _mm256_set1_epi32((int)DECAY_F32_FAST_S_MIN_BITS)),
                              _mm256_set1_epi32((int)DECAY_F32_FAST_S_SPAN_BITS - 1)));
}

/* strength * exp(-y) when every lane is fast. */
DECAY2_INLINE __m256 decay2_exp_ps_fast(__m256 y, __m256 s) {
    __m256 k, q = decay2_exp_q_ps(y, &k);
    __m256 m = _mm256_fmadd_ps(q, s, s);
    /* fast lanes: n in [-110, 0], 2^n a normal float built in the exponent field */
    __m256i pow2 = _mm256_add_epi32(_mm256_slli_epi32(_mm256_castps_si256(k), 23),
                                    _mm256_set1_epi32(0x3f800000));
    return _mm256_mul_ps(m, _mm256_castsi256_ps(pow2));
}

/* Index of the first invalid element of [i, i + 8), or 8. */
static __attribute__((noinline)) size_t decay2_first_invalid_lane(const engram_decay_params *p,
                                                                  const engram_decay_block *b,
                                                                  size_t i) {
    size_t es = p->age_type == ENGRAM_DECAY_F32 ? 4 : 8;
    size_t ss = p->stability_type == ENGRAM_DECAY_F32 ? 4 : 8;
    engram_decay_block lanes = {8, NULL, NULL, b->age ? (const char *)b->age + i * es : NULL,
                                b->stability ? (const char *)b->stability + i * ss : NULL};
    return engram_decay_first_invalid_block(p, &lanes);
}

/*
 * checking: validate as well (fresh output, float32 stabilities only).  A
 * fast lane has 0 <= y = age / stability and, tested here, stability > 0,
 * so its age is >= +0 as given; any other lane sends the vector to a
 * scalar check of the values as given before the general path.
 */
DECAY2_INLINE size_t decay2_exp_f32_body(const engram_decay_params *p, const engram_decay_block *b,
                                         int age_type, int stab_mode, int checking) {
    const size_t n = b->n;
    float *out = b->out;
    const float *str = b->strength;
    const void *age = b->age;
    const float *stab = b->stability;
    decay2_operands o;
    decay2_operands_init(&o, p, b);
    for (size_t i = 0; i < n; i += 8) {
        __m256 y = decay2_quotient_ps(p, b, age, stab, i, age_type, stab_mode, &o);
        __m256 s = _mm256_loadu_ps(str + i);
        __m256i fast = decay2_exp_fast(y, s);
        /* (the validating primitives see float32 stability arrays only) */
        if (checking && (stab_mode == DECAY2_STAB_F32 || (stab_mode == DECAY2_STAB_WIDE && stab)))
            fast = _mm256_and_si256(
                fast, _mm256_castps_si256(_mm256_cmp_ps(_mm256_loadu_ps(stab + i),
                                                        _mm256_setzero_ps(), _CMP_GT_OQ)));
        __m256 r;
        if (ENGRAM_LIKELY(_mm256_movemask_ps(_mm256_castsi256_ps(fast)) == 0xFF)) {
            r = decay2_exp_ps_fast(y, s);
        } else {
            if (checking) {
                size_t bad = decay2_first_invalid_lane(p, b, i);
                if (bad < 8) return i + bad;
            }
            r = decay2_exp_ps_general(y, s);
        }
        _mm256_storeu_ps(out + i, r);
    }
    return n;
}

/* One instance per (age type, stability mode) so each loop is straight-line. */
#define DECAY2_DISPATCH_AGES(body, p, b, mode)                                            \
    do {                                                                                  \
        switch ((b)->age ? (int)(p)->age_type : DECAY2_AGE_BROADCAST) {                   \
            case ENGRAM_DECAY_F32: body(p, b, ENGRAM_DECAY_F32, mode); break;             \
            case ENGRAM_DECAY_F64: body(p, b, ENGRAM_DECAY_F64, mode); break;             \
            case ENGRAM_DECAY_I64: body(p, b, ENGRAM_DECAY_I64, mode); break;             \
            case ENGRAM_DECAY_U64: body(p, b, ENGRAM_DECAY_U64, mode); break;             \
            default: body(p, b, DECAY2_AGE_BROADCAST, mode); break;                       \
        }                                                                                 \
    } while (0)

#define DECAY2_DISPATCH(body, p, b)                                                       \
    do {                                                                                  \
        switch (decay2_stab_mode(p, b)) {                                                 \
            case DECAY2_STAB_F32: DECAY2_DISPATCH_AGES(body, p, b, DECAY2_STAB_F32); break; \
            case DECAY2_STAB_F64: DECAY2_DISPATCH_AGES(body, p, b, DECAY2_STAB_F64); break; \
            default: DECAY2_DISPATCH_AGES(body, p, b, DECAY2_STAB_BROADCAST); break;      \
        }                                                                                 \
    } while (0)

/* The exponential: float64 stabilities and broadcast values that are not float32 values
 * take one instance that divides every vector in float64. */
#define DECAY2_DISPATCH_EXP(body, p, b)                                                   \
    do {                                                                                  \
        int mode_ = decay2_stab_mode(p, b);                                               \
        if (mode_ == DECAY2_STAB_F64 || decay2_broadcast_wide(p, b))                      \
            body(p, b, DECAY2_AGE_BROADCAST, DECAY2_STAB_WIDE);                           \
        else if (mode_ == DECAY2_STAB_F32)                                                \
            DECAY2_DISPATCH_AGES(body, p, b, DECAY2_STAB_F32);                            \
        else                                                                              \
            DECAY2_DISPATCH_AGES(body, p, b, DECAY2_STAB_BROADCAST);                      \
    } while (0)

#define DECAY2_EXP_F32(p, b, type, mode) decay2_exp_f32_body(p, b, type, mode, 0)
#define DECAY2_EXP_F32_CHECKED(p, b, type, mode) checked = decay2_exp_f32_body(p, b, type, mode, 1)

static void decay_exp_f32_avx2(const engram_decay_params *p, const engram_decay_block *b) {
    DECAY2_DISPATCH_EXP(DECAY2_EXP_F32, p, b);
}

static size_t decay_exp_f32_checked_avx2(const engram_decay_params *p, const engram_decay_block *b) {
    size_t checked = b->n;
    DECAY2_DISPATCH_EXP(DECAY2_EXP_F32_CHECKED, p, b);
    return checked;
}

/* ---- float64 exponential ---- */

DECAY2_INLINE __m256d decay2_exp_pd(__m256d y, __m256d s) {
    __m256d as = _mm256_and_pd(s, _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffll)));
    __m256d fast = _mm256_and_pd(_mm256_cmp_pd(y, _mm256_setzero_pd(), _CMP_GE_OQ),
                                 _mm256_cmp_pd(y, _mm256_set1_pd(DECAY_F64_FAST_Y_MAX), _CMP_LE_OQ));
    fast = _mm256_and_pd(fast, _mm256_cmp_pd(as, _mm256_set1_pd(DECAY_F64_FAST_S_MIN), _CMP_GE_OQ));
    fast = _mm256_and_pd(fast, _mm256_cmp_pd(as, _mm256_set1_pd(DECAY_F64_FAST_S_MAX), _CMP_LE_OQ));
    int lanes = _mm256_movemask_pd(fast);
    const __m256d shifter = _mm256_set1_pd(DECAY_F64_SHIFTER);
    __m256d k = _mm256_fnmadd_pd(y, _mm256_set1_pd(DECAY_F64_LOG2E), shifter);
    __m256d n = _mm256_sub_pd(k, shifter);
    __m256d w = _mm256_fmadd_pd(n, _mm256_set1_pd(DECAY_F64_LN2_HI), y);
    w = _mm256_fmadd_pd(n, _mm256_set1_pd(DECAY_F64_LN2_LO), w);
    __m256d w2 = _mm256_mul_pd(w, w);
    __m256d t = _mm256_fmadd_pd(_mm256_set1_pd(DECAY_F64_T11), w, _mm256_set1_pd(DECAY_F64_T10));
    t = _mm256_fmadd_pd(t, w, _mm256_set1_pd(DECAY_F64_T9));
    t = _mm256_fmadd_pd(t, w, _mm256_set1_pd(DECAY_F64_T8));
    t = _mm256_fmadd_pd(t, w, _mm256_set1_pd(DECAY_F64_T7));
    t = _mm256_fmadd_pd(t, w, _mm256_set1_pd(DECAY_F64_T6));
    t = _mm256_fmadd_pd(t, w, _mm256_set1_pd(DECAY_F64_T5));
    t = _mm256_fmadd_pd(t, w, _mm256_set1_pd(DECAY_F64_T4));
    t = _mm256_fmadd_pd(t, w, _mm256_set1_pd(DECAY_F64_T3));
    t = _mm256_fmadd_pd(t, w, _mm256_set1_pd(DECAY_F64_T2));
    t = _mm256_fmadd_pd(t, w, _mm256_set1_pd(DECAY_F64_T1));
    t = _mm256_fmadd_pd(t, w, _mm256_set1_pd(DECAY_F64_T0));
    __m256d q = _mm256_fmsub_pd(t, w2, w);
    __m256d m = _mm256_fmadd_pd(q, s, s);
    /* fast lanes: n in [-996, 0], 2^n a normal double built in the exponent field */
    __m256i pow2 = _mm256_add_epi64(_mm256_slli_epi64(_mm256_castpd_si256(k), 52),
                                    _mm256_set1_epi64x(0x3ff0000000000000ll));
    __m256d r = _mm256_mul_pd(m, _mm256_and_pd(_mm256_castsi256_pd(pow2), fast));
    if (ENGRAM_LIKELY(lanes == 0xF)) return r;
    /* NaN in, NaN out without the element path (missing values stay fast) */
    __m256d nan_in = _mm256_cmp_pd(y, s, _CMP_UNORD_Q);
    r = _mm256_blendv_pd(r, _mm256_add_pd(y, s), nan_in);
    lanes |= _mm256_movemask_pd(nan_in);
    if (lanes == 0xF) return r;
    double yb[4], sb[4], rb[4];
    _mm256_storeu_pd(yb, y);
    _mm256_storeu_pd(sb, s);
    _mm256_storeu_pd(rb, r);
    for (int l = 0; l < 4; l++)
        if (!(lanes >> l & 1)) rb[l] = engram_decay_exp_f64_lane(yb[l], sb[l]);
    return _mm256_loadu_pd(rb);
}

DECAY2_INLINE void decay2_exp_f64_body(const engram_decay_params *p, const engram_decay_block *b,
                                       int age_type, int stab_mode) {
    double *out = b->out;
    const double *str = b->strength;
    const void *age = b->age, *stab = b->stability;
    const double age_b = p->age, stab_b = p->stability;
    for (size_t i = 0; i < b->n; i += 4) {
        __m256d a = decay2_ages_pd(age, i, age_type, age_b);
        __m256d S = decay2_stab_pd(stab, i, stab_mode, stab_b);
        _mm256_storeu_pd(out + i, decay2_exp_pd(_mm256_div_pd(a, S), _mm256_loadu_pd(str + i)));
    }
}

/* float64 strength: float64 stabilities, or one */
static void decay_exp_f64_avx2(const engram_decay_params *p, const engram_decay_block *b) {
    if (b->stability) DECAY2_DISPATCH_AGES(decay2_exp_f64_body, p, b, DECAY2_STAB_F64);
    else DECAY2_DISPATCH_AGES(decay2_exp_f64_body, p, b, DECAY2_STAB_BROADCAST);
}

/* ---- float32 power, in float64 ---- */

/*
 * log(u) for 1 <= u < inf, within 2^-47 relative (0 at u = 1):
 * u = 2^k z, z in [sqrt(1/2), sqrt(2)), log(z) = 2 atanh(s),
 * s = (z - 1) / (z + 1): relative next to 1, where z - 1 is exact.
 */
DECAY2_INLINE __m256d decay2_log_pd(__m256d u) {
    __m256i ix = _mm256_castpd_si256(u);
    __m256i tmp = _mm256_sub_epi64(ix, _mm256_set1_epi64x((long long)DECAY_POW_LOG_OFFSET));
    __m256i k = _mm256_srli_epi64(tmp, 52); /* u >= 1: tmp > 0 */
    __m256i iz = _mm256_sub_epi64(
        ix, _mm256_and_si256(tmp, _mm256_set1_epi64x((long long)0xfff0000000000000ull)));
    __m256d kd = _mm256_sub_pd(
        _mm256_castsi256_pd(_mm256_or_si256(k, _mm256_castpd_si256(_mm256_set1_pd(0x1p52)))),
        _mm256_set1_pd(0x1p52));
    __m256d f = _mm256_sub_pd(_mm256_castsi256_pd(iz), _mm256_set1_pd(1.0));
    /* s = f / (2 + f): rcpps (2^-12) and two Newton steps (2^-48) beat vdivpd's throughput */
    __m256d d = _mm256_add_pd(f, _mm256_set1_pd(2.0));
    __m256d r = _mm256_cvtps_pd(_mm_rcp_ps(_mm256_cvtpd_ps(d)));
    r = _mm256_fmadd_pd(r, _mm256_fnmadd_pd(d, r, _mm256_set1_pd(1.0)), r);
    r = _mm256_fmadd_pd(r, _mm256_fnmadd_pd(d, r, _mm256_set1_pd(1.0)), r);
    __m256d s = _mm256_mul_pd(f, r);
    __m256d z = _mm256_mul_pd(s, s);
    __m256d A = _mm256_fmadd_pd(_mm256_set1_pd(DECAY_POW_ATANH_A5), z, _mm256_set1_pd(DECAY_POW_ATANH_A4));
    A = _mm256_fmadd_pd(A, z, _mm256_set1_pd(DECAY_POW_ATANH_A3));
    A = _mm256_fmadd_pd(A, z, _mm256_set1_pd(DECAY_POW_ATANH_A2));
    A = _mm256_fmadd_pd(A, z, _mm256_set1_pd(DECAY_POW_ATANH_A1));
    A = _mm256_fmadd_pd(A, z, _mm256_set1_pd(DECAY_POW_ATANH_A0));
    __m256d ts = _mm256_add_pd(s, s);
    __m256d log1p = _mm256_fmadd_pd(_mm256_mul_pd(ts, z), A, ts);
    return _mm256_fmadd_pd(kd, _mm256_set1_pd(DECAY_POW_LN2), log1p);
}

/*
 * exp(max(-power * L, -700)) for L >= 0, relative error < 2^-48:
 * two-constant Cody-Waite and 1 + w + w^2 Q(w).  The clamp also takes -inf
 * (a power too large for power * L) and keeps every double normal.
 */
DECAY2_INLINE __m256d decay2_exp_neg_pd(__m256d L, __m256d neg_power) {
    const __m256d shifter = _mm256_set1_pd(DECAY_F64_SHIFTER);
    __m256d Y = _mm256_max_pd(_mm256_mul_pd(L, neg_power), _mm256_set1_pd(DECAY_POW_Y_MIN));
    __m256d k = _mm256_fmadd_pd(Y, _mm256_set1_pd(DECAY_F64_LOG2E), shifter);
    __m256d N = _mm256_sub_pd(k, shifter);
    __m256d w = _mm256_fnmadd_pd(N, _mm256_set1_pd(DECAY_F64_LN2_HI), Y);
    w = _mm256_fnmadd_pd(N, _mm256_set1_pd(DECAY_F64_LN2_LO), w);
    __m256d Q = _mm256_fmadd_pd(_mm256_set1_pd(DECAY_POW_EXP_Q8), w, _mm256_set1_pd(DECAY_POW_EXP_Q7));
    Q = _mm256_fmadd_pd(Q, w, _mm256_set1_pd(DECAY_POW_EXP_Q6));
    Q = _mm256_fmadd_pd(Q, w, _mm256_set1_pd(DECAY_POW_EXP_Q5));
    Q = _mm256_fmadd_pd(Q, w, _mm256_set1_pd(DECAY_POW_EXP_Q4));
    Q = _mm256_fmadd_pd(Q, w, _mm256_set1_pd(DECAY_POW_EXP_Q3));
    Q = _mm256_fmadd_pd(Q, w, _mm256_set1_pd(DECAY_POW_EXP_Q2));
    Q = _mm256_fmadd_pd(Q, w, _mm256_set1_pd(DECAY_POW_EXP_Q1));
    Q = _mm256_fmadd_pd(Q, w, _mm256_set1_pd(DECAY_POW_EXP_Q0));
    __m256d P = _mm256_add_pd(_mm256_fmadd_pd(_mm256_mul_pd(w, w), Q, w), _mm256_set1_pd(1.0));
    /* N in [-1010, 0]: 2^N a normal double built in the exponent field */
    __m256i pow2 = _mm256_add_epi64(_mm256_slli_epi64(_mm256_castpd_si256(k), 52),
                                    _mm256_set1_epi64x(0x3ff0000000000000ll));
    return _mm256_mul_pd(P, _mm256_castsi256_pd(pow2));
}

/* 1 / sqrt(u) for 1 <= u < 2^100: rsqrtps (2^-12) and two Newton steps in float64. */
DECAY2_INLINE __m256d decay2_rsqrt_pd(__m256d u) {
    __m256d half_u = _mm256_mul_pd(u, _mm256_set1_pd(0.5));
    __m256d r = _mm256_cvtps_pd(_mm_rsqrt_ps(_mm256_cvtpd_ps(u)));
    __m256d e = _mm256_fnmadd_pd(_mm256_mul_pd(half_u, r), r, _mm256_set1_pd(0.5));
    r = _mm256_fmadd_pd(r, e, r);
    e = _mm256_fnmadd_pd(_mm256_mul_pd(half_u, r), r, _mm256_set1_pd(0.5));
    return _mm256_fmadd_pd(r, e, r);
}

/* 4 lanes of strength * u^-power; *ok: bit set for lanes with 1 <= u < 2^100. */
DECAY2_INLINE __m128 decay2_pow_quarter(__m256d u, __m128 s, __m256d neg_power, int half_power,
                                        int *ok) {
    const __m256d one = _mm256_set1_pd(1.0);
    *ok = _mm256_movemask_pd(_mm256_and_pd(_mm256_cmp_pd(u, one, _CMP_GE_OQ),
                                           _mm256_cmp_pd(u, _mm256_set1_pd(0x1p100), _CMP_LT_OQ)));
    __m256d P = half_power ? decay2_rsqrt_pd(u) : decay2_exp_neg_pd(decay2_log_pd(u), neg_power);
    return _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(s), P));
}

/* Lanes of [i, i + 8) off the vector path: the element definition. */
static __attribute__((noinline)) __m256 decay2_power_special(const engram_decay_params *p,
                                                             const engram_decay_block *b, size_t i,
                                                             __m256 r, int ok) {
    float rb[8];
    _mm256_storeu_ps(rb, r);
    for (int l = 0; l < 8; l++)
        if (!(ok >> l & 1)) rb[l] = engram_decay_power_f32_element(p, b, i + (size_t)l);
    return _mm256_loadu_ps(rb);
}

/*
 * u = 1 + factor * age / stability three ways (decay_internal.h):
 *   exact_u      power > 1: (factor * a) / S + 1, the float64 evaluation's own u
 *   one value    power <= 1: fma(a, factor / S, 1)
 *   arrays       power <= 1: fma(y, factor, 1), y the float32 argument (<= power ulp)
 */
DECAY2_INLINE void decay2_power_f32_body2(const engram_decay_params *p,
                                          const engram_decay_block *b, int age_type,
                                          int stab_mode, int half_power, int exact_u) {
    const size_t n = b->n;
    float *out = b->out;
    const float *str = b->strength;
    const void *age = b->age, *stab = b->stability;
    const double age_b = p->age, stab_b = p->stability;
    const __m256d one = _mm256_set1_pd(1.0);
    const __m256d factor = _mm256_set1_pd(p->factor);
    const __m256d factor_over_stability = _mm256_set1_pd(p->factor / p->stability);
    const __m256d neg_power = _mm256_set1_pd(-p->power);
    decay2_operands o;
    decay2_operands_init(&o, p, b);
    const int wide = decay2_broadcast_wide(p, b);
    for (size_t i = 0; i < n; i += 8) {
        __m256d u_lo, u_hi;
        if (exact_u) {
            u_lo = _mm256_add_pd(_mm256_div_pd(_mm256_mul_pd(decay2_ages_pd(age, i, age_type, age_b), factor),
                                               decay2_stab_pd(stab, i, stab_mode, stab_b)),
                                 one);
            u_hi = _mm256_add_pd(_mm256_div_pd(_mm256_mul_pd(decay2_ages_pd(age, i + 4, age_type, age_b), factor),
                                               decay2_stab_pd(stab, i + 4, stab_mode, stab_b)),
                                 one);
        } else if (stab_mode == DECAY2_STAB_BROADCAST) {
            u_lo = _mm256_fmadd_pd(decay2_ages_pd(age, i, age_type, age_b), factor_over_stability, one);
            u_hi = _mm256_fmadd_pd(decay2_ages_pd(age, i + 4, age_type, age_b), factor_over_stability, one);
        } else {
            /* the divider is otherwise idle here: one float32 division for 8 quotients */
            __m256 y = wide ? decay2_quotient_wide(p, b, i)
                            : decay2_quotient_ps(p, b, age, (const float *)stab, i, age_type, stab_mode, &o);
            u_lo = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(y)), factor, one);
            u_hi = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(y, 1)), factor, one);
        }
        __m256 s = _mm256_loadu_ps(str + i);
        int ok_lo, ok_hi;
        __m128 lo = decay2_pow_quarter(u_lo, _mm256_castps256_ps128(s), neg_power, half_power, &ok_lo);
        __m128 hi = decay2_pow_quarter(u_hi, _mm256_extractf128_ps(s, 1), neg_power, half_power, &ok_hi);
        __m256 r = _mm256_set_m128(hi, lo);
        /* infinite strengths take the element definition: inf * u^-power is NaN where pow underflows */
        __m256 abs_s = _mm256_and_ps(s, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
        int inf_s = _mm256_movemask_ps(_mm256_cmp_ps(abs_s, _mm256_set1_ps(INFINITY), _CMP_EQ_OQ));
        int ok = (ok_lo | ok_hi << 4) & ~inf_s;
        if (ENGRAM_UNLIKELY(ok != 0xFF)) r = decay2_power_special(p, b, i, r, ok);
        _mm256_storeu_ps(out + i, r);
    }
}

/* power 0.5 (the FSRS curve) needs no logarithm: 1 / sqrt(u). */
DECAY2_INLINE void decay2_power_f32_body(const engram_decay_params *p, const engram_decay_block *b,
                                         int age_type, int stab_mode) {
    if (p->power == 0.5) decay2_power_f32_body2(p, b, age_type, stab_mode, 1, 0);
    else if (p->power <= 1.0) decay2_power_f32_body2(p, b, age_type, stab_mode, 0, 0);
    else decay2_power_f32_body2(p, b, age_type, stab_mode, 0, 1);
}

static void decay_power_f32_avx2(const engram_decay_params *p, const engram_decay_block *b) {
    DECAY2_DISPATCH(decay2_power_f32_body, p, b);
}

/* ---- validation ---- */

/* Validation by a scan of the block just ahead of the computation (in cache). */
static size_t decay_power_f32_checked_avx2(const engram_decay_params *p, const engram_decay_block *b) {
    size_t bad = engram_decay_first_invalid_block(p, b);
    if (bad < b->n) return bad;
    decay_power_f32_avx2(p, b);
    return b->n;
}

static size_t decay_first_invalid_f32_avx2(const float *age, const float *stab, size_t n) {
    const __m256 zero = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 bad = zero;
        if (age) bad = _mm256_cmp_ps(_mm256_loadu_ps(age + i), zero, _CMP_NGE_UQ);
        if (stab) bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_loadu_ps(stab + i), zero, _CMP_NGT_UQ));
        int lanes = _mm256_movemask_ps(bad);
        if (lanes) return i + (size_t)__builtin_ctz((unsigned)lanes);
    }
    for (; i < n; i++)
        if ((age && !(age[i] >= 0.0f)) || (stab && !(stab[i] > 0.0f))) return i;
    return n;
}

static size_t decay_first_invalid_f64_avx2(const double *age, const double *stab, size_t n) {
    const __m256d zero = _mm256_setzero_pd();
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d bad = zero;
        if (age) bad = _mm256_cmp_pd(_mm256_loadu_pd(age + i), zero, _CMP_NGE_UQ);
        if (stab) bad = _mm256_or_pd(bad, _mm256_cmp_pd(_mm256_loadu_pd(stab + i), zero, _CMP_NGT_UQ));
        int lanes = _mm256_movemask_pd(bad);
        if (lanes) return i + (size_t)__builtin_ctz((unsigned)lanes);
    }
    for (; i < n; i++)
        if ((age && !(age[i] >= 0.0)) || (stab && !(stab[i] > 0.0))) return i;
    return n;
}

const engram_decay_ops engram_decay_ops_avx2 = {
    .level = "avx2",
    .exp_f32 = decay_exp_f32_avx2,
    .power_f32 = decay_power_f32_avx2,
    .exp_f64 = decay_exp_f64_avx2,
    .power_f64 = engram_decay_power_f64_generic,
    .exp_f32_checked = decay_exp_f32_checked_avx2,
    .power_f32_checked = decay_power_f32_checked_avx2,
    .first_invalid_f32 = decay_first_invalid_f32_avx2,
    .first_invalid_f64 = decay_first_invalid_f64_avx2,
};

/* ==== end decay ==== */

