/*
 * similarity: cosine similarity, normalisation and top-k selection.
 *
 * The scalar primitive table at the top is the spec every SIMD level in
 * csrc/simd/ must match (within the tolerance documented in engram.h).
 * Everything below it is level-independent: the drivers that split the
 * work into cache blocks and threads, classify rows, run the exact rescue
 * path for rows the fast arithmetic cannot handle, and select the top k.
 *
 * Row classes.  A row's squared norm comes out of the fast primitives; the
 * driver turns it into an inverse norm that also encodes the class:
 *     inv > 0    the fast result is accurate: cos = dot * inv_x * inv_y
 *     inv == 0   an all-zero row: cosine 0
 *     inv NaN    the row holds a NaN or an infinity: cosine NaN
 *     inv < 0    finite, but the squared norm under- or overflowed the fast
 *                arithmetic (denormal or ~1e19+ float32 magnitudes): every
 *                pair with it is recomputed by cosine_scaled_*().
 * A norm in [TINY, HUGE] proves the row finite, keeps every product and
 * lane partial sum of the fast path inside the normal range, and bounds
 * what underflowed products can lose to below 1e-11 of the result.
 */
#include "engram.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Scalar primitives (the spec)                                        */
/* ------------------------------------------------------------------ */

/*
 * float32 products are exact in float64, so the scalar level simply sums
 * them in float64: the most accurate version, and the one the SIMD levels
 * are measured against in tests/c/test_similarity.c.
 */
static void pair_f32_scalar(const float *x, const float *y, size_t d, double out[3]) {
    double xy = 0, xx = 0, yy = 0;
    for (size_t i = 0; i < d; i++) {
        double a = x[i], b = y[i];
        xy += a * b;
        xx += a * a;
        yy += b * b;
    }
    out[0] = xy;
    out[1] = xx;
    out[2] = yy;
}

static void pair_f64_scalar(const double *x, const double *y, size_t d, double out[3]) {
    double xy = 0, xx = 0, yy = 0;
    for (size_t i = 0; i < d; i++) {
        xy += x[i] * y[i];
        xx += x[i] * x[i];
        yy += y[i] * y[i];
    }
    out[0] = xy;
    out[1] = xx;
    out[2] = yy;
}

static void one_to_many_f32_scalar(const float *q, const float *rows, ptrdiff_t stride, size_t n,
                                   size_t d, double *dot, double *norm2) {
    for (size_t r = 0; r < n; r++) {
        const float *row = rows + (ptrdiff_t)r * stride;
        double s = 0, nn = 0;
        for (size_t i = 0; i < d; i++) {
            double a = row[i];
            s += a * q[i];
            nn += a * a;
        }
        dot[r] = s;
        norm2[r] = nn;
    }
}

static void one_to_many_f64_scalar(const double *q, const double *rows, ptrdiff_t stride,
                                   size_t n, size_t d, double *dot, double *norm2) {
    for (size_t r = 0; r < n; r++) {
        const double *row = rows + (ptrdiff_t)r * stride;
        double s = 0, nn = 0;
        for (size_t i = 0; i < d; i++) {
            s += row[i] * q[i];
            nn += row[i] * row[i];
        }
        dot[r] = s;
        norm2[r] = nn;
    }
}

static void norm2_rows_f32_scalar(const float *rows, ptrdiff_t stride, size_t n, size_t d,
                                  double *norm2) {
    for (size_t r = 0; r < n; r++) {
        const float *row = rows + (ptrdiff_t)r * stride;
        double nn = 0;
        for (size_t i = 0; i < d; i++) nn += (double)row[i] * row[i];
        norm2[r] = nn;
    }
}

static void norm2_rows_f64_scalar(const double *rows, ptrdiff_t stride, size_t n, size_t d,
                                  double *norm2) {
    for (size_t r = 0; r < n; r++) {
        const double *row = rows + (ptrdiff_t)r * stride;
        double nn = 0;
        for (size_t i = 0; i < d; i++) nn += row[i] * row[i];
        norm2[r] = nn;
    }
}

#define SCALAR_TILE 2

static void dot_tile_f32_scalar(const float *const *x, size_t x0, const float *const *y,
                                size_t len, double *out, size_t ldo, int accumulate) {
    for (int i = 0; i < SCALAR_TILE; i++)
        for (int j = 0; j < SCALAR_TILE; j++) {
            double s = 0;
            for (size_t k = 0; k < len; k++) s += (double)x[i][x0 + k] * y[j][k];
            out[i * ldo + j] = accumulate ? out[i * ldo + j] + s : s;
        }
}

static void dot_tile_f64_scalar(const double *const *x, size_t x0, const double *const *y,
                                size_t len, double *out, size_t ldo, int accumulate) {
    for (int i = 0; i < SCALAR_TILE; i++)
        for (int j = 0; j < SCALAR_TILE; j++) {
            double s = 0;
            for (size_t k = 0; k < len; k++) s += x[i][x0 + k] * y[j][k];
            out[i * ldo + j] = accumulate ? out[i * ldo + j] + s : s;
        }
}

static void dot_cols_f32_scalar(const float *x, ptrdiff_t x_stride, size_t rows, const float *yt,
                                size_t d, double *out, size_t ldo) {
    for (size_t i = 0; i < rows; i++) {
        const float *xi = x + (ptrdiff_t)i * x_stride;
        double *o = out + i * ldo;
        for (size_t j = 0; j < ENGRAM_SIM_COLS; j++) o[j] = 0;
        for (size_t k = 0; k < d; k++) {
            double a = xi[k];
            const float *yk = yt + k * ENGRAM_SIM_COLS;
            for (size_t j = 0; j < ENGRAM_SIM_COLS; j++) o[j] += a * yk[j];
        }
    }
}

static void dot_cols_f64_scalar(const double *x, ptrdiff_t x_stride, size_t rows,
                                const double *yt, size_t d, double *out, size_t ldo) {
    for (size_t i = 0; i < rows; i++) {
        const double *xi = x + (ptrdiff_t)i * x_stride;
        double *o = out + i * ldo;
        for (size_t j = 0; j < ENGRAM_SIM_COLS; j++) o[j] = 0;
        for (size_t k = 0; k < d; k++) {
            double a = xi[k];
            const double *yk = yt + k * ENGRAM_SIM_COLS;
            for (size_t j = 0; j < ENGRAM_SIM_COLS; j++) o[j] += a * yk[j];
        }
    }
}

static inline double clamp_unit(double c) {
    /* NaN passes through: both comparisons are false. */
    return c > 1.0 ? 1.0 : c < -1.0 ? -1.0 : c;
}

static inline double fast_score(double dot, double x_inv, double y_inv, int metric) {
    if (!(x_inv > 0 && y_inv > 0)) return NAN;
    return metric == ENGRAM_METRIC_DOT ? dot : clamp_unit(dot * x_inv * y_inv);
}

static void scores_f32_scalar(const double *dots, const double *y_inv, double x_inv, size_t n,
                              int metric, float *out) {
    for (size_t j = 0; j < n; j++) out[j] = (float)fast_score(dots[j], x_inv, y_inv[j], metric);
}

static void scores_f64_scalar(const double *dots, const double *y_inv, double x_inv, size_t n,
                              int metric, double *out) {
    for (size_t j = 0; j < n; j++) out[j] = fast_score(dots[j], x_inv, y_inv[j], metric);
}

static size_t select_f32_scalar(const float *s, size_t n, float threshold, uint32_t *idx) {
    size_t count = 0;
    for (size_t j = 0; j < n; j++)
        if (!(s[j] <= threshold)) idx[count++] = (uint32_t)j;
    return count;
}

static size_t select_f64_scalar(const double *s, size_t n, double threshold, uint32_t *idx) {
    size_t count = 0;
    for (size_t j = 0; j < n; j++)
        if (!(s[j] <= threshold)) idx[count++] = (uint32_t)j;
    return count;
}

static void scale_f32_scalar(const float *x, double s, float *out, size_t d) {
    for (size_t i = 0; i < d; i++) out[i] = (float)((double)x[i] * s);
}

static void scale_f64_scalar(const double *x, double s, double *out, size_t d) {
    for (size_t i = 0; i < d; i++) out[i] = x[i] * s;
}

const engram_similarity_ops engram_similarity_ops_scalar = {
    .level = "scalar",
    .pair_f32 = pair_f32_scalar,
    .pair_f64 = pair_f64_scalar,
    .one_to_many_f32 = one_to_many_f32_scalar,
    .one_to_many_f64 = one_to_many_f64_scalar,
    .norm2_rows_f32 = norm2_rows_f32_scalar,
    .norm2_rows_f64 = norm2_rows_f64_scalar,
    .dot_tile_f32 = dot_tile_f32_scalar,
    .dot_tile_f64 = dot_tile_f64_scalar,
    .tile_rows_f32 = SCALAR_TILE,
    .tile_cols_f32 = SCALAR_TILE,
    .tile_rows_f64 = SCALAR_TILE,
    .tile_cols_f64 = SCALAR_TILE,
    .f32_chunk = 1024, /* float64 sums: only the cache plan limits it */
    .dot_cols_f32 = dot_cols_f32_scalar,
    .dot_cols_f64 = dot_cols_f64_scalar,
    /* (the compiler vectorises dot_cols; it beats the 2 x 2 tile at every d measured) */
    .cols_max_d_f32 = 64,
    .cols_max_d_f64 = 64,
    .scores_f32 = scores_f32_scalar,
    .scores_f64 = scores_f64_scalar,
    .select_f32 = select_f32_scalar,
    .select_f64 = select_f64_scalar,
    .scale_f32 = scale_f32_scalar,
    .scale_f64 = scale_f64_scalar,
};

/* ------------------------------------------------------------------ */
/* Row classes and the exact rescue path                               */
/* ------------------------------------------------------------------ */

/* Marks a finite row the fast arithmetic cannot handle (see the top of the file). */
#define CLASS_RESCUE (-1.0)

/* Largest |x_i| as a double, or NaN if the row holds a NaN or an infinity. */
static double max_abs_f32(const float *x, size_t d) {
    float m = 0;
    for (size_t i = 0; i < d; i++) {
        float a = fabsf(x[i]);
        if (!(a <= FLT_MAX)) return NAN;
        if (a > m) m = a;
    }
    return m;
}

static double max_abs_f64(const double *x, size_t d) {
    double m = 0;
    for (size_t i = 0; i < d; i++) {
        double a = fabs(x[i]);
        if (!(a <= DBL_MAX)) return NAN;
        if (a > m) m = a;
    }
    return m;
}

static double classify_slow(double norm2, double max_abs) {
    if (isnan(norm2) || isnan(max_abs)) return NAN;
    return max_abs == 0 ? 0.0 : CLASS_RESCUE;
}

/* Inverse norm with the class encoded (see the top of the file). */
static inline double classify_f32(const float *row, size_t d, double norm2) {
    if (ENGRAM_LIKELY(norm2 >= ENGRAM_SIM_F32_TINY && norm2 <= ENGRAM_SIM_F32_HUGE))
        return 1.0 / sqrt(norm2);
    return classify_slow(norm2, isnan(norm2) ? NAN : max_abs_f32(row, d));
}

static inline double classify_f64(const double *row, size_t d, double norm2) {
    if (ENGRAM_LIKELY(norm2 >= ENGRAM_SIM_F64_TINY && norm2 <= ENGRAM_SIM_F64_HUGE))
        return 1.0 / sqrt(norm2);
    return classify_slow(norm2, isnan(norm2) ? NAN : max_abs_f64(row, d));
}

/*
 * Two powers of two whose product maps max_abs into [0.5, 1).  Two factors
 * because 2^-e alone leaves the double range for denormal float64 input
 * (e down to -1073).  Multiplying by a power of two is exact unless the
 * result underflows, which only happens to elements below 2^-1000 of the
 * row's largest one: far below anything the cosine can show.
 */
static void scale_factors(double max_abs, double *s1, double *s2) {
    int e;
    frexp(max_abs, &e);
    int half = -e / 2;
    *s1 = ldexp(1.0, half);
    *s2 = ldexp(1.0, -e - half);
}

/*
 * Exact cosine for pairs the fast path cannot handle: NaN/inf -> NaN, a
 * zero vector -> 0, else both rows scaled to a largest element in
 * [0.5, 1) and summed in float64 (float32 products are exact there).
 */
static double cosine_scaled_f32(const float *x, const float *y, size_t d) {
    double mx = max_abs_f32(x, d), my = max_abs_f32(y, d);
    if (isnan(mx) || isnan(my)) return NAN;
    if (mx == 0 || my == 0) return 0.0;
    double x1, x2, y1, y2;
    scale_factors(mx, &x1, &x2);
    scale_factors(my, &y1, &y2);
    double xy = 0, xx = 0, yy = 0;
    for (size_t i = 0; i < d; i++) {
        double a = (double)x[i] * x1 * x2, b = (double)y[i] * y1 * y2;
        xy += a * b;
        xx += a * a;
        yy += b * b;
    }
    return clamp_unit(xy / sqrt(xx * yy));
}

static double cosine_scaled_f64(const double *x, const double *y, size_t d) {
    double mx = max_abs_f64(x, d), my = max_abs_f64(y, d);
    if (isnan(mx) || isnan(my)) return NAN;
    if (mx == 0 || my == 0) return 0.0;
    double x1, x2, y1, y2;
    scale_factors(mx, &x1, &x2);
    scale_factors(my, &y1, &y2);
    double xy = 0, xx = 0, yy = 0;
    for (size_t i = 0; i < d; i++) {
        double a = x[i] * x1 * x2, b = y[i] * y1 * y2;
        xy += a * b;
        xx += a * a;
        yy += b * b;
    }
    /* xx, yy in [0.25, d]: the product cannot leave the double range */
    return clamp_unit(xy / sqrt(xx * yy));
}

/*
 * The "dot" metric for rows outside the fast range.  float32 products are
 * exact in float64 and their sum cannot overflow it: a plain float64 sum.
 */
static double dot_exact_f32(const float *x, const float *y, size_t d) {
    double s = 0;
    for (size_t i = 0; i < d; i++) s += (double)x[i] * y[i];
    return s;
}

/*
 * float64 products of ~1e154+ magnitudes overflow, and a plain sum of them
 * gives inf - inf = NaN where the true dot is finite or a signed infinity.
 * Finite rows are scaled to a largest element in [0.5, 1) (powers of two:
 * exact), summed, and the sum scaled back with one ldexp, which rounds an
 * out-of-range result to the right infinity (or denormal).  A row holding a
 * NaN or an infinity keeps the plain sum: its IEEE result is the answer.
 */
static double dot_exact_f64(const double *x, const double *y, size_t d) {
    double mx = max_abs_f64(x, d), my = max_abs_f64(y, d);
    if (isnan(mx) || isnan(my)) {
        double s = 0;
        for (size_t i = 0; i < d; i++) s += x[i] * y[i];
        return s;
    }
    if (mx == 0 || my == 0) return 0.0;
    int ex, ey;
    frexp(mx, &ex);
    frexp(my, &ey);
    double x1, x2, y1, y2;
    scale_factors(mx, &x1, &x2);
    scale_factors(my, &y1, &y2);
    double s = 0;
    for (size_t i = 0; i < d; i++) s += (x[i] * x1 * x2) * (y[i] * y1 * y2);
    return ldexp(s, ex + ey);
}

/* Score of a pair whose fast value cannot be used (an inverse norm <= 0 or NaN). */
static double score_fixup(engram_float_type type, engram_metric metric, const void *x,
                          const void *y, size_t d, double inv_x, double inv_y) {
    if (metric == ENGRAM_METRIC_DOT)
        return type == ENGRAM_FLOAT32 ? dot_exact_f32(x, y, d) : dot_exact_f64(x, y, d);
    if (isnan(inv_x) || isnan(inv_y)) return NAN;
    if (inv_x == 0 || inv_y == 0) return 0.0;
    return type == ENGRAM_FLOAT32 ? cosine_scaled_f32(x, y, d) : cosine_scaled_f64(x, y, d);
}

/* ------------------------------------------------------------------ */
/* One pair                                                            */
/* ------------------------------------------------------------------ */

double engram_cosine_pair_f32(const float *x, const float *y, size_t d) {
    double s[3];
    engram_similarity()->pair_f32(x, y, d, s);
    /* both squared norms in [TINY, HUGE] <=> both rows finite and in the fast range */
    if (ENGRAM_LIKELY(s[1] >= ENGRAM_SIM_F32_TINY && s[1] <= ENGRAM_SIM_F32_HUGE &&
                      s[2] >= ENGRAM_SIM_F32_TINY && s[2] <= ENGRAM_SIM_F32_HUGE))
        return clamp_unit(s[0] / sqrt(s[1] * s[2]));
    return cosine_scaled_f32(x, y, d);
}

double engram_cosine_pair_f64(const double *x, const double *y, size_t d) {
    double s[3];
    engram_similarity()->pair_f64(x, y, d, s);
    if (ENGRAM_LIKELY(s[1] >= ENGRAM_SIM_F64_TINY && s[1] <= ENGRAM_SIM_F64_HUGE &&
                      s[2] >= ENGRAM_SIM_F64_TINY && s[2] <= ENGRAM_SIM_F64_HUGE))
        /* separate roots: the product of two norms near TINY would underflow */
        return clamp_unit(s[0] / (sqrt(s[1]) * sqrt(s[2])));
    return cosine_scaled_f64(x, y, d);
}

/* ------------------------------------------------------------------ */
/* Shared driver pieces                                                */
/* ------------------------------------------------------------------ */

static inline size_t elsize_of(engram_float_type type) {
    return type == ENGRAM_FLOAT32 ? sizeof(float) : sizeof(double);
}

/* Rows with contiguous elements: the input itself (any row stride) or one arena copy. */
typedef struct rows_view {
    const void *base;
    ptrdiff_t stride; /* bytes */
    size_t n, d;
} rows_view;

static int contiguous_rows(engram_arena *arena, engram_float_type type, const engram_vectors *v,
                           rows_view *out) {
    out->n = v->n;
    out->d = v->d;
    if (v->n == 0 || v->d == 0) {
        out->base = v->data;
        out->stride = (ptrdiff_t)(v->d * elsize_of(type));
        return 0;
    }
    out->base = engram_rows_contiguous(arena, v->data, v->n, v->d, elsize_of(type),
                                       v->row_stride_bytes, v->col_stride_bytes, &out->stride);
    return out->base == NULL ? -1 : 0;
}

static inline const void *row_at(const rows_view *v, size_t i) {
    return (const char *)v->base + (ptrdiff_t)i * v->stride;
}

/* Worker w of n_workers gets [lo, hi) of `total` items, cut at multiples of `align`. */
static void worker_range(size_t total, size_t align, unsigned w, unsigned n_workers, size_t *lo,
                         size_t *hi) {
    size_t units = (total + align - 1) / align;
    size_t a = units * w / n_workers, b = units * (w + 1) / n_workers;
    *lo = a * align < total ? a * align : total;
    *hi = b * align < total ? b * align : total;
}

static void *arena_array(engram_arena *arena, size_t count, size_t size) {
    if (count != 0 && size > SIZE_MAX / count) {
        engram_fail(ENGRAM_ERR_NOMEM, "scratch of %zu x %zu bytes overflows the address space",
                    count, size);
        return NULL;
    }
    return engram_arena_alloc(arena, count * size);
}

/* Inverse norms (with classes) of rows [lo, hi) into inv[0 .. hi-lo). */
static void inverse_norms(const engram_similarity_ops *ops, engram_float_type type,
                          const rows_view *v, size_t lo, size_t hi, double *inv) {
    size_t n = hi - lo, d = v->d;
    if (n == 0) return;
    if (type == ENGRAM_FLOAT32) {
        ptrdiff_t stride = v->stride / (ptrdiff_t)sizeof(float);
        ops->norm2_rows_f32(row_at(v, lo), stride, n, d, inv);
        for (size_t i = 0; i < n; i++) inv[i] = classify_f32(row_at(v, lo + i), d, inv[i]);
    } else {
        ptrdiff_t stride = v->stride / (ptrdiff_t)sizeof(double);
        ops->norm2_rows_f64(row_at(v, lo), stride, n, d, inv);
        for (size_t i = 0; i < n; i++) inv[i] = classify_f64(row_at(v, lo + i), d, inv[i]);
    }
}

static inline void store_score(engram_float_type type, void *out, size_t i, double s) {
    if (type == ENGRAM_FLOAT32) ((float *)out)[i] = (float)s;
    else ((double *)out)[i] = s;
}

/* ------------------------------------------------------------------ */
/* Top-k heaps                                                         */
/* ------------------------------------------------------------------ */

typedef struct scored {
    double score;
    int64_t id;
} scored;

/* Higher score first, then the smaller id: a strict total order without NaN. */
static inline int better(double s, int64_t id, const scored *than) {
    return s > than->score || (s == than->score && id < than->id);
}

/* A bounded min-heap (worst entry at the root) of at most `cap` entries. */
typedef struct topk_heap {
    scored *items;
    size_t size, cap;
    /* what a new score must beat: NaN while not full (so every score is looked at) */
    double threshold;
} topk_heap;

static void heap_init(topk_heap *h, scored *items, size_t cap) {
    h->items = items;
    h->size = 0;
    h->cap = cap;
    h->threshold = NAN;
}

static void heap_sift_down(scored *a, size_t size, size_t i) {
    scored item = a[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= size) break;
        /* the worse child */
        if (c + 1 < size && better(a[c].score, a[c].id, &a[c + 1])) c++;
        if (!better(item.score, item.id, &a[c])) break;
        a[i] = a[c];
        i = c;
    }
    a[i] = item;
}

static void heap_offer_slow(topk_heap *h, double s, int64_t id) {
    if (isnan(s) || h->cap == 0) return;
    scored *a = h->items;
    if (h->size < h->cap) {
        size_t i = h->size++;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!better(a[p].score, a[p].id, &(scored){s, id})) break;
            a[i] = a[p];
            i = p;
        }
        a[i] = (scored){s, id};
        if (h->size == h->cap) h->threshold = a[0].score;
        return;
    }
    if (!better(s, id, &a[0])) return;
    a[0] = (scored){s, id};
    heap_sift_down(a, h->size, 0);
    h->threshold = a[0].score;
}

/*
 * Ids arrive in increasing order within a heap, so an equal score never
 * wins and `s <= threshold` rejects almost every candidate with one
 * compare; NaN scores fail the compare too and are dropped inside.
 */
static inline void heap_offer(topk_heap *h, double s, int64_t id) {
    if (ENGRAM_UNLIKELY(!(s <= h->threshold))) heap_offer_slow(h, s, id);
}

static int compare_scored(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    if (better(a->score, a->id, b)) return -1;
    if (better(b->score, b->id, a)) return 1;
    return 0;
}

/* The k outputs of one query from `total` candidates (sorted here, in place), best first. */
static void store_ranked(engram_float_type type, scored *items, size_t total, size_t k,
                         void *scores_out, int64_t *ids_out) {
    qsort(items, total, sizeof(scored), compare_scored);
    for (size_t i = 0; i < k; i++) {
        if (i < total) {
            store_score(type, scores_out, i, items[i].score);
            ids_out[i] = items[i].id;
        } else {
            store_score(type, scores_out, i, -INFINITY);
            ids_out[i] = -1;
        }
    }
}

/*
 * Merge the heaps of every worker for one query into its k outputs, best
 * first.  The order is a total order on (score, id), so the result does
 * not depend on how the corpus was split between workers.
 */
static void merge_heaps(engram_float_type type, topk_heap *const *heaps, unsigned n_heaps,
                        scored *buffer, size_t k, void *scores_out, int64_t *ids_out) {
    size_t total = 0;
    for (unsigned w = 0; w < n_heaps; w++) {
        memcpy(buffer + total, heaps[w]->items, heaps[w]->size * sizeof(scored));
        total += heaps[w]->size;
    }
    store_ranked(type, buffer, total, k, scores_out, ids_out);
}

/* ------------------------------------------------------------------ */
/* Scoring a block: fast scores, exact fix-ups, selection              */
/* ------------------------------------------------------------------ */

/* Rows per block of the streaming path, and at most this many y rows per score block. */
#define BLOCK_ROWS 256

/* Where a block's scores go: an output row of the result, or one top-k heap. */
typedef struct score_sink {
    char *out;            /* first result of the block (NULL: heap) */
    ptrdiff_t out_stride; /* bytes between consecutive results */
    topk_heap *heap;
    int64_t first_id;
} score_sink;

/* Per-worker scratch for scoring one block row. */
typedef struct score_scratch {
    double *scores; /* BLOCK_ROWS, also viewed as float */
    uint32_t *idx;  /* BLOCK_ROWS */
} score_scratch;

typedef struct block_rows {
    const rows_view *view;
    size_t first; /* index of the block's first row in view */
    size_t n;
    const double *inv;        /* n encoded inverse norms */
    const uint32_t *slow;     /* block positions whose inverse norm is not > 0 */
    size_t n_slow;
} block_rows;

/* Positions j < n with !(inv[j] > 0): the rows the fast scores cannot cover. */
static size_t slow_positions(const double *inv, size_t n, uint32_t *slow) {
    size_t count = 0;
    for (size_t j = 0; j < n; j++)
        if (!(inv[j] > 0)) slow[count++] = (uint32_t)j;
    return count;
}

/*
 * The scores of x row `x` against the block `y`, from their dot products,
 * into `sink`.  Pairs the fast path cannot score are recomputed exactly and
 * written in place before selection, so candidates reach a heap in id order.
 */
static void score_block_row(const engram_similarity_ops *ops, engram_float_type type,
                            engram_metric metric, const double *dots, const void *x, double x_inv,
                            const block_rows *y, const score_sink *sink, score_scratch *scratch) {
    size_t n = y->n, d = y->view->d, es = elsize_of(type);
    int all_slow = !(x_inv > 0);
    /* scores go straight to out when its elements are contiguous and aligned */
    int direct = sink->out != NULL && sink->out_stride == (ptrdiff_t)es &&
                 (uintptr_t)sink->out % es == 0;
    void *scores = direct ? (void *)sink->out : (void *)scratch->scores;
    if (type == ENGRAM_FLOAT32) ops->scores_f32(dots, y->inv, x_inv, n, metric, scores);
    else ops->scores_f64(dots, y->inv, x_inv, n, metric, scores);
    size_t n_fix = all_slow ? n : y->n_slow;
    for (size_t t = 0; t < n_fix; t++) {
        size_t j = all_slow ? t : y->slow[t];
        double s = score_fixup(type, metric, x, row_at(y->view, y->first + j), d, x_inv, y->inv[j]);
        store_score(type, scores, j, s);
    }
    if (sink->heap) {
        topk_heap *h = sink->heap;
        size_t count = type == ENGRAM_FLOAT32
                           ? ops->select_f32(scores, n, (float)h->threshold, scratch->idx)
                           : ops->select_f64(scores, n, h->threshold, scratch->idx);
        for (size_t c = 0; c < count; c++) {
            size_t j = scratch->idx[c];
            double s = type == ENGRAM_FLOAT32 ? ((const float *)scores)[j] : ((const double *)scores)[j];
            heap_offer_slow(h, s, sink->first_id + (int64_t)j);
        }
    } else if (!direct) {
        for (size_t j = 0; j < n; j++)
            memcpy(sink->out + (ptrdiff_t)j * sink->out_stride, (const char *)scores + j * es, es);
    }
}

/* ------------------------------------------------------------------ */
/* One vector against many rows: streaming, memory-bound               */
/* ------------------------------------------------------------------ */

typedef struct stream_task {
    const engram_similarity_ops *ops;
    engram_float_type type;
    engram_metric metric;
    const void *q;
    double q_inv;
    rows_view rows;
    /* results to an output vector ... */
    char *out;
    ptrdiff_t out_stride; /* bytes between consecutive results */
    /* ... or into one top-k heap per worker */
    topk_heap *heaps;
    /* per worker: dots, norms, scores (BLOCK_ROWS doubles each) and indices */
    double *scratch;
    /*
     * Blocks are handed out in order from a shared counter: a worker thread
     * starts 13-20 us after the caller, and a fixed split would leave the
     * caller idle at the end of small calls.  Each worker still sees its
     * rows in increasing order, and a row's result does not depend on who
     * computes it.
     */
    size_t next_row, block_rows;
} stream_task;

#define STREAM_SCRATCH_DOUBLES (3 * BLOCK_ROWS + BLOCK_ROWS) /* the last part holds 2 x u32 */

static void stream_worker(void *ctx, unsigned w, unsigned n_workers) {
    stream_task *t = ctx;
    const rows_view *v = &t->rows;
    size_t d = v->d;
    (void)n_workers;
    double *dot = t->scratch + (size_t)w * STREAM_SCRATCH_DOUBLES, *inv = dot + BLOCK_ROWS;
    score_scratch scratch = {inv + BLOCK_ROWS, (uint32_t *)(inv + 2 * BLOCK_ROWS)};
    uint32_t *slow = scratch.idx + BLOCK_ROWS;
    for (;;) {
        size_t b = __atomic_fetch_add(&t->next_row, t->block_rows, __ATOMIC_RELAXED);
        if (b >= v->n) break;
        size_t nb = v->n - b < t->block_rows ? v->n - b : t->block_rows;
        if (t->type == ENGRAM_FLOAT32)
            t->ops->one_to_many_f32(t->q, row_at(v, b), v->stride / (ptrdiff_t)sizeof(float), nb,
                                    d, dot, inv);
        else
            t->ops->one_to_many_f64(t->q, row_at(v, b), v->stride / (ptrdiff_t)sizeof(double),
                                    nb, d, dot, inv);
        for (size_t i = 0; i < nb; i++) {
            const void *row = row_at(v, b + i);
            inv[i] = t->type == ENGRAM_FLOAT32 ? classify_f32(row, d, inv[i])
                                               : classify_f64(row, d, inv[i]);
        }
        block_rows y = {v, b, nb, inv, slow, slow_positions(inv, nb, slow)};
        score_sink sink = {t->heaps ? NULL : t->out + (ptrdiff_t)b * t->out_stride, t->out_stride,
                           t->heaps ? &t->heaps[w] : NULL, (int64_t)b};
        score_block_row(t->ops, t->type, t->metric, dot, t->q, t->q_inv, &y, &sink, &scratch);
    }
}

/*
 * threads=None streams with a second thread above this many elements
 * (n * d, 8 MB of float32).  Starting one costs 13-20 us here, and right
 * after a NumPy BLAS call its pool spins on the other core for a while, so
 * an extra thread made a 3 MB call up to 2x slower while one thread reads it
 * at the single-core read bandwidth.  threads=2 still splits any size.
 */
#define STREAM_PARALLEL_WORK ((size_t)1 << 21)

/* Rows per handed-out block: BLOCK_ROWS, or smaller so each worker gets several. */
static size_t stream_block_rows(size_t n, unsigned n_workers) {
    if (n_workers <= 1) return BLOCK_ROWS;
    size_t rows = n / (8 * (size_t)n_workers);
    rows = rows < 16 ? 16 : rows > BLOCK_ROWS ? BLOCK_ROWS : rows;
    return rows;
}

static double vector_inverse_norm(const engram_similarity_ops *ops, engram_float_type type,
                                  const void *q, size_t d) {
    double n2;
    rows_view v = {q, (ptrdiff_t)(d * elsize_of(type)), 1, d};
    inverse_norms(ops, type, &v, 0, 1, &n2);
    return n2;
}

/* ------------------------------------------------------------------ */
/* Many against many: register tiles in cache blocks                   */
/* ------------------------------------------------------------------ */

/* Rows that already start on cache lines need no packed copy. */
static int rows_line_aligned(const rows_view *v) {
    return ((uintptr_t)v->base % 64 == 0 && v->stride % 64 == 0) || v->n == 0;
}

/*
 * Cache plan.  Queries are taken QB rows at a time: blocks of equal size
 * whose scratch -- the query rows (packed or read in place), the QB x NB
 * block of dot products, the inverse norms, the row pointers and, for top-k,
 * the heaps of the block's queries -- together with the worker's corpus
 * panel stays within WORKER_SCRATCH_BYTES whatever d is: it stays in L2 next
 * to the corpus block, and two workers' scratch fits the default 2 MiB arena.
 * (Budgeting 768 KB for the query rows alone measured 5 % faster than 512 KB
 * and 1 MB no faster; counting the dot block in it too measured the same
 * speed at 768 and 1536-d, and keeps small d from a block of ~1000 x NB dots.)
 * The corpus streams through NB rows at a time, read from memory once per
 * query block.  Within a corpus block, a panel of tile_cols corpus rows and
 * one d-chunk (<= CHUNK_BYTES, and <= the level's f32_chunk so the float32
 * flush happens at chunk ends) is packed into L1, and every query group of
 * the block passes over it: each tile loads its query rows from L2 and its
 * corpus rows from L1.  While a block is computed, the next one is
 * prefetched into L2 a few lines per tile, so the corpus arrives from memory
 * behind the arithmetic instead of before it.
 *
 * Small d (up to the level's cols_max_d): a tile would spend more on the
 * horizontal sums of its accumulators than on the products, and a 64-byte
 * packed row would hold a few elements.  There the corpus is transposed, a
 * super block of SB rows at a time (COLS_CORPUS_BYTES of scratch: every
 * corpus row's d elements in one vector lane), and dot_cols runs COLS_CALL_ROWS
 * query rows, read in place, against ENGRAM_SIM_COLS corpus rows per call;
 * the query rows of a group are scored across the whole super block before
 * the next group, so each output row is written in long runs.
 */
#define WORKER_SCRATCH_BYTES ((size_t)768 << 10)
#define CORPUS_BLOCK_ROWS 64
#define CHUNK_BYTES 4096
#define COLS_CALL_ROWS 8
#define COLS_CORPUS_BYTES (WORKER_SCRATCH_BYTES / 4)
/* Arena alignment lost per scratch allocation, counted in the budget. */
#define SCRATCH_SLACK (16 * (size_t)ENGRAM_ARENA_ALIGN)
/* Many-to-many work (m * n * d) above which threads=None adds threads: ~100 us of tiles. */
#define TILE_PARALLEL_WORK ((size_t)1 << 23)
/*
 * top-k splits the corpus between workers (so few queries still use every
 * thread) only while every worker's heaps of every query fit this; beyond
 * it the queries are split, and each worker keeps the heaps of one query
 * block at a time.
 */
#define SHARED_HEAPS_BYTES ((size_t)256 << 10)

typedef struct tile_plan {
    int cols;        /* small d: dot_cols over a transposed corpus super block */
    unsigned mr, nr; /* query rows per tile (cols: per call), corpus split unit */
    size_t qb, nb;   /* query block rows (multiple of mr), corpus block rows */
    size_t sb;       /* cols: corpus rows per super block (multiple of nb) */
    size_t chunk;    /* tiles: elements of d per chunk */
    size_t ldo;      /* row length of the dot block (nb) */
    size_t packed_x_stride; /* tiles: bytes per packed query row, 0 when read in place */
} tile_plan;

/* The plan's shape; query and super block sizes come from plan_blocks once threads are known. */
static tile_plan make_plan(const engram_similarity_ops *ops, engram_float_type type,
                           const rows_view *x) {
    tile_plan p;
    memset(&p, 0, sizeof p);
    size_t es = elsize_of(type), d = x->d;
    unsigned cols_max = type == ENGRAM_FLOAT32 ? ops->cols_max_d_f32 : ops->cols_max_d_f64;
    if (cols_max > 0 && d <= cols_max) {
        p.cols = 1;
        p.mr = COLS_CALL_ROWS;
        p.nr = 16;
        p.nb = ENGRAM_SIM_COLS;
        p.ldo = p.nb;
        return p;
    }
    p.mr = type == ENGRAM_FLOAT32 ? ops->tile_rows_f32 : ops->tile_rows_f64;
    p.nr = type == ENGRAM_FLOAT32 ? ops->tile_cols_f32 : ops->tile_cols_f64;
    p.nb = (CORPUS_BLOCK_ROWS + p.nr - 1) / p.nr * p.nr;
    p.ldo = p.nb;
    /* equal chunks, each <= CHUNK_BYTES and a multiple of 16 elements */
    size_t max_chunk = CHUNK_BYTES / es;
    if (type == ENGRAM_FLOAT32 && ops->f32_chunk < max_chunk) max_chunk = ops->f32_chunk;
    size_t chunks = d ? (d + max_chunk - 1) / max_chunk : 1;
    size_t chunk = (d + chunks - 1) / chunks;
    p.chunk = (chunk + 15) / 16 * 16;
    if (p.chunk == 0) p.chunk = 16;
    /* rows that do not start on cache lines are packed (see row_table) */
    if (!rows_line_aligned(x)) p.packed_x_stride = (d * es + 63) / 64 * 64;
    return p;
}

/*
 * Block sizes for a worker that scores `rows` query rows against `cols`
 * corpus rows, with `heap_bytes` of top-k heap per query row when heaps are
 * kept per query block: everything it allocates (see tile_task_scratch)
 * within WORKER_SCRATCH_BYTES, query blocks of equal size.
 */
static void plan_blocks(tile_plan *p, engram_float_type type, size_t d, size_t rows, size_t cols,
                        size_t heap_bytes) {
    size_t es = elsize_of(type), fixed, per_row;
    if (p->cols) {
        /* the super block: transposed rows, inverse norms, slow positions */
        size_t per_col = d * es + sizeof(double) + sizeof(uint32_t);
        size_t sb = COLS_CORPUS_BYTES / per_col / p->nb * p->nb;
        size_t needed = (cols + p->nb - 1) / p->nb * p->nb;
        if (sb > needed) sb = needed;
        if (sb < p->nb) sb = p->nb;
        p->sb = sb;
        fixed = sb * per_col + (sb / p->nb) * sizeof(size_t) +
                ((size_t)p->mr * p->ldo + 2 * p->nb) * sizeof(double);
        /* query rows are read in place: counted for the cache, not allocated */
        per_row = d * es + sizeof(double);
    } else {
        fixed = (size_t)p->nr * p->chunk * es + 3 * p->nb * sizeof(double);
        per_row = p->ldo * sizeof(double) + sizeof(double) + sizeof(void *) +
                  (p->packed_x_stride ? p->packed_x_stride : d * es);
    }
    fixed += SCRATCH_SLACK;
    per_row += heap_bytes;
    size_t qb_max = fixed < WORKER_SCRATCH_BYTES ? (WORKER_SCRATCH_BYTES - fixed) / per_row : 0;
    qb_max = qb_max / p->mr * p->mr;
    if (qb_max < p->mr) qb_max = p->mr;
    size_t blocks = rows ? (rows + qb_max - 1) / qb_max : 1;
    size_t qb = rows ? (rows + blocks - 1) / blocks : 1;
    p->qb = (qb + p->mr - 1) / p->mr * p->mr;
}

/* Walks the cache lines of a range of rows, a few per step, prefetching them into cache. */
typedef struct prefetcher {
    const char *row;     /* start of the current row's first line */
    ptrdiff_t stride;    /* bytes between rows */
    size_t rows_left;    /* rows from `row` on */
    size_t line, lines;  /* next line in the row, lines per row */
    size_t per_step;
} prefetcher;

/* `rows` rows of `bytes` bytes from `first`, spread over `steps` calls of prefetch_step(). */
static void prefetch_start(prefetcher *pf, const void *first, ptrdiff_t stride, size_t rows,
                           size_t bytes, size_t steps) {
    uintptr_t start = (uintptr_t)first;
    pf->rows_left = bytes && first ? rows : 0;
    pf->row = pf->rows_left ? (const char *)first - start % 64 : NULL;
    pf->stride = stride;
    pf->line = 0;
    pf->lines = (start % 64 + bytes + 63) / 64;
    size_t total = pf->rows_left * pf->lines;
    pf->per_step = steps ? total / steps + 1 : total;
}

/* for_write: the lines are about to be stored to, so ask for them exclusive (no later upgrade) */
static inline void prefetch_step(prefetcher *pf, int for_write) {
    for (size_t k = pf->per_step; k > 0 && pf->rows_left; k--) {
        if (for_write) __builtin_prefetch(pf->row + pf->line * 64, 1, 3);
        else __builtin_prefetch(pf->row + pf->line * 64, 0, 2);
        if (++pf->line == pf->lines) {
            pf->line = 0;
            pf->row += pf->stride;
            pf->rows_left--;
        }
    }
}

/*
 * Pointers to rows [lo, hi) of v, then the last row repeated up to `count`
 * entries, so every tile of the block is full (the padding's results land
 * in the score block's spare rows and are ignored).  With `packed`, the rows
 * are first copied there at `packed_stride` bytes: NumPy buffers usually
 * start 16 bytes into a cache line, and every vector load of such a row
 * straddles two lines.
 */
static void row_table(const rows_view *v, size_t lo, size_t hi, size_t count, void *table,
                      engram_float_type type, char *packed, size_t packed_stride) {
    size_t row_bytes = v->d * elsize_of(type);
    for (size_t i = 0; i < count; i++) {
        const void *row = row_at(v, lo + i < hi ? lo + i : hi - 1);
        if (packed && lo + i < hi) {
            row = memcpy(packed + i * packed_stride, row, row_bytes);
        } else if (packed) {
            row = type == ENGRAM_FLOAT32 ? (const void *)((const float **)table)[i - 1]
                                         : (const void *)((const double **)table)[i - 1];
        }
        if (type == ENGRAM_FLOAT32) ((const float **)table)[i] = row;
        else ((const double **)table)[i] = row;
    }
}

/*
 * dots[i * ldo + j] = x_i . y_{c0+j} for the query block in `x_table` and
 * the corpus block.  Each panel chunk is first copied into `panel`, 64-byte
 * aligned rows: NumPy buffers usually start 16 bytes into a cache line, and
 * every load of an unaligned row would straddle two lines (measured here:
 * 25 % slower).  The copy is read from L1 by every query group of the block.
 */
static void block_dots(const engram_similarity_ops *ops, engram_float_type type,
                       const tile_plan *p, const void *x_table, size_t groups, const rows_view *y,
                       size_t c0, size_t c1, double *dots, void *panel, prefetcher *next_block,
                       prefetcher *out_lines) {
    const float *y32[ENGRAM_SIM_TILE_MAX];
    const double *y64[ENGRAM_SIM_TILE_MAX];
    size_t d = y->d, es = elsize_of(type);
    for (size_t j = c0; j < c1; j += p->nr) {
        size_t k0 = 0;
        do {
            size_t len = d - k0 < p->chunk ? d - k0 : p->chunk;
            for (unsigned t = 0; t < p->nr; t++) {
                if (j + t < c1) {
                    char *dst = (char *)panel + (size_t)t * p->chunk * es;
                    memcpy(dst, (const char *)row_at(y, j + t) + k0 * es, len * es);
                    y32[t] = (const float *)dst;
                    y64[t] = (const double *)dst;
                } else { /* rows past the block repeat its last row */
                    y32[t] = y32[t - 1];
                    y64[t] = y64[t - 1];
                }
            }
            double *out = dots + (j - c0);
            for (size_t g = 0; g < groups; g++, out += p->mr * p->ldo) {
                if (type == ENGRAM_FLOAT32)
                    ops->dot_tile_f32((const float *const *)x_table + g * p->mr, k0, y32, len, out,
                                      p->ldo, k0 != 0);
                else
                    ops->dot_tile_f64((const double *const *)x_table + g * p->mr, k0, y64, len,
                                      out, p->ldo, k0 != 0);
                prefetch_step(next_block, 0);
                prefetch_step(out_lines, 1);
            }
            k0 += len;
        } while (k0 < d);
    }
}

/* One worker's scratch (see plan_blocks for its budget). */
typedef struct worker_scratch {
    double *dots;           /* tiles: qb x ldo; cols: mr x ldo */
    double *x_inv;          /* the query block's inverse norms */
    double *y_inv;          /* tiles: nb; cols: the super block's sb */
    uint32_t *slow;         /* positions of y_inv that are not > 0 (same length) */
    size_t *slow_count;     /* cols: per corpus block of the super block */
    score_scratch score;    /* nb scores and indices */
    void *row_table;        /* tiles: qb row pointers */
    void *panel;            /* tiles: the packed panel; cols: the transposed super block */
    char *packed_x;         /* tiles: the query block's packed rows, or NULL */
    topk_heap *heaps;       /* top-k with heaps per query block: qb heaps ... */
    scored *items;          /* ... of cap entries each */
} worker_scratch;

typedef struct tile_task {
    const engram_similarity_ops *ops;
    engram_float_type type;
    engram_metric metric;
    tile_plan plan;
    rows_view x, y;
    int split_x; /* workers split x rows (else y rows) */
    /* cosine matrix out ... */
    char *out;
    ptrdiff_t out_row_stride, out_col_stride;
    /* ... or top-k: the heaps of every (worker, x row), merged after the workers ... */
    topk_heap *heaps;
    /* ... or (local_heaps) each worker's heaps of one query block, stored as it ends */
    int local_heaps;
    size_t k, cap;
    char *scores;
    int64_t *ids;
    worker_scratch *scratch; /* one per worker */
} tile_task;

/* Ranges of x and y rows worker w scores. */
static void task_ranges(const tile_task *t, unsigned w, unsigned n_workers, size_t *x_lo,
                        size_t *x_hi, size_t *y_lo, size_t *y_hi) {
    *x_lo = 0, *x_hi = t->x.n, *y_lo = 0, *y_hi = t->y.n;
    if (t->split_x) worker_range(t->x.n, t->plan.mr, w, n_workers, x_lo, x_hi);
    else worker_range(t->y.n, t->plan.nr, w, n_workers, y_lo, y_hi);
}

/* Start of query block [q0, q1): its inverse norms and, with local heaps, empty heaps. */
static void query_block_begin(const tile_task *t, worker_scratch *s, size_t q0, size_t q1) {
    inverse_norms(t->ops, t->type, &t->x, q0, q1, s->x_inv);
    if (t->local_heaps)
        for (size_t i = 0; i < q1 - q0; i++) heap_init(&s->heaps[i], s->items + i * t->cap, t->cap);
}

/* End of query block [q0, q1): with local heaps, its queries' results are final. */
static void query_block_end(const tile_task *t, worker_scratch *s, size_t q0, size_t q1) {
    if (!t->local_heaps) return;
    size_t es = elsize_of(t->type);
    for (size_t i = q0; i < q1; i++) {
        topk_heap *h = &s->heaps[i - q0];
        store_ranked(t->type, h->items, h->size, t->k, t->scores + i * t->k * es, t->ids + i * t->k);
    }
}

/* Where the scores of x row i against corpus rows from c0 go. */
static inline score_sink sink_of(const tile_task *t, worker_scratch *s, unsigned w, size_t i,
                                 size_t q0, size_t c0) {
    score_sink sink = {NULL, t->out_col_stride, NULL, (int64_t)c0};
    if (t->local_heaps) sink.heap = &s->heaps[i - q0];
    else if (t->heaps) sink.heap = &t->heaps[(size_t)w * t->x.n + i];
    else sink.out = t->out + (ptrdiff_t)i * t->out_row_stride + (ptrdiff_t)c0 * t->out_col_stride;
    return sink;
}

static void tile_worker(void *ctx, unsigned w, unsigned n_workers) {
    tile_task *t = ctx;
    const tile_plan *p = &t->plan;
    worker_scratch *s = &t->scratch[w];
    size_t es = elsize_of(t->type);
    size_t x_lo, x_hi, y_lo, y_hi;
    task_ranges(t, w, n_workers, &x_lo, &x_hi, &y_lo, &y_hi);
    size_t panels = (p->nb + p->nr - 1) / p->nr;
    size_t chunks = t->x.d ? (t->x.d + p->chunk - 1) / p->chunk : 1;
    /* prefetching the output for writing only pays where it is written in place */
    int out_lines_ok = t->out != NULL && t->out_col_stride == (ptrdiff_t)es;
    for (size_t q0 = x_lo; q0 < x_hi; q0 += p->qb) {
        size_t q1 = x_hi - q0 < p->qb ? x_hi : q0 + p->qb;
        size_t groups = (q1 - q0 + p->mr - 1) / p->mr;
        row_table(&t->x, q0, q1, groups * p->mr, s->row_table, t->type, s->packed_x,
                  p->packed_x_stride);
        query_block_begin(t, s, q0, q1);
        for (size_t c0 = y_lo; c0 < y_hi; c0 += p->nb) {
            size_t c1 = y_hi - c0 < p->nb ? y_hi : c0 + p->nb;
            size_t next_end = y_hi - c1 < p->nb ? y_hi : c1 + p->nb;
            /* while the tiles run: the next corpus block, and the output this block will write */
            size_t steps = groups * panels * chunks;
            prefetcher next_block, out_lines;
            prefetch_start(&next_block, c1 < next_end ? row_at(&t->y, c1) : NULL, t->y.stride,
                           next_end - c1, t->y.d * es, steps);
            prefetch_start(&out_lines,
                           out_lines_ok ? t->out + (ptrdiff_t)q0 * t->out_row_stride + (ptrdiff_t)(c0 * es) : NULL,
                           t->out_row_stride, q1 - q0, (c1 - c0) * es, steps);
            inverse_norms(t->ops, t->type, &t->y, c0, c1, s->y_inv);
            block_rows yb = {&t->y, c0, c1 - c0, s->y_inv, s->slow,
                             slow_positions(s->y_inv, c1 - c0, s->slow)};
            block_dots(t->ops, t->type, p, s->row_table, groups, &t->y, c0, c1, s->dots, s->panel,
                       &next_block, &out_lines);
            for (size_t i = q0; i < q1; i++) {
                score_sink sink = sink_of(t, s, w, i, q0, c0);
                score_block_row(t->ops, t->type, t->metric, s->dots + (i - q0) * p->ldo,
                                row_at(&t->x, i), s->x_inv[i - q0], &yb, &sink, &s->score);
            }
        }
        query_block_end(t, s, q0, q1);
    }
}

/* Corpus rows [c0, c1) transposed: yt[k * ENGRAM_SIM_COLS + j] = y_{c0+j}[k], zero past c1. */
static void transpose_block(engram_float_type type, const rows_view *y, size_t c0, size_t c1,
                            void *yt) {
    size_t d = y->d, n = c1 - c0;
    if (type == ENGRAM_FLOAT32) {
        float *o = yt;
        for (size_t j = 0; j < n; j++) {
            const float *row = row_at(y, c0 + j);
            for (size_t k = 0; k < d; k++) o[k * ENGRAM_SIM_COLS + j] = row[k];
        }
        for (size_t k = 0; k < d && n < ENGRAM_SIM_COLS; k++)
            memset(o + k * ENGRAM_SIM_COLS + n, 0, (ENGRAM_SIM_COLS - n) * sizeof(float));
    } else {
        double *o = yt;
        for (size_t j = 0; j < n; j++) {
            const double *row = row_at(y, c0 + j);
            for (size_t k = 0; k < d; k++) o[k * ENGRAM_SIM_COLS + j] = row[k];
        }
        for (size_t k = 0; k < d && n < ENGRAM_SIM_COLS; k++)
            memset(o + k * ENGRAM_SIM_COLS + n, 0, (ENGRAM_SIM_COLS - n) * sizeof(double));
    }
}

static void cols_worker(void *ctx, unsigned w, unsigned n_workers) {
    tile_task *t = ctx;
    const tile_plan *p = &t->plan;
    worker_scratch *s = &t->scratch[w];
    size_t es = elsize_of(t->type), d = t->x.d;
    size_t x_lo, x_hi, y_lo, y_hi;
    task_ranges(t, w, n_workers, &x_lo, &x_hi, &y_lo, &y_hi);
    size_t block_bytes = d * ENGRAM_SIM_COLS * es; /* one transposed corpus block */
    ptrdiff_t x_stride = t->x.stride / (ptrdiff_t)es;
    for (size_t q0 = x_lo; q0 < x_hi; q0 += p->qb) {
        size_t q1 = x_hi - q0 < p->qb ? x_hi : q0 + p->qb;
        query_block_begin(t, s, q0, q1);
        for (size_t s0 = y_lo; s0 < y_hi; s0 += p->sb) {
            size_t s1 = y_hi - s0 < p->sb ? y_hi : s0 + p->sb;
            size_t blocks = (s1 - s0 + p->nb - 1) / p->nb;
            inverse_norms(t->ops, t->type, &t->y, s0, s1, s->y_inv);
            for (size_t b = 0; b < blocks; b++) {
                size_t c0 = s0 + b * p->nb, c1 = s1 - c0 < p->nb ? s1 : c0 + p->nb;
                transpose_block(t->type, &t->y, c0, c1, (char *)s->panel + b * block_bytes);
                s->slow_count[b] = slow_positions(s->y_inv + (c0 - s0), c1 - c0, s->slow + (c0 - s0));
            }
            for (size_t g0 = q0; g0 < q1; g0 += p->mr) {
                size_t g1 = q1 - g0 < p->mr ? q1 : g0 + p->mr;
                for (size_t b = 0; b < blocks; b++) {
                    size_t c0 = s0 + b * p->nb, c1 = s1 - c0 < p->nb ? s1 : c0 + p->nb;
                    const void *yt = (const char *)s->panel + b * block_bytes;
                    if (t->type == ENGRAM_FLOAT32)
                        t->ops->dot_cols_f32(row_at(&t->x, g0), x_stride, g1 - g0, yt, d, s->dots,
                                             p->ldo);
                    else
                        t->ops->dot_cols_f64(row_at(&t->x, g0), x_stride, g1 - g0, yt, d, s->dots,
                                             p->ldo);
                    block_rows yb = {&t->y, c0, c1 - c0, s->y_inv + (c0 - s0), s->slow + (c0 - s0),
                                     s->slow_count[b]};
                    for (size_t i = g0; i < g1; i++) {
                        score_sink sink = sink_of(t, s, w, i, q0, c0);
                        score_block_row(t->ops, t->type, t->metric, s->dots + (i - g0) * p->ldo,
                                        row_at(&t->x, i), s->x_inv[i - q0], &yb, &sink, &s->score);
                    }
                }
            }
        }
        query_block_end(t, s, q0, q1);
    }
}

/*
 * Size the blocks for n_workers and allocate their scratch.  heap_bytes:
 * top-k heap bytes per query row when heaps are kept per query block.
 */
static int tile_task_prepare(engram_arena *arena, tile_task *t, unsigned n_workers,
                             size_t heap_bytes) {
    tile_plan *p = &t->plan;
    size_t es = elsize_of(t->type), d = t->x.d;
    /* one worker's share of the split side */
    size_t rows = t->x.n, cols = t->y.n;
    if (t->split_x) rows = ((t->x.n + p->mr - 1) / p->mr + n_workers - 1) / n_workers * p->mr;
    else cols = ((t->y.n + p->nr - 1) / p->nr + n_workers - 1) / n_workers * p->nr;
    plan_blocks(p, t->type, d, rows, cols, heap_bytes);
    t->scratch = arena_array(arena, n_workers, sizeof(worker_scratch));
    if (t->scratch == NULL) return -1;
    for (unsigned w = 0; w < n_workers; w++) {
        worker_scratch *s = &t->scratch[w];
        memset(s, 0, sizeof *s);
        size_t y_len = p->cols ? p->sb : p->nb;
        s->dots = arena_array(arena, (p->cols ? p->mr : p->qb) * p->ldo, sizeof(double));
        s->x_inv = arena_array(arena, p->qb, sizeof(double));
        s->y_inv = arena_array(arena, y_len, sizeof(double));
        s->slow = arena_array(arena, y_len, sizeof(uint32_t));
        s->score.scores = arena_array(arena, p->nb, sizeof(double));
        s->score.idx = arena_array(arena, p->nb, sizeof(uint32_t));
        if (!s->dots || !s->x_inv || !s->y_inv || !s->slow || !s->score.scores || !s->score.idx)
            return -1;
        if (p->cols) {
            size_t blocks = p->sb / p->nb;
            s->slow_count = arena_array(arena, blocks, sizeof(size_t));
            s->panel = arena_array(arena, blocks * ENGRAM_SIM_COLS, (d ? d : 1) * es);
            if (!s->slow_count || !s->panel) return -1;
        } else {
            s->row_table = arena_array(arena, p->qb, sizeof(void *));
            /* chunk is a multiple of 16 elements: every packed row starts on a 64-byte line */
            s->panel = arena_array(arena, p->nr, p->chunk * es);
            if (!s->row_table || !s->panel) return -1;
            if (p->packed_x_stride) {
                s->packed_x = arena_array(arena, p->qb, p->packed_x_stride);
                if (s->packed_x == NULL) return -1;
            }
        }
        if (t->local_heaps) {
            s->heaps = arena_array(arena, p->qb, sizeof(topk_heap));
            s->items = arena_array(arena, p->qb * (t->cap ? t->cap : 1), sizeof(scored));
            if (!s->heaps || !s->items) return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Entry points                                                        */
/* ------------------------------------------------------------------ */

engram_status engram_cosine_vectors(engram_arena *arena, engram_float_type type,
                                    const engram_vectors *xv, const engram_vectors *yv,
                                    double *result) {
    rows_view x, y;
    if (contiguous_rows(arena, type, xv, &x) < 0 || contiguous_rows(arena, type, yv, &y) < 0)
        return ENGRAM_ERR_NOMEM;
    *result = type == ENGRAM_FLOAT32 ? engram_cosine_pair_f32(x.base, y.base, x.d)
                                     : engram_cosine_pair_f64(x.base, y.base, x.d);
    return ENGRAM_OK;
}

static size_t work_of(size_t m, size_t n, size_t d) {
    size_t work = m * n;
    return d && work > SIZE_MAX / d ? SIZE_MAX : work * (d ? d : 1);
}

engram_status engram_cosine(engram_arena *arena, engram_float_type type,
                            const engram_vectors *xv, const engram_vectors *yv, void *out,
                            ptrdiff_t out_row_stride_bytes, ptrdiff_t out_col_stride_bytes,
                            int threads) {
    const engram_similarity_ops *ops = engram_similarity();
    size_t m = xv->n, n = yv->n, d = xv->d;
    if (m == 0 || n == 0) return ENGRAM_OK;
    rows_view x, y;
    if (contiguous_rows(arena, type, xv, &x) < 0 || contiguous_rows(arena, type, yv, &y) < 0)
        return ENGRAM_ERR_NOMEM;
    if (m == 1 || n == 1) {
        /* one vector against many rows: stream the rows once */
        int x_is_vector = m == 1;
        stream_task t = {
            .ops = ops,
            .type = type,
            .metric = ENGRAM_METRIC_COSINE,
            .q = x_is_vector ? x.base : y.base,
            .rows = x_is_vector ? y : x,
            .out = out,
            .out_stride = x_is_vector ? out_col_stride_bytes : out_row_stride_bytes,
        };
        t.q_inv = vector_inverse_norm(ops, type, t.q, d);
        unsigned nt = engram_threads_for(threads, t.rows.n * (d ? d : 1), STREAM_PARALLEL_WORK,
                                         (t.rows.n + BLOCK_ROWS - 1) / BLOCK_ROWS);
        t.scratch = arena_array(arena, (size_t)nt * STREAM_SCRATCH_DOUBLES, sizeof(double));
        if (t.scratch == NULL) return ENGRAM_ERR_NOMEM;
        t.block_rows = stream_block_rows(t.rows.n, nt);
        engram_parallel(nt, stream_worker, &t);
        return ENGRAM_OK;
    }
    tile_task t = {
        .ops = ops,
        .type = type,
        .metric = ENGRAM_METRIC_COSINE,
        .x = x,
        .y = y,
        .out = out,
        .out_row_stride = out_row_stride_bytes,
        .out_col_stride = out_col_stride_bytes,
    };
    t.plan = make_plan(ops, type, &x);
    /* split the longer side; either way each pair is computed identically */
    t.split_x = m > n;
    size_t units = t.split_x ? (m + t.plan.mr - 1) / t.plan.mr : (n + t.plan.nr - 1) / t.plan.nr;
    unsigned nt = engram_threads_for(threads, work_of(m, n, d), TILE_PARALLEL_WORK, units);
    if (tile_task_prepare(arena, &t, nt, 0) < 0) return ENGRAM_ERR_NOMEM;
    engram_parallel(nt, t.plan.cols ? cols_worker : tile_worker, &t);
    return ENGRAM_OK;
}

engram_status engram_top_k(engram_arena *arena, engram_float_type type,
                           const engram_vectors *qv, const engram_vectors *cv, size_t k,
                           engram_metric metric, void *scores, int64_t *ids, int threads) {
    const engram_similarity_ops *ops = engram_similarity();
    size_t m = qv->n, n = cv->n, d = qv->d, es = elsize_of(type);
    if (m == 0 || k == 0) return ENGRAM_OK;
    rows_view x, y;
    if (contiguous_rows(arena, type, qv, &x) < 0 || contiguous_rows(arena, type, cv, &y) < 0)
        return ENGRAM_ERR_NOMEM;
    size_t cap = k < n ? k : n;
    size_t work = work_of(m, n, d);
    unsigned nt;
    topk_heap *heaps;
    if (m == 1) {
        stream_task t = {
            .ops = ops, .type = type, .metric = metric, .q = x.base, .rows = y,
        };
        t.q_inv = vector_inverse_norm(ops, type, x.base, d);
        nt = engram_threads_for(threads, work, STREAM_PARALLEL_WORK,
                                n ? (n + BLOCK_ROWS - 1) / BLOCK_ROWS : 1);
        heaps = arena_array(arena, nt, sizeof(topk_heap));
        scored *items = arena_array(arena, (size_t)nt * (cap ? cap : 1), sizeof(scored));
        t.scratch = arena_array(arena, (size_t)nt * STREAM_SCRATCH_DOUBLES, sizeof(double));
        if (heaps == NULL || items == NULL || t.scratch == NULL) return ENGRAM_ERR_NOMEM;
        for (unsigned w = 0; w < nt; w++) heap_init(&heaps[w], items + (size_t)w * cap, cap);
        t.heaps = heaps;
        t.block_rows = stream_block_rows(n, nt);
        engram_parallel(nt, stream_worker, &t);
    } else {
        tile_task t = {
            .ops = ops, .type = type, .metric = metric, .x = x, .y = y,
            .k = k, .cap = cap, .scores = scores, .ids = ids,
        };
        t.plan = make_plan(ops, type, &x);
        size_t heap_bytes = sizeof(topk_heap) + cap * sizeof(scored);
        /*
         * Few queries against a longer corpus: split the corpus and merge the
         * workers' heaps of every query.  Otherwise split the queries; each
         * worker stores its queries' results as their block ends.
         */
        nt = engram_threads_for(threads, work, TILE_PARALLEL_WORK,
                                n ? (n + t.plan.nr - 1) / t.plan.nr : 1);
        int shared = nt > 1 && m <= n && heap_bytes <= SHARED_HEAPS_BYTES / m / nt;
        if (!shared) {
            t.split_x = 1;
            t.local_heaps = 1;
            nt = engram_threads_for(threads, work, TILE_PARALLEL_WORK, (m + t.plan.mr - 1) / t.plan.mr);
        }
        if (tile_task_prepare(arena, &t, nt, shared ? 0 : heap_bytes) < 0) return ENGRAM_ERR_NOMEM;
        if (shared) {
            heaps = arena_array(arena, (size_t)nt * m, sizeof(topk_heap));
            scored *items = arena_array(arena, (size_t)nt * m * (cap ? cap : 1), sizeof(scored));
            if (heaps == NULL || items == NULL) return ENGRAM_ERR_NOMEM;
            for (size_t h = 0; h < (size_t)nt * m; h++) heap_init(&heaps[h], items + h * cap, cap);
            t.heaps = heaps;
        }
        engram_parallel(nt, t.plan.cols ? cols_worker : tile_worker, &t);
        if (!shared) return ENGRAM_OK;
        heaps = t.heaps;
    }
    /* merge: worker w's heap of query i is heaps[w * m + i] (m == 1: heaps[w]) */
    scored *buffer = arena_array(arena, (size_t)nt * (cap ? cap : 1), sizeof(scored));
    topk_heap **per_query = arena_array(arena, nt, sizeof(topk_heap *));
    if (buffer == NULL || per_query == NULL) return ENGRAM_ERR_NOMEM;
    for (size_t i = 0; i < m; i++) {
        for (unsigned w = 0; w < nt; w++) per_query[w] = &heaps[(size_t)w * m + i];
        merge_heaps(type, per_query, nt, buffer, k, (char *)scores + i * k * es, ids + i * k);
    }
    return ENGRAM_OK;
}

/* Elements [0, d) of a contiguous row to out with `stride` bytes between elements (memcpy: any alignment). */
static void scatter_row(engram_float_type type, char *dst, ptrdiff_t stride, const void *src,
                        size_t d) {
    size_t es = elsize_of(type);
    for (size_t j = 0; j < d; j++) memcpy(dst + (ptrdiff_t)j * stride, (const char *)src + j * es, es);
}

engram_status engram_normalize(engram_arena *arena, engram_float_type type,
                               const engram_vectors *xv, void *out,
                               ptrdiff_t out_row_stride_bytes, ptrdiff_t out_col_stride_bytes) {
    const engram_similarity_ops *ops = engram_similarity();
    size_t n = xv->n, d = xv->d, es = elsize_of(type);
    if (n == 0 || d == 0) return ENGRAM_OK;
    rows_view x;
    if (contiguous_rows(arena, type, xv, &x) < 0) return ENGRAM_ERR_NOMEM;
    /* rows are written in place when out's are contiguous and aligned, else through `row` */
    int direct = (d == 1 || out_col_stride_bytes == (ptrdiff_t)es) &&
                 (uintptr_t)out % es == 0 && out_row_stride_bytes % (ptrdiff_t)es == 0;
    char *row_scratch = NULL;
    if (!direct && (row_scratch = arena_array(arena, d, es)) == NULL) return ENGRAM_ERR_NOMEM;
    double inv[BLOCK_ROWS];
    for (size_t b = 0; b < n; b += BLOCK_ROWS) {
        size_t nb = n - b < BLOCK_ROWS ? n - b : BLOCK_ROWS;
        /* norms of the whole block first: out may be x itself */
        inverse_norms(ops, type, &x, b, b + nb, inv);
        for (size_t i = 0; i < nb; i++) {
            const void *row = row_at(&x, b + i);
            char *target = (char *)out + (ptrdiff_t)(b + i) * out_row_stride_bytes;
            char *dst = direct ? target : row_scratch;
            double s = inv[i];
            if (ENGRAM_LIKELY(s > 0)) {
                if (type == ENGRAM_FLOAT32) ops->scale_f32(row, s, (float *)dst, d);
                else ops->scale_f64(row, s, (double *)dst, d);
            } else if (isnan(s)) {
                for (size_t j = 0; j < d; j++) store_score(type, dst, j, NAN);
            } else if (s == 0) {
                memmove(dst, row, d * es); /* keeps the signs of zeros */
            } else {
                /* scaled: the largest element becomes [0.5, 1), then divide by the norm */
                double mx = type == ENGRAM_FLOAT32 ? max_abs_f32(row, d) : max_abs_f64(row, d);
                double s1, s2, nn = 0;
                scale_factors(mx, &s1, &s2);
                for (size_t j = 0; j < d; j++) {
                    double a = (type == ENGRAM_FLOAT32 ? (double)((const float *)row)[j]
                                                       : ((const double *)row)[j]) * s1 * s2;
                    nn += a * a;
                }
                double r = 1.0 / sqrt(nn);
                for (size_t j = 0; j < d; j++) {
                    double a = (type == ENGRAM_FLOAT32 ? (double)((const float *)row)[j]
                                                       : ((const double *)row)[j]) * s1 * s2;
                    store_score(type, dst, j, a * r);
                }
            }
            if (!direct) scatter_row(type, target, out_col_stride_bytes, dst, d);
        }
    }
    return ENGRAM_OK;
}
