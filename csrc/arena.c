/*
 * Thread-local bump arena: the scratch memory of every kernel call.
 *
 * Each thread that calls a kernel owns one arena: a 64-byte-aligned block
 * handed out by bumping an offset (O(1)), reset in bulk after the call.
 * A request that does not fit either comes from malloc (kept on a list,
 * freed at the next reset, counted) or fails, as configured.  The block is
 * freed when its thread exits (pthread key destructor) and, in a child
 * after fork(), for every thread that did not survive the fork.
 *
 * Arenas register in a list so stats() can report per thread; counters
 * other threads read are relaxed atomics, so reading never blocks a kernel.
 */
#define _GNU_SOURCE
#include "engram.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct overflow_block {
    struct overflow_block *next;
} overflow_block;

/* The payload of an overflow block starts one alignment unit after its header. */
#define OVERFLOW_HEADER ENGRAM_ARENA_ALIGN

struct engram_arena {
    unsigned char *base; /* NULL until first use, or after a resize */
    size_t capacity;     /* bytes at base */
    size_t offset;       /* bump pointer */
    size_t used_max;     /* largest offset since the last reset (for zero_on_reset) */
    overflow_block *overflow;
    /* counters read by other threads */
    uint64_t in_use;
    uint64_t high_water;
    uint64_t allocations;
    uint64_t overflows;
    uint64_t overflow_bytes;
    uint64_t resets;
    uint64_t thread_id;
    struct engram_arena *prev, *next;
};

/* ---- configuration ---- */
static size_t config_capacity = ENGRAM_ARENA_DEFAULT_SIZE;
static int config_overflow = ENGRAM_OVERFLOW_HEAP;
static int config_zero_on_reset = 0;

/* ---- registry of live arenas, and what exited threads left behind ---- */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static engram_arena *registry_head = NULL;
static engram_arena_stats retired;
static size_t live_blocks = 0; /* arenas whose block is allocated */

static pthread_key_t arena_key;
static pthread_once_t arena_key_once = PTHREAD_ONCE_INIT;
static __thread engram_arena *this_thread_arena = NULL;

/* ---- errors (used by every kernel) ---- */
static __thread char last_error[512];

const char *engram_last_error(void) { return last_error; }

engram_status engram_fail(engram_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define BUMP(x, v) STORE(x, LOAD(x) + (v)) /* only the owner writes */

static void free_overflow(engram_arena *a) {
    overflow_block *b = a->overflow;
    while (b) {
        overflow_block *next = b->next;
        free(b);
        b = next;
    }
    a->overflow = NULL;
}

static void release_block(engram_arena *a) {
    if (a->base) {
        free(a->base);
        a->base = NULL;
        a->capacity = 0;
        pthread_mutex_lock(&registry_lock);
        live_blocks--;
        pthread_mutex_unlock(&registry_lock);
    }
}

static void retire_locked(engram_arena *a) {
    retired.allocations += LOAD(a->allocations);
    retired.overflows += LOAD(a->overflows);
    retired.overflow_bytes += LOAD(a->overflow_bytes);
    retired.resets += LOAD(a->resets);
    if (LOAD(a->high_water) > retired.high_water) retired.high_water = LOAD(a->high_water);
    if (a->prev) a->prev->next = a->next;
    else registry_head = a->next;
    if (a->next) a->next->prev = a->prev;
    if (a->base) live_blocks--;
}

static void destroy(engram_arena *a) {
    pthread_mutex_lock(&registry_lock);
    retire_locked(a);
    pthread_mutex_unlock(&registry_lock);
    free_overflow(a);
    free(a->base);
    free(a);
}

static void thread_exit_destructor(void *p) {
    engram_arena *a = p;
    if (a == NULL) return;
    this_thread_arena = NULL;
    destroy(a);
}

/* In a forked child only the forking thread exists: drop every other arena. */
static void after_fork_in_child(void) {
    pthread_mutex_init(&registry_lock, NULL);
    engram_arena *a = registry_head;
    while (a) {
        engram_arena *next = a->next;
        if (a != this_thread_arena) {
            retire_locked(a);
            free_overflow(a);
            free(a->base);
            free(a);
        }
        a = next;
    }
}

static void make_key(void) {
    pthread_key_create(&arena_key, thread_exit_destructor);
    pthread_atfork(NULL, NULL, after_fork_in_child);
}

engram_arena *engram_arena_get(void) {
    engram_arena *a = this_thread_arena;
    if (ENGRAM_LIKELY(a != NULL)) return a;
    pthread_once(&arena_key_once, make_key);
    a = calloc(1, sizeof *a);
    if (a == NULL) return NULL;
    a->thread_id = (uint64_t)pthread_self();
    pthread_mutex_lock(&registry_lock);
    a->next = registry_head;
    if (registry_head) registry_head->prev = a;
    registry_head = a;
    pthread_mutex_unlock(&registry_lock);
    pthread_setspecific(arena_key, a);
    this_thread_arena = a;
    return a;
}

/* Allocate (or resize to) the configured block; only called when empty. */
static void ensure_block(engram_arena *a) {
    size_t want = __atomic_load_n(&config_capacity, __ATOMIC_RELAXED);
    if (a->base && a->capacity == want) return;
    release_block(a);
    void *p = NULL;
    if (posix_memalign(&p, ENGRAM_ARENA_ALIGN, want) != 0) return; /* all goes to overflow */
    a->base = p;
    a->capacity = want;
    pthread_mutex_lock(&registry_lock);
    live_blocks++;
    pthread_mutex_unlock(&registry_lock);
}

static void note_in_use(engram_arena *a, size_t added) {
    uint64_t now = LOAD(a->in_use) + added;
    STORE(a->in_use, now);
    if (now > LOAD(a->high_water)) STORE(a->high_water, now);
    BUMP(a->allocations, 1);
}

void *engram_arena_alloc(engram_arena *a, size_t bytes) {
    if (bytes > SIZE_MAX - 2 * ENGRAM_ARENA_ALIGN) {
        engram_fail(ENGRAM_ERR_NOMEM, "scratch request of %zu bytes is too large", bytes);
        return NULL;
    }
    size_t need = (bytes + ENGRAM_ARENA_ALIGN - 1) & ~(size_t)(ENGRAM_ARENA_ALIGN - 1);
    if (need == 0) need = ENGRAM_ARENA_ALIGN;
    if (a->offset == 0 && a->overflow == NULL) ensure_block(a);
    if (a->base && need <= a->capacity - a->offset) {
        void *p = a->base + a->offset;
        a->offset += need;
        if (a->offset > a->used_max) a->used_max = a->offset;
        note_in_use(a, need);
        return p;
    }
    if (__atomic_load_n(&config_overflow, __ATOMIC_RELAXED) == ENGRAM_OVERFLOW_RAISE) {
        engram_fail(ENGRAM_ERR_NOMEM,
                    "engram arena overflow: %zu bytes requested with %zu of %zu bytes in use; "
                    "raise the size (engram.arena.configure(size=...) or ENGRAM_ARENA_SIZE) "
                    "or allow overflow='heap'",
                    bytes, a->offset, a->capacity);
        return NULL;
    }
    overflow_block *b = NULL;
    if (posix_memalign((void **)&b, ENGRAM_ARENA_ALIGN, OVERFLOW_HEADER + need) != 0) {
        engram_fail(ENGRAM_ERR_NOMEM, "out of memory: %zu bytes of scratch could not be allocated",
                    bytes);
        return NULL;
    }
    b->next = a->overflow;
    a->overflow = b;
    BUMP(a->overflows, 1);
    BUMP(a->overflow_bytes, need);
    note_in_use(a, need);
    return (unsigned char *)b + OVERFLOW_HEADER;
}

void engram_arena_reset(engram_arena *a) {
    if (a->overflow) free_overflow(a);
    if (a->used_max && __atomic_load_n(&config_zero_on_reset, __ATOMIC_RELAXED))
        memset(a->base, 0, a->used_max);
    a->offset = 0;
    a->used_max = 0;
    STORE(a->in_use, 0);
    BUMP(a->resets, 1);
}

int engram_arena_configure(size_t capacity, engram_overflow overflow, int zero_on_reset) {
    if (capacity < ENGRAM_ARENA_MIN_SIZE || capacity > ENGRAM_ARENA_MAX_SIZE) return -1;
    if (overflow != ENGRAM_OVERFLOW_HEAP && overflow != ENGRAM_OVERFLOW_RAISE) return -1;
    capacity = (capacity + ENGRAM_ARENA_ALIGN - 1) & ~(size_t)(ENGRAM_ARENA_ALIGN - 1);
    __atomic_store_n(&config_capacity, capacity, __ATOMIC_RELAXED);
    __atomic_store_n(&config_overflow, (int)overflow, __ATOMIC_RELAXED);
    __atomic_store_n(&config_zero_on_reset, zero_on_reset ? 1 : 0, __ATOMIC_RELAXED);
    return 0;
}

void engram_arena_get_config(size_t *capacity, engram_overflow *overflow, int *zero_on_reset) {
    if (capacity) *capacity = __atomic_load_n(&config_capacity, __ATOMIC_RELAXED);
    if (overflow) *overflow = (engram_overflow)__atomic_load_n(&config_overflow, __ATOMIC_RELAXED);
    if (zero_on_reset) *zero_on_reset = __atomic_load_n(&config_zero_on_reset, __ATOMIC_RELAXED);
}

size_t engram_arena_parse_size(const char *text, char *error, size_t error_size) {
    if (error_size) error[0] = '\0';
    if (text == NULL) text = "";
    const char *s = text;
    while (isspace((unsigned char)*s)) s++;
    char *end = NULL;
    errno = 0;
    double value = (*s >= '0' && *s <= '9') ? strtod(s, &end) : NAN;
    double multiplier = 0;
    if (end && errno == 0 && isfinite(value)) {
        while (isspace((unsigned char)*end)) end++;
        char unit = (char)tolower((unsigned char)*end);
        const char *rest = *end ? end + 1 : end;
        switch (unit) {
            case '\0': multiplier = 1; break;
            case 'b': multiplier = 1; rest = end + 1; break;
            case 'k': multiplier = 1024.0; break;
            case 'm': multiplier = 1024.0 * 1024; break;
            case 'g': multiplier = 1024.0 * 1024 * 1024; break;
            default: multiplier = 0;
        }
        /* allow K, KB, KiB (all binary) and trailing spaces */
        if (multiplier > 1) {
            if (tolower((unsigned char)rest[0]) == 'i' && tolower((unsigned char)rest[1]) == 'b')
                rest += 2;
            else if (tolower((unsigned char)rest[0]) == 'b')
                rest += 1;
        }
        while (isspace((unsigned char)*rest)) rest++;
        if (*rest != '\0') multiplier = 0;
    }
    if (multiplier == 0) {
        snprintf(error, error_size,
                 "'%.40s' is not a size (expected bytes, or a number with "
                 "K/M/G, e.g. '2M' or '4MiB')",
                 text);
        return 0;
    }
    double bytes = floor(value * multiplier);
    if (bytes < (double)ENGRAM_ARENA_MIN_SIZE || bytes > (double)ENGRAM_ARENA_MAX_SIZE) {
        snprintf(error, error_size,
                 "'%.40s' is outside 64 KiB to 1 GiB (%.0f bytes)", text, bytes);
        return 0;
    }
    return (size_t)bytes;
}

static void read_stats(const engram_arena *a, engram_arena_stats *s) {
    s->thread_id = a->thread_id;
    s->capacity = a->capacity;
    s->in_use = LOAD(a->in_use);
    s->high_water = LOAD(a->high_water);
    s->allocations = LOAD(a->allocations);
    s->overflows = LOAD(a->overflows);
    s->overflow_bytes = LOAD(a->overflow_bytes);
    s->resets = LOAD(a->resets);
}

size_t engram_arena_collect_stats(engram_arena_stats *per_thread, size_t max,
                                  engram_arena_stats *total) {
    size_t n = 0;
    pthread_mutex_lock(&registry_lock);
    engram_arena_stats sum = retired;
    sum.thread_id = 0;
    sum.capacity = 0;
    sum.in_use = 0;
    for (engram_arena *a = registry_head; a; a = a->next, n++) {
        engram_arena_stats s;
        read_stats(a, &s);
        if (n < max) per_thread[n] = s;
        sum.capacity += s.capacity;
        sum.in_use += s.in_use;
        if (s.high_water > sum.high_water) sum.high_water = s.high_water;
        sum.allocations += s.allocations;
        sum.overflows += s.overflows;
        sum.overflow_bytes += s.overflow_bytes;
        sum.resets += s.resets;
    }
    pthread_mutex_unlock(&registry_lock);
    if (total) *total = sum;
    return n;
}

void engram_arena_reset_stats(void) {
    pthread_mutex_lock(&registry_lock);
    memset(&retired, 0, sizeof retired);
    for (engram_arena *a = registry_head; a; a = a->next) {
        STORE(a->high_water, LOAD(a->in_use));
        STORE(a->allocations, 0);
        STORE(a->overflows, 0);
        STORE(a->overflow_bytes, 0);
        STORE(a->resets, 0);
    }
    pthread_mutex_unlock(&registry_lock);
}

size_t engram_arena_live_count(void) {
    pthread_mutex_lock(&registry_lock);
    size_t n = live_blocks;
    pthread_mutex_unlock(&registry_lock);
    return n;
}

void engram_copy_2d(void *dst, const void *src, size_t rows, size_t cols, size_t elsize,
                    ptrdiff_t row_stride_bytes, ptrdiff_t col_stride_bytes) {
    unsigned char *out = dst;
    const unsigned char *in = src;
    for (size_t i = 0; i < rows; i++) {
        const unsigned char *row = in + (ptrdiff_t)i * row_stride_bytes;
        if (col_stride_bytes == (ptrdiff_t)elsize) {
            memcpy(out, row, cols * elsize);
            out += cols * elsize;
            continue;
        }
        for (size_t j = 0; j < cols; j++, out += elsize)
            memcpy(out, row + (ptrdiff_t)j * col_stride_bytes, elsize);
    }
}

const void *engram_rows_contiguous(engram_arena *arena, const void *data, size_t rows,
                                   size_t cols, size_t elsize, ptrdiff_t row_stride_bytes,
                                   ptrdiff_t col_stride_bytes, ptrdiff_t *row_stride_out) {
    if (col_stride_bytes == (ptrdiff_t)elsize || cols <= 1) {
        *row_stride_out = rows <= 1 ? (ptrdiff_t)(cols * elsize) : row_stride_bytes;
        return data;
    }
    void *copy = engram_arena_alloc(arena, rows * cols * elsize);
    if (copy == NULL) return NULL;
    engram_copy_2d(copy, data, rows, cols, elsize, row_stride_bytes, col_stride_bytes);
    *row_stride_out = (ptrdiff_t)(cols * elsize);
    return copy;
}
