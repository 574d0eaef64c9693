/*
 * neon primitives of every kernel, compiled with this level's -m flags only.
 * Each section fills that kernel's table; the scalar version in csrc/<kernel>.c is the spec.
 */
#include "../engram.h"

/* ==== similarity ==== */

#include <arm_neon.h>
#include <string.h>

/* Elements of d between float64 flushes: ENGRAM_SIM_F32_LANE_TERMS products per lane. */
#define SIM_F32_FLUSH (4 * ENGRAM_SIM_F32_LANE_TERMS)

/*
 * float32: 4-lane FMA accumulators, flushed into float64 every
 * SIM_F32_FLUSH elements of d, so no lane sums more than
 * ENGRAM_SIM_F32_LANE_TERMS products (see engram.h).  A row's last d % 4
 * elements are read through a zero-padded copy, so nothing past the end
 * of a row is touched and the tail goes through the same vector arithmetic.
 */

static inline float32x4_t sim_load_tail_f32(const float *p, size_t n) {
    float buf[4] = {0, 0, 0, 0};
    memcpy(buf, p, n * sizeof(float));
    return vld1q_f32(buf);
}

static inline float64x2_t sim_load_tail_f64(const double *p) {
    return vcombine_f64(vld1_f64(p), vdup_n_f64(0.0));
}

/* The 4 float32 lanes of v added pairwise into 2 float64 lanes. */
static inline float64x2_t sim_widen_f32(float32x4_t v) {
    return vaddq_f64(vcvt_f64_f32(vget_low_f32(v)), vcvt_high_f64_f32(v));
}

/*
 * Streaming rows from memory, asking for the same offset of a row at least
 * 4 KB (and 4 rows) further on keeps more of the read bandwidth than the
 * hardware prefetcher alone.  Row-based, so row-strided inputs do not fetch
 * the gaps.  The address is formed as an integer: it may lie past the end
 * of the rows, and prefetches never fault.
 */
static inline ptrdiff_t sim_prefetch_ahead(ptrdiff_t row_bytes) {
    ptrdiff_t size = row_bytes < 0 ? -row_bytes : row_bytes, rows = 4;
    while (rows * size < 4096 && rows < 4096) rows += 4;
    return rows * row_bytes;
}
#define SIM_PREFETCH(p, ahead) __builtin_prefetch((const void *)((uintptr_t)(p) + (uintptr_t)(ahead)), 0, 3)

static void pair_f32_neon(const float *x, const float *y, size_t d, double out[3]) {
    float64x2_t sxy = vdupq_n_f64(0.0), sxx = sxy, syy = sxy;
    size_t i = 0;
    do {
        size_t end = d - i > SIM_F32_FLUSH ? i + SIM_F32_FLUSH : d;
        float32x4_t xy0 = vdupq_n_f32(0.0f), xy1 = xy0, xy2 = xy0, xy3 = xy0;
        float32x4_t xx0 = xy0, xx1 = xy0, xx2 = xy0, xx3 = xy0;
        float32x4_t yy0 = xy0, yy1 = xy0, yy2 = xy0, yy3 = xy0;
        for (; i + 16 <= end; i += 16) {
            float32x4_t a0 = vld1q_f32(x + i), b0 = vld1q_f32(y + i);
            float32x4_t a1 = vld1q_f32(x + i + 4), b1 = vld1q_f32(y + i + 4);
            float32x4_t a2 = vld1q_f32(x + i + 8), b2 = vld1q_f32(y + i + 8);
            float32x4_t a3 = vld1q_f32(x + i + 12), b3 = vld1q_f32(y + i + 12);
            xy0 = vfmaq_f32(xy0, a0, b0);
            xx0 = vfmaq_f32(xx0, a0, a0);
            yy0 = vfmaq_f32(yy0, b0, b0);
            xy1 = vfmaq_f32(xy1, a1, b1);
            xx1 = vfmaq_f32(xx1, a1, a1);
            yy1 = vfmaq_f32(yy1, b1, b1);
            xy2 = vfmaq_f32(xy2, a2, b2);
            xx2 = vfmaq_f32(xx2, a2, a2);
            yy2 = vfmaq_f32(yy2, b2, b2);
            xy3 = vfmaq_f32(xy3, a3, b3);
            xx3 = vfmaq_f32(xx3, a3, a3);
            yy3 = vfmaq_f32(yy3, b3, b3);
        }
        for (; i < end; i += 4) {
            float32x4_t a, b;
            if (end - i >= 4) {
                a = vld1q_f32(x + i);
                b = vld1q_f32(y + i);
            } else {
                a = sim_load_tail_f32(x + i, end - i);
                b = sim_load_tail_f32(y + i, end - i);
            }
            xy0 = vfmaq_f32(xy0, a, b);
            xx0 = vfmaq_f32(xx0, a, a);
            yy0 = vfmaq_f32(yy0, b, b);
        }
        i = end;
        sxy = vaddq_f64(sxy, sim_widen_f32(vaddq_f32(vaddq_f32(xy0, xy1), vaddq_f32(xy2, xy3))));
        sxx = vaddq_f64(sxx, sim_widen_f32(vaddq_f32(vaddq_f32(xx0, xx1), vaddq_f32(xx2, xx3))));
        syy = vaddq_f64(syy, sim_widen_f32(vaddq_f32(vaddq_f32(yy0, yy1), vaddq_f32(yy2, yy3))));
    } while (i < d);
    out[0] = vaddvq_f64(sxy);
    out[1] = vaddvq_f64(sxx);
    out[2] = vaddvq_f64(syy);
}

static void pair_f64_neon(const double *x, const double *y, size_t d, double out[3]) {
    float64x2_t xy0 = vdupq_n_f64(0.0), xy1 = xy0, xx0 = xy0, xx1 = xy0, yy0 = xy0, yy1 = xy0;
    size_t i = 0;
    for (; i + 4 <= d; i += 4) {
        float64x2_t a0 = vld1q_f64(x + i), b0 = vld1q_f64(y + i);
        float64x2_t a1 = vld1q_f64(x + i + 2), b1 = vld1q_f64(y + i + 2);
        xy0 = vfmaq_f64(xy0, a0, b0);
        xx0 = vfmaq_f64(xx0, a0, a0);
        yy0 = vfmaq_f64(yy0, b0, b0);
        xy1 = vfmaq_f64(xy1, a1, b1);
        xx1 = vfmaq_f64(xx1, a1, a1);
        yy1 = vfmaq_f64(yy1, b1, b1);
    }
    for (; i < d; i += 2) {
        float64x2_t a = d - i >= 2 ? vld1q_f64(x + i) : sim_load_tail_f64(x + i);
        float64x2_t b = d - i >= 2 ? vld1q_f64(y + i) : sim_load_tail_f64(y + i);
        xy0 = vfmaq_f64(xy0, a, b);
        xx0 = vfmaq_f64(xx0, a, a);
        yy0 = vfmaq_f64(yy0, b, b);
    }
    out[0] = vaddvq_f64(vaddq_f64(xy0, xy1));
    out[1] = vaddvq_f64(vaddq_f64(xx0, xx1));
    out[2] = vaddvq_f64(vaddq_f64(yy0, yy1));
}

/* R rows against q: one dot and one norm accumulator per row (same arithmetic for any R). */
static inline __attribute__((always_inline)) void
dot_norm_rows_f32_neon(const float *q, const float *rows, ptrdiff_t stride, size_t d,
                       double *dot, double *norm2, ptrdiff_t ahead, const int R) {
    float64x2_t sd[4], sn[4];
    for (int r = 0; r < R; r++) sd[r] = sn[r] = vdupq_n_f64(0.0);
    size_t i = 0;
    do {
        size_t end = d - i > SIM_F32_FLUSH ? i + SIM_F32_FLUSH : d;
        float32x4_t ad[4], an[4];
        for (int r = 0; r < R; r++) ad[r] = an[r] = vdupq_n_f32(0.0f);
        for (; i + 4 <= end; i += 4) {
            float32x4_t qv = vld1q_f32(q + i);
            for (int r = 0; r < R; r++) {
                if (i % 16 == 0) SIM_PREFETCH(rows + r * stride + i, ahead);
                float32x4_t v = vld1q_f32(rows + r * stride + i);
                ad[r] = vfmaq_f32(ad[r], v, qv);
                an[r] = vfmaq_f32(an[r], v, v);
            }
        }
        if (i < end) {
            float32x4_t qv = sim_load_tail_f32(q + i, end - i);
            for (int r = 0; r < R; r++) {
                float32x4_t v = sim_load_tail_f32(rows + r * stride + i, end - i);
                ad[r] = vfmaq_f32(ad[r], v, qv);
                an[r] = vfmaq_f32(an[r], v, v);
            }
            i = end;
        }
        for (int r = 0; r < R; r++) {
            sd[r] = vaddq_f64(sd[r], sim_widen_f32(ad[r]));
            sn[r] = vaddq_f64(sn[r], sim_widen_f32(an[r]));
        }
    } while (i < d);
    for (int r = 0; r < R; r++) {
        dot[r] = vaddvq_f64(sd[r]);
        norm2[r] = vaddvq_f64(sn[r]);
    }
}

static void one_to_many_f32_neon(const float *q, const float *rows, ptrdiff_t stride, size_t n,
                                 size_t d, double *dot, double *norm2) {
    ptrdiff_t ahead = sim_prefetch_ahead(stride * (ptrdiff_t)sizeof(float));
    size_t r = 0;
    for (; r + 4 <= n; r += 4)
        dot_norm_rows_f32_neon(q, rows + (ptrdiff_t)r * stride, stride, d, dot + r, norm2 + r,
                               ahead, 4);
    for (; r < n; r++)
        dot_norm_rows_f32_neon(q, rows + (ptrdiff_t)r * stride, stride, d, dot + r, norm2 + r,
                               ahead, 1);
}

static inline __attribute__((always_inline)) void
dot_norm_rows_f64_neon(const double *q, const double *rows, ptrdiff_t stride, size_t d,
                       double *dot, double *norm2, ptrdiff_t ahead, const int R) {
    float64x2_t ad[4], an[4];
    for (int r = 0; r < R; r++) ad[r] = an[r] = vdupq_n_f64(0.0);
    size_t i = 0;
    for (; i + 2 <= d; i += 2) {
        float64x2_t qv = vld1q_f64(q + i);
        for (int r = 0; r < R; r++) {
            if (i % 8 == 0) SIM_PREFETCH(rows + r * stride + i, ahead);
            float64x2_t v = vld1q_f64(rows + r * stride + i);
            ad[r] = vfmaq_f64(ad[r], v, qv);
            an[r] = vfmaq_f64(an[r], v, v);
        }
    }
    if (i < d) {
        float64x2_t qv = sim_load_tail_f64(q + i);
        for (int r = 0; r < R; r++) {
            float64x2_t v = sim_load_tail_f64(rows + r * stride + i);
            ad[r] = vfmaq_f64(ad[r], v, qv);
            an[r] = vfmaq_f64(an[r], v, v);
        }
    }
    for (int r = 0; r < R; r++) {
        dot[r] = vaddvq_f64(ad[r]);
        norm2[r] = vaddvq_f64(an[r]);
    }
}

static void one_to_many_f64_neon(const double *q, const double *rows, ptrdiff_t stride, size_t n,
                                 size_t d, double *dot, double *norm2) {
    ptrdiff_t ahead = sim_prefetch_ahead(stride * (ptrdiff_t)sizeof(double));
    size_t r = 0;
    for (; r + 4 <= n; r += 4)
        dot_norm_rows_f64_neon(q, rows + (ptrdiff_t)r * stride, stride, d, dot + r, norm2 + r,
                               ahead, 4);
    for (; r < n; r++)
        dot_norm_rows_f64_neon(q, rows + (ptrdiff_t)r * stride, stride, d, dot + r, norm2 + r,
                               ahead, 1);
}

static void norm2_rows_f32_neon(const float *rows, ptrdiff_t stride, size_t n, size_t d,
                                double *norm2) {
    for (size_t r = 0; r < n; r++) {
        const float *row = rows + (ptrdiff_t)r * stride;
        float64x2_t s = vdupq_n_f64(0.0);
        size_t i = 0;
        do {
            size_t end = d - i > SIM_F32_FLUSH ? i + SIM_F32_FLUSH : d;
            float32x4_t a = vdupq_n_f32(0.0f), b = a;
            for (; i + 8 <= end; i += 8) {
                float32x4_t v = vld1q_f32(row + i), w = vld1q_f32(row + i + 4);
                a = vfmaq_f32(a, v, v);
                b = vfmaq_f32(b, w, w);
            }
            for (; i < end; i += 4) {
                float32x4_t v = end - i >= 4 ? vld1q_f32(row + i) : sim_load_tail_f32(row + i, end - i);
                a = vfmaq_f32(a, v, v);
            }
            i = end;
            s = vaddq_f64(s, sim_widen_f32(vaddq_f32(a, b)));
        } while (i < d);
        norm2[r] = vaddvq_f64(s);
    }
}

static void norm2_rows_f64_neon(const double *rows, ptrdiff_t stride, size_t n, size_t d,
                                double *norm2) {
    for (size_t r = 0; r < n; r++) {
        const double *row = rows + (ptrdiff_t)r * stride;
        float64x2_t a = vdupq_n_f64(0.0), b = a;
        size_t i = 0;
        for (; i + 4 <= d; i += 4) {
            float64x2_t v = vld1q_f64(row + i), w = vld1q_f64(row + i + 2);
            a = vfmaq_f64(a, v, v);
            b = vfmaq_f64(b, w, w);
        }
        for (; i < d; i += 2) {
            float64x2_t v = d - i >= 2 ? vld1q_f64(row + i) : sim_load_tail_f64(row + i);
            a = vfmaq_f64(a, v, v);
        }
        norm2[r] = vaddvq_f64(vaddq_f64(a, b));
    }
}

/*
 * Register tiles: 4 x-rows by 4 y-rows (16 accumulators + 4 x + 1 y of the
 * 32 vector registers).  Each accumulator is reduced with the same pairwise
 * adds, (l0 + l1) + (l2 + l3), whichever slot it occupies.
 */
#define TILE_R 4
#define TILE_C 4

static void dot_tile_f32_neon(const float *const *x, size_t x0, const float *const *y,
                              size_t len, double *out, size_t ldo, int accumulate) {
    float32x4_t acc[TILE_R][TILE_C];
    for (int r = 0; r < TILE_R; r++)
        for (int c = 0; c < TILE_C; c++) acc[r][c] = vdupq_n_f32(0.0f);
    const float *xp[TILE_R];
    for (int r = 0; r < TILE_R; r++) xp[r] = x[r] + x0;
    size_t k = 0;
    for (; k + 4 <= len; k += 4) {
        float32x4_t xv[TILE_R];
        for (int r = 0; r < TILE_R; r++) xv[r] = vld1q_f32(xp[r] + k);
        for (int c = 0; c < TILE_C; c++) {
            float32x4_t yv = vld1q_f32(y[c] + k);
            for (int r = 0; r < TILE_R; r++) acc[r][c] = vfmaq_f32(acc[r][c], xv[r], yv);
        }
    }
    if (k < len) {
        float32x4_t xv[TILE_R];
        for (int r = 0; r < TILE_R; r++) xv[r] = sim_load_tail_f32(xp[r] + k, len - k);
        for (int c = 0; c < TILE_C; c++) {
            float32x4_t yv = sim_load_tail_f32(y[c] + k, len - k);
            for (int r = 0; r < TILE_R; r++) acc[r][c] = vfmaq_f32(acc[r][c], xv[r], yv);
        }
    }
    for (int r = 0; r < TILE_R; r++) {
        float32x4_t sums = vpaddq_f32(vpaddq_f32(acc[r][0], acc[r][1]),
                                      vpaddq_f32(acc[r][2], acc[r][3]));
        float64x2_t lo = vcvt_f64_f32(vget_low_f32(sums)), hi = vcvt_high_f64_f32(sums);
        double *o = out + (size_t)r * ldo;
        if (accumulate) {
            vst1q_f64(o, vaddq_f64(vld1q_f64(o), lo));
            vst1q_f64(o + 2, vaddq_f64(vld1q_f64(o + 2), hi));
        } else {
            vst1q_f64(o, lo);
            vst1q_f64(o + 2, hi);
        }
    }
}

static void dot_tile_f64_neon(const double *const *x, size_t x0, const double *const *y,
                              size_t len, double *out, size_t ldo, int accumulate) {
    float64x2_t acc[TILE_R][TILE_C];
    for (int r = 0; r < TILE_R; r++)
        for (int c = 0; c < TILE_C; c++) acc[r][c] = vdupq_n_f64(0.0);
    const double *xp[TILE_R];
    for (int r = 0; r < TILE_R; r++) xp[r] = x[r] + x0;
    size_t k = 0;
    for (; k + 2 <= len; k += 2) {
        float64x2_t xv[TILE_R];
        for (int r = 0; r < TILE_R; r++) xv[r] = vld1q_f64(xp[r] + k);
        for (int c = 0; c < TILE_C; c++) {
            float64x2_t yv = vld1q_f64(y[c] + k);
            for (int r = 0; r < TILE_R; r++) acc[r][c] = vfmaq_f64(acc[r][c], xv[r], yv);
        }
    }
    if (k < len) {
        float64x2_t xv[TILE_R];
        for (int r = 0; r < TILE_R; r++) xv[r] = sim_load_tail_f64(xp[r] + k);
        for (int c = 0; c < TILE_C; c++) {
            float64x2_t yv = sim_load_tail_f64(y[c] + k);
            for (int r = 0; r < TILE_R; r++) acc[r][c] = vfmaq_f64(acc[r][c], xv[r], yv);
        }
    }
    for (int r = 0; r < TILE_R; r++) {
        float64x2_t s01 = vpaddq_f64(acc[r][0], acc[r][1]), s23 = vpaddq_f64(acc[r][2], acc[r][3]);
        double *o = out + (size_t)r * ldo;
        if (accumulate) {
            s01 = vaddq_f64(vld1q_f64(o), s01);
            s23 = vaddq_f64(vld1q_f64(o + 2), s23);
        }
        vst1q_f64(o, s01);
        vst1q_f64(o + 2, s23);
    }
}

/* Cosine (or dot) scores of 2 pairs; NaN where an inverse norm is not > 0. */
static inline float64x2_t sim_scores2(float64x2_t dots, float64x2_t y_inv, float64x2_t x_inv,
                                      int x_fast, int metric) {
    uint64x2_t fast = x_fast ? vcgtq_f64(y_inv, vdupq_n_f64(0.0)) : vdupq_n_u64(0);
    float64x2_t s = dots;
    if (metric != ENGRAM_METRIC_DOT)
        s = vmaxq_f64(vminq_f64(vmulq_f64(vmulq_f64(dots, x_inv), y_inv), vdupq_n_f64(1.0)),
                      vdupq_n_f64(-1.0));
    return vbslq_f64(fast, s, vdupq_n_f64(__builtin_nan("")));
}

static void scores_f32_neon(const double *dots, const double *y_inv, double x_inv, size_t n,
                            int metric, float *out) {
    float64x2_t xi = vdupq_n_f64(x_inv);
    int x_fast = x_inv > 0;
    size_t j = 0;
    for (; j + 2 <= n; j += 2)
        vst1_f32(out + j, vcvt_f32_f64(sim_scores2(vld1q_f64(dots + j), vld1q_f64(y_inv + j), xi,
                                                   x_fast, metric)));
    if (j < n) {
        float64x2_t s = sim_scores2(vdupq_n_f64(dots[j]), vdupq_n_f64(y_inv[j]), xi, x_fast, metric);
        out[j] = (float)vgetq_lane_f64(s, 0);
    }
}

static void scores_f64_neon(const double *dots, const double *y_inv, double x_inv, size_t n,
                            int metric, double *out) {
    float64x2_t xi = vdupq_n_f64(x_inv);
    int x_fast = x_inv > 0;
    size_t j = 0;
    for (; j + 2 <= n; j += 2)
        vst1q_f64(out + j, sim_scores2(vld1q_f64(dots + j), vld1q_f64(y_inv + j), xi, x_fast, metric));
    if (j < n) {
        float64x2_t s = sim_scores2(vdupq_n_f64(dots[j]), vdupq_n_f64(y_inv[j]), xi, x_fast, metric);
        out[j] = vgetq_lane_f64(s, 0);
    }
}

/* Candidates are rare: skip 4 scores at a time while all are <= threshold. */
static size_t select_f32_neon(const float *s, size_t n, float threshold, uint32_t *idx) {
    float32x4_t t = vdupq_n_f32(threshold);
    size_t count = 0, j = 0;
    for (; j + 4 <= n; j += 4) {
        if (vminvq_u32(vcleq_f32(vld1q_f32(s + j), t)) == 0xFFFFFFFFu) continue;
        for (size_t l = j; l < j + 4; l++)
            if (!(s[l] <= threshold)) idx[count++] = (uint32_t)l;
    }
    for (; j < n; j++)
        if (!(s[j] <= threshold)) idx[count++] = (uint32_t)j;
    return count;
}

static size_t select_f64_neon(const double *s, size_t n, double threshold, uint32_t *idx) {
    float64x2_t t = vdupq_n_f64(threshold);
    size_t count = 0, j = 0;
    for (; j + 2 <= n; j += 2) {
        uint64x2_t le = vcleq_f64(vld1q_f64(s + j), t);
        if ((vgetq_lane_u64(le, 0) & vgetq_lane_u64(le, 1)) == ~(uint64_t)0) continue;
        for (size_t l = j; l < j + 2; l++)
            if (!(s[l] <= threshold)) idx[count++] = (uint32_t)l;
    }
    for (; j < n; j++)
        if (!(s[j] <= threshold)) idx[count++] = (uint32_t)j;
    return count;
}

/* out = (float)((double)x * s): the product rounded once in float64, then to float32. */
static void scale_f32_neon(const float *x, double s, float *out, size_t d) {
    float64x2_t sv = vdupq_n_f64(s);
    size_t i = 0;
    for (; i + 4 <= d; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        float64x2_t lo = vmulq_f64(vcvt_f64_f32(vget_low_f32(v)), sv);
        float64x2_t hi = vmulq_f64(vcvt_high_f64_f32(v), sv);
        vst1q_f32(out + i, vcvt_high_f32_f64(vcvt_f32_f64(lo), hi));
    }
    for (; i < d; i++) out[i] = (float)((double)x[i] * s);
}

static void scale_f64_neon(const double *x, double s, double *out, size_t d) {
    float64x2_t sv = vdupq_n_f64(s);
    size_t i = 0;
    for (; i + 2 <= d; i += 2) vst1q_f64(out + i, vmulq_f64(vld1q_f64(x + i), sv));
    for (; i < d; i++) out[i] = x[i] * s;
}

/* Fully unrolled small loops keep per-row accumulator arrays in registers. */
#define SIM_UNROLL _Pragma("GCC unroll 8")

/*
 * Small d (see engram.h): query rows against the 64 transposed corpus rows
 * of yt, vectorised across the corpus rows, a quarter (16 rows, 4 vectors)
 * at a time for four query rows (16 accumulators).  Every lane sums its
 * products in order of k and flushes into float64 every
 * ENGRAM_SIM_F32_LANE_TERMS of them, whatever R and the lane are.
 */
static inline __attribute__((always_inline)) void
dot_cols_quarter_f32_neon(const float *x, ptrdiff_t xs, const float *yt, size_t d, double *out,
                          size_t ldo, const int R) {
    size_t k = 0;
    int first = 1;
    do {
        size_t end = d - k > ENGRAM_SIM_F32_LANE_TERMS ? k + ENGRAM_SIM_F32_LANE_TERMS : d;
        float32x4_t acc[4][4];
        SIM_UNROLL for (int r = 0; r < R; r++)
            SIM_UNROLL for (int c = 0; c < 4; c++) acc[r][c] = vdupq_n_f32(0.0f);
        for (; k < end; k++) {
            const float *yk = yt + k * ENGRAM_SIM_COLS;
            float32x4_t xv[4];
            SIM_UNROLL for (int r = 0; r < R; r++) xv[r] = vdupq_n_f32(x[r * xs + (ptrdiff_t)k]);
            SIM_UNROLL for (int c = 0; c < 4; c++) {
                float32x4_t yv = vld1q_f32(yk + 4 * c);
                SIM_UNROLL for (int r = 0; r < R; r++) acc[r][c] = vfmaq_f32(acc[r][c], xv[r], yv);
            }
        }
        SIM_UNROLL for (int r = 0; r < R; r++)
            SIM_UNROLL for (int c = 0; c < 4; c++) {
                double *o = out + (size_t)r * ldo + (size_t)c * 4;
                float64x2_t lo = vcvt_f64_f32(vget_low_f32(acc[r][c]));
                float64x2_t hi = vcvt_high_f64_f32(acc[r][c]);
                if (!first) {
                    lo = vaddq_f64(vld1q_f64(o), lo);
                    hi = vaddq_f64(vld1q_f64(o + 2), hi);
                }
                vst1q_f64(o, lo);
                vst1q_f64(o + 2, hi);
            }
        first = 0;
    } while (k < d);
}

static void dot_cols_f32_neon(const float *x, ptrdiff_t x_stride, size_t rows, const float *yt,
                              size_t d, double *out, size_t ldo) {
    for (size_t h = 0; h < ENGRAM_SIM_COLS; h += 16) {
        size_t i = 0;
        for (; i + 4 <= rows; i += 4)
            dot_cols_quarter_f32_neon(x + (ptrdiff_t)i * x_stride, x_stride, yt + h, d,
                                      out + i * ldo + h, ldo, 4);
        for (; i < rows; i++)
            dot_cols_quarter_f32_neon(x + (ptrdiff_t)i * x_stride, x_stride, yt + h, d,
                                      out + i * ldo + h, ldo, 1);
    }
}

/* float64: eighths of 8 corpus rows (4 vectors), four query rows at a time. */
static inline __attribute__((always_inline)) void
dot_cols_eighth_f64_neon(const double *x, ptrdiff_t xs, const double *yt, size_t d, double *out,
                         size_t ldo, const int R) {
    float64x2_t acc[4][4];
    SIM_UNROLL for (int r = 0; r < R; r++)
        SIM_UNROLL for (int c = 0; c < 4; c++) acc[r][c] = vdupq_n_f64(0.0);
    for (size_t k = 0; k < d; k++) {
        const double *yk = yt + k * ENGRAM_SIM_COLS;
        float64x2_t xv[4];
        SIM_UNROLL for (int r = 0; r < R; r++) xv[r] = vdupq_n_f64(x[r * xs + (ptrdiff_t)k]);
        SIM_UNROLL for (int c = 0; c < 4; c++) {
            float64x2_t yv = vld1q_f64(yk + 2 * c);
            SIM_UNROLL for (int r = 0; r < R; r++) acc[r][c] = vfmaq_f64(acc[r][c], xv[r], yv);
        }
    }
    SIM_UNROLL for (int r = 0; r < R; r++)
        SIM_UNROLL for (int c = 0; c < 4; c++) vst1q_f64(out + (size_t)r * ldo + 2 * c, acc[r][c]);
}

static void dot_cols_f64_neon(const double *x, ptrdiff_t x_stride, size_t rows, const double *yt,
                              size_t d, double *out, size_t ldo) {
    for (size_t h = 0; h < ENGRAM_SIM_COLS; h += 8) {
        size_t i = 0;
        for (; i + 4 <= rows; i += 4)
            dot_cols_eighth_f64_neon(x + (ptrdiff_t)i * x_stride, x_stride, yt + h, d,
                                     out + i * ldo + h, ldo, 4);
        for (; i < rows; i++)
            dot_cols_eighth_f64_neon(x + (ptrdiff_t)i * x_stride, x_stride, yt + h, d,
                                     out + i * ldo + h, ldo, 1);
    }
}

const engram_similarity_ops engram_similarity_ops_neon = {
    .level = "neon",
    .pair_f32 = pair_f32_neon,
    .pair_f64 = pair_f64_neon,
    .one_to_many_f32 = one_to_many_f32_neon,
    .one_to_many_f64 = one_to_many_f64_neon,
    .norm2_rows_f32 = norm2_rows_f32_neon,
    .norm2_rows_f64 = norm2_rows_f64_neon,
    .dot_tile_f32 = dot_tile_f32_neon,
    .dot_tile_f64 = dot_tile_f64_neon,
    .tile_rows_f32 = TILE_R,
    .tile_cols_f32 = TILE_C,
    .tile_rows_f64 = TILE_R,
    .tile_cols_f64 = TILE_C,
    .f32_chunk = SIM_F32_FLUSH,
    .dot_cols_f32 = dot_cols_f32_neon,
    .dot_cols_f64 = dot_cols_f64_neon,
    /* not measured on arm64 hardware: the range where the tiles' pairwise
     * reductions clearly cost more than dot_cols' flushes */
    .cols_max_d_f32 = 32,
    .cols_max_d_f64 = 16,
    .scores_f32 = scores_f32_neon,
    .scores_f64 = scores_f64_neon,
    .select_f32 = select_f32_neon,
    .select_f64 = select_f64_neon,
    .scale_f32 = scale_f32_neon,
    .scale_f64 = scale_f64_neon,
};

#undef TILE_R
#undef TILE_C
#undef SIM_PREFETCH

#undef SIM_UNROLL

/* ==== end similarity ==== */

/* ==== spread ==== */

#include <arm_neon.h>

/*
 * NEON has no gather, so a dense hop's random pulse loads are scalar loads
 * either way: the hops use the scalar spec.  The seed scans are streaming
 * compares and run 4 (or 2) lanes at a time.
 */

static inline uint32_t spread_ok_all_f32x4(float32x4_t v) {
    /* finite and >= 0: false for NaN, negatives and infinities */
    const uint32x4_t ok = vandq_u32(vcgeq_f32(v, vdupq_n_f32(0.0f)),
                                    vcleq_f32(v, vdupq_n_f32(3.40282346638528859812e+38f)));
    return vminvq_u32(ok);
}

static inline uint64_t spread_ok_all_f64x2(float64x2_t v) {
    const uint64x2_t ok = vandq_u64(vcgeq_f64(v, vdupq_n_f64(0.0)),
                                    vcleq_f64(v, vdupq_n_f64(1.79769313486231570815e+308)));
    return vgetq_lane_u64(ok, 0) & vgetq_lane_u64(ok, 1);
}

static size_t seeds_select_f32_neon(const float *s, size_t n, float threshold, float *out, int64_t *ids,
                              size_t *count) {
    const float32x4_t zero = vdupq_n_f32(0.0f), t = vdupq_n_f32(threshold);
    size_t k = *count, i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(s + i);
        if (!spread_ok_all_f32x4(v)) break;
        if (out) vst1q_f32(out + i, v);
        const uint32x4_t sel = vandq_u32(vcgtq_f32(v, zero), vcgeq_f32(v, t));
        if (vmaxvq_u32(sel)) {
            if (vgetq_lane_u32(sel, 0)) ids[k++] = (int64_t)i;
            if (vgetq_lane_u32(sel, 1)) ids[k++] = (int64_t)(i + 1);
            if (vgetq_lane_u32(sel, 2)) ids[k++] = (int64_t)(i + 2);
            if (vgetq_lane_u32(sel, 3)) ids[k++] = (int64_t)(i + 3);
        }
    }
    *count = k;
    const size_t rest = engram_spread_select_f32_scalar(s + i, n - i, threshold, out ? out + i : NULL, ids, count);
    for (size_t j = k; j < *count; j++) ids[j] += (int64_t)i;
    return i + rest;
}

static size_t seeds_select_f64_neon(const double *s, size_t n, double threshold, float *out, int64_t *ids,
                              size_t *count) {
    const float64x2_t zero = vdupq_n_f64(0.0), t = vdupq_n_f64(threshold);
    size_t k = *count, i = 0;
    for (; i + 2 <= n; i += 2) {
        const float64x2_t v = vld1q_f64(s + i);
        if (!spread_ok_all_f64x2(v)) break;
        if (out) vst1_f32(out + i, vcvt_f32_f64(v));
        const uint64x2_t sel = vandq_u64(vcgtq_f64(v, zero), vcgeq_f64(v, t));
        if (vgetq_lane_u64(sel, 0)) ids[k++] = (int64_t)i;
        if (vgetq_lane_u64(sel, 1)) ids[k++] = (int64_t)(i + 1);
    }
    *count = k;
    const size_t rest = engram_spread_select_f64_scalar(s + i, n - i, threshold, out ? out + i : NULL, ids, count);
    for (size_t j = k; j < *count; j++) ids[j] += (int64_t)i;
    return i + rest;
}

static size_t first_bad_f32_neon(const float *s, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        if (!(spread_ok_all_f32x4(vld1q_f32(s + i)) & spread_ok_all_f32x4(vld1q_f32(s + i + 4)) &
              spread_ok_all_f32x4(vld1q_f32(s + i + 8)) & spread_ok_all_f32x4(vld1q_f32(s + i + 12))))
            break;
    }
    return i + engram_spread_first_bad_f32_scalar(s + i, n - i);
}

static size_t first_bad_f64_neon(const double *s, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        if (!(spread_ok_all_f64x2(vld1q_f64(s + i)) & spread_ok_all_f64x2(vld1q_f64(s + i + 2)) &
              spread_ok_all_f64x2(vld1q_f64(s + i + 4)) & spread_ok_all_f64x2(vld1q_f64(s + i + 6))))
            break;
    }
    return i + engram_spread_first_bad_f64_scalar(s + i, n - i);
}

const engram_spread_ops engram_spread_ops_neon = {
    .level = "neon",
    .hop = {{engram_spread_hop_sum_unweighted_scalar, engram_spread_hop_sum_f32_scalar,
             engram_spread_hop_sum_f64_scalar},
            {engram_spread_hop_max_unweighted_scalar, engram_spread_hop_max_f32_scalar,
             engram_spread_hop_max_f64_scalar}},
    .accumulate = {{engram_spread_accumulate_sum_unweighted_scalar, engram_spread_accumulate_sum_f32_scalar,
                    engram_spread_accumulate_sum_f64_scalar},
                   {engram_spread_accumulate_max_unweighted_scalar, engram_spread_accumulate_max_f32_scalar,
                    engram_spread_accumulate_max_f64_scalar}},
    .classify = engram_spread_classify_scalar,
    .select_f32 = seeds_select_f32_neon,
    .select_f64 = seeds_select_f64_neon,
    .first_bad_f32 = first_bad_f32_neon,
    .first_bad_f64 = first_bad_f64_neon,
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
/* where the stabilities come from: a float32 array, a float64 array, one value */
#define DECAYN_STAB_F32 0
#define DECAYN_STAB_F64 1
#define DECAYN_STAB_BROADCAST 2
/* the exponential's quotient with a broadcast operand that is not a float32 value:
 * every vector divides in float64 */
#define DECAYN_STAB_WIDE 3
#define DECAYN_INLINE static inline __attribute__((always_inline))

DECAYN_INLINE uint64x2_t decayn_not_u64(uint64x2_t x) {
    return vreinterpretq_u64_u32(vmvnq_u32(vreinterpretq_u32_u64(x)));
}

/* 2 ages from index i as float64 (scvtf/ucvtf round to nearest, like a C cast). */
DECAYN_INLINE float64x2_t decayn_ages_f64(const void *age, size_t i, int type, double broadcast) {
    switch (type) {
        case ENGRAM_DECAY_F32: return vcvt_f64_f32(vld1_f32((const float *)age + i));
        case ENGRAM_DECAY_F64: return vld1q_f64((const double *)age + i);
        case ENGRAM_DECAY_I64: return vcvtq_f64_s64(vld1q_s64((const int64_t *)age + i));
        case ENGRAM_DECAY_U64: return vcvtq_f64_u64(vld1q_u64((const uint64_t *)age + i));
        default: return vdupq_n_f64(broadcast);
    }
}

/* 2 stabilities from index i as float64. */
DECAYN_INLINE float64x2_t decayn_stab_f64(const void *stab, size_t i, int mode, double broadcast) {
    switch (mode) {
        case DECAYN_STAB_F32: return vcvt_f64_f32(vld1_f32((const float *)stab + i));
        case DECAYN_STAB_F64: return vld1q_f64((const double *)stab + i);
        default: return vdupq_n_f64(broadcast);
    }
}

DECAYN_INLINE int decayn_stab_mode(const engram_decay_params *p, const engram_decay_block *b) {
    if (!b->stability) return DECAYN_STAB_BROADCAST;
    return p->stability_type == ENGRAM_DECAY_F32 ? DECAYN_STAB_F32 : DECAYN_STAB_F64;
}

/* y = (float)((double)age / (double)stability) for 4 lanes by float64 division. */
static __attribute__((noinline)) float32x4_t decayn_quotient_wide(const engram_decay_params *p,
                                                                  const engram_decay_block *b,
                                                                  size_t i) {
    int age_type = b->age ? (int)p->age_type : DECAYN_AGE_BROADCAST;
    int stab_mode = decayn_stab_mode(p, b);
    float64x2_t lo = vdivq_f64(decayn_ages_f64(b->age, i, age_type, p->age),
                               decayn_stab_f64(b->stability, i, stab_mode, p->stability));
    float64x2_t hi = vdivq_f64(decayn_ages_f64(b->age, i + 2, age_type, p->age),
                               decayn_stab_f64(b->stability, i + 2, stab_mode, p->stability));
    return vcvt_high_f32_f64(vcvt_f32_f64(lo), hi);
}

/* Broadcast operands of a block, prepared once. */
typedef struct decayn_operands {
    float32x4_t age, stability; /* the broadcast values rounded to float32 */
    float32x4_t quotient;       /* both broadcast: the argument itself */
} decayn_operands;

DECAYN_INLINE void decayn_operands_init(decayn_operands *o, const engram_decay_params *p,
                                        const engram_decay_block *b) {
    o->age = vdupq_n_f32((float)p->age);
    o->stability = vdupq_n_f32((float)p->stability);
    o->quotient = vdupq_n_f32(b->age || b->stability ? 0.0f : (float)(p->age / p->stability));
}

/* Whether a broadcast operand of the block is not a float32 value (its quotient divides in float64). */
DECAYN_INLINE int decayn_broadcast_wide(const engram_decay_params *p, const engram_decay_block *b) {
    return (!b->age && !decay_is_f32(p->age)) || (!b->stability && !decay_is_f32(p->stability));
}

/*
 * The float32 argument y = (float)((double)age / (double)stability) of 4
 * lanes: a float32 division where every operand is a float32 value (the
 * same bits, decay_internal.h), else float64 divisions.  stab_mode WIDE:
 * a broadcast operand that is not a float32 value, or float64
 * stabilities: every vector divides in float64.
 */
DECAYN_INLINE float32x4_t decayn_quotient_f32(const engram_decay_params *p,
                                              const engram_decay_block *b, const void *age,
                                              const float *stab, size_t i, int age_type,
                                              int stab_mode, const decayn_operands *o) {
    if (stab_mode == DECAYN_STAB_WIDE || stab_mode == DECAYN_STAB_F64) return decayn_quotient_wide(p, b, i);
    if (age_type == DECAYN_AGE_BROADCAST && stab_mode == DECAYN_STAB_BROADCAST) return o->quotient;
    float32x4_t a, S;
    int exact = 1;
    if (age_type == ENGRAM_DECAY_F32) {
        a = vld1q_f32((const float *)age + i);
    } else if (age_type == DECAYN_AGE_BROADCAST) {
        a = o->age;
    } else if (age_type == ENGRAM_DECAY_F64) {
        float64x2_t lo = vld1q_f64((const double *)age + i);
        float64x2_t hi = vld1q_f64((const double *)age + i + 2);
        a = vcvt_high_f32_f64(vcvt_f32_f64(lo), hi);
        uint64x2_t same = vandq_u64(vceqq_f64(vcvt_f64_f32(vget_low_f32(a)), lo),
                                    vceqq_f64(vcvt_high_f64_f32(a), hi));
        exact = (vgetq_lane_u64(same, 0) & vgetq_lane_u64(same, 1)) != 0;
    } else {
        /* integers in [0, 2^24) (ages up to 194 days in seconds) are float32
         * values, and their low 32 bits are the value (as unsigned: a negative
         * int64 age, invalid, divides in float64) */
        uint64x2_t lo = vld1q_u64((const uint64_t *)age + i);
        uint64x2_t hi = vld1q_u64((const uint64_t *)age + i + 2);
        uint64x2_t high_bits = vshrq_n_u64(vorrq_u64(lo, hi), 24);
        exact = vmaxvq_u32(vreinterpretq_u32_u64(high_bits)) == 0;
        a = vcvtq_f32_u32(vcombine_u32(vmovn_u64(lo), vmovn_u64(hi)));
    }
    S = stab_mode == DECAYN_STAB_F32 ? vld1q_f32(stab + i) : o->stability;
    if (ENGRAM_UNLIKELY(!exact)) return decayn_quotient_wide(p, b, i);
    return vdivq_f32(a, S);
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
                                       int age_type, int stab_mode) {
    float *out = b->out;
    const float *str = b->strength;
    const void *age = b->age;
    const float *stab = b->stability;
    decayn_operands o;
    decayn_operands_init(&o, p, b);
    for (size_t i = 0; i < b->n; i += 4)
        vst1q_f32(out + i, decayn_exp_f32(decayn_quotient_f32(p, b, age, stab, i, age_type, stab_mode, &o),
                                          vld1q_f32(str + i)));
}

/* One instance per (age type, stability mode) so each loop is straight-line. */
#define DECAYN_DISPATCH_AGES(body, p, b, mode)                                            \
    do {                                                                                  \
        switch ((b)->age ? (int)(p)->age_type : DECAYN_AGE_BROADCAST) {                   \
            case ENGRAM_DECAY_F32: body(p, b, ENGRAM_DECAY_F32, mode); break;             \
            case ENGRAM_DECAY_F64: body(p, b, ENGRAM_DECAY_F64, mode); break;             \
            case ENGRAM_DECAY_I64: body(p, b, ENGRAM_DECAY_I64, mode); break;             \
            case ENGRAM_DECAY_U64: body(p, b, ENGRAM_DECAY_U64, mode); break;             \
            default: body(p, b, DECAYN_AGE_BROADCAST, mode); break;                       \
        }                                                                                 \
    } while (0)

#define DECAYN_DISPATCH(body, p, b)                                                       \
    do {                                                                                  \
        switch (decayn_stab_mode(p, b)) {                                                 \
            case DECAYN_STAB_F32: DECAYN_DISPATCH_AGES(body, p, b, DECAYN_STAB_F32); break; \
            case DECAYN_STAB_F64: DECAYN_DISPATCH_AGES(body, p, b, DECAYN_STAB_F64); break; \
            default: DECAYN_DISPATCH_AGES(body, p, b, DECAYN_STAB_BROADCAST); break;      \
        }                                                                                 \
    } while (0)

/* The exponential: float64 stabilities and broadcast values that are not float32 values
 * take one instance that divides every vector in float64. */
static void decay_exp_f32_neon(const engram_decay_params *p, const engram_decay_block *b) {
    int mode = decayn_stab_mode(p, b);
    if (mode == DECAYN_STAB_F64 || decayn_broadcast_wide(p, b))
        decayn_exp_f32_body(p, b, DECAYN_AGE_BROADCAST, DECAYN_STAB_WIDE);
    else if (mode == DECAYN_STAB_F32)
        DECAYN_DISPATCH_AGES(decayn_exp_f32_body, p, b, DECAYN_STAB_F32);
    else
        DECAYN_DISPATCH_AGES(decayn_exp_f32_body, p, b, DECAYN_STAB_BROADCAST);
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
                                       int age_type, int stab_mode) {
    double *out = b->out;
    const double *str = b->strength;
    const void *age = b->age, *stab = b->stability;
    const double age_b = p->age, stab_b = p->stability;
    for (size_t i = 0; i < b->n; i += 2) {
        float64x2_t a = decayn_ages_f64(age, i, age_type, age_b);
        float64x2_t S = decayn_stab_f64(stab, i, stab_mode, stab_b);
        vst1q_f64(out + i, decayn_exp_f64(vdivq_f64(a, S), vld1q_f64(str + i)));
    }
}

/* float64 strength: float64 stabilities, or one */
static void decay_exp_f64_neon(const engram_decay_params *p, const engram_decay_block *b) {
    if (b->stability) DECAYN_DISPATCH_AGES(decayn_exp_f64_body, p, b, DECAYN_STAB_F64);
    else DECAYN_DISPATCH_AGES(decayn_exp_f64_body, p, b, DECAYN_STAB_BROADCAST);
}

/* ---- float32 power, in float64 ---- */

/*
 * log(u) for 1 <= u < inf, within 2^-49 relative (0 at u = 1):
 * u = 2^k z, z in [sqrt(1/2), sqrt(2)), log(z) = 2 atanh(s),
 * s = (z - 1) / (z + 1): relative next to 1, where z - 1 is exact.
 */
DECAYN_INLINE float64x2_t decayn_log_f64(float64x2_t u) {
    uint64x2_t ix = vreinterpretq_u64_f64(u);
    uint64x2_t tmp = vsubq_u64(ix, vdupq_n_u64(DECAY_POW_LOG_OFFSET));
    float64x2_t kd = vcvtq_f64_u64(vshrq_n_u64(tmp, 52)); /* u >= 1: tmp > 0 */
    uint64x2_t iz = vsubq_u64(ix, vandq_u64(tmp, vdupq_n_u64(0xfff0000000000000ull)));
    float64x2_t f = vsubq_f64(vreinterpretq_f64_u64(iz), vdupq_n_f64(1.0));
    float64x2_t s = vdivq_f64(f, vaddq_f64(f, vdupq_n_f64(2.0)));
    float64x2_t z = vmulq_f64(s, s);
    float64x2_t A = vfmaq_f64(vdupq_n_f64(DECAY_POW_ATANH_A4), vdupq_n_f64(DECAY_POW_ATANH_A5), z);
    A = vfmaq_f64(vdupq_n_f64(DECAY_POW_ATANH_A3), A, z);
    A = vfmaq_f64(vdupq_n_f64(DECAY_POW_ATANH_A2), A, z);
    A = vfmaq_f64(vdupq_n_f64(DECAY_POW_ATANH_A1), A, z);
    A = vfmaq_f64(vdupq_n_f64(DECAY_POW_ATANH_A0), A, z);
    float64x2_t ts = vaddq_f64(s, s);
    float64x2_t log1p = vfmaq_f64(ts, vmulq_f64(ts, z), A);
    return vfmaq_f64(log1p, kd, vdupq_n_f64(DECAY_POW_LN2));
}

/*
 * exp(max(-power * L, -700)) for L >= 0, relative error < 2^-48:
 * two-constant Cody-Waite and 1 + w + w^2 Q(w).  The clamp also takes -inf
 * (a power too large for power * L) and keeps every double normal.
 */
DECAYN_INLINE float64x2_t decayn_exp_neg_f64(float64x2_t L, float64x2_t neg_power) {
    const float64x2_t shifter = vdupq_n_f64(DECAY_F64_SHIFTER);
    /* fmax, not fmaxnm: NaN lanes are the element path's anyway */
    float64x2_t Y = vmaxq_f64(vmulq_f64(L, neg_power), vdupq_n_f64(DECAY_POW_Y_MIN));
    float64x2_t k = vfmaq_f64(shifter, Y, vdupq_n_f64(DECAY_F64_LOG2E));
    float64x2_t N = vsubq_f64(k, shifter);
    float64x2_t w = vfmsq_f64(Y, N, vdupq_n_f64(DECAY_F64_LN2_HI));
    w = vfmsq_f64(w, N, vdupq_n_f64(DECAY_F64_LN2_LO));
    float64x2_t Q = vfmaq_f64(vdupq_n_f64(DECAY_POW_EXP_Q7), vdupq_n_f64(DECAY_POW_EXP_Q8), w);
    Q = vfmaq_f64(vdupq_n_f64(DECAY_POW_EXP_Q6), Q, w);
    Q = vfmaq_f64(vdupq_n_f64(DECAY_POW_EXP_Q5), Q, w);
    Q = vfmaq_f64(vdupq_n_f64(DECAY_POW_EXP_Q4), Q, w);
    Q = vfmaq_f64(vdupq_n_f64(DECAY_POW_EXP_Q3), Q, w);
    Q = vfmaq_f64(vdupq_n_f64(DECAY_POW_EXP_Q2), Q, w);
    Q = vfmaq_f64(vdupq_n_f64(DECAY_POW_EXP_Q1), Q, w);
    Q = vfmaq_f64(vdupq_n_f64(DECAY_POW_EXP_Q0), Q, w);
    float64x2_t P = vaddq_f64(vfmaq_f64(w, vmulq_f64(w, w), Q), vdupq_n_f64(1.0));
    /* N in [-1010, 0]: 2^N a normal double built in the exponent field */
    uint64x2_t pow2 = vaddq_u64(vshlq_n_u64(vreinterpretq_u64_f64(k), 52), vdupq_n_u64(0x3ff0000000000000ull));
    return vmulq_f64(P, vreinterpretq_f64_u64(pow2));
}

/* 2 lanes of strength * u^-power; ok: all-ones lanes where 1 <= u < inf. */
DECAYN_INLINE float64x2_t decayn_pow_pair(float64x2_t u, float64x2_t s, float64x2_t neg_power,
                                          int half_power, uint64x2_t *ok) {
    const float64x2_t one = vdupq_n_f64(1.0);
    *ok = vandq_u64(vcgeq_f64(u, one), vcltq_f64(u, vdupq_n_f64(INFINITY)));
    float64x2_t P = half_power ? vdivq_f64(one, vsqrtq_f64(u))
                               : decayn_exp_neg_f64(decayn_log_f64(u), neg_power);
    return vmulq_f64(s, P);
}

/*
 * u = 1 + factor * age / stability: (factor * a) / S + 1, the float64
 * evaluation's own u, except power <= 1 with one stability: fma(a, factor / S, 1).
 */
DECAYN_INLINE float64x2_t decayn_u(const void *age, const void *stab, size_t i, int age_type,
                                   int stab_mode, int exact_u, double age_b, double stab_b,
                                   float64x2_t factor, float64x2_t factor_over_stability) {
    const float64x2_t one = vdupq_n_f64(1.0);
    float64x2_t a = decayn_ages_f64(age, i, age_type, age_b);
    if (!exact_u && stab_mode == DECAYN_STAB_BROADCAST) return vfmaq_f64(one, a, factor_over_stability);
    float64x2_t S = decayn_stab_f64(stab, i, stab_mode, stab_b);
    return vaddq_f64(vdivq_f64(vmulq_f64(a, factor), S), one);
}

DECAYN_INLINE void decayn_power_f32_body2(const engram_decay_params *p, const engram_decay_block *b,
                                          int age_type, int stab_mode, int half_power,
                                          int exact_u) {
    float *out = b->out;
    const float *str = b->strength;
    const void *age = b->age, *stab = b->stability;
    const double age_b = p->age, stab_b = p->stability;
    const float64x2_t factor = vdupq_n_f64(p->factor);
    const float64x2_t factor_over_stability = vdupq_n_f64(p->factor / p->stability);
    const float64x2_t neg_power = vdupq_n_f64(-p->power);
    for (size_t i = 0; i < b->n; i += 4) {
        float32x4_t s = vld1q_f32(str + i);
        uint64x2_t ok_lo, ok_hi;
        float64x2_t lo = decayn_pow_pair(decayn_u(age, stab, i, age_type, stab_mode, exact_u, age_b, stab_b, factor,
                                                  factor_over_stability),
                                         vcvt_f64_f32(vget_low_f32(s)), neg_power, half_power, &ok_lo);
        float64x2_t hi = decayn_pow_pair(decayn_u(age, stab, i + 2, age_type, stab_mode, exact_u, age_b, stab_b,
                                                  factor, factor_over_stability),
                                         vcvt_high_f64_f32(s), neg_power, half_power, &ok_hi);
        float32x4_t r = vcvt_high_f32_f64(vcvt_f32_f64(lo), hi);
        /* infinite strengths take the element definition: inf * u^-power is NaN where pow underflows */
        uint32x4_t ok = vcombine_u32(vmovn_u64(ok_lo), vmovn_u64(ok_hi));
        ok = vandq_u32(ok, vcltq_f32(vabsq_f32(s), vdupq_n_f32(INFINITY)));
        if (ENGRAM_UNLIKELY(vminvq_u32(ok) == 0)) {
            float rb[4];
            uint32_t lanes[4];
            vst1q_f32(rb, r);
            vst1q_u32(lanes, ok);
            for (int l = 0; l < 4; l++)
                if (!lanes[l]) rb[l] = engram_decay_power_f32_element(p, b, i + (size_t)l);
            r = vld1q_f32(rb);
        }
        vst1q_f32(out + i, r);
    }
}

/* power 0.5 (the FSRS curve) needs no logarithm: 1 / sqrt(u). */
DECAYN_INLINE void decayn_power_f32_body(const engram_decay_params *p, const engram_decay_block *b,
                                         int age_type, int stab_mode) {
    if (p->power == 0.5) decayn_power_f32_body2(p, b, age_type, stab_mode, 1, 0);
    else if (p->power <= 1.0) decayn_power_f32_body2(p, b, age_type, stab_mode, 0, 0);
    else decayn_power_f32_body2(p, b, age_type, stab_mode, 0, 1);
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

