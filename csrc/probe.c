/*
 * Memory-bandwidth probes: what this machine can move, measured in the
 * same run as a kernel, so a memory-bound kernel is judged as a share of
 * the machine's own bandwidth rather than a bare time.
 *
 * Each probe exists in a baseline, AVX2 and AVX-512 version (function
 * target attributes, not file flags: they are measurement tools, not
 * kernels) and runs the one matching the active level.
 */
#include "engram.h"

#include <stddef.h>

typedef float vec16 __attribute__((vector_size(64), aligned(4)));
typedef float vec8 __attribute__((vector_size(32), aligned(4)));
typedef float vec4 __attribute__((vector_size(16), aligned(4)));

/* Sum with 4 independent accumulators so the loads, not the adds, are the limit. */
#define DEFINE_READ(name, vec, attr)                                                    \
    attr static float name(const float *p, size_t n) {                                 \
        const size_t w = sizeof(vec) / sizeof(float);                                  \
        vec a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                                     \
        size_t i = 0;                                                                   \
        for (; i + 4 * w <= n; i += 4 * w) {                                            \
            a0 += *(const vec *)(p + i);                                                \
            a1 += *(const vec *)(p + i + w);                                            \
            a2 += *(const vec *)(p + i + 2 * w);                                        \
            a3 += *(const vec *)(p + i + 3 * w);                                        \
        }                                                                               \
        vec s = (a0 + a1) + (a2 + a3);                                                  \
        float total = 0;                                                                \
        for (size_t k = 0; k < w; k++) total += s[k];                                   \
        for (; i < n; i++) total += p[i];                                               \
        return total;                                                                   \
    }

/* out = out * a + b: three streams read, one written, like an in-place decay. */
#define DEFINE_TRIAD(name, vec, attr)                                                   \
    attr static void name(float *out, const float *a, const float *b, size_t n) {      \
        const size_t w = sizeof(vec) / sizeof(float);                                  \
        size_t i = 0;                                                                   \
        for (; i + w <= n; i += w)                                                      \
            *(vec *)(out + i) = *(vec *)(out + i) * *(const vec *)(a + i) +             \
                                *(const vec *)(b + i);                                  \
        for (; i < n; i++) out[i] = out[i] * a[i] + b[i];                               \
    }

DEFINE_READ(read_base, vec4, )
DEFINE_TRIAD(triad_base, vec4, )
#if defined(ENGRAM_X86_64)
DEFINE_READ(read_avx2, vec8, __attribute__((target("avx2,fma"))))
DEFINE_READ(read_avx512, vec16, __attribute__((target("avx512f"))))
DEFINE_TRIAD(triad_avx2, vec8, __attribute__((target("avx2,fma"))))
DEFINE_TRIAD(triad_avx512, vec16, __attribute__((target("avx512f"))))
#endif

float engram_probe_read(const float *p, size_t n) {
#if defined(ENGRAM_X86_64)
    switch (engram_level_active()) {
        case ENGRAM_LEVEL_AVX512: return read_avx512(p, n);
        case ENGRAM_LEVEL_AVX2: return read_avx2(p, n);
        default: break;
    }
#endif
    return read_base(p, n);
}

void engram_probe_triad(float *out, const float *a, const float *b, size_t n) {
#if defined(ENGRAM_X86_64)
    switch (engram_level_active()) {
        case ENGRAM_LEVEL_AVX512: triad_avx512(out, a, b, n); return;
        case ENGRAM_LEVEL_AVX2: triad_avx2(out, a, b, n); return;
        default: break;
    }
#endif
    triad_base(out, a, b, n);
}
