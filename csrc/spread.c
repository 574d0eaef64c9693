/*
 * spread: spreading activation over a weighted directed graph.
 *
 * Entry points (engram_spread_run, the pull-layout builders) and the scalar
 * primitive table, which is the spec every SIMD level must match.
 *
 * One row of seeds is spread by one worker with its own scratch:
 *   node space  state[v] bits, total[v] (valid where TOTAL is set, or for
 *               every node once dense_total), the frontier as a list of
 *               (node, what it sends), and for a push hop the accumulator
 *               nxt[v] with the list of nodes it touched;
 *   row space   while hops pull: total, pulse and fired bits by row of the
 *               pull layout, so a dense hop reads and writes sequentially.
 * Switching space costs O(n), which a pull hop costs anyway.
 */
#include "engram.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

/* ==================================================================== */
/* Scalar primitives                                                     */
/* ==================================================================== */

#define LANES ENGRAM_SPREAD_LANES

/*
 * One lane's sum runs through its slots in order; the lanes of a chunk are
 * independent, so the 8 accumulators keep 8 loads in flight with no branch
 * per row.  Separate multiply and add (no FMA) as the spec.
 */
#define DEFINE_PULL_SCALAR(name, weight_t, weight_of, accumulate)                                 \
    static void name(const engram_spread_pull *p, const double *pulse, size_t c0, size_t c1,     \
                     double *x) {                                                                 \
        const weight_t *weights = (const weight_t *)p->weights;                                   \
        (void)weights;                                                                            \
        for (size_t c = c0; c < c1; c++) {                                                        \
            double acc[LANES] = {0, 0, 0, 0, 0, 0, 0, 0};                                          \
            const int64_t base = p->chunk_offset[c];                                              \
            const int32_t *src = p->sources + base;                                               \
            const size_t length = (size_t)p->chunk_length[c];                                    \
            for (size_t j = 0; j < length; j++) {                                                 \
                for (int l = 0; l < LANES; l++) {                                                 \
                    const size_t slot = j * LANES + (size_t)l;                                    \
                    const double term = weight_of(slot) * pulse[src[slot]];                       \
                    accumulate(acc[l], term);                                                     \
                }                                                                                 \
            }                                                                                     \
            for (int l = 0; l < LANES; l++) x[(c - c0) * LANES + (size_t)l] = acc[l];             \
        }                                                                                         \
    }

/*
 * max propagates NaN whichever side it is on, like the sum (and NumPy's
 * maximum): a term is NaN only as 0 * inf, an edge of weight 0 from a pulse
 * that overflowed, and the row's incoming pulse is then NaN, which does not
 * fire.  Any order of the terms gives the same result.
 */
#define ACC_SUM(a, t) ((a) = (a) + (t))
#define ACC_MAX(a, t) ((a) = ((t) > (a) || isnan(t)) ? (t) : (a))
#define W_ONE(slot) 1.0
#define W_F32(slot) (double)weights[base + (int64_t)(slot)]
#define W_F64(slot) weights[base + (int64_t)(slot)]

DEFINE_PULL_SCALAR(pull_sum_unweighted_scalar, double, W_ONE, ACC_SUM)
DEFINE_PULL_SCALAR(pull_sum_f32_scalar, float, W_F32, ACC_SUM)
DEFINE_PULL_SCALAR(pull_sum_f64_scalar, double, W_F64, ACC_SUM)
DEFINE_PULL_SCALAR(pull_max_unweighted_scalar, double, W_ONE, ACC_MAX)
DEFINE_PULL_SCALAR(pull_max_f32_scalar, float, W_F32, ACC_MAX)
DEFINE_PULL_SCALAR(pull_max_f64_scalar, double, W_F64, ACC_MAX)

size_t engram_spread_classify_scalar(const engram_spread_classify *k, size_t c0, size_t c1,
                                     const double *x, uint64_t *edges) {
    /* locals: the fired bytes are uint8_t, which may alias anything */
    const double threshold = k->threshold, send = k->send;
    const double *row_scale = k->row_scale;
    const uint32_t *row_degree = k->row_degree;
    const int sum = k->combine == ENGRAM_SPREAD_SUM, revisit = k->revisit;
    double *total = k->total, *pulse_next = k->pulse_next;
    uint8_t *fired = k->fired;
    size_t fired_count = 0;
    uint64_t edge_sum = 0;
    for (size_t c = c0; c < c1; c++) {
        unsigned bits = fired[c];
        for (int l = 0; l < LANES; l++) {
            const size_t r = c * LANES + (size_t)l;
            const double v = x[(c - c0) * LANES + (size_t)l];
            const int fires = v > 0 && v >= threshold && (revisit || !(bits >> l & 1u));
            if (fires) {
                const double t = total[r];
                total[r] = sum ? t + v : (v > t ? v : t);
                bits |= 1u << l;
                double out = v * send;
                if (row_scale) out = out * row_scale[r];
                pulse_next[r] = out;
                fired_count++;
                edge_sum += row_degree[r];
            } else {
                pulse_next[r] = 0.0;
            }
        }
        fired[c] = (uint8_t)bits;
    }
    *edges += edge_sum;
    return fired_count;
}

/* Chunks pulled at a time: x stays in L1 between the pull and the classification. */
#define HOP_BLOCK 64

#define DEFINE_HOP_SCALAR(name, pull)                                                            \
    size_t name(const engram_spread_pull *p, const double *pulse, const engram_spread_classify *k, \
                size_t c0, size_t c1, uint64_t *edges) {                                         \
        double x[HOP_BLOCK * LANES];                                                             \
        size_t fired = 0;                                                                        \
        for (size_t b = c0; b < c1; b += HOP_BLOCK) {                                            \
            const size_t e = b + HOP_BLOCK < c1 ? b + HOP_BLOCK : c1;                            \
            pull(p, pulse, b, e, x);                                                             \
            fired += engram_spread_classify_scalar(k, b, e, x, edges);                                         \
        }                                                                                        \
        return fired;                                                                            \
    }

DEFINE_HOP_SCALAR(engram_spread_hop_sum_unweighted_scalar, pull_sum_unweighted_scalar)
DEFINE_HOP_SCALAR(engram_spread_hop_sum_f32_scalar, pull_sum_f32_scalar)
DEFINE_HOP_SCALAR(engram_spread_hop_sum_f64_scalar, pull_sum_f64_scalar)
DEFINE_HOP_SCALAR(engram_spread_hop_max_unweighted_scalar, pull_max_unweighted_scalar)
DEFINE_HOP_SCALAR(engram_spread_hop_max_f32_scalar, pull_max_f32_scalar)
DEFINE_HOP_SCALAR(engram_spread_hop_max_f64_scalar, pull_max_f64_scalar)

/*
 * Blocked layout: a chunk's 8 sums go to 8 rows anywhere in its window, so
 * they are added one by one (a padding lane adds 0 to lane 0's row).
 */
#define DEFINE_ACCUMULATE_SCALAR(name, pull, accumulate)                                          \
    void name(const engram_spread_pull *p, const double *pulse, size_t c0, size_t c1, double *x) { \
        double sums[LANES];                                                                      \
        for (size_t c = c0; c < c1; c++) {                                                       \
            pull(p, pulse, c, c + 1, sums);                                                      \
            const int32_t *rows = p->chunk_rows + c * LANES;                                     \
            for (int l = 0; l < LANES; l++) accumulate(x[rows[l]], sums[l]);                     \
        }                                                                                        \
    }

DEFINE_ACCUMULATE_SCALAR(engram_spread_accumulate_sum_unweighted_scalar, pull_sum_unweighted_scalar, ACC_SUM)
DEFINE_ACCUMULATE_SCALAR(engram_spread_accumulate_sum_f32_scalar, pull_sum_f32_scalar, ACC_SUM)
DEFINE_ACCUMULATE_SCALAR(engram_spread_accumulate_sum_f64_scalar, pull_sum_f64_scalar, ACC_SUM)
DEFINE_ACCUMULATE_SCALAR(engram_spread_accumulate_max_unweighted_scalar, pull_max_unweighted_scalar, ACC_MAX)
DEFINE_ACCUMULATE_SCALAR(engram_spread_accumulate_max_f32_scalar, pull_max_f32_scalar, ACC_MAX)
DEFINE_ACCUMULATE_SCALAR(engram_spread_accumulate_max_f64_scalar, pull_max_f64_scalar, ACC_MAX)

/* Finite and >= 0: false for NaN, negatives and infinities. */
#define SEED_OK_F32(v) ((v) >= 0.0f && (v) <= 3.40282346638528859812e+38f)
#define SEED_OK_F64(v) ((v) >= 0.0 && (v) <= 1.79769313486231570815e+308)

size_t engram_spread_select_f32_scalar(const float *s, size_t n, float threshold, float *out,
                                int64_t *ids, size_t *count) {
    size_t k = *count;
    for (size_t i = 0; i < n; i++) {
        const float v = s[i];
        if (!SEED_OK_F32(v)) {
            *count = k;
            return i;
        }
        if (out) out[i] = v;
        if (v > 0.0f && v >= threshold) ids[k++] = (int64_t)i;
    }
    *count = k;
    return n;
}

size_t engram_spread_select_f64_scalar(const double *s, size_t n, double threshold, float *out,
                                int64_t *ids, size_t *count) {
    size_t k = *count;
    for (size_t i = 0; i < n; i++) {
        const double v = s[i];
        if (!SEED_OK_F64(v)) {
            *count = k;
            return i;
        }
        if (out) out[i] = (float)v;
        if (v > 0.0 && v >= threshold) ids[k++] = (int64_t)i;
    }
    *count = k;
    return n;
}

size_t engram_spread_first_bad_f32_scalar(const float *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!SEED_OK_F32(s[i])) return i;
    return n;
}

size_t engram_spread_first_bad_f64_scalar(const double *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!SEED_OK_F64(s[i])) return i;
    return n;
}

const engram_spread_ops engram_spread_ops_scalar = {
    .level = "scalar",
    .hop = {{engram_spread_hop_sum_unweighted_scalar, engram_spread_hop_sum_f32_scalar,
             engram_spread_hop_sum_f64_scalar},
            {engram_spread_hop_max_unweighted_scalar, engram_spread_hop_max_f32_scalar,
             engram_spread_hop_max_f64_scalar}},
    .accumulate = {{engram_spread_accumulate_sum_unweighted_scalar, engram_spread_accumulate_sum_f32_scalar,
                    engram_spread_accumulate_sum_f64_scalar},
                   {engram_spread_accumulate_max_unweighted_scalar, engram_spread_accumulate_max_f32_scalar,
                    engram_spread_accumulate_max_f64_scalar}},
    .classify = engram_spread_classify_scalar,
    .select_f32 = engram_spread_select_f32_scalar,
    .select_f64 = engram_spread_select_f64_scalar,
    .first_bad_f32 = engram_spread_first_bad_f32_scalar,
    .first_bad_f64 = engram_spread_first_bad_f64_scalar,
};

/* ==================================================================== */
/* Pull layout                                                           */
/* ==================================================================== */

static inline size_t csr_start(const engram_spread_graph *g, size_t u) {
    return g->index64 ? (size_t)((const int64_t *)g->indptr)[u]
                      : (size_t)((const int32_t *)g->indptr)[u];
}

static inline size_t csr_target(const engram_spread_graph *g, size_t e) {
    return g->index64 ? (size_t)((const int64_t *)g->indices)[e]
                      : (size_t)((const int32_t *)g->indices)[e];
}

typedef struct degree_sort_item {
    int64_t degree;
    int32_t index;
} degree_sort_item;

/* Larger degree first; ties by index, so the order is deterministic. */
static int by_degree_then_index(const void *a, const void *b) {
    const degree_sort_item *x = a, *y = b;
    if (x->degree != y->degree) return x->degree > y->degree ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/*
 * Sort a window's items by degree, larger first, ties by index: a counting
 * sort when the degrees are small (the usual case; linear), else qsort.
 * counts has counts_for(largest degree) entries; out receives the order.
 */
#define COUNTING_SORT_MAX 4096

static size_t counts_for(uint64_t max_degree) {
    return (max_degree < COUNTING_SORT_MAX ? (size_t)max_degree : COUNTING_SORT_MAX) + 2;
}

static void sort_by_degree(const degree_sort_item *items, size_t k, size_t *counts,
                           degree_sort_item *out) {
    int64_t top = 0;
    for (size_t i = 0; i < k; i++)
        if (items[i].degree > top) top = items[i].degree;
    if (top > COUNTING_SORT_MAX) {
        memcpy(out, items, k * sizeof *items);
        qsort(out, k, sizeof *out, by_degree_then_index);
        return;
    }
    memset(counts, 0, ((size_t)top + 2) * sizeof *counts);
    for (size_t i = 0; i < k; i++) counts[top - items[i].degree + 1]++;
    for (int64_t d = 1; d <= top + 1; d++) counts[d] += counts[d - 1];
    /* items come in increasing index order, so equal degrees keep it */
    for (size_t i = 0; i < k; i++) out[counts[top - items[i].degree]++] = items[i];
}

static size_t window_size(size_t window_rows) {
    if (window_rows < LANES) window_rows = LANES;
    return window_rows - window_rows % LANES;
}

/* Items a window's sort holds: a window of a small graph is the graph. */
static size_t window_items(size_t wr, size_t n) { return wr < n ? wr : (n ? n : 1); }

static engram_status check_length(int64_t length, int32_t row) {
    if (length > INT32_MAX)
        return engram_fail(ENGRAM_ERR_VALUE, "row %d has %lld in-edges, more than the pull "
                                             "layout's int32 lengths hold",
                           (int)row, (long long)length);
    return ENGRAM_OK;
}

/*
 * Walk the chunks of a layout in order, writing whichever outputs are not
 * NULL; counts in *n_chunks and *n_slots.  The rows (row_node/node_row)
 * are fixed already.
 */
static engram_status lay_out(engram_arena *arena, const engram_spread_graph *g, size_t window_rows,
                             size_t block_rows, const int32_t *row_node, const int32_t *node_row,
                             int32_t *chunk_length, int64_t *chunk_offset, int32_t *chunk_rows,
                             int64_t *block_chunks, int64_t *window_slots, int32_t *sources,
                             void *weights_out, size_t *n_chunks, size_t *n_slots) {
    const size_t n = g->n, row_chunks = (n + LANES - 1) / LANES;
    const int f32 = g->weight_type == ENGRAM_SPREAD_F32;
    engram_status status;
    if (block_rows == 0) {
        /* unblocked: chunk c is rows 8c..8c+7, sorted so lane 0 is the longest */
        int64_t *in_degree = engram_arena_alloc(arena, (n + 1) * sizeof *in_degree);
        int64_t *filled = engram_arena_alloc(arena, (n + 1) * sizeof *filled);
        if (in_degree == NULL || filled == NULL) return ENGRAM_ERR_NOMEM;
        memset(in_degree, 0, (n + 1) * sizeof *in_degree);
        memset(filled, 0, (n + 1) * sizeof *filled);
        for (size_t e = 0; e < g->nnz; e++) in_degree[node_row[csr_target(g, e)]]++;
        int64_t slot = 0;
        for (size_t c = 0; c < row_chunks; c++) {
            const int64_t length = in_degree[c * LANES];
            if ((status = check_length(length, (int32_t)(c * LANES))) != ENGRAM_OK) return status;
            if (chunk_length) chunk_length[c] = (int32_t)length;
            filled[c] = slot; /* reused below as the chunk's first slot */
            if (chunk_offset) chunk_offset[c] = slot;
            slot += length * LANES;
        }
        if (chunk_offset) chunk_offset[row_chunks] = slot;
        *n_chunks = row_chunks;
        *n_slots = (size_t)slot;
        if (sources == NULL && weights_out == NULL) return ENGRAM_OK;
        if (sources)
            for (int64_t i = 0; i < slot; i++) sources[i] = (int32_t)n;
        if (weights_out) memset(weights_out, 0, (size_t)slot * (f32 ? sizeof(float) : sizeof(double)));
        int64_t *start = filled; /* chunk starts, then the rows' fill counts in in_degree */
        memset(in_degree, 0, (n + 1) * sizeof *in_degree);
        for (size_t u = 0; u < n; u++) {
            const size_t e0 = csr_start(g, u), e1 = csr_start(g, u + 1);
            const int32_t source_row = node_row[u];
            for (size_t e = e0; e < e1; e++) {
                const size_t r = (size_t)node_row[csr_target(g, e)];
                const size_t at = (size_t)start[r / LANES] + (size_t)in_degree[r]++ * LANES + r % LANES;
                if (sources) sources[at] = source_row;
                if (weights_out) {
                    if (f32) ((float *)weights_out)[at] = ((const float *)g->weights)[e];
                    else ((double *)weights_out)[at] = ((const double *)g->weights)[e];
                }
            }
        }
        return ENGRAM_OK;
    }

    /* blocked: per source block, the rows it reaches, window by window, by degree from it */
    const size_t wr = window_size(window_rows);
    const size_t n_windows = (n + wr - 1) / wr, n_blocks = (n + block_rows - 1) / block_rows;
    int64_t *degree = engram_arena_alloc(arena, (n + 1) * sizeof *degree);
    int64_t *lane_of = engram_arena_alloc(arena, (n + 1) * sizeof *lane_of);
    int64_t *filled = engram_arena_alloc(arena, (n + 1) * sizeof *filled);
    degree_sort_item *items = engram_arena_alloc(arena, window_items(wr, n) * sizeof *items);
    degree_sort_item *sorted = engram_arena_alloc(arena, window_items(wr, n) * sizeof *sorted);
    /* a block's in-degrees are at most the edges */
    size_t *counts = engram_arena_alloc(arena, counts_for(g->nnz) * sizeof *counts);
    if (!sorted || !counts) return ENGRAM_ERR_NOMEM;
    /* a block has at most one partly filled chunk per window */
    int64_t *block_offsets = engram_arena_alloc(arena, (row_chunks + n_windows + 1) * sizeof(int64_t));
    if (!degree || !lane_of || !filled || !items || !block_offsets) return ENGRAM_ERR_NOMEM;
    if (window_slots) memset(window_slots, 0, (n_windows + 1) * sizeof *window_slots);
    size_t chunk = 0;
    int64_t slot = 0;
    for (size_t b = 0; b < n_blocks; b++) {
        const size_t s0 = b * block_rows, s1 = s0 + block_rows < n ? s0 + block_rows : n;
        memset(degree, 0, (n + 1) * sizeof *degree);
        for (size_t s = s0; s < s1; s++) {
            const size_t u = (size_t)row_node[s];
            for (size_t e = csr_start(g, u); e < csr_start(g, u + 1); e++) degree[node_row[csr_target(g, e)]]++;
        }
        const size_t first_chunk = chunk;
        for (size_t w = 0; w < n_windows; w++) {
            if (block_chunks) block_chunks[b * (n_windows + 1) + w] = (int64_t)chunk;
            const size_t r0 = w * wr, r1 = r0 + wr < n ? r0 + wr : n;
            size_t k = 0;
            for (size_t r = r0; r < r1; r++)
                if (degree[r] > 0) sorted[k++] = (degree_sort_item){degree[r], (int32_t)r};
            sort_by_degree(sorted, k, counts, items);
            for (size_t i = 0; i < k; i += LANES) {
                const int64_t length = items[i].degree;
                if ((status = check_length(length, items[i].index)) != ENGRAM_OK) return status;
                if (chunk_length) chunk_length[chunk] = (int32_t)length;
                if (chunk_offset) chunk_offset[chunk] = slot;
                block_offsets[chunk - first_chunk] = slot;
                for (size_t l = 0; l < LANES; l++) {
                    const int real = i + l < k;
                    const int32_t r = real ? items[i + l].index : items[i].index;
                    if (chunk_rows) chunk_rows[chunk * LANES + l] = r;
                    if (real) lane_of[r] = (int64_t)(chunk * LANES + l);
                }
                if (window_slots) window_slots[w + 1] += length * LANES;
                slot += length * LANES;
                chunk++;
            }
        }
        if (block_chunks) block_chunks[b * (n_windows + 1) + n_windows] = (int64_t)chunk;
        if (sources == NULL && weights_out == NULL) continue;
        const int64_t b_first = block_offsets[0], b_end = slot;
        if (chunk > first_chunk) {
            if (sources)
                for (int64_t i = b_first; i < b_end; i++) sources[i] = (int32_t)n;
            if (weights_out) {
                if (f32) memset((float *)weights_out + b_first, 0, (size_t)(b_end - b_first) * sizeof(float));
                else memset((double *)weights_out + b_first, 0, (size_t)(b_end - b_first) * sizeof(double));
            }
        }
        memset(filled, 0, (n + 1) * sizeof *filled);
        for (size_t s = s0; s < s1; s++) {
            const size_t u = (size_t)row_node[s];
            for (size_t e = csr_start(g, u); e < csr_start(g, u + 1); e++) {
                const size_t r = (size_t)node_row[csr_target(g, e)];
                const size_t lane = (size_t)lane_of[r];
                const size_t at = (size_t)block_offsets[lane / LANES - first_chunk] +
                                  (size_t)filled[r]++ * LANES + lane % LANES;
                if (sources) sources[at] = (int32_t)s;
                if (weights_out) {
                    if (f32) ((float *)weights_out)[at] = ((const float *)g->weights)[e];
                    else ((double *)weights_out)[at] = ((const double *)g->weights)[e];
                }
            }
        }
    }
    if (chunk_offset) chunk_offset[chunk] = slot;
    if (window_slots)
        for (size_t w = 0; w < n_windows; w++) window_slots[w + 1] += window_slots[w];
    *n_chunks = chunk;
    *n_slots = (size_t)slot;
    return ENGRAM_OK;
}

engram_status engram_spread_pull_plan(engram_arena *arena, const engram_spread_graph *g,
                                      size_t window_rows, size_t block_rows, int32_t *row_node,
                                      int32_t *node_row, uint32_t *row_degree, size_t *n_chunks,
                                      size_t *n_slots) {
    const size_t n = g->n;
    if (n > ENGRAM_SPREAD_PULL_MAX_NODES)
        return engram_fail(ENGRAM_ERR_VALUE, "the pull layout numbers rows with int32: %zu nodes "
                                             "are too many", n);
    const size_t row_chunks = (n + LANES - 1) / LANES, wr = window_size(window_rows);
    int64_t *in_degree = engram_arena_alloc(arena, (n + 1) * sizeof *in_degree);
    if (in_degree == NULL) return ENGRAM_ERR_NOMEM;
    memset(in_degree, 0, (n + 1) * sizeof *in_degree);
    for (size_t e = 0; e < g->nnz; e++) in_degree[csr_target(g, e)]++;
    int64_t max_degree = 0;
    for (size_t v = 0; v < n; v++)
        if (in_degree[v] > max_degree) max_degree = in_degree[v];
    degree_sort_item *items = engram_arena_alloc(arena, window_items(wr, n) * sizeof *items);
    degree_sort_item *sorted = engram_arena_alloc(arena, window_items(wr, n) * sizeof *sorted);
    size_t *counts = engram_arena_alloc(arena, counts_for((uint64_t)max_degree) * sizeof *counts);
    if (items == NULL || sorted == NULL || counts == NULL) return ENGRAM_ERR_NOMEM;
    for (size_t w0 = 0; w0 < n; w0 += wr) {
        const size_t w1 = w0 + wr < n ? w0 + wr : n;
        for (size_t v = w0; v < w1; v++) sorted[v - w0] = (degree_sort_item){in_degree[v], (int32_t)v};
        sort_by_degree(sorted, w1 - w0, counts, items);
        for (size_t r = w0; r < w1; r++) {
            const int32_t v = items[r - w0].index;
            row_node[r] = v;
            node_row[v] = (int32_t)r;
            const size_t out_degree = csr_start(g, (size_t)v + 1) - csr_start(g, (size_t)v);
            row_degree[r] = out_degree > UINT32_MAX ? UINT32_MAX : (uint32_t)out_degree;
        }
    }
    for (size_t r = n; r < row_chunks * LANES; r++) row_degree[r] = 0;
    return lay_out(arena, g, window_rows, block_rows, row_node, node_row, NULL, NULL, NULL, NULL,
                   NULL, NULL, NULL, n_chunks, n_slots);
}

engram_status engram_spread_pull_build(engram_arena *arena, const engram_spread_graph *g,
                                       size_t window_rows, size_t block_rows,
                                       const int32_t *row_node, const int32_t *node_row,
                                       int32_t *chunk_length, int64_t *chunk_offset,
                                       int32_t *chunk_rows, int64_t *block_chunks,
                                       int64_t *window_slots, int32_t *sources, void *weights_out) {
    size_t n_chunks, n_slots;
    return lay_out(arena, g, window_rows, block_rows, row_node, node_row, chunk_length, chunk_offset,
                   chunk_rows, block_chunks, window_slots, sources, weights_out, &n_chunks, &n_slots);
}

/* ==================================================================== */
/* The spread                                                            */
/* ==================================================================== */

enum {
    FIRED = 1,  /* in some frontier so far */
    TOTAL = 2,  /* total[v] is valid (and v is on total_list) */
    QUEUED = 4  /* touched by the current push hop: nxt[v] is valid */
};

typedef struct spread_scratch {
    uint8_t *state;       /* n */
    double *nxt;          /* n */
    double *total;        /* n */
    int64_t *front_ids;   /* n: frontier nodes */
    double *front_send;   /* n: what each sends (pulse * decay * scale) */
    int64_t *work_ids;    /* n: nodes a push touched, then compacted into the next frontier */
    double *work_send;    /* n */
    int64_t *total_list;  /* n: nodes with TOTAL set */
    /* row space, when the graph has a pull layout */
    double *total_row;    /* rows_padded */
    double *pulse;        /* rows_padded + 8: pulse[n] stays 0 */
    double *pulse_next;
    uint8_t *fired;       /* row_chunks */
    double *x;            /* rows_padded + 8: a blocked hop's sums by row */
} spread_scratch;

typedef struct spread_ctx {
    const engram_spread_graph *g;
    const engram_spread_seeds *seeds;
    const engram_spread_options *opt;
    const engram_spread_ops *ops;
    float *out;
    ptrdiff_t out_row_stride;
    float threshold_f32;
    spread_scratch *scratch; /* one per worker */
    unsigned hop_threads;    /* threads sharing each dense hop of a single row */
    int hold_out;            /* a row writes out only once it is complete */
    size_t next_row;     /* atomic: rows are handed out in order */
    int abort;           /* atomic: a row wants the pull layout, or failed */
    int wants_pull;
    size_t bad_row;      /* atomic: smallest row with a bad seed */
    uint64_t edges;      /* atomic */
} spread_ctx;

static inline double decay_of_hop(const engram_spread_options *opt, size_t k) {
    /* k counts from 1 */
    return opt->decay_per_hop ? opt->decay_per_hop[k - 1] : opt->decay;
}

static inline double seed_value(const spread_ctx *ctx, size_t row, size_t v) {
    const engram_spread_seeds *s = ctx->seeds;
    if (s->type == ENGRAM_SPREAD_SEEDS_F32)
        return (double)((const float *)s->data)[(ptrdiff_t)row * s->row_stride + (ptrdiff_t)v];
    if (s->type == ENGRAM_SPREAD_SEEDS_F64)
        return ((const double *)s->data)[(ptrdiff_t)row * s->row_stride + (ptrdiff_t)v];
    return 0.0; /* sparse seeds are all on total_list from the start */
}

static inline double combine(engram_spread_combine how, double total, double x) {
    return how == ENGRAM_SPREAD_SUM ? total + x : (x > total ? x : total);
}

/* ---- push hops, one per (index type, weight type, combine) ---- */

#define DEFINE_PUSH(name, index_t, weight_t, weight_of, accumulate)                              \
    static uint64_t name(const engram_spread_graph *g, const int64_t *ids, const double *send,  \
                         size_t count, uint8_t *state, double *nxt, int64_t *touched,            \
                         size_t *n_touched) {                                                    \
        const index_t *indptr = (const index_t *)g->indptr;                                      \
        const index_t *indices = (const index_t *)g->indices;                                    \
        const weight_t *weights = (const weight_t *)g->weights;                                  \
        (void)weights;                                                                           \
        size_t nt = *n_touched;                                                                  \
        uint64_t edges = 0;                                                                      \
        for (size_t i = 0; i < count; i++) {                                                     \
            const int64_t u = ids[i];                                                            \
            const double s = send[i];                                                            \
            const index_t e0 = indptr[u], e1 = indptr[u + 1];                                    \
            edges += (uint64_t)(e1 - e0);                                                        \
            for (index_t e = e0; e < e1; e++) {                                                  \
                const index_t v = indices[e];                                                    \
                const double c = weight_of(e) * s;                                               \
                if (state[v] & QUEUED) {                                                         \
                    accumulate(nxt[v], c);                                                       \
                } else {                                                                         \
                    state[v] |= QUEUED;                                                          \
                    nxt[v] = c;                                                                  \
                    touched[nt++] = (int64_t)v;                                                  \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        *n_touched = nt;                                                                         \
        return edges;                                                                            \
    }

#define PW_ONE(e) 1.0
#define PW_F32(e) (double)weights[e]
#define PW_F64(e) weights[e]

DEFINE_PUSH(push_sum_i32_one, int32_t, double, PW_ONE, ACC_SUM)
DEFINE_PUSH(push_sum_i32_f32, int32_t, float, PW_F32, ACC_SUM)
DEFINE_PUSH(push_sum_i32_f64, int32_t, double, PW_F64, ACC_SUM)
DEFINE_PUSH(push_max_i32_one, int32_t, double, PW_ONE, ACC_MAX)
DEFINE_PUSH(push_max_i32_f32, int32_t, float, PW_F32, ACC_MAX)
DEFINE_PUSH(push_max_i32_f64, int32_t, double, PW_F64, ACC_MAX)
DEFINE_PUSH(push_sum_i64_one, int64_t, double, PW_ONE, ACC_SUM)
DEFINE_PUSH(push_sum_i64_f32, int64_t, float, PW_F32, ACC_SUM)
DEFINE_PUSH(push_sum_i64_f64, int64_t, double, PW_F64, ACC_SUM)
DEFINE_PUSH(push_max_i64_one, int64_t, double, PW_ONE, ACC_MAX)
DEFINE_PUSH(push_max_i64_f32, int64_t, float, PW_F32, ACC_MAX)
DEFINE_PUSH(push_max_i64_f64, int64_t, double, PW_F64, ACC_MAX)

typedef uint64_t (*push_fn)(const engram_spread_graph *, const int64_t *, const double *, size_t,
                            uint8_t *, double *, int64_t *, size_t *);

/* [index64][combine][weight type] */
static const push_fn push_table[2][2][3] = {
    {{push_sum_i32_one, push_sum_i32_f32, push_sum_i32_f64},
     {push_max_i32_one, push_max_i32_f32, push_max_i32_f64}},
    {{push_sum_i64_one, push_sum_i64_f32, push_sum_i64_f64},
     {push_max_i64_one, push_max_i64_f32, push_max_i64_f64}},
};

/* ---- one row ---- */

typedef struct row_run {
    spread_ctx *ctx;
    spread_scratch *s;
    size_t row;
    size_t n_total;     /* length of total_list */
    int dense_total;    /* total[] is valid for every node */
    int in_rows;        /* the state lives in row space */
    size_t front_count; /* frontier size (node space: list length; row space: fired rows) */
    uint64_t front_edges;
    uint64_t edges;     /* slots visited */
} row_run;

static inline size_t out_degree(const engram_spread_graph *g, size_t v) {
    return csr_start(g, v + 1) - csr_start(g, v);
}

/* v fires with incoming pulse x (node space). */
static inline void fire_node(row_run *rr, size_t v, double x) {
    spread_scratch *s = rr->s;
    const engram_spread_options *opt = rr->ctx->opt;
    if (!rr->dense_total && !(s->state[v] & TOTAL)) {
        s->total[v] = seed_value(rr->ctx, rr->row, v);
        s->state[v] |= TOTAL;
        s->total_list[rr->n_total++] = (int64_t)v;
    }
    s->total[v] = combine(opt->combine, s->total[v], x);
    s->state[v] |= FIRED;
}

static inline double send_of(const engram_spread_graph *g, size_t v, double x, double decay) {
    double send = x * decay;
    if (g->source_scale) send = send * g->source_scale[v];
    return send;
}

/* The row's seeds, or NULL for sparse seeds. */
static inline const void *seeds_row(const spread_ctx *ctx, size_t row) {
    const engram_spread_seeds *seeds = ctx->seeds;
    if (seeds->type == ENGRAM_SPREAD_SEEDS_SPARSE) return NULL;
    const ptrdiff_t at = (ptrdiff_t)row * seeds->row_stride;
    return seeds->type == ENGRAM_SPREAD_SEEDS_F32 ? (const void *)((const float *)seeds->data + at)
                                                  : (const void *)((const double *)seeds->data + at);
}

/* Node space -> row space (before a pull hop). */
static void to_rows(row_run *rr) {
    const spread_ctx *ctx = rr->ctx;
    const engram_spread_graph *g = ctx->g;
    const engram_spread_pull *p = g->pull;
    spread_scratch *s = rr->s;
    const size_t n = g->n, rows_padded = p->row_chunks * LANES;
    const int32_t *row_node = p->row_node;
    const uint8_t *state = s->state;
    const double *total = s->total;
    double *total_row = s->total_row;
    uint8_t *fired = s->fired;
    memset(s->pulse, 0, (rows_padded + LANES) * sizeof(double));
    /* a hop writes every row of pulse_next; only the zero row past them stays */
    memset(s->pulse_next + rows_padded, 0, LANES * sizeof(double));
    for (size_t i = 0; i < rr->front_count; i++) s->pulse[p->node_row[s->front_ids[i]]] = s->front_send[i];
    memset(fired, 0, p->row_chunks);
    const void *seeds = seeds_row(ctx, rr->row);
    const int f32 = ctx->seeds->type == ENGRAM_SPREAD_SEEDS_F32;
    for (size_t r = 0; r < n; r++) {
        const size_t v = (size_t)row_node[r];
        const uint8_t st = state[v];
        double t;
        if (rr->dense_total || (st & TOTAL)) t = total[v];
        else if (seeds == NULL) t = 0.0;
        else t = f32 ? (double)((const float *)seeds)[v] : ((const double *)seeds)[v];
        total_row[r] = t;
        fired[r / LANES] |= (uint8_t)((st & FIRED) << (r % LANES));
    }
    for (size_t r = n; r < rows_padded; r++) total_row[r] = 0.0;
    rr->in_rows = 1;
}

/*
 * Dense seeds straight into row space, when the first hop pulls: one pass
 * in row order instead of a node-space frontier and a conversion.
 */
#define DEFINE_SEEDS_TO_ROWS(name, seed_t)                                                       \
    static void name(const engram_spread_pull *p, const seed_t *seeds, size_t n, double threshold, \
                     double send, double *total_row, double *pulse, uint8_t *fired) {            \
        const size_t rows_padded = p->row_chunks * LANES;                                       \
        for (size_t c = 0; c < p->row_chunks; c++) {                                             \
            unsigned bits = 0;                                                                   \
            for (size_t l = 0; l < LANES; l++) {                                                 \
                const size_t r = c * LANES + l;                                                  \
                double x = 0.0, sent = 0.0;                                                      \
                if (r < n) {                                                                     \
                    x = (double)seeds[p->row_node[r]];                                           \
                    if (x > 0 && x >= threshold) {                                               \
                        bits |= 1u << l;                                                         \
                        sent = x * send;                                                         \
                        if (p->row_scale) sent = sent * p->row_scale[r];                         \
                    }                                                                            \
                }                                                                                \
                total_row[r] = x;                                                                \
                pulse[r] = sent;                                                                 \
            }                                                                                    \
            fired[c] = (uint8_t)bits;                                                            \
        }                                                                                        \
        pulse[rows_padded] = 0.0;                                                                \
    }

DEFINE_SEEDS_TO_ROWS(seeds_to_rows_f32, float)
DEFINE_SEEDS_TO_ROWS(seeds_to_rows_f64, double)

/* Row space -> node space (before a push hop, with the frontier taken from the pulses). */
static void to_nodes(row_run *rr) {
    const engram_spread_graph *g = rr->ctx->g;
    const engram_spread_pull *p = g->pull;
    spread_scratch *s = rr->s;
    size_t count = 0;
    uint64_t edges = 0;
    for (size_t r = 0; r < g->n; r++) {
        const size_t v = (size_t)p->row_node[r];
        s->total[v] = s->total_row[r];
        s->state[v] = (uint8_t)(TOTAL | ((s->fired[r / LANES] >> (r % LANES) & 1u) ? FIRED : 0));
        /* a fired row that sends 0 (no out-weight) pushes nothing: leave it out */
        if (s->pulse[r] != 0.0) {
            s->front_ids[count] = (int64_t)v;
            s->front_send[count] = s->pulse[r];
            count++;
            edges += out_degree(g, v);
        }
    }
    rr->front_count = count;
    rr->front_edges = edges;
    rr->dense_total = 1;
    rr->in_rows = 0;
}

static void push_hop(row_run *rr, size_t k) {
    const spread_ctx *ctx = rr->ctx;
    const engram_spread_graph *g = ctx->g;
    const engram_spread_options *opt = ctx->opt;
    spread_scratch *s = rr->s;
    size_t n_touched = 0;
    rr->edges += push_table[g->index64 ? 1 : 0][opt->combine][g->weight_type](
        g, s->front_ids, s->front_send, rr->front_count, s->state, s->nxt, s->work_ids,
        &n_touched);
    /* classify the touched nodes, compacting the next frontier into the same list */
    const double decay_next = k < opt->max_depth ? decay_of_hop(opt, k + 1) : 0.0;
    size_t count = 0;
    uint64_t edges = 0;
    for (size_t t = 0; t < n_touched; t++) {
        const size_t v = (size_t)s->work_ids[t];
        s->state[v] &= (uint8_t)~QUEUED;
        const double x = s->nxt[v];
        if (x > 0 && x >= opt->threshold && (opt->revisit || !(s->state[v] & FIRED))) {
            fire_node(rr, v, x);
            s->work_ids[count] = (int64_t)v;
            s->work_send[count] = send_of(g, v, x, decay_next);
            count++;
            edges += out_degree(g, v);
        }
    }
    int64_t *ids = s->front_ids;
    double *send = s->front_send;
    s->front_ids = s->work_ids;
    s->front_send = s->work_send;
    s->work_ids = ids;
    s->work_send = send;
    rr->front_count = count;
    rr->front_edges = edges;
}

typedef struct hop_range_ctx {
    const engram_spread_pull *p;
    const double *pulse;
    const engram_spread_classify *k;
    engram_spread_hop_fn hop;
    int skip_fired; /* revisit=False: chunks whose rows all fired are not pulled */
    /* blocked layouts */
    engram_spread_pull_fn accumulate;
    size_t (*classify)(const engram_spread_classify *, size_t, size_t, const double *, uint64_t *);
    double *x;
    size_t count[ENGRAM_SPREAD_MAX_HOP_THREADS];
    uint64_t edges[ENGRAM_SPREAD_MAX_HOP_THREADS];
    uint64_t slots[ENGRAM_SPREAD_MAX_HOP_THREADS];
} hop_range_ctx;

/* Chunks [c0, c1), skipping (with revisit=False) runs of chunks whose rows all fired. */
static void hop_chunks(const hop_range_ctx *h, size_t c0, size_t c1, size_t *count,
                       uint64_t *edges, uint64_t *slots) {
    const engram_spread_pull *p = h->p;
    if (!h->skip_fired) {
        *count += h->hop(p, h->pulse, h->k, c0, c1, edges);
        *slots += (uint64_t)(p->chunk_offset[c1] - p->chunk_offset[c0]);
        return;
    }
    const uint8_t *fired = h->k->fired;
    size_t c = c0;
    while (c < c1) {
        if (fired[c] == 0xFF) {
            memset(h->k->pulse_next + c * LANES, 0, LANES * sizeof(double));
            c++;
            continue;
        }
        size_t e = c + 1;
        while (e < c1 && fired[e] != 0xFF) e++;
        *count += h->hop(p, h->pulse, h->k, c, e, edges);
        *slots += (uint64_t)(p->chunk_offset[e] - p->chunk_offset[c]);
        c = e;
    }
}

/* The first chunk of worker w's share: shares hold nearly equal numbers of slots. */
static size_t hop_share_start(const engram_spread_pull *p, unsigned w, unsigned n_workers) {
    if (w == 0) return 0;
    if (w >= n_workers) return p->n_chunks;
    const int64_t target = (int64_t)((double)p->chunk_offset[p->n_chunks] * w / n_workers);
    size_t lo = 0, hi = p->n_chunks;
    while (lo < hi) { /* first chunk starting at or after target */
        const size_t mid = lo + (hi - lo) / 2;
        if (p->chunk_offset[mid] < target) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static void hop_range_worker(void *arg, unsigned worker, unsigned n_workers) {
    hop_range_ctx *h = arg;
    if (worker >= ENGRAM_SPREAD_MAX_HOP_THREADS) return; /* n_workers is capped at that */
    const size_t c0 = hop_share_start(h->p, worker, n_workers);
    const size_t c1 = hop_share_start(h->p, worker + 1, n_workers);
    h->count[worker] = 0;
    h->edges[worker] = 0;
    h->slots[worker] = 0;
    if (c0 < c1) hop_chunks(h, c0, c1, &h->count[worker], &h->edges[worker], &h->slots[worker]);
}

/* The first window of worker w's share of a blocked layout, by slots. */
static size_t window_share_start(const engram_spread_pull *p, unsigned w, unsigned n_workers) {
    if (w == 0) return 0;
    if (w >= n_workers) return p->n_windows;
    const int64_t target = (int64_t)((double)p->window_slots[p->n_windows] * w / n_workers);
    size_t lo = 0, hi = p->n_windows;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (p->window_slots[mid] < target) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/*
 * A blocked hop over windows [w0, w1): their rows' sums start at 0, every
 * source block adds its chunks of these windows (its pulses stay in L2
 * while it does), then the rows are classified.  Windows own their rows, so
 * workers on different windows never write the same row.
 */
static void blocked_range_worker(void *arg, unsigned worker, unsigned n_workers) {
    hop_range_ctx *h = arg;
    if (worker >= ENGRAM_SPREAD_MAX_HOP_THREADS) return;
    const engram_spread_pull *p = h->p;
    const size_t w0 = window_share_start(p, worker, n_workers);
    const size_t w1 = window_share_start(p, worker + 1, n_workers);
    h->count[worker] = 0;
    h->edges[worker] = 0;
    h->slots[worker] = 0;
    if (w0 >= w1) return;
    const size_t rows_padded = p->row_chunks * LANES;
    const size_t r0 = w0 * p->window_rows;
    const size_t r1 = w1 * p->window_rows < rows_padded ? w1 * p->window_rows : rows_padded;
    memset(h->x + r0, 0, (r1 - r0) * sizeof(double));
    for (size_t b = 0; b < p->n_blocks; b++) {
        const int64_t *first = p->block_chunks + b * (p->n_windows + 1);
        if (first[w0] < first[w1]) h->accumulate(p, h->pulse, (size_t)first[w0], (size_t)first[w1], h->x);
    }
    h->count[worker] = h->classify(h->k, r0 / LANES, r1 / LANES, h->x + r0, &h->edges[worker]);
    h->slots[worker] = (uint64_t)(p->window_slots[w1] - p->window_slots[w0]);
}

static void pull_hop(row_run *rr, size_t k) {
    const spread_ctx *ctx = rr->ctx;
    const engram_spread_graph *g = ctx->g;
    const engram_spread_pull *p = g->pull;
    const engram_spread_options *opt = ctx->opt;
    spread_scratch *s = rr->s;
    const engram_spread_classify k_args = {
        .threshold = opt->threshold,
        .send = k < opt->max_depth ? decay_of_hop(opt, k + 1) : 0.0,
        .row_scale = p->row_scale,
        .row_degree = p->row_degree,
        .combine = opt->combine,
        .revisit = opt->revisit,
        .total = s->total_row,
        .fired = s->fired,
        .pulse_next = s->pulse_next,
    };
    hop_range_ctx h = {
        .p = p,
        .pulse = s->pulse,
        .k = &k_args,
        .hop = ctx->ops->hop[opt->combine][g->weight_type],
        .skip_fired = !opt->revisit,
        .accumulate = ctx->ops->accumulate[opt->combine][g->weight_type],
        .classify = ctx->ops->classify,
        .x = s->x,
    };
    /* every row's result is computed the same way whatever share it is in:
       any thread count gives the same bits */
    const unsigned threads = ctx->hop_threads;
    engram_parallel(threads, p->n_blocks ? blocked_range_worker : hop_range_worker, &h);
    size_t count = 0;
    uint64_t edges = 0;
    for (unsigned w = 0; w < threads; w++) {
        count += h.count[w];
        edges += h.edges[w];
        rr->edges += h.slots[w];
    }
    double *t = s->pulse;
    s->pulse = s->pulse_next;
    s->pulse_next = t;
    rr->front_count = count;
    rr->front_edges = edges;
}

static inline int choose_pull(const spread_ctx *ctx, uint64_t front_edges) {
    const engram_spread_graph *g = ctx->g;
    const engram_spread_options *opt = ctx->opt;
    if (opt->direction == ENGRAM_SPREAD_PUSH || !g->pull_possible) return 0;
    if (opt->direction == ENGRAM_SPREAD_PULL) return 1;
    return (double)front_edges > opt->pull_fraction * (double)g->nnz;
}

/*
 * With out held back, a complete row first writes what hop 0 would have:
 * its seeds as float32, or zeros.  (One more read of the seeds, which the
 * hop-0 scan brought into cache, instead of a copy kept in scratch.)
 */
static void write_held_seeds(const spread_ctx *ctx, const void *dense, float *out) {
    const size_t n = ctx->g->n;
    if (!ctx->hold_out) return;
    if (dense == NULL) {
        memset(out, 0, n * sizeof(float));
    } else if (ctx->seeds->type == ENGRAM_SPREAD_SEEDS_F32) {
        memcpy(out, dense, n * sizeof(float));
    } else {
        const double *d = dense;
        for (size_t i = 0; i < n; i++) out[i] = (float)d[i];
    }
}

/*
 * Returns 0, or 1 when the row needs the pull layout (with out held back,
 * nothing written to out; else its seeds may be).
 */
static int spread_row(spread_ctx *ctx, spread_scratch *s, size_t row) {
    const engram_spread_graph *g = ctx->g;
    const engram_spread_options *opt = ctx->opt;
    const engram_spread_seeds *seeds = ctx->seeds;
    const size_t n = g->n;
    float *out = ctx->out + (ptrdiff_t)row * ctx->out_row_stride;
    row_run rr = {.ctx = ctx, .s = s, .row = row};
    const double decay1 = opt->max_depth > 0 ? decay_of_hop(opt, 1) : 0.0;

    /* hop 0: totals are the seeds, the frontier the seeds >= threshold; out starts as the
       seeds (rewritten where totals change), or they are held until the row is complete */
    size_t count = 0;
    const void *dense = seeds_row(ctx, row);
    float *base = ctx->hold_out ? NULL : out;
    if (dense == NULL) {
        if (!ctx->hold_out) memset(out, 0, n * sizeof(float));
        /* a node named twice keeps its later value, as a dict written into an array would */
        for (size_t i = 0; i < seeds->count; i++) {
            const size_t v = (size_t)seeds->ids[i];
            if (!(s->state[v] & TOTAL)) {
                s->state[v] = TOTAL;
                s->total_list[rr.n_total++] = (int64_t)v;
            }
            s->total[v] = seeds->values[i];
        }
        for (size_t i = 0; i < rr.n_total; i++) {
            const size_t v = (size_t)s->total_list[i];
            const double value = s->total[v];
            if (value > 0 && value >= opt->threshold) s->front_ids[count++] = (int64_t)v;
        }
    } else {
        const size_t bad = seeds->type == ENGRAM_SPREAD_SEEDS_F32
                               ? ctx->ops->select_f32(dense, n, ctx->threshold_f32, base, s->front_ids, &count)
                               : ctx->ops->select_f64(dense, n, opt->threshold, base, s->front_ids, &count);
        if (bad < n) {
            /* only reached when out is fresh: the caller reports the smallest (row, index) */
            __atomic_store_n(&ctx->abort, 1, __ATOMIC_RELAXED);
            size_t seen = __atomic_load_n(&ctx->bad_row, __ATOMIC_RELAXED);
            while (row < seen && !__atomic_compare_exchange_n(&ctx->bad_row, &seen, row, 0,
                                                              __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            }
            return 0;
        }
    }
    if (opt->max_depth == 0 || count == 0) {
        /* the totals are the seeds (sparse seeds are on total_list) */
        write_held_seeds(ctx, dense, out);
        for (size_t i = 0; i < rr.n_total; i++) {
            const size_t v = (size_t)s->total_list[i];
            out[v] = (float)s->total[v];
            s->state[v] = 0;
        }
        return 0;
    }
    uint64_t front_edges = 0;
    for (size_t i = 0; i < count; i++) front_edges += out_degree(g, (size_t)s->front_ids[i]);

    size_t k = 1;
    if (dense && choose_pull(ctx, front_edges)) {
        const engram_spread_pull *p = g->pull;
        if (p == NULL) return 1;
        if (seeds->type == ENGRAM_SPREAD_SEEDS_F32)
            seeds_to_rows_f32(p, dense, n, opt->threshold, decay1, s->total_row, s->pulse, s->fired);
        else
            seeds_to_rows_f64(p, dense, n, opt->threshold, decay1, s->total_row, s->pulse, s->fired);
        memset(s->pulse_next + p->row_chunks * LANES, 0, LANES * sizeof(double));
        rr.in_rows = 1;
        rr.front_count = count;
        pull_hop(&rr, k++);
    } else {
        for (size_t i = 0; i < count; i++) {
            const size_t v = (size_t)s->front_ids[i];
            double value;
            if (dense == NULL) {
                value = s->total[v];
            } else {
                value = seed_value(ctx, row, v);
                s->total[v] = value;
                s->state[v] |= TOTAL;
                s->total_list[rr.n_total++] = (int64_t)v;
            }
            s->state[v] |= FIRED;
            s->front_send[i] = send_of(g, v, value, decay1);
        }
        rr.front_count = count;
        rr.front_edges = front_edges;
    }

    for (; k <= opt->max_depth && rr.front_count > 0; k++) {
        const int pull = choose_pull(ctx, rr.front_edges);
        if (pull && g->pull == NULL) return 1;
        if (__atomic_load_n(&ctx->abort, __ATOMIC_RELAXED)) return 0;
        if (pull) {
            if (!rr.in_rows) to_rows(&rr);
            pull_hop(&rr, k);
        } else {
            if (rr.in_rows) to_nodes(&rr);
            push_hop(&rr, k);
        }
    }

    /* write the totals that changed; reset the state for the next row */
    if (rr.in_rows) {
        const int32_t *row_node = g->pull->row_node;
        const double *total_row = s->total_row;
        for (size_t r = 0; r < n; r++) out[row_node[r]] = (float)total_row[r];
        if (rr.dense_total || rr.n_total) memset(s->state, 0, n);
    } else if (rr.dense_total) {
        for (size_t v = 0; v < n; v++) out[v] = (float)s->total[v];
        memset(s->state, 0, n);
    } else {
        write_held_seeds(ctx, dense, out);
        for (size_t i = 0; i < rr.n_total; i++) {
            const size_t v = (size_t)s->total_list[i];
            out[v] = (float)s->total[v];
            s->state[v] = 0;
        }
    }
    __atomic_fetch_add(&ctx->edges, rr.edges, __ATOMIC_RELAXED);
    return 0;
}

/*
 * Rows are handed out in order from a shared counter: a row's result does
 * not depend on which worker computes it (each row runs the same code on
 * its own scratch), so any thread count gives identical results.
 */
static void spread_worker(void *arg, unsigned worker, unsigned n_workers) {
    (void)n_workers;
    spread_ctx *ctx = arg;
    spread_scratch *s = &ctx->scratch[worker];
    for (;;) {
        if (__atomic_load_n(&ctx->abort, __ATOMIC_RELAXED)) return;
        const size_t row = __atomic_fetch_add(&ctx->next_row, 1, __ATOMIC_RELAXED);
        if (row >= ctx->seeds->rows) return;
        if (spread_row(ctx, s, row)) {
            __atomic_store_n(&ctx->wants_pull, 1, __ATOMIC_RELAXED);
            __atomic_store_n(&ctx->abort, 1, __ATOMIC_RELAXED);
            return;
        }
    }
}

static engram_status bad_seed(const engram_spread_seeds *seeds, size_t row, size_t index) {
    const ptrdiff_t at = (ptrdiff_t)row * seeds->row_stride + (ptrdiff_t)index;
    const double v = seeds->type == ENGRAM_SPREAD_SEEDS_F32 ? (double)((const float *)seeds->data)[at]
                                                            : ((const double *)seeds->data)[at];
    const char *what = isnan(v) ? "NaN" : isinf(v) ? "infinite" : "negative";
    if (seeds->batch)
        return engram_fail(ENGRAM_ERR_VALUE,
                           "spread(): seeds must be finite and >= 0, but seeds[%zu, %zu] = %g is %s",
                           row, index, v, what);
    return engram_fail(ENGRAM_ERR_VALUE,
                       "spread(): seeds must be finite and >= 0, but seeds[%zu] = %g is %s", index, v,
                       what);
}

static engram_status validate_options(const engram_spread_graph *g, const engram_spread_seeds *seeds,
                                      const engram_spread_options *opt) {
    if (!(opt->threshold >= 0))
        return engram_fail(ENGRAM_ERR_VALUE, "spread(): threshold must be >= 0 and not NaN, got %g",
                           opt->threshold);
    if (opt->decay_per_hop) {
        for (size_t k = 0; k < opt->max_depth; k++) {
            const double d = opt->decay_per_hop[k];
            if (!(d > 0 && d <= 1))
                return engram_fail(ENGRAM_ERR_VALUE,
                                   "spread(): decay must be in (0, 1], but decay[%zu] = %g", k, d);
        }
    } else if (!(opt->decay > 0 && opt->decay <= 1)) {
        return engram_fail(ENGRAM_ERR_VALUE, "spread(): decay must be in (0, 1], got %g", opt->decay);
    }
    if (!(opt->pull_fraction >= 0))
        return engram_fail(ENGRAM_ERR_VALUE, "spread(): pull_fraction must be >= 0, got %g",
                           opt->pull_fraction);
    if (seeds->type == ENGRAM_SPREAD_SEEDS_SPARSE) {
        if (seeds->rows != 1)
            return engram_fail(ENGRAM_ERR_VALUE, "spread(): sparse seeds are one row");
        for (size_t i = 0; i < seeds->count; i++) {
            const int64_t v = seeds->ids[i];
            const double x = seeds->values[i];
            if (v < 0 || (uint64_t)v >= g->n)
                return engram_fail(ENGRAM_ERR_VALUE,
                                   "spread(): seeds has node %lld, out of range for a graph of %zu nodes",
                                   (long long)v, g->n);
            if (!SEED_OK_F64(x))
                return engram_fail(ENGRAM_ERR_VALUE,
                                   "spread(): seeds must be finite and >= 0, but seeds[%lld] = %g is %s",
                                   (long long)v, x, isnan(x) ? "NaN" : isinf(x) ? "infinite" : "negative");
        }
    }
    return ENGRAM_OK;
}

static engram_status validate_dense_seeds(const engram_spread_ops *ops, const engram_spread_graph *g,
                                          const engram_spread_seeds *seeds) {
    for (size_t row = 0; row < seeds->rows; row++) {
        const ptrdiff_t at = (ptrdiff_t)row * seeds->row_stride;
        size_t bad = seeds->type == ENGRAM_SPREAD_SEEDS_F32
                         ? ops->first_bad_f32((const float *)seeds->data + at, g->n)
                         : ops->first_bad_f64((const double *)seeds->data + at, g->n);
        if (bad < g->n) return bad_seed(seeds, row, bad);
    }
    return ENGRAM_OK;
}

static size_t round_up(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

/*
 * Row-space arrays are read at random (pulses, by every slot) and written
 * whole on every dense hop: on 2 MiB pages the random reads miss the TLB far
 * less and a fresh heap block takes 512x fewer page faults (measured: ~10%
 * on a 1M-node, 10M-edge graph).  A hint only; nothing depends on it.
 */
static void prefer_huge_pages(void *p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t page = (uintptr_t)2 << 20;
    const uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1);
    const uintptr_t hi = ((uintptr_t)p + bytes) & ~(page - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}

static engram_status alloc_scratch(engram_arena *arena, const engram_spread_graph *g,
                                   spread_scratch *s) {
    const size_t n = g->n ? g->n : 1;
    if (n > SIZE_MAX / 128)
        return engram_fail(ENGRAM_ERR_NOMEM, "spread(): %zu nodes overflow the address space", n);
    s->state = engram_arena_alloc(arena, round_up(n));
    s->nxt = engram_arena_alloc(arena, n * sizeof(double));
    s->total = engram_arena_alloc(arena, n * sizeof(double));
    s->front_ids = engram_arena_alloc(arena, n * sizeof(int64_t));
    s->front_send = engram_arena_alloc(arena, n * sizeof(double));
    s->work_ids = engram_arena_alloc(arena, n * sizeof(int64_t));
    s->work_send = engram_arena_alloc(arena, n * sizeof(double));
    s->total_list = engram_arena_alloc(arena, n * sizeof(int64_t));
    if (!s->state || !s->nxt || !s->total || !s->front_ids || !s->front_send || !s->work_ids ||
        !s->work_send || !s->total_list)
        return ENGRAM_ERR_NOMEM;
    memset(s->state, 0, n);
    s->total_row = s->pulse = s->pulse_next = NULL;
    s->fired = NULL;
    if (g->pull) {
        const size_t rows_padded = g->pull->row_chunks * LANES;
        s->total_row = engram_arena_alloc(arena, (rows_padded + LANES) * sizeof(double));
        s->pulse = engram_arena_alloc(arena, (rows_padded + LANES) * sizeof(double));
        s->pulse_next = engram_arena_alloc(arena, (rows_padded + LANES) * sizeof(double));
        s->fired = engram_arena_alloc(arena, round_up(g->pull->row_chunks + 1));
        s->x = NULL;
        if (g->pull->n_blocks) {
            s->x = engram_arena_alloc(arena, (rows_padded + LANES) * sizeof(double));
            if (s->x == NULL) return ENGRAM_ERR_NOMEM;
            prefer_huge_pages(s->x, (rows_padded + LANES) * sizeof(double));
        }
        if (!s->total_row || !s->pulse || !s->pulse_next || !s->fired)
            return ENGRAM_ERR_NOMEM;
        prefer_huge_pages(s->total_row, (rows_padded + LANES) * sizeof(double));
        prefer_huge_pages(s->pulse, (rows_padded + LANES) * sizeof(double));
        prefer_huge_pages(s->pulse_next, (rows_padded + LANES) * sizeof(double));
    }
    return ENGRAM_OK;
}

/* Work (in element visits) below which a batch runs on one thread. */
#define SPREAD_PARALLEL_WORK ((size_t)1 << 18)


engram_status engram_spread_run(engram_arena *arena, const engram_spread_graph *g,
                                const engram_spread_seeds *seeds, const engram_spread_options *opt,
                                float *out, ptrdiff_t out_row_stride, int *wants_pull,
                                uint64_t *edges) {
    *wants_pull = 0;
    if (edges) *edges = 0;
    engram_status status = validate_options(g, seeds, opt);
    if (status != ENGRAM_OK) return status;
    const engram_spread_ops *ops = engram_spread();
    const int dense = seeds->type != ENGRAM_SPREAD_SEEDS_SPARSE;
    if (dense && !opt->out_is_fresh) {
        status = validate_dense_seeds(ops, g, seeds);
        if (status != ENGRAM_OK) return status;
    }
    if (seeds->rows == 0 || g->n == 0) return ENGRAM_OK;

    spread_ctx ctx = {
        .g = g,
        .seeds = seeds,
        .opt = opt,
        .ops = ops,
        .out = out,
        .out_row_stride = out_row_stride,
        .next_row = 0,
        .abort = 0,
        .wants_pull = 0,
        .bad_row = SIZE_MAX,
        .edges = 0,
    };
    /* the smallest float32 >= threshold: x >= it exactly when (double)x >= threshold */
    float t32 = (float)opt->threshold;
    if ((double)t32 < opt->threshold) t32 = nextafterf(t32, INFINITY);
    ctx.threshold_f32 = t32;

    const size_t work_per_row = g->n + g->nnz / 8;
    const unsigned threads = engram_threads_for(opt->threads, seeds->rows * work_per_row,
                                                SPREAD_PARALLEL_WORK, seeds->rows);
    /*
     * A run that may stop for the pull layout holds out back in each row
     * (out is the caller's: it may alias the seeds, and must stay untouched
     * if the layout cannot be built): a row writes out once it is complete.
     */
    ctx.hold_out = !opt->out_is_fresh && g->pull == NULL && g->pull_possible &&
                   opt->direction != ENGRAM_SPREAD_PUSH && opt->max_depth > 0;
    /* every worker's scratch comes from the caller's arena, carved before they start */
    spread_scratch *scratch = engram_arena_alloc(arena, threads * sizeof *scratch);
    if (scratch == NULL) return ENGRAM_ERR_NOMEM;
    for (unsigned w = 0; w < threads; w++) {
        status = alloc_scratch(arena, g, &scratch[w]);
        if (status != ENGRAM_OK) return status;
    }
    ctx.scratch = scratch;
    /* one row: its dense hops are shared by threads (rows are, otherwise) */
    ctx.hop_threads = 1;
    if (seeds->rows == 1 && g->pull_possible)
        ctx.hop_threads = engram_threads_for(opt->threads, g->nnz, opt->parallel_hop_edges,
                                             ENGRAM_SPREAD_MAX_HOP_THREADS);
    engram_parallel(threads, spread_worker, &ctx);

    if (ctx.bad_row != SIZE_MAX) {
        const ptrdiff_t at = (ptrdiff_t)ctx.bad_row * seeds->row_stride;
        size_t bad = seeds->type == ENGRAM_SPREAD_SEEDS_F32
                         ? ops->first_bad_f32((const float *)seeds->data + at, g->n)
                         : ops->first_bad_f64((const double *)seeds->data + at, g->n);
        return bad_seed(seeds, ctx.bad_row, bad);
    }
    if (ctx.wants_pull) {
        *wants_pull = 1;
        return ENGRAM_OK;
    }
    if (edges) *edges = ctx.edges;
    return ENGRAM_OK;
}
