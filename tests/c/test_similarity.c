/* similarity: each SIMD level against the scalar table, and the entry points at that level. */
#include "ctest.h"

#include <float.h>
#include <string.h>

static const size_t dims[] = {0,   1,   2,   3,   4,   5,    7,    8,    9,    15,  16,
                              17,  31,  32,  33,  63,  64,   65,   127,  128,  129, 767,
                              768, 769, 1023, 1024, 1025, 1537, 2049, 4096, 5000};
#define N_DIMS (sizeof dims / sizeof dims[0])
#define MAX_D 5000
#define MAX_ROWS 9
/* rows are stored with padding so a row stride differs from d */
#define ROW_PAD 3

static float xs32[MAX_ROWS][MAX_D + ROW_PAD], ys32[MAX_ROWS][MAX_D + ROW_PAD];
static double xs64[MAX_ROWS][MAX_D + ROW_PAD], ys64[MAX_ROWS][MAX_D + ROW_PAD];

static void fill(uint64_t *seed) {
    for (int r = 0; r < MAX_ROWS; r++)
        for (int i = 0; i < MAX_D + ROW_PAD; i++) {
            xs64[r][i] = ctest_uniform(seed);
            ys64[r][i] = ctest_uniform(seed);
            xs32[r][i] = (float)xs64[r][i];
            ys32[r][i] = (float)ys64[r][i];
        }
}

/* |a - b| <= tol * scale, NaN only with NaN */
static int close_to(double a, double b, double tol, double scale) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return fabs(a - b) <= tol * (scale > 1e-300 ? scale : 1e-300);
}

static void check_pairs(ctest *t, const engram_similarity_ops *ops,
                        const engram_similarity_ops *spec) {
    for (size_t k = 0; k < N_DIMS; k++) {
        size_t d = dims[k];
        double got[3], want[3];
        ops->pair_f32(xs32[0], ys32[0], d, got);
        spec->pair_f32(xs32[0], ys32[0], d, want);
        double scale = sqrt(want[1] * want[2]);
        CTEST_CHECK(t, close_to(got[0], want[0], 2e-7, scale), "pair_f32 dot d=%zu: %.17g vs %.17g",
                    d, got[0], want[0]);
        CTEST_CHECK(t, close_to(got[1], want[1], 2e-7, want[1]) && close_to(got[2], want[2], 2e-7, want[2]),
                    "pair_f32 norms d=%zu", d);
        ops->pair_f64(xs64[0], ys64[0], d, got);
        spec->pair_f64(xs64[0], ys64[0], d, want);
        scale = sqrt(want[1] * want[2]);
        CTEST_CHECK(t, close_to(got[0], want[0], 1e-14, scale) && close_to(got[1], want[1], 1e-14, want[1]) &&
                           close_to(got[2], want[2], 1e-14, want[2]),
                    "pair_f64 d=%zu: %.17g vs %.17g", d, got[0], want[0]);
    }
}

static void check_rows(ctest *t, const engram_similarity_ops *ops,
                       const engram_similarity_ops *spec) {
    ptrdiff_t stride = MAX_D + ROW_PAD;
    double dot[MAX_ROWS], nrm[MAX_ROWS], wdot[MAX_ROWS], wnrm[MAX_ROWS];
    static const size_t counts[] = {0, 1, 3, 4, 5, 9};
    for (size_t k = 0; k < N_DIMS; k++) {
        size_t d = dims[k];
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            size_t n = counts[c];
            ops->one_to_many_f32(ys32[0], xs32[0], stride, n, d, dot, nrm);
            spec->one_to_many_f32(ys32[0], xs32[0], stride, n, d, wdot, wnrm);
            double qn[1];
            spec->norm2_rows_f32(ys32[0], stride, 1, d, qn);
            for (size_t r = 0; r < n; r++) {
                CTEST_CHECK(t, close_to(dot[r], wdot[r], 2e-7, sqrt(wnrm[r] * qn[0])),
                            "one_to_many_f32 d=%zu n=%zu row %zu: %.17g vs %.17g", d, n, r, dot[r], wdot[r]);
                CTEST_CHECK(t, close_to(nrm[r], wnrm[r], 2e-7, wnrm[r]), "one_to_many_f32 norm d=%zu", d);
            }
            ops->norm2_rows_f32(xs32[0], stride, n, d, nrm);
            for (size_t r = 0; r < n; r++)
                CTEST_CHECK(t, close_to(nrm[r], wnrm[r], 2e-7, wnrm[r]), "norm2_rows_f32 d=%zu", d);
            ops->one_to_many_f64(ys64[0], xs64[0], stride, n, d, dot, nrm);
            spec->one_to_many_f64(ys64[0], xs64[0], stride, n, d, wdot, wnrm);
            spec->norm2_rows_f64(ys64[0], stride, 1, d, qn);
            for (size_t r = 0; r < n; r++) {
                CTEST_CHECK(t, close_to(dot[r], wdot[r], 1e-14, sqrt(wnrm[r] * qn[0])),
                            "one_to_many_f64 d=%zu n=%zu", d, n);
                CTEST_CHECK(t, close_to(nrm[r], wnrm[r], 1e-14, wnrm[r]), "one_to_many_f64 norm d=%zu", d);
            }
            ops->norm2_rows_f64(xs64[0], stride, n, d, nrm);
            for (size_t r = 0; r < n; r++)
                CTEST_CHECK(t, close_to(nrm[r], wnrm[r], 1e-14, wnrm[r]), "norm2_rows_f64 d=%zu", d);
        }
    }
}

/* Tiles: against scalar dots, with and without accumulation, and slot independence. */
static void check_tiles(ctest *t, const engram_similarity_ops *ops) {
    unsigned mr = ops->tile_rows_f32, nr = ops->tile_cols_f32;
    CTEST_CHECK(t, mr >= 1 && nr >= 1 && mr <= ENGRAM_SIM_TILE_MAX && nr <= ENGRAM_SIM_TILE_MAX &&
                       ops->tile_rows_f64 <= ENGRAM_SIM_TILE_MAX && ops->tile_cols_f64 <= ENGRAM_SIM_TILE_MAX,
                "tile shape");
    const float *xr[ENGRAM_SIM_TILE_MAX], *yr[ENGRAM_SIM_TILE_MAX], *xp[ENGRAM_SIM_TILE_MAX];
    const double *xr64[ENGRAM_SIM_TILE_MAX], *yr64[ENGRAM_SIM_TILE_MAX];
    double out[ENGRAM_SIM_TILE_MAX * ENGRAM_SIM_TILE_MAX], perm[ENGRAM_SIM_TILE_MAX * ENGRAM_SIM_TILE_MAX];
    for (size_t k = 0; k < N_DIMS; k++) {
        size_t d = dims[k];
        if (d > ops->f32_chunk) continue;
        size_t starts[2] = {0, d > 8 ? 5 : 0};
        for (int s = 0; s < 2; s++) {
            size_t k0 = starts[s], k1 = d > 8 && s ? d - 3 : d, len = k1 - k0;
            for (unsigned r = 0; r < mr; r++) xr[r] = xs32[r % MAX_ROWS];
            /* y rows start at the chunk (as the driver's packed panel does) */
            for (unsigned c = 0; c < nr; c++) yr[c] = ys32[c % MAX_ROWS] + k0;
            for (unsigned i = 0; i < mr * nr; i++) out[i] = 0.25 * i;
            ops->dot_tile_f32(xr, k0, yr, len, out, nr, 1);
            for (unsigned r = 0; r < mr; r++)
                for (unsigned c = 0; c < nr; c++) {
                    double want = 0, xx = 0, yy = 0;
                    for (size_t i = 0; i < len; i++) {
                        want += (double)xr[r][k0 + i] * yr[c][i];
                        xx += (double)xr[r][k0 + i] * xr[r][k0 + i];
                        yy += (double)yr[c][i] * yr[c][i];
                    }
                    CTEST_CHECK(t, close_to(out[r * nr + c] - 0.25 * (r * nr + c), want, 3e-7, sqrt(xx * yy) + 1),
                                "dot_tile_f32 d=%zu [%zu,%zu) slot %u,%u: %.17g vs %.17g", d, k0, k1, r, c,
                                out[r * nr + c] - 0.25 * (r * nr + c), want);
                }
            /* every slot computes a pair identically: rotate the x rows and compare bitwise */
            ops->dot_tile_f32(xr, k0, yr, len, out, nr, 0);
            for (unsigned r = 0; r < mr; r++) xp[r] = xr[(r + 1) % mr];
            ops->dot_tile_f32(xp, k0, yr, len, perm, nr, 0);
            for (unsigned r = 0; r < mr; r++)
                for (unsigned c = 0; c < nr; c++)
                    CTEST_CHECK(t, perm[r * nr + c] == out[((r + 1) % mr) * nr + c],
                                "dot_tile_f32 slot dependence d=%zu", d);
        }
    }
    unsigned mr64 = ops->tile_rows_f64, nr64 = ops->tile_cols_f64;
    for (size_t k = 0; k < N_DIMS; k++) {
        size_t d = dims[k];
        for (unsigned r = 0; r < mr64; r++) xr64[r] = xs64[(r + 2) % MAX_ROWS];
        for (unsigned c = 0; c < nr64; c++) yr64[c] = ys64[(c + 1) % MAX_ROWS];
        ops->dot_tile_f64(xr64, 0, yr64, d, out, nr64, 0);
        for (unsigned r = 0; r < mr64; r++)
            for (unsigned c = 0; c < nr64; c++) {
                double want = 0, xx = 0, yy = 0;
                for (size_t i = 0; i < d; i++) {
                    want += xr64[r][i] * yr64[c][i];
                    xx += xr64[r][i] * xr64[r][i];
                    yy += yr64[c][i] * yr64[c][i];
                }
                CTEST_CHECK(t, close_to(out[r * nr64 + c], want, 1e-14, sqrt(xx * yy)),
                            "dot_tile_f64 d=%zu", d);
            }
    }
}

/*
 * Small-d columns: against scalar dots over a transposed block (columns past
 * the block zero), and every pair bitwise the same whatever the row count,
 * the row's place in the call and the column's lane.
 */
static void check_cols(ctest *t, const engram_similarity_ops *ops) {
    enum { COLS = ENGRAM_SIM_COLS, ROWS = MAX_ROWS, MAXD = 300 };
    static float yt32[MAXD * COLS], rot32[MAXD * COLS];
    static double yt64[MAXD * COLS], rot64[MAXD * COLS];
    static double out[ROWS * COLS], one[COLS], rot[COLS];
    static const size_t cols_dims[] = {0, 1, 2, 3, 5, 8, 16, 17, 33, 63, 64, 65, 128, 129, 300};
    static const size_t row_counts[] = {1, 2, 3, 4, 5, 8, 9};
    ptrdiff_t stride = MAX_D + ROW_PAD;
    for (size_t di = 0; di < sizeof cols_dims / sizeof cols_dims[0]; di++) {
        size_t d = cols_dims[di], used = 45; /* corpus rows in the block: the rest are zero */
        for (size_t k = 0; k < d; k++)
            for (size_t j = 0; j < COLS; j++) {
                yt32[k * COLS + j] = j < used ? ys32[j % MAX_ROWS][(k + 7 * j) % (MAX_D - 1)] : 0.0f;
                yt64[k * COLS + j] = j < used ? ys64[j % MAX_ROWS][(k + 7 * j) % (MAX_D - 1)] : 0.0;
                /* the same block with its columns rotated by 13 lanes */
                rot32[k * COLS + (j + 13) % COLS] = yt32[k * COLS + j];
                rot64[k * COLS + (j + 13) % COLS] = yt64[k * COLS + j];
            }
        for (size_t ri = 0; ri < sizeof row_counts / sizeof row_counts[0]; ri++) {
            size_t rows = row_counts[ri];
            for (int f64 = 0; f64 < 2; f64++) {
                if (f64) ops->dot_cols_f64(xs64[0], stride, rows, yt64, d, out, COLS);
                else ops->dot_cols_f32(xs32[0], stride, rows, yt32, d, out, COLS);
                for (size_t i = 0; i < rows; i++) {
                    for (size_t j = 0; j < COLS; j++) {
                        double want = 0, xx = 0, yy = 0;
                        for (size_t k = 0; k < d; k++) {
                            double a = f64 ? xs64[i][k] : xs32[i][k];
                            double b = f64 ? yt64[k * COLS + j] : yt32[k * COLS + j];
                            want += a * b;
                            xx += a * a;
                            yy += b * b;
                        }
                        CTEST_CHECK(t, close_to(out[i * COLS + j], want, f64 ? 1e-14 : 3e-7, sqrt(xx * yy) + 1e-300),
                                    "dot_cols_f%d d=%zu rows=%zu [%zu][%zu]: %.17g vs %.17g", f64 ? 64 : 32, d,
                                    rows, i, j, out[i * COLS + j], want);
                    }
                    /* row i alone, and against the rotated block: bitwise the same pairs */
                    if (f64) {
                        ops->dot_cols_f64(xs64[i], stride, 1, yt64, d, one, COLS);
                        ops->dot_cols_f64(xs64[i], stride, 1, rot64, d, rot, COLS);
                    } else {
                        ops->dot_cols_f32(xs32[i], stride, 1, yt32, d, one, COLS);
                        ops->dot_cols_f32(xs32[i], stride, 1, rot32, d, rot, COLS);
                    }
                    int same = 1;
                    for (size_t j = 0; j < COLS; j++)
                        same &= one[j] == out[i * COLS + j] && rot[(j + 13) % COLS] == one[j];
                    CTEST_CHECK(t, same, "dot_cols_f%d d=%zu rows=%zu row %zu depends on its place", f64 ? 64 : 32,
                                d, rows, i);
                }
            }
        }
    }
}

static void check_scale(ctest *t, const engram_similarity_ops *ops) {
    static float out32[MAX_D];
    static double out64[MAX_D];
    for (size_t k = 0; k < N_DIMS; k++) {
        size_t d = dims[k];
        double s = 1.0 / 3.0;
        ops->scale_f32(xs32[1], s, out32, d);
        int same = 1;
        for (size_t i = 0; i < d; i++) same &= out32[i] == (float)((double)xs32[1][i] * s);
        CTEST_CHECK(t, same, "scale_f32 d=%zu not the rounded float64 product", d);
        ops->scale_f64(xs64[1], s, out64, d);
        same = 1;
        for (size_t i = 0; i < d; i++) same &= out64[i] == xs64[1][i] * s;
        CTEST_CHECK(t, same, "scale_f64 d=%zu", d);
    }
}

/* Scores and selection: pure element-wise arithmetic and compares, so bitwise equal to the spec. */
static void check_scores_select(ctest *t, const engram_similarity_ops *ops,
                                const engram_similarity_ops *spec) {
    enum { N = 67 };
    double dots[N], inv[N], got64[N], want64[N];
    float got32[N], want32[N];
    uint32_t gi[N], wi[N];
    for (int j = 0; j < N; j++) {
        dots[j] = 3 * xs64[4][j];
        inv[j] = fabs(ys64[4][j]) + 0.5;
    }
    inv[3] = 0;        /* zero row */
    inv[10] = NAN;     /* NaN row */
    inv[20] = -1;      /* needs the scaled path */
    dots[30] = 1e300;  /* clamped to 1 */
    dots[31] = -1e300; /* clamped to -1 */
    static const size_t lens[] = {0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 33, N};
    for (int metric = 0; metric < 2; metric++)
        for (int xf = 0; xf < 2; xf++)
            for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
                size_t n = lens[l];
                double x_inv = xf ? 0.75 : -1.0;
                ops->scores_f64(dots, inv, x_inv, n, metric, got64);
                spec->scores_f64(dots, inv, x_inv, n, metric, want64);
                ops->scores_f32(dots, inv, x_inv, n, metric, got32);
                spec->scores_f32(dots, inv, x_inv, n, metric, want32);
                int same = 1;
                for (size_t j = 0; j < n; j++)
                    same &= (got64[j] == want64[j] || (isnan(got64[j]) && isnan(want64[j]))) &&
                            (got32[j] == want32[j] || (isnan(got32[j]) && isnan(want32[j])));
                CTEST_CHECK(t, same, "scores metric=%d x_fast=%d n=%zu", metric, xf, n);
                static const double thresholds[] = {NAN, -INFINITY, 0.0, 0.5, 2.0};
                for (int k = 0; k < 5; k++) {
                    size_t a = ops->select_f64(want64, n, thresholds[k], gi);
                    size_t b = spec->select_f64(want64, n, thresholds[k], wi);
                    CTEST_CHECK(t, a == b && memcmp(gi, wi, a * sizeof *gi) == 0, "select_f64 n=%zu", n);
                    a = ops->select_f32(want32, n, (float)thresholds[k], gi);
                    b = spec->select_f32(want32, n, (float)thresholds[k], wi);
                    CTEST_CHECK(t, a == b && memcmp(gi, wi, a * sizeof *gi) == 0, "select_f32 n=%zu", n);
                }
            }
}

/* Exact cosine in long double for the entry-point checks. */
static double exact_cosine_f32(const float *x, const float *y, size_t d) {
    long double xy = 0, xx = 0, yy = 0;
    for (size_t i = 0; i < d; i++) {
        xy += (long double)x[i] * y[i];
        xx += (long double)x[i] * x[i];
        yy += (long double)y[i] * y[i];
    }
    if (xx == 0 || yy == 0) return 0.0;
    return (double)(xy / sqrtl(xx * yy));
}

static void check_pair_entry(ctest *t) {
    float x[40], y[40];
    for (int i = 0; i < 40; i++) {
        x[i] = xs32[3][i];
        y[i] = ys32[3][i];
    }
    double want = exact_cosine_f32(x, y, 40);
    CTEST_CHECK(t, fabs(engram_cosine_pair_f32(x, y, 40) - want) <= 1e-6, "cosine pair");
    /* denormal and huge vectors are rescaled: same cosine as unit-scale ones */
    float tiny[40], huge[40], zero[40] = {0};
    for (int i = 0; i < 40; i++) {
        tiny[i] = x[i] * 1e-40f;
        huge[i] = y[i] * 1e30f;
    }
    double got = engram_cosine_pair_f32(tiny, huge, 40);
    CTEST_CHECK(t, fabs(got - exact_cosine_f32(tiny, huge, 40)) <= 1e-6, "rescued cosine %.9g", got);
    CTEST_CHECK(t, engram_cosine_pair_f32(x, zero, 40) == 0.0, "zero vector");
    CTEST_CHECK(t, engram_cosine_pair_f32(x, x, 40) <= 1.0, "clamped");
    x[7] = NAN;
    CTEST_CHECK(t, isnan(engram_cosine_pair_f32(x, y, 40)), "NaN");
    x[7] = INFINITY;
    CTEST_CHECK(t, isnan(engram_cosine_pair_f32(zero, x, 40)), "inf");
    double a[3] = {1e-310, 2e-310, -1e-310}, b[3] = {1e300, 2e300, -1e300};
    CTEST_CHECK(t, fabs(engram_cosine_pair_f64(a, b, 3) - 1.0) <= 1e-12, "f64 rescue");
}

/* Many-to-many and top-k through the entry points, threads 1 and 3 bitwise equal. */
static void check_entries(ctest *t) {
    enum { M = 7, N = 150, D = 37, K = 5 };
    static float q[M][D], c[N][D], out1[M][N], out3[M][N];
    uint64_t seed = 42;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < D; j++) q[i][j] = (float)ctest_uniform(&seed);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) c[i][j] = (float)ctest_uniform(&seed);
    memcpy(c[100], c[3], sizeof c[3]); /* an exact tie: ids 3 and 100 */
    c[50][4] = NAN;                      /* never returned */
    memset(c[60], 0, sizeof c[60]);      /* cosine 0 */
    engram_arena *arena = engram_arena_get();
    engram_vectors qv = {q, M, D, sizeof q[0], sizeof(float)};
    engram_vectors cv = {c, N, D, sizeof c[0], sizeof(float)};
    CTEST_CHECK(t, engram_cosine(arena, ENGRAM_FLOAT32, &qv, &cv, out1, sizeof out1[0], sizeof(float), 1) == ENGRAM_OK, "cosine");
    engram_arena_reset(arena);
    CTEST_CHECK(t, engram_cosine(arena, ENGRAM_FLOAT32, &qv, &cv, out3, sizeof out3[0], sizeof(float), 3) == ENGRAM_OK, "cosine");
    engram_arena_reset(arena);
    CTEST_CHECK(t, memcmp(out1, out3, sizeof out1) == 0, "threads changed the cosines");
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double want = j == 50 ? NAN : exact_cosine_f32(q[i], c[j], D);
            CTEST_CHECK(t, close_to(out1[i][j], want, 1e-6, 1), "cosine[%d][%d] %.9g vs %.9g", i, j,
                        out1[i][j], want);
        }
    float scores[M][K];
    int64_t ids[M][K];
    for (int threads = 1; threads <= 3; threads += 2) {
        CTEST_CHECK(t, engram_top_k(arena, ENGRAM_FLOAT32, &qv, &cv, K, ENGRAM_METRIC_COSINE, scores, ids[0],
                                    threads) == ENGRAM_OK, "top_k");
        engram_arena_reset(arena);
        for (int i = 0; i < M; i++) {
            /* brute force over the cosines computed above */
            int used[N] = {0};
            for (int r = 0; r < K; r++) {
                int best = -1;
                for (int j = 0; j < N; j++) {
                    if (used[j] || isnan(out1[i][j])) continue;
                    if (best < 0 || out1[i][j] > out1[i][best]) best = j;
                }
                used[best] = 1;
                CTEST_CHECK(t, ids[i][r] == best && scores[i][r] == out1[i][best],
                            "top_k query %d rank %d: id %lld vs %d", i, r, (long long)ids[i][r], best);
            }
        }
    }
    /* the tie: query = row 3 ranks id 3 before id 100 */
    engram_vectors one = {c[3], 1, D, sizeof c[3], sizeof(float)};
    CTEST_CHECK(t, engram_top_k(arena, ENGRAM_FLOAT32, &one, &cv, K, ENGRAM_METRIC_COSINE, scores, ids[0], 2) ==
                       ENGRAM_OK, "top_k one");
    engram_arena_reset(arena);
    CTEST_CHECK(t, ids[0][0] == 3 && ids[0][1] == 100 && scores[0][0] == scores[0][1], "tie order %lld %lld",
                (long long)ids[0][0], (long long)ids[0][1]);
    /* out with strided, reversed columns and reversed rows: the same values, nothing else written */
    static float wide[M][3 * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < 3 * N; j++) wide[i][j] = -5.0f;
    char *corner = (char *)&wide[M - 1][3 * (N - 1)];
    CTEST_CHECK(t, engram_cosine(arena, ENGRAM_FLOAT32, &qv, &cv, corner, -(ptrdiff_t)sizeof wide[0],
                                 -3 * (ptrdiff_t)sizeof(float), 2) == ENGRAM_OK, "strided cosine");
    engram_arena_reset(arena);
    int strided_ok = 1;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < 3 * N; j++) {
            float want = j % 3 == 0 ? out1[M - 1 - i][N - 1 - j / 3] : -5.0f;
            strided_ok &= memcmp(&wide[i][j], &want, sizeof want) == 0;
        }
    CTEST_CHECK(t, strided_ok, "cosine into a strided, reversed out");
    /* dot of float64 rows whose products overflow: exact power-of-two rows give exact sums */
    {
        double a = ldexp(1.0, 530), qd[2] = {a, a};
        double rows64[4][2] = {{a, a}, {a, -a * (1 - ldexp(1.0, -40))}, {-a, -a}, {1.0, 2.0}};
        double dscores[4];
        int64_t dids[4];
        engram_vectors q1 = {qd, 1, 2, sizeof qd, sizeof(double)};
        engram_vectors r4 = {rows64, 4, 2, sizeof rows64[0], sizeof(double)};
        CTEST_CHECK(t, engram_top_k(arena, ENGRAM_FLOAT64, &q1, &r4, 4, ENGRAM_METRIC_DOT, dscores, dids, 1) ==
                           ENGRAM_OK, "top_k dot");
        engram_arena_reset(arena);
        CTEST_CHECK(t, dids[0] == 0 && dids[1] == 1 && dids[2] == 3 && dids[3] == 2, "dot order %lld %lld %lld %lld",
                    (long long)dids[0], (long long)dids[1], (long long)dids[2], (long long)dids[3]);
        CTEST_CHECK(t, dscores[0] == INFINITY && dscores[1] == ldexp(1.0, 1020) && dscores[2] == 3 * a &&
                           dscores[3] == -INFINITY, "dot beyond the float64 range: %g %g %g %g", dscores[0],
                    dscores[1], dscores[2], dscores[3]);
    }
    /* a d past every level's small-d range: register tiles, threads 1 and 3 bitwise equal */
    {
        enum { TD = 150, TM = 11, TN = 70 };
        static float tq[TM][TD], tc[TN][TD], t1[TM][TN], t3[TM][TN];
        for (int i = 0; i < TM; i++)
            for (int j = 0; j < TD; j++) tq[i][j] = (float)ctest_uniform(&seed);
        for (int i = 0; i < TN; i++)
            for (int j = 0; j < TD; j++) tc[i][j] = (float)ctest_uniform(&seed);
        engram_vectors tqv = {tq, TM, TD, sizeof tq[0], sizeof(float)};
        engram_vectors tcv = {tc, TN, TD, sizeof tc[0], sizeof(float)};
        CTEST_CHECK(t, engram_cosine(arena, ENGRAM_FLOAT32, &tqv, &tcv, t1, sizeof t1[0], sizeof(float), 1) ==
                           ENGRAM_OK, "tile cosine");
        engram_arena_reset(arena);
        CTEST_CHECK(t, engram_cosine(arena, ENGRAM_FLOAT32, &tqv, &tcv, t3, sizeof t3[0], sizeof(float), 3) ==
                           ENGRAM_OK, "tile cosine");
        engram_arena_reset(arena);
        CTEST_CHECK(t, memcmp(t1, t3, sizeof t1) == 0, "threads changed the tile cosines");
        for (int i = 0; i < TM; i++)
            for (int j = 0; j < TN; j++)
                CTEST_CHECK(t, close_to(t1[i][j], exact_cosine_f32(tq[i], tc[j], TD), 1e-6, 1),
                            "tile cosine[%d][%d]", i, j);
    }
    /* normalize in place */
    static float rows[3][D];
    memcpy(rows, c, sizeof rows);
    engram_vectors rv = {rows, 3, D, sizeof rows[0], sizeof(float)};
    CTEST_CHECK(t, engram_normalize(arena, ENGRAM_FLOAT32, &rv, rows, sizeof rows[0], sizeof(float)) == ENGRAM_OK, "normalize");
    engram_arena_reset(arena);
    for (int i = 0; i < 3; i++) {
        double nn = 0;
        for (int j = 0; j < D; j++) nn += (double)rows[i][j] * rows[i][j];
        CTEST_CHECK(t, fabs(nn - 1.0) < 1e-6, "normalized norm %.9g", nn);
    }
}

void ctest_similarity(ctest *t) {
    const engram_similarity_ops *ops = engram_similarity();
    const engram_similarity_ops *spec = &engram_similarity_ops_scalar;
    CTEST_CHECK(t, strcmp(ops->level, t->level) == 0, "active table is %s", ops->level);
    CTEST_CHECK(t, ops->pair_f32 && ops->pair_f64 && ops->one_to_many_f32 && ops->one_to_many_f64 &&
                       ops->norm2_rows_f32 && ops->norm2_rows_f64 && ops->dot_tile_f32 && ops->dot_tile_f64 &&
                       ops->scale_f32 && ops->scale_f64 && ops->scores_f32 && ops->scores_f64 &&
                       ops->select_f32 && ops->select_f64 && ops->dot_cols_f32 && ops->dot_cols_f64,
                "every pointer filled");
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    fill(&seed);
    check_pairs(t, ops, spec);
    check_rows(t, ops, spec);
    check_tiles(t, ops);
    check_cols(t, ops);
    check_scale(t, ops);
    check_scores_select(t, ops, spec);
    check_pair_entry(t);
    check_entries(t);
}
