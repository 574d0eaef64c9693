/*
 * Plain-C tests of the kernels, without Python: every SIMD level this CPU
 * runs is compared with the scalar table (the spec).  This is how the NEON
 * kernels are tested on x86-64 machines: tools/ctest.sh --arch aarch64
 * cross-compiles this program and runs it under qemu-user.
 */
#ifndef ENGRAM_CTEST_H
#define ENGRAM_CTEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../csrc/engram.h"

typedef struct ctest {
    const char *level;
    long checks;
    long failures;
} ctest;

#define CTEST_CHECK(t, cond, ...)                                     \
    do {                                                              \
        (t)->checks++;                                                \
        if (!(cond)) {                                                \
            if ((t)->failures++ < 20) {                               \
                fprintf(stderr, "FAIL [%s] %s:%d: ", (t)->level,      \
                        __FILE__, __LINE__);                          \
                fprintf(stderr, __VA_ARGS__);                         \
                fputc('\n', stderr);                                  \
            }                                                         \
        }                                                             \
    } while (0)

/* Deterministic xorshift generator: uniform in [-1, 1). */
static inline double ctest_uniform(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return (double)(x >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

/* Each kernel's tests: compare the active level's table with the scalar one. */
void ctest_similarity(ctest *t);
void ctest_spread(ctest *t);
void ctest_decay(ctest *t);

#endif
