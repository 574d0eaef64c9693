/*
 * engram.h -- the whole C kernel API of engram.
 *
 * Plain C11, no Python.h: every kernel here can be built into a plain C
 * program (tests/c/ builds one, cross-compiled for arm64 and run under
 * qemu-user).  csrc/module.c is the only file that knows about Python.
 *
 * Conventions
 *   - Functions that can fail return engram_status; on failure a message
 *     for the user is left in engram_last_error() (per thread).
 *   - Strides are in elements unless a name ends in _bytes.
 *   - Scratch memory comes from the calling thread's arena (engram_arena),
 *     which the caller resets after the call.
 */
#ifndef ENGRAM_H
#define ENGRAM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ENGRAM_LIKELY(x) __builtin_expect(!!(x), 1)
#define ENGRAM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define ENGRAM_LIKELY(x) (x)
#define ENGRAM_UNLIKELY(x) (x)
#endif

#if defined(__x86_64__) || defined(_M_X64)
#define ENGRAM_X86_64 1
#endif
#if defined(__aarch64__)
#define ENGRAM_ARM64 1
#endif

/* ------------------------------------------------------------------ */
/* Status                                                              */
/* ------------------------------------------------------------------ */

typedef enum engram_status {
    ENGRAM_OK = 0,
    ENGRAM_ERR_NOMEM = 1, /* arena overflow with overflow="raise", or malloc failed */
    ENGRAM_ERR_VALUE = 2  /* a value the kernel found invalid (message says which) */
} engram_status;

/* Message of this thread's last failure ("" if none). */
const char *engram_last_error(void);
/* Record a failure message for this thread and return status. */
engram_status engram_fail(engram_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ------------------------------------------------------------------ */
/* Kernel primitive tables, one per kernel and SIMD level.             */
/* Each kernel section below adds its function pointers; every level   */
/* fills every pointer (a level without a specialised version points   */
/* at the scalar one).                                                 */
/* ------------------------------------------------------------------ */

typedef struct engram_similarity_ops engram_similarity_ops;
typedef struct engram_spread_ops engram_spread_ops;
typedef struct engram_decay_ops engram_decay_ops;

/* ------------------------------------------------------------------ */
/* SIMD levels and run-time dispatch (dispatch.c)                      */
/* ------------------------------------------------------------------ */

typedef enum engram_level {
    ENGRAM_LEVEL_SCALAR = 0,
    ENGRAM_LEVEL_AVX2 = 1,   /* AVX2 + FMA */
    ENGRAM_LEVEL_AVX512 = 2, /* AVX-512 F, BW, DQ, VL */
    ENGRAM_LEVEL_NEON = 3,   /* arm64 Advanced SIMD */
    ENGRAM_LEVEL_COUNT = 4
} engram_level;

const char *engram_level_name(engram_level level);
/* -1 if the name is not a level. */
int engram_level_from_name(const char *name);
/* Bit (1u << level) set for each level the CPU and OS support. */
unsigned engram_levels_detected(void);
/* Bit set for each level this build contains. */
unsigned engram_levels_compiled(void);
/* The best level that is both detected and compiled. */
engram_level engram_level_best(void);
engram_level engram_level_active(void);
/* Make `level` active for every kernel; -1 if not detected and compiled. */
int engram_level_select(engram_level level);
/*
 * Select the level once at start-up.  `cap` is the value of ENGRAM_SIMD
 * (NULL or "" for no cap).  An unknown or unavailable value selects the
 * best level and writes a one-line warning into `warning` (else "").
 */
void engram_dispatch_init(const char *cap, char *warning, size_t warning_size);

/* The active tables (never NULL after engram_dispatch_init). */
extern const engram_similarity_ops *engram_similarity_active;
extern const engram_spread_ops *engram_spread_active;
extern const engram_decay_ops *engram_decay_active;

static inline const engram_similarity_ops *engram_similarity(void) {
    return __atomic_load_n(&engram_similarity_active, __ATOMIC_ACQUIRE);
}
static inline const engram_spread_ops *engram_spread(void) {
    return __atomic_load_n(&engram_spread_active, __ATOMIC_ACQUIRE);
}
static inline const engram_decay_ops *engram_decay(void) {
    return __atomic_load_n(&engram_decay_active, __ATOMIC_ACQUIRE);
}

/* Tables per level, defined in the kernel's file (scalar) or csrc/simd/. */
extern const engram_similarity_ops engram_similarity_ops_scalar;
extern const engram_spread_ops engram_spread_ops_scalar;
extern const engram_decay_ops engram_decay_ops_scalar;
#if defined(ENGRAM_X86_64)
extern const engram_similarity_ops engram_similarity_ops_avx2;
extern const engram_spread_ops engram_spread_ops_avx2;
extern const engram_decay_ops engram_decay_ops_avx2;
extern const engram_similarity_ops engram_similarity_ops_avx512;
extern const engram_spread_ops engram_spread_ops_avx512;
extern const engram_decay_ops engram_decay_ops_avx512;
#endif
#if defined(ENGRAM_ARM64)
extern const engram_similarity_ops engram_similarity_ops_neon;
extern const engram_spread_ops engram_spread_ops_neon;
extern const engram_decay_ops engram_decay_ops_neon;
#endif

/* ------------------------------------------------------------------ */
/* Thread-local bump arena (arena.c)                                   */
/* ------------------------------------------------------------------ */

#define ENGRAM_ARENA_ALIGN 64
#define ENGRAM_ARENA_DEFAULT_SIZE ((size_t)2 << 20)
#define ENGRAM_ARENA_MIN_SIZE ((size_t)64 << 10)
#define ENGRAM_ARENA_MAX_SIZE ((size_t)1 << 30)

typedef enum engram_overflow {
    ENGRAM_OVERFLOW_HEAP = 0, /* fall back to malloc, freed at reset, counted */
    ENGRAM_OVERFLOW_RAISE = 1 /* fail with ENGRAM_ERR_NOMEM */
} engram_overflow;

typedef struct engram_arena engram_arena;

typedef struct engram_arena_stats {
    uint64_t thread_id;  /* pthread_self() of the owner == threading.get_ident() */
    uint64_t capacity;   /* bytes of the arena's block (0 until first use) */
    uint64_t in_use;     /* bytes handed out since the last reset, overflow included */
    uint64_t high_water; /* largest in_use seen */
    uint64_t allocations;
    uint64_t overflows;      /* allocations served from the heap */
    uint64_t overflow_bytes; /* bytes of those allocations */
    uint64_t resets;
} engram_arena_stats;

/* This thread's arena, created on first use; NULL only if out of memory. */
engram_arena *engram_arena_get(void);
/* 64-byte-aligned scratch; NULL (with engram_last_error set) on failure. */
void *engram_arena_alloc(engram_arena *arena, size_t bytes);
/* Release everything allocated since the last reset (heap overflow too). */
void engram_arena_reset(engram_arena *arena);

/* Process-wide configuration; capacity takes effect at each arena's next reset. */
int engram_arena_configure(size_t capacity, engram_overflow overflow, int zero_on_reset);
void engram_arena_get_config(size_t *capacity, engram_overflow *overflow, int *zero_on_reset);
/*
 * Parse "2M", "4MiB", "512k", "1048576", "1G" into bytes.  Returns 0 and
 * writes a message into `error` if the text is not a size in
 * [ENGRAM_ARENA_MIN_SIZE, ENGRAM_ARENA_MAX_SIZE].
 */
size_t engram_arena_parse_size(const char *text, char *error, size_t error_size);
/*
 * Stats of every live arena (up to `max` of them into `per_thread`) and
 * the total over live and exited threads.  Returns the number of live arenas.
 */
size_t engram_arena_collect_stats(engram_arena_stats *per_thread, size_t max,
                                  engram_arena_stats *total);
void engram_arena_reset_stats(void);
/* Number of arenas whose memory is currently allocated (for leak tests). */
size_t engram_arena_live_count(void);

/* Copy a strided 2-D block of `elsize`-byte elements into contiguous rows. */
void engram_copy_2d(void *dst, const void *src, size_t rows, size_t cols, size_t elsize,
                    ptrdiff_t row_stride_bytes, ptrdiff_t col_stride_bytes);
/*
 * Rows whose elements are contiguous: `data` itself when col_stride_bytes
 * == elsize (any row stride: zero-copy), else one copy into the arena.
 * Sets *row_stride_out (bytes); NULL with engram_last_error set on failure.
 */
const void *engram_rows_contiguous(engram_arena *arena, const void *data, size_t rows,
                                   size_t cols, size_t elsize, ptrdiff_t row_stride_bytes,
                                   ptrdiff_t col_stride_bytes, ptrdiff_t *row_stride_out);

/* ------------------------------------------------------------------ */
/* Threads (parallel.c)                                                */
/* ------------------------------------------------------------------ */

/* Cores this process may run on (sched_getaffinity), at least 1. */
unsigned engram_cpu_count(void);
/* Default for threads=None when work is large (ENGRAM_NUM_THREADS / set_num_threads). */
unsigned engram_default_threads(void);
void engram_set_default_threads(unsigned n);
/*
 * Threads for one call: `requested` > 0 is taken as is (capped at 256),
 * 0 means automatic: 1 below `parallel_threshold` units of work, else the
 * default.  Never more than `max_useful` (e.g. the number of rows).
 */
unsigned engram_threads_for(int requested, size_t work, size_t parallel_threshold,
                            size_t max_useful);

typedef void (*engram_task_fn)(void *ctx, unsigned worker, unsigned n_workers);
/*
 * Run fn(ctx, w, n) for w in 0..n-1, the caller being worker 0, and return
 * when all are done.  Worker threads beyond the cores not already busy with
 * engram work are not started: their share runs on the caller instead, so
 * many Python threads asking for threads=2 do not oversubscribe the cores.
 * Safe after fork(): no pool is kept between calls.
 */
void engram_parallel(unsigned n, engram_task_fn fn, void *ctx);

/* ------------------------------------------------------------------ */
/* Monitoring (stats.c)                                                */
/* ------------------------------------------------------------------ */

typedef enum engram_kernel_id {
    ENGRAM_KERNEL_COSINE_SIMILARITY = 0,
    ENGRAM_KERNEL_NORMALIZE,
    ENGRAM_KERNEL_TOP_K,
    ENGRAM_KERNEL_SPREAD,
    ENGRAM_KERNEL_DECAY,
    ENGRAM_KERNEL_COUNT
} engram_kernel_id;

typedef struct engram_kernel_stats {
    uint64_t calls;
    uint64_t total_ns;
    uint64_t last_ns;
    uint64_t elements;
} engram_kernel_stats;

const char *engram_kernel_name(engram_kernel_id id);
int engram_stats_enabled(void);
void engram_stats_enable(int on);
uint64_t engram_now_ns(void);
void engram_stats_record(engram_kernel_id id, uint64_t ns, uint64_t elements);
void engram_stats_get(engram_kernel_id id, engram_kernel_stats *out);
void engram_stats_clear(void);

/* ------------------------------------------------------------------ */
/* Bandwidth probes (probe.c), at the active level                     */
/* ------------------------------------------------------------------ */

/* Read n floats (returns their sum so the reads cannot be elided). */
float engram_probe_read(const float *p, size_t n);
/* out[i] = out[i] * a[i] + b[i]: reads three streams, writes one. */
void engram_probe_triad(float *out, const float *a, const float *b, size_t n);

/* ==================================================================== */
/* Kernels.  Each section: its primitive table and its entry points.     */
/* ==================================================================== */

/* ---- similarity (similarity.c, simd/) ------------------------------- */

/*
 * Numerics shared by every level (the scalar table is the spec):
 *   - float32 inputs: products accumulate in float32 FMA lanes, and each
 *     lane is flushed into float64 after at most ENGRAM_SIM_F32_LANE_TERMS
 *     products (every 1024 elements of d with 16 lanes, 512 with 8, 256
 *     with 4); the last reduction, the square roots and the division are
 *     float64.  With so few terms per float32 partial sum the rounding
 *     error stays near 1e-7 relative at any d, well inside 1e-6 for
 *     unit-scale vectors.  float64 inputs accumulate in float64.
 *   - Rows whose squared norm falls outside [TINY, HUGE] of their type
 *     (zero, denormal, ~1e19+ magnitudes, NaN, inf) are handled by an exact
 *     scalar path in similarity.c: zero -> 0, NaN/inf -> NaN, otherwise
 *     both vectors are rescaled by powers of two and recomputed in float64.
 *   - Cosines are clamped to [-1, 1].
 */
#define ENGRAM_SIM_F32_LANE_TERMS 64
#define ENGRAM_SIM_F32_TINY 1e-30
#define ENGRAM_SIM_F32_HUGE 1e36
#define ENGRAM_SIM_F64_TINY 1e-280
#define ENGRAM_SIM_F64_HUGE 1e280
/* The register tiles of the many-to-many kernels are at most this big. */
#define ENGRAM_SIM_TILE_MAX 32
/* Corpus rows per call of the small-d many-to-many kernels (dot_cols_*). */
#define ENGRAM_SIM_COLS 64

typedef enum engram_float_type { ENGRAM_FLOAT32 = 0, ENGRAM_FLOAT64 = 1 } engram_float_type;
typedef enum engram_metric { ENGRAM_METRIC_COSINE = 0, ENGRAM_METRIC_DOT = 1 } engram_metric;

/* n vectors of d elements; strides in bytes, any sign. */
typedef struct engram_vectors {
    const void *data;
    size_t n, d;
    ptrdiff_t row_stride_bytes, col_stride_bytes;
} engram_vectors;

struct engram_similarity_ops {
    const char *level;
    /* out = {x.y, x.x, y.y} of contiguous vectors, in one pass. */
    void (*pair_f32)(const float *x, const float *y, size_t d, double out[3]);
    void (*pair_f64)(const double *x, const double *y, size_t d, double out[3]);
    /* For n contiguous rows r_i (stride in elements): dot[i] = q.r_i, norm2[i] = r_i.r_i. */
    void (*one_to_many_f32)(const float *q, const float *rows, ptrdiff_t stride, size_t n,
                            size_t d, double *dot, double *norm2);
    void (*one_to_many_f64)(const double *q, const double *rows, ptrdiff_t stride, size_t n,
                            size_t d, double *dot, double *norm2);
    /* norm2[i] = r_i.r_i */
    void (*norm2_rows_f32)(const float *rows, ptrdiff_t stride, size_t n, size_t d,
                           double *norm2);
    void (*norm2_rows_f64)(const double *rows, ptrdiff_t stride, size_t n, size_t d,
                           double *norm2);
    /*
     * Register tile of the many-to-many kernels: for i < tile_rows, j < tile_cols,
     * out[i * ldo + j] (+= if accumulate) x[i][x0 : x0+len] . y[j][0 : len].
     * Every (i, j) is computed with the same arithmetic, so a pair's value
     * does not depend on its place in the tile (rows may repeat to fill a
     * tile).  f32 callers keep len <= f32_chunk, the level's flush interval.
     */
    void (*dot_tile_f32)(const float *const *x, size_t x0, const float *const *y, size_t len,
                         double *out, size_t ldo, int accumulate);
    void (*dot_tile_f64)(const double *const *x, size_t x0, const double *const *y, size_t len,
                         double *out, size_t ldo, int accumulate);
    unsigned tile_rows_f32, tile_cols_f32, tile_rows_f64, tile_cols_f64;
    /* elements of d per float32 tile call: lanes * ENGRAM_SIM_F32_LANE_TERMS */
    unsigned f32_chunk;
    /*
     * Small d, where a tile's horizontal sums would cost more than its
     * products: vectorised across corpus rows instead of along d.  The corpus
     * block is transposed, yt[k * ENGRAM_SIM_COLS + j] = y_j[k] for k < d
     * (columns past the block's rows hold zeros), and for i < rows and every
     * j < ENGRAM_SIM_COLS: out[i * ldo + j] = x_i . y_j, x_i = x + i * x_stride
     * (elements).  Each lane sums its products in order of k (float32: flushed
     * into float64 every ENGRAM_SIM_F32_LANE_TERMS of them), so a pair's value
     * does not depend on `rows`, on its row's place in the call or on j.
     * The driver uses them for d <= cols_max_d_f32 / cols_max_d_f64 (0: never).
     */
    void (*dot_cols_f32)(const float *x, ptrdiff_t x_stride, size_t rows, const float *yt,
                         size_t d, double *out, size_t ldo);
    void (*dot_cols_f64)(const double *x, ptrdiff_t x_stride, size_t rows, const double *yt,
                         size_t d, double *out, size_t ldo);
    unsigned cols_max_d_f32, cols_max_d_f64;
    /*
     * Scores of one x row against n y rows from their dot products: cosine
     * clamp((dots[j] * x_inv) * y_inv[j], -1, 1), dot dots[j]; NaN where the
     * inverse norms are not both > 0 (the driver recomputes those pairs).
     */
    void (*scores_f32)(const double *dots, const double *y_inv, double x_inv, size_t n,
                       int metric, float *out);
    void (*scores_f64)(const double *dots, const double *y_inv, double x_inv, size_t n,
                       int metric, double *out);
    /* The j < n with !(s[j] <= threshold), i.e. above it or NaN, ascending; returns how many. */
    size_t (*select_f32)(const float *s, size_t n, float threshold, uint32_t *idx);
    size_t (*select_f64)(const double *s, size_t n, double threshold, uint32_t *idx);
    /* out[i] = (float)(x[i] * s) with the product rounded in float64; out may be x. */
    void (*scale_f32)(const float *x, double s, float *out, size_t d);
    void (*scale_f64)(const double *x, double s, double *out, size_t d);
};

/*
 * Cosine of one contiguous pair (the hot single-pair path: no arena, no
 * threads).  Zero vector -> 0.0, NaN/inf anywhere -> NaN, else in [-1, 1].
 */
double engram_cosine_pair_f32(const float *x, const float *y, size_t d);
double engram_cosine_pair_f64(const double *x, const double *y, size_t d);

/* Cosine of two vectors with any strides (copied into the arena if not contiguous). */
engram_status engram_cosine_vectors(engram_arena *arena, engram_float_type type,
                                    const engram_vectors *x, const engram_vectors *y,
                                    double *result);

/*
 * out[i * out_row_stride + j * out_col_stride] = cosine(x_i, y_j) for
 * i < x->n, j < y->n, in `type` (both inputs and out).  Any input strides
 * (column-strided inputs are copied once into the arena); out may have any
 * strides and alignment: results are stored in place when its columns are
 * contiguous and aligned, else element by element.  threads: 0 automatic,
 * else that many.
 */
engram_status engram_cosine(engram_arena *arena, engram_float_type type,
                            const engram_vectors *x, const engram_vectors *y, void *out,
                            ptrdiff_t out_row_stride_bytes, ptrdiff_t out_col_stride_bytes,
                            int threads);

/*
 * L2-normalise each row of x into out (out may be x itself, laid out
 * identically); zero rows are copied.  out may have any strides and alignment.
 */
engram_status engram_normalize(engram_arena *arena, engram_float_type type,
                               const engram_vectors *x, void *out,
                               ptrdiff_t out_row_stride_bytes, ptrdiff_t out_col_stride_bytes);

/*
 * For each query i: the k best corpus rows by score (descending, ties to
 * the smaller id), NaN never included, padded with id -1 / score -inf.
 * scores (type) and ids are contiguous queries->n x k.  Scratch is one
 * cache block per thread (with the heaps of its block's queries), plus
 * O(threads * queries * k) when few queries split a long corpus between
 * threads; never queries x corpus.
 */
engram_status engram_top_k(engram_arena *arena, engram_float_type type,
                           const engram_vectors *queries, const engram_vectors *corpus, size_t k,
                           engram_metric metric, void *scores, int64_t *ids, int threads);

/* ---- end similarity ------------------------------------------------- */

/* ---- spread (spread.c, simd/) --------------------------------------- */

/*
 * Semantics (DESIGN.md, "Spreading activation"): from the seeds, each hop
 * sends decay_k * w~(u, v) * pulse[u] along every out-edge of every node of
 * the frontier; a node whose incoming pulse is > 0 and >= threshold (and,
 * unless revisit, has not fired before) fires: its total is combined with
 * the pulse and it joins the next frontier.  Pulses and totals are kept in
 * float64; the result is rounded to float32 once, at the end.  Products and
 * sums are IEEE: a pulse that overflowed to inf sends NaN (0 * inf) along an
 * edge of weight 0, and a NaN term makes the row's incoming pulse NaN under
 * "sum" and "max" alike (max propagates NaN from either side, as NumPy's
 * maximum does), so that node does not fire in that hop.
 *
 * A hop either pushes over the out-edges of a sparse frontier (CSR, cost
 * proportional to the edges reached) or, when the frontier's out-edges are
 * a large share of all edges, pulls over the pull layout below (every row
 * sums its in-edges; no scatter, no per-edge bookkeeping).
 */

typedef enum engram_spread_weight_type {
    ENGRAM_SPREAD_UNWEIGHTED = 0, /* every edge weighs 1 */
    ENGRAM_SPREAD_F32 = 1,
    ENGRAM_SPREAD_F64 = 2
} engram_spread_weight_type;

typedef enum engram_spread_combine {
    ENGRAM_SPREAD_SUM = 0,
    ENGRAM_SPREAD_MAX = 1
} engram_spread_combine;

typedef enum engram_spread_direction {
    ENGRAM_SPREAD_AUTO = 0, /* per hop, by the frontier's share of the edges */
    ENGRAM_SPREAD_PUSH = 1,
    ENGRAM_SPREAD_PULL = 2
} engram_spread_direction;

/* Rows per chunk of the pull layout (one chunk = one 8-lane float64 vector). */
#define ENGRAM_SPREAD_LANES 8
/* Largest node count the pull layout can number (row n is the zero pulse). */
#define ENGRAM_SPREAD_PULL_MAX_NODES ((size_t)INT32_MAX - 2 * ENGRAM_SPREAD_LANES)

/*
 * Pull layout: the transpose in sliced ELLPACK form (SELL-8-sigma).  Nodes
 * are renumbered into rows sorted by in-degree within windows of
 * window_rows nodes, so the 8 rows of a chunk have nearly equal lengths
 * (little padding) and a row's node is near the row.  A slot chunk holds 8
 * lanes; its slot j of lane l is at chunk_offset[c] + 8 j + l and names a
 * source by its row (padding: row n, whose pulse is always 0) with the
 * edge's weight.  A dense hop reads pulses and writes results in row order
 * and sums 8 rows at once with no branch per row.
 *
 * Unblocked (n_blocks == 0): slot chunk c is row chunk c (rows 8c..8c+7).
 * Blocked: when the pulses outgrow the L2 cache the random pulse reads
 * wait on L3 and dominate, so the sources are cut into blocks of
 * block_rows rows (pulses that fit L2) and each block has its own chunks,
 * over the rows with an in-edge from it, window by window; a hop pulls
 * block after block, adding each lane's sum into x[chunk_rows[8 c + l]],
 * then classifies x.  Padding lanes repeat lane 0's row (they add 0).
 */
typedef struct engram_spread_pull {
    size_t row_chunks;           /* ceil(n / 8) */
    const int32_t *row_node;     /* n: node of each row */
    const int32_t *node_row;     /* n: row of each node */
    /* by row, 8 row_chunks entries (padding rows 0): */
    const double *row_scale;     /* source_scale, or NULL */
    const uint32_t *row_degree;  /* out-degree, saturated (for the direction choice) */
    size_t n_chunks;             /* slot chunks */
    const int64_t *chunk_offset; /* n_chunks + 1, in slots */
    const int32_t *chunk_length; /* n_chunks: slots per lane */
    const int32_t *sources;      /* chunk_offset[n_chunks]: source row of each slot */
    const void *weights;         /* each slot's weight (graph's type; padding 0), NULL if unweighted */
    size_t n_blocks;             /* 0: unblocked */
    size_t block_rows;           /* source rows per block */
    size_t window_rows;          /* rows per window, a multiple of 8 */
    size_t n_windows;            /* ceil(n / window_rows) */
    const int64_t *block_chunks; /* n_blocks x (n_windows + 1): first slot chunk of (block, window) */
    const int32_t *chunk_rows;   /* 8 per slot chunk: the row of each lane */
    const int64_t *window_slots; /* n_windows + 1: slots of every block in the windows before */
} engram_spread_pull;

typedef struct engram_spread_graph {
    size_t n, nnz;
    int index64;                    /* indptr and indices are int64 (else int32) */
    const void *indptr;             /* n + 1 */
    const void *indices;            /* nnz: target of each out-edge, CSR order */
    engram_spread_weight_type weight_type;
    const void *weights;            /* nnz, or NULL when unweighted */
    const double *source_scale;     /* n: factor on all a node sends (normalize="out"), or NULL */
    const engram_spread_pull *pull; /* NULL: not built; hops push */
    int pull_possible;              /* a pull layout can be built for this graph */
} engram_spread_graph;

typedef enum engram_spread_seed_type {
    ENGRAM_SPREAD_SEEDS_SPARSE = 0, /* one row: ids[count], values[count] */
    ENGRAM_SPREAD_SEEDS_F32 = 1,    /* rows x n, row_stride elements apart */
    ENGRAM_SPREAD_SEEDS_F64 = 2
} engram_spread_seed_type;

typedef struct engram_spread_seeds {
    engram_spread_seed_type type;
    size_t rows;
    int batch; /* rows came as a 2-d array (for messages) */
    const void *data;
    ptrdiff_t row_stride;
    size_t count;
    const int64_t *ids; /* in [0, n); a repeated id keeps its last value */
    const double *values;
} engram_spread_seeds;

typedef struct engram_spread_options {
    size_t max_depth;
    double decay;                /* every hop's factor, unless decay_per_hop */
    const double *decay_per_hop; /* max_depth factors, or NULL */
    double threshold;
    engram_spread_combine combine;
    int revisit;
    engram_spread_direction direction;
    double pull_fraction; /* auto: pull when the frontier's out-edges exceed this share of nnz */
    size_t parallel_hop_edges; /* a single row's dense hops use threads from this many edges */
    int threads;          /* 0: automatic */
    int out_is_fresh;     /* out may be written before every row is validated */
} engram_spread_options;

/* Most threads one row's dense hop is split across. */
#define ENGRAM_SPREAD_MAX_HOP_THREADS 64

/*
 * Default share of the edges above which a hop pulls: where a push over the
 * frontier's out-edges and a pull over all in-edges took equal time here,
 * 0.035 (1M nodes, 10M edges) to 0.055 (100k, 1M) to 0.12 (1k, 5k).
 */
#define ENGRAM_SPREAD_PULL_FRACTION 0.05
/* Default edges from which one row's dense hops are shared by threads: a hop
   must outlast starting a thread (~50 us) by far. */
#define ENGRAM_SPREAD_PARALLEL_HOP_EDGES ((size_t)1 << 20)

typedef struct engram_spread_classify {
    double threshold;
    double send;              /* decay of the next hop */
    const double *row_scale;  /* or NULL */
    const uint32_t *row_degree;
    engram_spread_combine combine;
    int revisit;
    double *total;            /* by row */
    uint8_t *fired;           /* bit l of byte c: row 8c + l has fired */
    double *pulse_next;       /* by row: what the row sends next hop (0 if it did not fire) */
} engram_spread_classify;

/* Sums of slot chunks [c0, c1) into x (see accumulate below). */
typedef void (*engram_spread_pull_fn)(const engram_spread_pull *p, const double *pulse, size_t c0,
                                      size_t c1, double *x);

/*
 * One dense hop over the rows of chunks [c0, c1): x = the sum (or max) over
 * each row's slots of weight * pulse[source], then every row whose x fires
 * (x > 0, x >= threshold, and revisit or not fired before) gets its total
 * combined with x, its fired bit set and pulse_next = x * send * row_scale;
 * other rows get pulse_next = 0.  Returns how many fired and adds their
 * out-degrees to *edges.
 */
typedef size_t (*engram_spread_hop_fn)(const engram_spread_pull *p, const double *pulse,
                                       const engram_spread_classify *k, size_t c0, size_t c1,
                                       uint64_t *edges);

struct engram_spread_ops {
    const char *level;
    /* hop[combine][weight type] on an unblocked layout (the classify's combine must match) */
    engram_spread_hop_fn hop[2][3];
    /*
     * accumulate[combine][weight type] on a blocked layout: for slot chunks
     * [c0, c1), x[chunk_rows[8 c + l]] += (or max=) lane l's sum over its
     * slots of weight * pulse[source]; x is indexed by row.
     */
    engram_spread_pull_fn accumulate[2][3];
    /* The classification of a hop for row chunks [c0, c1); x[0] is row 8 c0's sum. */
    size_t (*classify)(const engram_spread_classify *k, size_t c0, size_t c1, const double *x,
                       uint64_t *edges);
    /*
     * out[i] = (float)s[i] for i < n (unless out is NULL), and the ids of
     * s[i] > 0 && s[i] >= threshold appended to ids (*count of them),
     * stopping at the first s[i] that is negative, NaN or infinite: returns
     * its index, or n.  For float32 seeds the threshold is the smallest
     * float32 >= the float64 threshold.
     */
    size_t (*select_f32)(const float *s, size_t n, float threshold, float *out, int64_t *ids,
                         size_t *count);
    size_t (*select_f64)(const double *s, size_t n, double threshold, float *out, int64_t *ids,
                         size_t *count);
    /* First index whose value is negative, NaN or infinite, or n. */
    size_t (*first_bad_f32)(const float *s, size_t n);
    size_t (*first_bad_f64)(const double *s, size_t n);
};

/* The scalar primitives: the spec, and what a SIMD level uses where it has nothing faster. */
size_t engram_spread_hop_sum_unweighted_scalar(const engram_spread_pull *, const double *,
                                               const engram_spread_classify *, size_t, size_t,
                                               uint64_t *);
size_t engram_spread_hop_sum_f32_scalar(const engram_spread_pull *, const double *,
                                        const engram_spread_classify *, size_t, size_t, uint64_t *);
size_t engram_spread_hop_sum_f64_scalar(const engram_spread_pull *, const double *,
                                        const engram_spread_classify *, size_t, size_t, uint64_t *);
size_t engram_spread_hop_max_unweighted_scalar(const engram_spread_pull *, const double *,
                                               const engram_spread_classify *, size_t, size_t,
                                               uint64_t *);
size_t engram_spread_hop_max_f32_scalar(const engram_spread_pull *, const double *,
                                        const engram_spread_classify *, size_t, size_t, uint64_t *);
size_t engram_spread_hop_max_f64_scalar(const engram_spread_pull *, const double *,
                                        const engram_spread_classify *, size_t, size_t, uint64_t *);
void engram_spread_accumulate_sum_unweighted_scalar(const engram_spread_pull *, const double *,
                                                    size_t, size_t, double *);
void engram_spread_accumulate_sum_f32_scalar(const engram_spread_pull *, const double *, size_t,
                                             size_t, double *);
void engram_spread_accumulate_sum_f64_scalar(const engram_spread_pull *, const double *, size_t,
                                             size_t, double *);
void engram_spread_accumulate_max_unweighted_scalar(const engram_spread_pull *, const double *,
                                                    size_t, size_t, double *);
void engram_spread_accumulate_max_f32_scalar(const engram_spread_pull *, const double *, size_t,
                                             size_t, double *);
void engram_spread_accumulate_max_f64_scalar(const engram_spread_pull *, const double *, size_t,
                                             size_t, double *);
size_t engram_spread_classify_scalar(const engram_spread_classify *, size_t, size_t, const double *,
                                     uint64_t *);
size_t engram_spread_select_f32_scalar(const float *, size_t, float, float *, int64_t *, size_t *);
size_t engram_spread_select_f64_scalar(const double *, size_t, double, float *, int64_t *,
                                       size_t *);
size_t engram_spread_first_bad_f32_scalar(const float *, size_t);
size_t engram_spread_first_bad_f64_scalar(const double *, size_t);

/*
 * Spread rows of seeds over g into out (rows x n float32, out_row_stride
 * elements apart).  Everything is validated before out is written (unless
 * opt->out_is_fresh).  When a hop should pull (auto, or forced) but g->pull
 * is NULL while g->pull_possible, returns ENGRAM_OK with *wants_pull = 1:
 * build the layout and call again.  Rows completed by then are written to
 * out (a later call rewrites them the same); unless out_is_fresh, no row
 * writes out before it is complete, so with one row of seeds out is
 * untouched and the seeds (which out may alias) intact.  *edges (if not
 * NULL) receives the number of edge slots visited.
 */
engram_status engram_spread_run(engram_arena *arena, const engram_spread_graph *g,
                                const engram_spread_seeds *seeds, const engram_spread_options *opt,
                                float *out, ptrdiff_t out_row_stride, int *wants_pull,
                                uint64_t *edges);

/*
 * Pull layout, step 1: rows (sorted by in-degree within windows of
 * window_rows nodes) and row degrees (8 ceil(n / 8) entries), and the slot
 * chunks and slots step 2 fills.  block_rows = 0: unblocked.
 */
engram_status engram_spread_pull_plan(engram_arena *arena, const engram_spread_graph *g,
                                      size_t window_rows, size_t block_rows, int32_t *row_node,
                                      int32_t *node_row, uint32_t *row_degree, size_t *n_chunks,
                                      size_t *n_slots);
/*
 * Step 2: chunk lengths and offsets, and (blocked) chunk rows, the chunks
 * of each (block, window) and the slots before each window; each slot's
 * source row; and, if weights_out, each slot's weight from g->weights.
 * Any output may be NULL (to lay out another weight array later).
 */
engram_status engram_spread_pull_build(engram_arena *arena, const engram_spread_graph *g,
                                       size_t window_rows, size_t block_rows,
                                       const int32_t *row_node, const int32_t *node_row,
                                       int32_t *chunk_length, int64_t *chunk_offset,
                                       int32_t *chunk_rows, int64_t *block_chunks,
                                       int64_t *window_slots, int32_t *sources, void *weights_out);

/* ---- end spread ----------------------------------------------------- */

/* ---- decay (decay.c, simd/) ----------------------------------------- */

/*
 * decay: strength * exp(-age / stability)                 (exponential)
 *        strength * (1 + factor * age / stability)^-power (power)
 * computed in the precision of `strength` (float32 or float64); out has
 * the type of strength.  Ages and stabilities of any of the four types are
 * converted in the kernel, exactly as a C cast converts them to double
 * (validation sees the values as given).  With float32 strength the
 * exponential's argument is the float32 y = (float)((double)age /
 * (double)stability): no operand is rounded to float32 before the
 * division (for float32 operands this is the IEEE float32 quotient).
 * decay_internal.h has the numerical scheme of each model.
 */
typedef enum engram_decay_model {
    ENGRAM_DECAY_EXPONENTIAL = 0,
    ENGRAM_DECAY_POWER = 1
} engram_decay_model;

typedef enum engram_decay_type {
    ENGRAM_DECAY_F32 = 0,
    ENGRAM_DECAY_F64 = 1,
    ENGRAM_DECAY_I64 = 2,
    ENGRAM_DECAY_U64 = 3
} engram_decay_type;

/* n elements `stride` elements apart; stride 0: one value for every memory. */
typedef struct engram_decay_operand {
    const void *data;
    ptrdiff_t stride;
    engram_decay_type type;
} engram_decay_operand;

typedef struct engram_decay_args {
    size_t n;
    engram_decay_operand strength, age, stability;
    void *out; /* type of strength; may be strength itself (same layout) */
    ptrdiff_t out_stride;
    engram_decay_model model;
    double power, factor;
    int validate;     /* ages >= 0 and stabilities > 0, none NaN, checked before any write */
    int out_is_fresh; /* out is new: validation may run alongside the computation */
    int threads;      /* 0: automatic */
} engram_decay_args;

engram_status engram_decay_run(engram_arena *arena, const engram_decay_args *args);

/*
 * The primitives work on contiguous blocks of a multiple of 16 elements
 * (the driver pads the last one); strength and out are in the working
 * precision, ages of params->age_type, stabilities of
 * params->stability_type.  A NULL age or stability means the broadcast
 * value in the parameters.  out may equal strength.
 */
typedef struct engram_decay_block {
    size_t n;
    void *out;
    const void *strength;
    const void *age;       /* elements of params->age_type */
    const void *stability; /* elements of params->stability_type */
} engram_decay_block;

typedef struct engram_decay_params {
    engram_decay_type age_type;
    /* float32 strength: F32 for a float32 stability array, else F64 (the
     * driver converts integer stabilities to double); float64: F64 */
    engram_decay_type stability_type;
    double age, stability; /* broadcast values, converted to double like a C cast */
    double power, factor;
} engram_decay_params;

typedef void (*engram_decay_fn)(const engram_decay_params *params, const engram_decay_block *block);
/*
 * The same with validation of the block's ages (params->age_type, as
 * given) and stabilities (float32 arrays only: stability_type F32, or a
 * broadcast value the driver has checked): returns the index of the
 * first invalid element, or n.  Elements before it are computed; out may
 * be written anywhere, so the driver uses these only for a fresh out.
 */
typedef size_t (*engram_decay_checked_fn)(const engram_decay_params *params,
                                          const engram_decay_block *block);

struct engram_decay_ops {
    const char *level;
    engram_decay_fn exp_f32, power_f32, exp_f64, power_f64;
    engram_decay_checked_fn exp_f32_checked, power_f32_checked;
    /* First i < n with age[i] < 0 or NaN, or stability[i] <= 0 or NaN (either
     * pointer may be NULL); n if none.  Contiguous arrays of one float type. */
    size_t (*first_invalid_f32)(const float *age, const float *stability, size_t n);
    size_t (*first_invalid_f64)(const double *age, const double *stability, size_t n);
};

/*
 * One element of each model, the definition every level reproduces.  The
 * SIMD levels compute their fast lanes the same way and call these for the
 * lanes they leave out (NaN, infinities, extreme magnitudes).
 * y is the quotient age / stability of the working precision (float32:
 * (float)((double)age / (double)stability)); age and stability of the
 * power model are the operands converted to double.
 */
float engram_decay_exp_f32_lane(float y, float strength);
double engram_decay_exp_f64_lane(double y, double strength);
float engram_decay_power_f32_lane(double age, double stability, float strength, double power,
                                  double factor);
double engram_decay_power_f64_lane(double age, double stability, double strength, double power,
                                   double factor);
/* Element i of a float32 block by the power model's definition (the SIMD levels' special lanes). */
float engram_decay_power_f32_element(const engram_decay_params *params,
                                     const engram_decay_block *block, size_t i);
/* First invalid element of a block (ages and stabilities as given), or n. */
size_t engram_decay_first_invalid_block(const engram_decay_params *params,
                                        const engram_decay_block *block);
/* float64 power on every level: the C library's pow per element. */
void engram_decay_power_f64_generic(const engram_decay_params *params,
                                    const engram_decay_block *block);

/* ---- end decay ------------------------------------------------------ */

#ifdef __cplusplus
}
#endif
#endif /* ENGRAM_H */
