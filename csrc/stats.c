/*
 * Per-kernel call counters for engram.stats().
 *
 * Off by default; the binding checks engram_stats_enabled() once per call
 * and only then reads the clock, so a disabled counter costs one
 * predictable branch.  Counters are relaxed atomics: totals from many
 * threads add up exactly, and readers never block a kernel.
 */
#define _GNU_SOURCE
#include "engram.h"

#include <time.h>

static int enabled = 0;
static engram_kernel_stats counters[ENGRAM_KERNEL_COUNT];

static const char *const kernel_names[ENGRAM_KERNEL_COUNT] = {
    "cosine_similarity", "normalize", "top_k", "spread", "decay",
};

const char *engram_kernel_name(engram_kernel_id id) {
    return (unsigned)id < ENGRAM_KERNEL_COUNT ? kernel_names[id] : "unknown";
}

int engram_stats_enabled(void) { return __atomic_load_n(&enabled, __ATOMIC_RELAXED); }

void engram_stats_enable(int on) { __atomic_store_n(&enabled, on ? 1 : 0, __ATOMIC_RELAXED); }

uint64_t engram_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void engram_stats_record(engram_kernel_id id, uint64_t ns, uint64_t elements) {
    if ((unsigned)id >= ENGRAM_KERNEL_COUNT) return;
    engram_kernel_stats *c = &counters[id];
    __atomic_fetch_add(&c->calls, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&c->total_ns, ns, __ATOMIC_RELAXED);
    __atomic_store_n(&c->last_ns, ns, __ATOMIC_RELAXED);
    __atomic_fetch_add(&c->elements, elements, __ATOMIC_RELAXED);
}

void engram_stats_get(engram_kernel_id id, engram_kernel_stats *out) {
    engram_kernel_stats *c = &counters[id];
    out->calls = __atomic_load_n(&c->calls, __ATOMIC_RELAXED);
    out->total_ns = __atomic_load_n(&c->total_ns, __ATOMIC_RELAXED);
    out->last_ns = __atomic_load_n(&c->last_ns, __ATOMIC_RELAXED);
    out->elements = __atomic_load_n(&c->elements, __ATOMIC_RELAXED);
}

void engram_stats_clear(void) {
    for (int i = 0; i < ENGRAM_KERNEL_COUNT; i++) {
        __atomic_store_n(&counters[i].calls, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&counters[i].total_ns, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&counters[i].last_ns, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&counters[i].elements, 0, __ATOMIC_RELAXED);
    }
}
