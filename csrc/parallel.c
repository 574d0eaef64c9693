/*
 * Threads for one kernel call.
 *
 * Workers are started per call and joined before it returns: a call that
 * is worth threads takes milliseconds, a pthread_create takes microseconds,
 * and with no pool there is nothing to repair after fork() (a child made
 * by os.fork or multiprocessing simply starts its own threads).
 *
 * A process-wide count of busy cores keeps many Python threads that each
 * ask for threads=N from oversubscribing: a worker that would exceed the
 * cores is not started and its share runs on the calling thread.
 */
#define _GNU_SOURCE
#include "engram.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 256

static unsigned default_threads = 0; /* 0: not set, use the core count */
static unsigned busy_cores = 0;      /* calling threads + workers inside engram_parallel */

unsigned engram_cpu_count(void) {
    static unsigned cached = 0;
    unsigned n = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (n) return n;
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = (unsigned)CPU_COUNT(&set);
#endif
    if (n == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online > 0 ? (unsigned)online : 1;
    }
    __atomic_store_n(&cached, n, __ATOMIC_RELAXED);
    return n;
}

unsigned engram_default_threads(void) {
    unsigned n = __atomic_load_n(&default_threads, __ATOMIC_RELAXED);
    return n ? n : engram_cpu_count();
}

void engram_set_default_threads(unsigned n) {
    if (n > MAX_THREADS) n = MAX_THREADS;
    __atomic_store_n(&default_threads, n, __ATOMIC_RELAXED);
}

unsigned engram_threads_for(int requested, size_t work, size_t parallel_threshold,
                            size_t max_useful) {
    unsigned n;
    if (requested > 0) n = requested > MAX_THREADS ? MAX_THREADS : (unsigned)requested;
    else n = work >= parallel_threshold ? engram_default_threads() : 1;
    if (max_useful < n) n = max_useful ? (unsigned)max_useful : 1;
    return n ? n : 1;
}

typedef struct worker_arg {
    engram_task_fn fn;
    void *ctx;
    unsigned worker, n_workers;
} worker_arg;

static void *worker_main(void *p) {
    worker_arg *w = p;
    w->fn(w->ctx, w->worker, w->n_workers);
    __atomic_fetch_sub(&busy_cores, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* Reserve up to `wanted` extra cores; returns how many were granted. */
static unsigned reserve_cores(unsigned wanted) {
    unsigned cores = engram_cpu_count();
    unsigned busy = __atomic_load_n(&busy_cores, __ATOMIC_RELAXED);
    for (;;) {
        unsigned free_cores = busy < cores ? cores - busy : 0; /* busy counts the caller */
        unsigned grant = wanted < free_cores ? wanted : free_cores;
        if (grant == 0) return 0;
        if (__atomic_compare_exchange_n(&busy_cores, &busy, busy + grant, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            return grant;
    }
}

static void after_fork_in_child(void) { busy_cores = 0; }

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(NULL, NULL, after_fork_in_child); }

void engram_parallel(unsigned n, engram_task_fn fn, void *ctx) {
    if (n <= 1) {
        fn(ctx, 0, 1);
        return;
    }
    if (n > MAX_THREADS) n = MAX_THREADS;
    pthread_once(&atfork_once, register_atfork);
    __atomic_fetch_add(&busy_cores, 1, __ATOMIC_RELAXED);
    unsigned extra = reserve_cores(n - 1);
    worker_arg args[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    unsigned char started[MAX_THREADS] = {0};
    /* Workers 1..extra run on new threads; the caller runs 0 and the rest. */
    for (unsigned w = 1; w <= extra; w++) {
        args[w] = (worker_arg){fn, ctx, w, n};
        if (pthread_create(&threads[w], NULL, worker_main, &args[w]) == 0) started[w] = 1;
        else __atomic_fetch_sub(&busy_cores, 1, __ATOMIC_RELAXED);
    }
    fn(ctx, 0, n);
    for (unsigned w = 1; w < n; w++)
        if (w > extra || !started[w]) fn(ctx, w, n);
    for (unsigned w = 1; w <= extra; w++)
        if (started[w]) pthread_join(threads[w], NULL);
    __atomic_fetch_sub(&busy_cores, 1, __ATOMIC_RELAXED);
}
