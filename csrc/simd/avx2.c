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

const engram_spread_ops engram_spread_ops_avx2 = {
    .level = "avx2",
};

/* ==== end spread ==== */

/* ==== decay ==== */

const engram_decay_ops engram_decay_ops_avx2 = {
    .level = "avx2",
};

/* ==== end decay ==== */

