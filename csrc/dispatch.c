/*
 * Run-time SIMD dispatch: what the CPU and OS support, what this build
 * contains, and which per-level kernel tables are active.
 *
 * The level table below is the one place that maps a level to its kernel
 * tables; everything else (module, tests, report) asks it by name.
 */
#include "engram.h"

#include <stdio.h>
#include <string.h>

#if defined(ENGRAM_X86_64)
#include <cpuid.h>
#endif
#if defined(ENGRAM_ARM64) && defined(__linux__)
#include <sys/auxv.h>
#endif

typedef struct level_entry {
    engram_level level;
    const char *name;
    const engram_similarity_ops *similarity;
    const engram_spread_ops *spread;
    const engram_decay_ops *decay;
} level_entry;

static const level_entry level_table[] = {
    {ENGRAM_LEVEL_SCALAR, "scalar", &engram_similarity_ops_scalar, &engram_spread_ops_scalar,
     &engram_decay_ops_scalar},
#if defined(ENGRAM_X86_64)
    {ENGRAM_LEVEL_AVX2, "avx2", &engram_similarity_ops_avx2, &engram_spread_ops_avx2,
     &engram_decay_ops_avx2},
    {ENGRAM_LEVEL_AVX512, "avx512", &engram_similarity_ops_avx512, &engram_spread_ops_avx512,
     &engram_decay_ops_avx512},
#endif
#if defined(ENGRAM_ARM64)
    {ENGRAM_LEVEL_NEON, "neon", &engram_similarity_ops_neon, &engram_spread_ops_neon,
     &engram_decay_ops_neon},
#endif
};
#define LEVEL_TABLE_SIZE (sizeof(level_table) / sizeof(level_table[0]))

static const char *const level_names[ENGRAM_LEVEL_COUNT] = {"scalar", "avx2", "avx512", "neon"};

const engram_similarity_ops *engram_similarity_active = &engram_similarity_ops_scalar;
const engram_spread_ops *engram_spread_active = &engram_spread_ops_scalar;
const engram_decay_ops *engram_decay_active = &engram_decay_ops_scalar;
static engram_level active_level = ENGRAM_LEVEL_SCALAR;

const char *engram_level_name(engram_level level) {
    return (unsigned)level < ENGRAM_LEVEL_COUNT ? level_names[level] : "unknown";
}

int engram_level_from_name(const char *name) {
    if (name == NULL) return -1;
    for (int i = 0; i < ENGRAM_LEVEL_COUNT; i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

#if defined(ENGRAM_X86_64)
static unsigned long long read_xcr0(void) {
    unsigned int eax, edx;
    /* xgetbv with ecx=0; encoded by hand so no -mxsave is needed. */
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static unsigned detect_x86(void) {
    unsigned levels = 1u << ENGRAM_LEVEL_SCALAR;
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return levels;
    int has_fma = (ecx >> 12) & 1;
    int has_osxsave = (ecx >> 27) & 1;
    int has_avx = (ecx >> 28) & 1;
    if (!has_osxsave || !has_avx) return levels;
    /* The OS must save XMM and YMM state (XCR0 bits 1, 2) for AVX, and
     * additionally opmask, ZMM0-15 upper halves and ZMM16-31 (bits 5-7)
     * for AVX-512; a hypervisor can report the CPUID flags without it. */
    unsigned long long xcr0 = read_xcr0();
    int os_avx = (xcr0 & 0x6) == 0x6;
    int os_avx512 = (xcr0 & 0xe6) == 0xe6;
    if (__get_cpuid_max(0, NULL) < 7) return levels;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    int has_avx2 = (ebx >> 5) & 1;
    int has_avx512f = (ebx >> 16) & 1;
    int has_avx512dq = (ebx >> 17) & 1;
    int has_avx512bw = (ebx >> 30) & 1;
    int has_avx512vl = (ebx >> 31) & 1;
    if (os_avx && has_avx2 && has_fma) levels |= 1u << ENGRAM_LEVEL_AVX2;
    if (os_avx512 && (levels & (1u << ENGRAM_LEVEL_AVX2)) && has_avx512f && has_avx512dq &&
        has_avx512bw && has_avx512vl)
        levels |= 1u << ENGRAM_LEVEL_AVX512;
    return levels;
}
#endif

unsigned engram_levels_detected(void) {
    static unsigned cached = 0;
    unsigned levels = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (levels) return levels;
#if defined(ENGRAM_X86_64)
    levels = detect_x86();
#elif defined(ENGRAM_ARM64)
    levels = 1u << ENGRAM_LEVEL_SCALAR;
#if defined(__linux__)
    /* HWCAP_ASIMD is bit 1 on arm64 Linux. */
    if (getauxval(AT_HWCAP) & (1ul << 1)) levels |= 1u << ENGRAM_LEVEL_NEON;
#else
    levels |= 1u << ENGRAM_LEVEL_NEON; /* Advanced SIMD is mandatory in AArch64 */
#endif
#else
    levels = 1u << ENGRAM_LEVEL_SCALAR;
#endif
    __atomic_store_n(&cached, levels, __ATOMIC_RELAXED);
    return levels;
}

unsigned engram_levels_compiled(void) {
    unsigned levels = 0;
    for (size_t i = 0; i < LEVEL_TABLE_SIZE; i++) levels |= 1u << level_table[i].level;
    return levels;
}

engram_level engram_level_best(void) {
    unsigned usable = engram_levels_detected() & engram_levels_compiled();
    engram_level best = ENGRAM_LEVEL_SCALAR;
    for (size_t i = 0; i < LEVEL_TABLE_SIZE; i++)
        if (usable & (1u << level_table[i].level)) best = level_table[i].level;
    return best;
}

engram_level engram_level_active(void) {
    return __atomic_load_n(&active_level, __ATOMIC_ACQUIRE);
}

int engram_level_select(engram_level level) {
    unsigned usable = engram_levels_detected() & engram_levels_compiled();
    if ((unsigned)level >= ENGRAM_LEVEL_COUNT || !(usable & (1u << level))) return -1;
    for (size_t i = 0; i < LEVEL_TABLE_SIZE; i++) {
        const level_entry *e = &level_table[i];
        if (e->level != level) continue;
        __atomic_store_n(&engram_similarity_active, e->similarity, __ATOMIC_RELEASE);
        __atomic_store_n(&engram_spread_active, e->spread, __ATOMIC_RELEASE);
        __atomic_store_n(&engram_decay_active, e->decay, __ATOMIC_RELEASE);
        __atomic_store_n(&active_level, level, __ATOMIC_RELEASE);
        return 0;
    }
    return -1;
}

/* On x86 the levels form a chain, so a cap means "this level or below". */
static int level_rank(engram_level level) {
    return level == ENGRAM_LEVEL_NEON ? 1 : (int)level;
}

void engram_dispatch_init(const char *cap, char *warning, size_t warning_size) {
    if (warning_size) warning[0] = '\0';
    engram_level best = engram_level_best();
    engram_level chosen = best;
    if (cap != NULL && cap[0] != '\0') {
        int wanted = engram_level_from_name(cap);
        unsigned usable = engram_levels_detected() & engram_levels_compiled();
        if (wanted < 0) {
            snprintf(warning, warning_size,
                     "ENGRAM_SIMD=%.40s is not a SIMD level (expected one of scalar, avx2, "
                     "avx512, neon); using %s",
                     cap, engram_level_name(best));
        } else if (!(usable & (1u << wanted))) {
            snprintf(warning, warning_size,
                     "ENGRAM_SIMD=%s is not available on this machine (%s); using %s", cap,
                     (engram_levels_compiled() & (1u << wanted)) ? "not supported by the CPU/OS"
                                                                 : "not compiled in this build",
                     engram_level_name(best));
        } else {
            /* the best usable level not above the cap */
            chosen = ENGRAM_LEVEL_SCALAR;
            for (size_t i = 0; i < LEVEL_TABLE_SIZE; i++) {
                engram_level l = level_table[i].level;
                if ((usable & (1u << l)) && level_rank(l) <= level_rank((engram_level)wanted))
                    chosen = l;
            }
        }
    }
    engram_level_select(chosen);
}
