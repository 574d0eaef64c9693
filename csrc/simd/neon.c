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

const engram_spread_ops engram_spread_ops_neon = {
    .level = "neon",
};

/* ==== end spread ==== */

/* ==== decay ==== */

const engram_decay_ops engram_decay_ops_neon = {
    .level = "neon",
};

/* ==== end decay ==== */

