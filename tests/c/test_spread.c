/*
 * spread: each SIMD level's primitives against the scalar table.
 *
 * Dense hops run on pull layouts built from random graphs with awkward node
 * counts (partial chunks, empty rows, self-loops, repeated edges).  With
 * dyadic weights, pulses and factors every product and sum is exact in
 * float64 whatever the order or FMA, so the levels must agree bit for bit;
 * with real values sums may differ by rounding only.  The seed scans get
 * arrays of every small length with negatives, NaN and infinities planted.
 */
#include "ctest.h"

#include <string.h>

#define MAX_N 300
#define MAX_E 3000

typedef struct test_graph {
    size_t n, nnz;
    int32_t indptr[MAX_N + 1], indices[MAX_E];
    float w32[MAX_E];
    double w64[MAX_E];
    /* pull layout (blocked: up to MAX_N / 8 + windows chunks per block) */
    int32_t row_node[MAX_N], node_row[MAX_N];
    uint32_t row_degree[MAX_N + 8];
    int32_t *chunk_length, *chunk_rows, *sources;
    int64_t *chunk_offset, *block_chunks, *window_slots;
    void *weights;
    double row_scale[MAX_N + 8];
    engram_spread_pull pull;
} test_graph;

static void free_graph(test_graph *g) {
    free(g->chunk_length);
    free(g->chunk_rows);
    free(g->sources);
    free(g->chunk_offset);
    free(g->block_chunks);
    free(g->window_slots);
    free(g->weights);
}

static uint64_t next_u64(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

/* A dyadic value k / 256, k in [0, 255] (exact products and sums). */
static double dyadic(uint64_t *state) { return (double)(next_u64(state) % 256) / 256.0; }

/* A random graph and its pull layout; block_rows 0: unblocked. */
static int make_graph(test_graph *g, size_t n, size_t m, int weight_type, int exact, size_t block_rows,
                      uint64_t *rng) {
    engram_arena *arena = engram_arena_get();
    int32_t count[MAX_N + 1] = {0};
    int32_t src[MAX_E], dst[MAX_E];
    for (size_t e = 0; e < m; e++) {
        src[e] = (int32_t)(next_u64(rng) % n);
        /* a share of self-loops and of edges into a few hubs */
        const uint64_t pick = next_u64(rng) % 10;
        dst[e] = pick == 0 ? src[e] : pick == 1 ? (int32_t)(next_u64(rng) % 3 % n) : (int32_t)(next_u64(rng) % n);
        count[src[e] + 1]++;
    }
    g->n = n;
    g->nnz = m;
    g->indptr[0] = 0;
    for (size_t u = 0; u < n; u++) g->indptr[u + 1] = g->indptr[u] + count[u + 1];
    int32_t fill[MAX_N];
    for (size_t u = 0; u < n; u++) fill[u] = g->indptr[u];
    for (size_t e = 0; e < m; e++) {
        const int32_t at = fill[src[e]]++;
        g->indices[at] = dst[e];
        const double w = exact ? dyadic(rng) : (double)(next_u64(rng) % 1000000) / 1e6 + 1e-3;
        g->w32[at] = (float)w;
        g->w64[at] = w;
    }
    engram_spread_graph cg = {0};
    cg.n = n;
    cg.nnz = m;
    cg.indptr = g->indptr;
    cg.indices = g->indices;
    cg.weight_type = (engram_spread_weight_type)weight_type;
    cg.weights = weight_type == ENGRAM_SPREAD_F32 ? (const void *)g->w32
                 : weight_type == ENGRAM_SPREAD_F64 ? (const void *)g->w64 : NULL;
    const size_t window_rows = 8 * (1 + next_u64(rng) % 6); /* several windows */
    size_t n_chunks = 0, n_slots = 0;
    if (engram_spread_pull_plan(arena, &cg, window_rows, block_rows, g->row_node, g->node_row,
                                g->row_degree, &n_chunks, &n_slots) != ENGRAM_OK)
        return -1;
    engram_arena_reset(arena);
    const size_t row_chunks = (n + 7) / 8, n_windows = (n + window_rows - 1) / window_rows;
    const size_t n_blocks = block_rows ? (n + block_rows - 1) / block_rows : 0;
    g->chunk_length = malloc((n_chunks + 1) * sizeof(int32_t));
    g->chunk_offset = malloc((n_chunks + 1) * sizeof(int64_t));
    g->chunk_rows = malloc((n_chunks * 8 + 8) * sizeof(int32_t));
    g->block_chunks = malloc((n_blocks * (n_windows + 1) + 1) * sizeof(int64_t));
    g->window_slots = malloc((n_windows + 1) * sizeof(int64_t));
    g->sources = malloc((n_slots + 8) * sizeof(int32_t));
    g->weights = weight_type == ENGRAM_SPREAD_UNWEIGHTED ? NULL : malloc((n_slots + 8) * sizeof(double));
    if (!g->chunk_length || !g->chunk_offset || !g->chunk_rows || !g->block_chunks || !g->window_slots ||
        !g->sources || (weight_type != ENGRAM_SPREAD_UNWEIGHTED && g->weights == NULL))
        return -1;
    if (engram_spread_pull_build(arena, &cg, window_rows, block_rows, g->row_node, g->node_row,
                                 g->chunk_length, g->chunk_offset, block_rows ? g->chunk_rows : NULL,
                                 block_rows ? g->block_chunks : NULL, block_rows ? g->window_slots : NULL,
                                 g->sources, g->weights) != ENGRAM_OK)
        return -1;
    engram_arena_reset(arena);
    for (size_t r = 0; r < row_chunks * 8; r++)
        g->row_scale[r] = r < n ? (exact ? 1.0 / (double)(1u << (next_u64(rng) % 4)) : 1.0 / (1.0 + (double)r)) : 0.0;
    g->pull = (engram_spread_pull){
        .row_chunks = row_chunks, .row_node = g->row_node, .node_row = g->node_row,
        .row_scale = NULL, .row_degree = g->row_degree, .n_chunks = n_chunks,
        .chunk_offset = g->chunk_offset, .chunk_length = g->chunk_length, .sources = g->sources,
        .weights = g->weights, .n_blocks = n_blocks, .block_rows = block_rows,
        .window_rows = window_rows, .n_windows = n_windows,
        .block_chunks = block_rows ? g->block_chunks : NULL,
        .chunk_rows = block_rows ? g->chunk_rows : NULL,
        .window_slots = block_rows ? g->window_slots : NULL};
    /* the layout holds every edge once */
    size_t real = 0;
    for (size_t i = 0; i < n_slots; i++) real += g->sources[i] != (int32_t)n;
    return real == m ? 0 : -2;
}

typedef struct hop_state {
    double pulse[MAX_N + 16], pulse_next[MAX_N + 16], total[MAX_N + 16];
    uint8_t fired[MAX_N / 8 + 2];
} hop_state;

static int close_enough(double a, double b, int exact) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    if (exact || a == b || isinf(a) || isinf(b)) return a == b;
    const double scale = fabs(b) > 1e-300 ? fabs(b) : 1e-300;
    return fabs(a - b) <= 1e-12 * scale;
}

static void check_hops(ctest *t, const engram_spread_ops *ops, uint64_t *rng) {
    const engram_spread_ops *spec = &engram_spread_ops_scalar;
    static test_graph g;
    static hop_state a, b;
    static double xa[MAX_N + 16], xb[MAX_N + 16];
    for (int trial = 0; trial < 160; trial++) {
        const size_t n = 1 + next_u64(rng) % MAX_N;
        const size_t m = next_u64(rng) % (n * 8 < MAX_E ? n * 8 : MAX_E);
        const int weight_type = (int)(next_u64(rng) % 3);
        const int exact = trial % 2 == 0;
        const size_t block_rows = trial % 4 < 2 ? 0 : 1 + next_u64(rng) % 64;
        const int made = make_graph(&g, n, m, weight_type, exact, block_rows, rng);
        if (made < 0) {
            CTEST_CHECK(t, 0, "pull layout n=%zu m=%zu block_rows=%zu: %s", n, m, block_rows,
                        made == -2 ? "an edge is missing or repeated" : "could not build");
            free_graph(&g);
            return;
        }
        const size_t n_chunks = g.pull.row_chunks;
        for (size_t r = 0; r < n_chunks * 8 + 8; r++) {
            const int active = r < n && next_u64(rng) % 3 != 0;
            a.pulse[r] = active ? (exact ? dyadic(rng) : (double)(next_u64(rng) % 1000) / 997.0) : 0.0;
            a.total[r] = r < n ? dyadic(rng) : 0.0;
            a.pulse_next[r] = -1.0;
        }
        for (size_t c = 0; c < n_chunks; c++) a.fired[c] = (uint8_t)(next_u64(rng) & 0xFF);
        if (trial % 5 == 4) {
            /* overflowed pulses on edges of weight 0 (0 * inf = NaN), and NaN pulses: NaN must win
               under max wherever it falls among a row's terms, as under the sum */
            for (size_t r = 0; r < n; r++) {
                const uint64_t pick = next_u64(rng) % 8;
                if (pick == 0) a.pulse[r] = INFINITY;
                else if (pick == 1) a.pulse[r] = NAN;
            }
            const size_t slots = (size_t)g.pull.chunk_offset[g.pull.n_chunks];
            for (size_t i = 0; g.weights && i < slots; i++) {
                if (g.sources[i] == (int32_t)n || next_u64(rng) % 3 != 0) continue;
                if (weight_type == ENGRAM_SPREAD_F32) ((float *)g.weights)[i] = 0.0f;
                else ((double *)g.weights)[i] = 0.0;
            }
        }
        b = a;
        const int combine = (int)(next_u64(rng) % 2);
        const double thresholds[] = {0.0, 0.0625, 0.25, 1.0 / 3.0, 2.0};
        g.pull.row_scale = next_u64(rng) % 2 ? g.row_scale : NULL;
        engram_spread_classify ka = {
            .threshold = thresholds[next_u64(rng) % 5],
            .send = exact ? 0.75 : 0.85,
            .row_scale = g.pull.row_scale,
            .row_degree = g.row_degree,
            .combine = (engram_spread_combine)combine,
            .revisit = (int)(next_u64(rng) % 2),
            .total = a.total,
            .fired = a.fired,
            .pulse_next = a.pulse_next,
        };
        engram_spread_classify kb = ka;
        kb.total = b.total;
        kb.fired = b.fired;
        kb.pulse_next = b.pulse_next;
        /* a sub-range of chunks, or all of them */
        size_t c0 = 0, c1 = n_chunks;
        if (trial % 3 == 1) {
            c0 = next_u64(rng) % n_chunks;
            c1 = c0 + next_u64(rng) % (n_chunks - c0 + 1);
        }
        uint64_t edges_a = 7, edges_b = 7;
        size_t fired_a, fired_b;
        if (block_rows == 0) {
            fired_a = ops->hop[combine][weight_type](&g.pull, a.pulse, &ka, c0, c1, &edges_a);
            fired_b = spec->hop[combine][weight_type](&g.pull, b.pulse, &kb, c0, c1, &edges_b);
        } else {
            /* every block's chunks into x, then the classification of rows [8 c0, 8 c1) */
            for (size_t r = 0; r < n_chunks * 8 + 8; r++) xa[r] = xb[r] = 0.0;
            for (size_t blk = 0; blk < g.pull.n_blocks; blk++) {
                const int64_t *first = g.pull.block_chunks + blk * (g.pull.n_windows + 1);
                const size_t s0 = (size_t)first[0], s1 = (size_t)first[g.pull.n_windows];
                ops->accumulate[combine][weight_type](&g.pull, a.pulse, s0, s1, xa);
                spec->accumulate[combine][weight_type](&g.pull, b.pulse, s0, s1, xb);
            }
            for (size_t r = 0; r < n_chunks * 8; r++)
                CTEST_CHECK(t, close_enough(xa[r], xb[r], exact),
                            "accumulate n=%zu block_rows=%zu w=%d row %zu: %.17g, scalar %.17g", n,
                            block_rows, weight_type, r, xa[r], xb[r]);
            fired_a = ops->classify(&ka, c0, c1, xa + c0 * 8, &edges_a);
            fired_b = spec->classify(&kb, c0, c1, xb + c0 * 8, &edges_b);
        }
        CTEST_CHECK(t, fired_a == fired_b, "hop n=%zu w=%d combine=%d blocks=%zu: %zu rows fired, scalar %zu", n,
                    weight_type, combine, block_rows, fired_a, fired_b);
        CTEST_CHECK(t, edges_a == edges_b, "hop n=%zu: edges %llu, scalar %llu", n,
                    (unsigned long long)edges_a, (unsigned long long)edges_b);
        for (size_t c = 0; c < n_chunks; c++)
            CTEST_CHECK(t, a.fired[c] == b.fired[c], "hop n=%zu chunk %zu: fired %02x, scalar %02x", n, c,
                        a.fired[c], b.fired[c]);
        for (size_t r = 0; r < n_chunks * 8; r++) {
            const int in_range = r >= c0 * 8 && r < c1 * 8;
            CTEST_CHECK(t, close_enough(a.total[r], b.total[r], exact),
                        "hop n=%zu w=%d combine=%d exact=%d row %zu: total %.17g, scalar %.17g", n,
                        weight_type, combine, exact, r, a.total[r], b.total[r]);
            CTEST_CHECK(t, close_enough(a.pulse_next[r], b.pulse_next[r], exact),
                        "hop n=%zu w=%d combine=%d exact=%d row %zu: pulse %.17g, scalar %.17g", n,
                        weight_type, combine, exact, r, a.pulse_next[r], b.pulse_next[r]);
            if (!in_range)
                CTEST_CHECK(t, a.pulse_next[r] == -1.0, "hop wrote row %zu outside chunks [%zu, %zu)", r, c0, c1);
        }
        free_graph(&g);
    }
}

static void check_seed_scans(ctest *t, const engram_spread_ops *ops, uint64_t *rng) {
    const engram_spread_ops *spec = &engram_spread_ops_scalar;
    enum { N = 200 };
    float s32[N], out_a[N], out_b[N];
    double s64[N];
    int64_t ids_a[N], ids_b[N];
    for (size_t n = 0; n < N; n += 1 + n / 16) {
        for (int trial = 0; trial < 6; trial++) {
            for (size_t i = 0; i < n; i++) {
                const uint64_t pick = next_u64(rng) % 8;
                s64[i] = pick < 4 ? 0.0 : pick < 6 ? (double)(next_u64(rng) % 1000) / 1000.0 : pick < 7 ? 1e-310 : 0.25;
                s32[i] = (float)s64[i];
            }
            if (n && trial >= 2) {
                /* a bad value somewhere (the scans must stop at the first) */
                const double bad[] = {-1.0, -0.0 - 1e-30, NAN, INFINITY, -INFINITY};
                const size_t at = next_u64(rng) % n;
                s64[at] = bad[trial % 5];
                s32[at] = (float)s64[at];
                if (trial == 5 && at + 1 < n) {
                    s64[n - 1] = NAN;
                    s32[n - 1] = NAN;
                }
            }
            const double threshold = trial % 2 ? 0.25 : 0.1;
            float t32 = (float)threshold;
            if ((double)t32 < threshold) t32 = nextafterf(t32, INFINITY);
            size_t count_a = 3, count_b = 3; /* appends after what is there */
            memset(out_a, 0, sizeof out_a);
            memset(out_b, 0, sizeof out_b);
            size_t bad_a = ops->select_f32(s32, n, t32, out_a, ids_a, &count_a);
            size_t bad_b = spec->select_f32(s32, n, t32, out_b, ids_b, &count_b);
            CTEST_CHECK(t, bad_a == bad_b, "select_f32 n=%zu: stops at %zu, scalar %zu", n, bad_a, bad_b);
            CTEST_CHECK(t, count_a == count_b, "select_f32 n=%zu: %zu ids, scalar %zu", n, count_a, count_b);
            for (size_t i = 3; i < count_a && i < count_b; i++)
                CTEST_CHECK(t, ids_a[i] == ids_b[i], "select_f32 n=%zu id %zu: %lld vs %lld", n, i,
                            (long long)ids_a[i], (long long)ids_b[i]);
            for (size_t i = 0; i < bad_b && i < n; i++)
                CTEST_CHECK(t, out_a[i] == out_b[i], "select_f32 n=%zu out[%zu]", n, i);
            CTEST_CHECK(t, ops->first_bad_f32(s32, n) == bad_b, "first_bad_f32 n=%zu", n);
            /* without out: the same ids and stop, nothing written */
            size_t count_c = 3;
            int64_t ids_c[N];
            const size_t bad_c = ops->select_f32(s32, n, t32, NULL, ids_c, &count_c);
            CTEST_CHECK(t, bad_c == bad_b && count_c == count_b, "select_f32 n=%zu without out", n);
            for (size_t i = 3; i < count_c && i < count_b; i++)
                CTEST_CHECK(t, ids_c[i] == ids_b[i], "select_f32 n=%zu without out: id %zu", n, i);

            count_a = count_b = 0;
            bad_a = ops->select_f64(s64, n, threshold, out_a, ids_a, &count_a);
            bad_b = spec->select_f64(s64, n, threshold, out_b, ids_b, &count_b);
            CTEST_CHECK(t, bad_a == bad_b, "select_f64 n=%zu: stops at %zu, scalar %zu", n, bad_a, bad_b);
            CTEST_CHECK(t, count_a == count_b, "select_f64 n=%zu: %zu ids, scalar %zu", n, count_a, count_b);
            for (size_t i = 0; i < count_a && i < count_b; i++)
                CTEST_CHECK(t, ids_a[i] == ids_b[i], "select_f64 n=%zu id %zu", n, i);
            for (size_t i = 0; i < bad_b && i < n; i++)
                CTEST_CHECK(t, out_a[i] == out_b[i], "select_f64 n=%zu out[%zu]: %g vs %g", n, i,
                            (double)out_a[i], (double)out_b[i]);
            CTEST_CHECK(t, ops->first_bad_f64(s64, n) == bad_b, "first_bad_f64 n=%zu", n);
            count_c = 0;
            const size_t bad_d = ops->select_f64(s64, n, threshold, NULL, ids_c, &count_c);
            CTEST_CHECK(t, bad_d == bad_b && count_c == count_b, "select_f64 n=%zu without out", n);
            for (size_t i = 0; i < count_c && i < count_b; i++)
                CTEST_CHECK(t, ids_c[i] == ids_b[i], "select_f64 n=%zu without out: id %zu", n, i);
        }
    }
}

/* The whole kernel on one graph at this level vs the scalar level: push and pull. */
static void check_runs(ctest *t, uint64_t *rng) {
    static test_graph g;
    static float out_level[4 * MAX_N], out_scalar[4 * MAX_N];
    static float seeds[4 * MAX_N];
    const engram_level level = engram_level_active();
    for (int trial = 0; trial < 30; trial++) {
        const size_t n = 1 + next_u64(rng) % MAX_N;
        const size_t m = next_u64(rng) % (n * 6 < MAX_E ? n * 6 : MAX_E);
        const int weight_type = (int)(next_u64(rng) % 3);
        const size_t block_rows = trial % 2 ? 0 : 1 + next_u64(rng) % 50;
        if (make_graph(&g, n, m, weight_type, 1, block_rows, rng) < 0) {
            CTEST_CHECK(t, 0, "could not build a pull layout");
            free_graph(&g);
            return;
        }
        for (size_t i = 0; i < 4 * n; i++) seeds[i] = next_u64(rng) % 5 == 0 ? (float)dyadic(rng) : 0.0f;
        engram_spread_graph cg = {0};
        cg.n = n;
        cg.nnz = m;
        cg.indptr = g.indptr;
        cg.indices = g.indices;
        cg.weight_type = (engram_spread_weight_type)weight_type;
        cg.weights = weight_type == ENGRAM_SPREAD_F32 ? (const void *)g.w32
                     : weight_type == ENGRAM_SPREAD_F64 ? (const void *)g.w64 : NULL;
        cg.pull = &g.pull;
        cg.pull_possible = 1;
        engram_spread_seeds s = {.type = ENGRAM_SPREAD_SEEDS_F32, .rows = 4, .batch = 1, .data = seeds,
                                 .row_stride = (ptrdiff_t)n};
        engram_spread_options o = {.max_depth = 1 + next_u64(rng) % 6, .decay = 0.5, .threshold = 1.0 / 64,
                                   .combine = (engram_spread_combine)(next_u64(rng) % 2),
                                   .revisit = (int)(next_u64(rng) % 2),
                                   .direction = (engram_spread_direction)(trial % 3),
                                   .pull_fraction = 0.1, .parallel_hop_edges = 1u << 20, .threads = 2,
                                   .out_is_fresh = 1};
        engram_arena *arena = engram_arena_get();
        int wants_pull = 0;
        engram_status st = engram_spread_run(arena, &cg, &s, &o, out_level, (ptrdiff_t)n, &wants_pull, NULL);
        engram_arena_reset(arena);
        engram_level_select(ENGRAM_LEVEL_SCALAR);
        engram_status st2 = engram_spread_run(arena, &cg, &s, &o, out_scalar, (ptrdiff_t)n, &wants_pull, NULL);
        engram_arena_reset(arena);
        engram_level_select(level);
        CTEST_CHECK(t, st == ENGRAM_OK && st2 == ENGRAM_OK, "engram_spread_run failed: %s", engram_last_error());
        for (size_t i = 0; i < 4 * n; i++)
            CTEST_CHECK(t, out_level[i] == out_scalar[i], "run n=%zu direction %d: out[%zu] %.9g, scalar %.9g",
                        n, (int)o.direction, i, (double)out_level[i], (double)out_scalar[i]);
        free_graph(&g);
    }
}

/*
 * A caller's out on a graph without its pull layout: a run that stops for the
 * layout leaves one row's out untouched; a run that needs none writes what a
 * fresh out gets, whatever the seeds' form.
 */
static void check_held_out(ctest *t, uint64_t *rng) {
    static test_graph g;
    static float out[MAX_N], fresh[MAX_N], seeds[MAX_N];
    for (int trial = 0; trial < 20; trial++) {
        const size_t n = 1 + next_u64(rng) % MAX_N;
        const size_t m = next_u64(rng) % (n * 4 < MAX_E ? n * 4 : MAX_E);
        if (make_graph(&g, n, m, ENGRAM_SPREAD_F64, 1, 0, rng) < 0) {
            CTEST_CHECK(t, 0, "could not build a pull layout");
            free_graph(&g);
            return;
        }
        for (size_t i = 0; i < n; i++) seeds[i] = next_u64(rng) % 4 == 0 ? (float)dyadic(rng) : 0.0f;
        int64_t ids[3] = {(int64_t)(next_u64(rng) % n), (int64_t)(next_u64(rng) % n), 0};
        ids[2] = ids[0]; /* named twice: the later value counts */
        const double values[3] = {0.5, 0.25, 0.75};
        engram_spread_graph cg = {0};
        cg.n = n;
        cg.nnz = m;
        cg.indptr = g.indptr;
        cg.indices = g.indices;
        cg.weight_type = ENGRAM_SPREAD_F64;
        cg.weights = g.w64;
        cg.pull_possible = 1;
        static double seeds64[MAX_N];
        for (size_t i = 0; i < n; i++) seeds64[i] = (double)seeds[i] * (1.0 + 0x1p-40);
        const engram_spread_seeds forms[3] = {
            {.type = ENGRAM_SPREAD_SEEDS_F32, .rows = 1, .data = seeds, .row_stride = (ptrdiff_t)n},
            {.type = ENGRAM_SPREAD_SEEDS_F64, .rows = 1, .data = seeds64, .row_stride = (ptrdiff_t)n},
            {.type = ENGRAM_SPREAD_SEEDS_SPARSE, .rows = 1, .count = 3, .ids = ids, .values = values}};
        for (int f = 0; f < 3; f++) {
            for (int direction = ENGRAM_SPREAD_AUTO; direction <= ENGRAM_SPREAD_PULL; direction++) {
                engram_spread_options o = {.max_depth = 1 + next_u64(rng) % 4, .decay = 0.5,
                                           .threshold = 1.0 / 64, .combine = ENGRAM_SPREAD_SUM,
                                           .direction = (engram_spread_direction)direction,
                                           .pull_fraction = (double)(next_u64(rng) % 3) / 4,
                                           .parallel_hop_edges = 1u << 20, .threads = 1};
                engram_arena *arena = engram_arena_get();
                for (size_t i = 0; i < n; i++) out[i] = -7.0f;
                int wants_pull = 0, wants_pull_fresh = 0;
                cg.pull = NULL;
                o.out_is_fresh = 0;
                engram_status st = engram_spread_run(arena, &cg, &forms[f], &o, out, 0, &wants_pull, NULL);
                engram_arena_reset(arena);
                o.out_is_fresh = 1;
                cg.pull = &g.pull;
                engram_status st2 = engram_spread_run(arena, &cg, &forms[f], &o, fresh, 0, &wants_pull_fresh, NULL);
                engram_arena_reset(arena);
                CTEST_CHECK(t, st == ENGRAM_OK && st2 == ENGRAM_OK && !wants_pull_fresh,
                            "engram_spread_run failed: %s", engram_last_error());
                CTEST_CHECK(t, direction != ENGRAM_SPREAD_PULL || wants_pull,
                            "a forced pull without a layout did not ask for it");
                for (size_t i = 0; i < n; i++) {
                    if (wants_pull)
                        CTEST_CHECK(t, out[i] == -7.0f, "n=%zu form %d: out[%zu] written before the rerun",
                                    n, f, i);
                    else
                        CTEST_CHECK(t, out[i] == fresh[i], "n=%zu form %d: out[%zu] %.9g, fresh out %.9g", n,
                                    f, i, (double)out[i], (double)fresh[i]);
                }
            }
        }
        free_graph(&g);
    }
}

void ctest_spread(ctest *t) {
    const engram_spread_ops *ops = engram_spread();
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int c = 0; c < 2; c++)
        for (int w = 0; w < 3; w++)
            CTEST_CHECK(t, ops->hop[c][w] != NULL, "hop[%d][%d] missing", c, w);
    for (int c = 0; c < 2; c++)
        for (int w = 0; w < 3; w++)
            CTEST_CHECK(t, ops->accumulate[c][w] != NULL, "accumulate[%d][%d] missing", c, w);
    CTEST_CHECK(t, ops->classify && ops->select_f32 && ops->select_f64 && ops->first_bad_f32 &&
                       ops->first_bad_f64, "classify or seed scans missing");
    check_hops(t, ops, &rng);
    check_seed_scans(t, ops, &rng);
    check_runs(t, &rng);
    check_held_out(t, &rng);
}
