/*
 * decay: entry points and the scalar primitive table (the spec every SIMD
 * level must match).
 *
 *   exponential  strength * exp(-age / stability)
 *   power        strength * (1 + factor * age / stability)^-power
 *
 * Everything happens in one pass over memory: ages of any integer or float
 * type are converted in registers, strided operands are copied block by
 * block into L1-sized scratch, and the output is written once.  The
 * numerical scheme of each model is described in decay_internal.h.
 */
#include "engram.h"
#include "decay_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Element definitions                                                  */
/* ------------------------------------------------------------------ */

static inline uint64_t bits_f64(double x) {
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline double f64_from_bits(uint64_t u) {
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* 2^n for n in [-1022, 1023]. */
static inline double pow2_f64(int n) {
    return f64_from_bits((uint64_t)(n + 1023) << 52);
}

/*
 * a * b + c rounded once.  Where the target has no FMA instruction (the
 * x86-64 baseline) it is emulated exactly: a * b is exact in double, the
 * sum is rounded to odd (the rounding error from TwoSum decides the last
 * bit), and a double rounded to odd rounds to the correct float because
 * 53 >= 24 + 2.  This keeps the scalar level bit-identical to the SIMD
 * levels without touching the rounding mode.
 */
static inline float fma_f32(float a, float b, float c) {
#if defined(__FP_FAST_FMAF)
    return __builtin_fmaf(a, b, c);
#else
    double p = (double)a * (double)b;
    double cc = (double)c;
    double s = p + cc;
    double pb = s - cc;
    double cb = s - pb;
    double err = (p - pb) + (cc - cb);
    if (err != 0.0 && isfinite(s)) {
        uint64_t u = bits_f64(s);
        if ((u & 1) == 0) u += ((err > 0.0) == (s > 0.0)) ? 1 : (uint64_t)-1;
        s = f64_from_bits(u);
    }
    return (float)s;
#endif
}

/* Fused where the target has FMA; the float64 paths do not rely on it for accuracy. */
static inline double mul_add_f64(double a, double b, double c) {
#if defined(__FP_FAST_FMA)
    return __builtin_fma(a, b, c);
#else
    return a * b + c;
#endif
}

static inline uint32_t bits_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

float engram_decay_exp_f32_lane(float y, float s) {
    /* the float64 product's own rules: NaN in, NaN out; inf * exp(-y) is NaN
     * where exp(-y) is 0 in float64; 0 * exp(-y) is NaN where it is inf */
    if (y != y || s != s) return y + s;
    if (isinf(s)) return y >= DECAY_F32_Y_ZERO ? NAN : s;
    if (s == 0.0f && y <= DECAY_F32_Y_INF) return NAN;
    float yc = y < DECAY_F32_Y_MIN ? DECAY_F32_Y_MIN : y > DECAY_F32_Y_MAX ? DECAY_F32_Y_MAX : y;
    /* exp(-y) rounds the same for |y| < 2^-30 as for 0: no subnormal y reaches an FMA */
    if (fabsf(yc) < DECAY_F32_Y_TINY) yc = copysignf(0.0f, yc);
    float k = fma_f32(-yc, DECAY_F32_LOG2E, DECAY_F32_SHIFTER);
    float n = k - DECAY_F32_SHIFTER;
    float w = fma_f32(n, DECAY_F32_LN2_HI, yc);
    w = fma_f32(n, DECAY_F32_LN2_LO, w);
    float w2 = w * w;
    float t = fma_f32(DECAY_F32_T4, w, DECAY_F32_T3);
    t = fma_f32(t, w, DECAY_F32_T2);
    t = fma_f32(t, w, DECAY_F32_T1);
    t = fma_f32(t, w, DECAY_F32_T0);
    float q = fma_f32(t, w2, -w);
    int ni = (int)n;
    uint32_t yb = bits_f32(y), sb = bits_f32(s);
    if (yb <= DECAY_F32_FAST_Y_MAX_BITS && sb - DECAY_F32_FAST_S_MIN_BITS < DECAY_F32_FAST_S_SPAN_BITS) {
        /* the vector fast path: strength (1 + q) rounded to float32, scaled exactly */
        float m = fma_f32(q, s, s);
        return m * (float)pow2_f64(ni);
    }
    /* elsewhere strength (1 + q) in float64 (s q is exact there, so the sum
     * rounds once without FMA), scaled exactly and rounded to float32 once:
     * subnormal results, and no subnormal operand anywhere */
    double m = (double)s * (double)q + (double)s;
    m = copysign(m, (double)s); /* 0 * (1 + q) keeps strength's sign */
    int nc = ni < -(int)DECAY_F32_N_LIMIT ? -(int)DECAY_F32_N_LIMIT
             : ni > (int)DECAY_F32_N_LIMIT ? (int)DECAY_F32_N_LIMIT : ni;
    return (float)(m * pow2_f64(nc));
}

double engram_decay_exp_f64_lane(double y, double s) {
    /* negative, NaN or beyond the float64 range of exp(-y): the plain
     * evaluation, whose overflow and underflow define the result there */
    if (!(y >= 0.0 && y <= DECAY_F64_Y_MAX)) return s * exp(-y);
    double k = mul_add_f64(-y, DECAY_F64_LOG2E, DECAY_F64_SHIFTER);
    double n = k - DECAY_F64_SHIFTER;
    double w = mul_add_f64(n, DECAY_F64_LN2_HI, y);
    w = mul_add_f64(n, DECAY_F64_LN2_LO, w);
    double w2 = w * w;
    double t = mul_add_f64(DECAY_F64_T11, w, DECAY_F64_T10);
    t = mul_add_f64(t, w, DECAY_F64_T9);
    t = mul_add_f64(t, w, DECAY_F64_T8);
    t = mul_add_f64(t, w, DECAY_F64_T7);
    t = mul_add_f64(t, w, DECAY_F64_T6);
    t = mul_add_f64(t, w, DECAY_F64_T5);
    t = mul_add_f64(t, w, DECAY_F64_T4);
    t = mul_add_f64(t, w, DECAY_F64_T3);
    t = mul_add_f64(t, w, DECAY_F64_T2);
    t = mul_add_f64(t, w, DECAY_F64_T1);
    t = mul_add_f64(t, w, DECAY_F64_T0);
    double q = mul_add_f64(t, w2, -w);
    double m = copysign(mul_add_f64(q, s, s), s); /* 0 * (1 + q) keeps strength's sign */
    if (!isfinite(m)) return s * exp(-y);
    /* n in [-1076, 0]: 2^(n/2) twice, the first step exact where m is normal */
    int ni = (int)n, n1 = ni >> 1, n2 = ni - n1;
    return m * pow2_f64(n1) * pow2_f64(n2);
}

float engram_decay_power_f32_lane(double age, double stability, float s, double power,
                                  double factor) {
    /* the float64 evaluation's u, the same IEEE operations in the same order */
    double u = 1.0 + factor * age / stability;
    return (float)((double)s * pow(u, -power));
}

float engram_decay_power_f32_element(const engram_decay_params *p, const engram_decay_block *b,
                                     size_t i) {
    return engram_decay_power_f32_lane(decay_age_f64(p, b->age, i),
                                       decay_stability_f64(p, b->stability, i),
                                       ((const float *)b->strength)[i], p->power, p->factor);
}

/* strength * u^-0.5 as strength / sqrt(u): two correctly rounded operations;
 * pow's own value where they differ, (-inf)^-0.5 = +0. */
static inline double inv_sqrt_times(double s, double u) {
    return u == -INFINITY ? s * 0.0 : s / sqrt(u);
}

double engram_decay_power_f64_lane(double age, double stability, double s, double power,
                                   double factor) {
    double u = 1.0 + factor * age / stability;
    return power == 0.5 ? inv_sqrt_times(s, u) : s * pow(u, -power);
}

/* ------------------------------------------------------------------ */
/* Scalar primitives                                                    */
/* ------------------------------------------------------------------ */

/* The float32 argument (float)((double)age / (double)stability) of element i. */
static inline float quotient_f32(const engram_decay_params *p, const engram_decay_block *b,
                                 size_t i) {
    return (float)(decay_age_f64(p, b->age, i) / decay_stability_f64(p, b->stability, i));
}

static void exp_f32_scalar(const engram_decay_params *p, const engram_decay_block *b) {
    float *out = b->out;
    const float *s = b->strength;
    for (size_t i = 0; i < b->n; i++) out[i] = engram_decay_exp_f32_lane(quotient_f32(p, b, i), s[i]);
}

static void power_f32_scalar(const engram_decay_params *p, const engram_decay_block *b) {
    float *out = b->out;
    for (size_t i = 0; i < b->n; i++) out[i] = engram_decay_power_f32_element(p, b, i);
}

static void exp_f64_scalar(const engram_decay_params *p, const engram_decay_block *b) {
    double *out = b->out;
    const double *s = b->strength;
    for (size_t i = 0; i < b->n; i++)
        out[i] = engram_decay_exp_f64_lane(
            decay_age_f64(p, b->age, i) / decay_stability_f64(p, b->stability, i), s[i]);
}

/*
 * float64 power on every level: the C library's pow is within an ulp, a
 * vector version would need a double-double logarithm to match it.  Power
 * 0.5 (the FSRS curve) is strength / sqrt(u), within ~1 ulp, which the
 * compiler vectorises.
 */
void engram_decay_power_f64_generic(const engram_decay_params *p, const engram_decay_block *b) {
    double *out = b->out;
    const double *s = b->strength, *S = b->stability;
    if (p->power == 0.5 && p->age_type == ENGRAM_DECAY_F64 && b->age && S) {
        const double *a = b->age;
        for (size_t i = 0; i < b->n; i++)
            out[i] = inv_sqrt_times(s[i], 1.0 + p->factor * a[i] / S[i]);
        return;
    }
    if (p->power == 0.5) {
        for (size_t i = 0; i < b->n; i++)
            out[i] = inv_sqrt_times(s[i], 1.0 + p->factor * decay_age_f64(p, b->age, i) /
                                                    decay_stability_f64(p, S, i));
        return;
    }
    for (size_t i = 0; i < b->n; i++)
        out[i] = engram_decay_power_f64_lane(decay_age_f64(p, b->age, i),
                                             decay_stability_f64(p, S, i), s[i], p->power,
                                             p->factor);
}

/* Validation looks for the index only inside a stretch that has an invalid element. */
#define SCAN_STRETCH 256

/* Whether [lo, hi) of a block holds an invalid element: OR-reductions the compiler vectorises. */
static int block_has_invalid(const engram_decay_params *p, const engram_decay_block *b,
                             size_t lo, size_t hi) {
    int any = 0;
    if (b->stability && p->stability_type == ENGRAM_DECAY_F32) {
        const float *S = b->stability;
        for (size_t i = lo; i < hi; i++) any |= !(S[i] > 0.0f);
    } else if (b->stability) {
        const double *S = b->stability;
        for (size_t i = lo; i < hi; i++) any |= !(S[i] > 0.0);
    }
    if (b->age) {
        switch (p->age_type) {
            case ENGRAM_DECAY_F32: {
                const float *a = b->age;
                for (size_t i = lo; i < hi; i++) any |= !(a[i] >= 0.0f);
                break;
            }
            case ENGRAM_DECAY_F64: {
                const double *a = b->age;
                for (size_t i = lo; i < hi; i++) any |= !(a[i] >= 0.0);
                break;
            }
            case ENGRAM_DECAY_I64: {
                const int64_t *a = b->age;
                for (size_t i = lo; i < hi; i++) any |= a[i] < 0;
                break;
            }
            default: break;
        }
    }
    return any;
}

size_t engram_decay_first_invalid_block(const engram_decay_params *p, const engram_decay_block *b) {
    for (size_t lo = 0; lo < b->n; lo += SCAN_STRETCH) {
        size_t hi = b->n - lo < SCAN_STRETCH ? b->n : lo + SCAN_STRETCH;
        if (!block_has_invalid(p, b, lo, hi)) continue;
        for (size_t i = lo; i < hi; i++) {
            int bad = b->stability && !(decay_stability_f64(p, b->stability, i) > 0.0);
            if (b->age) {
                switch (p->age_type) {
                    case ENGRAM_DECAY_F32: bad |= !(((const float *)b->age)[i] >= 0.0f); break;
                    case ENGRAM_DECAY_F64: bad |= !(((const double *)b->age)[i] >= 0.0); break;
                    case ENGRAM_DECAY_I64: bad |= ((const int64_t *)b->age)[i] < 0; break;
                    default: break;
                }
            }
            if (bad) return i;
        }
    }
    return b->n;
}

static size_t exp_f32_checked_scalar(const engram_decay_params *p, const engram_decay_block *b) {
    size_t bad = engram_decay_first_invalid_block(p, b);
    if (bad < b->n) return bad;
    exp_f32_scalar(p, b);
    return b->n;
}

static size_t power_f32_checked_scalar(const engram_decay_params *p, const engram_decay_block *b) {
    size_t bad = engram_decay_first_invalid_block(p, b);
    if (bad < b->n) return bad;
    power_f32_scalar(p, b);
    return b->n;
}

static size_t first_invalid_f32_scalar(const float *age, const float *stability, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((age && !(age[i] >= 0.0f)) || (stability && !(stability[i] > 0.0f))) return i;
    return n;
}

static size_t first_invalid_f64_scalar(const double *age, const double *stability, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((age && !(age[i] >= 0.0)) || (stability && !(stability[i] > 0.0))) return i;
    return n;
}

const engram_decay_ops engram_decay_ops_scalar = {
    .level = "scalar",
    .exp_f32 = exp_f32_scalar,
    .power_f32 = power_f32_scalar,
    .exp_f64 = exp_f64_scalar,
    .power_f64 = engram_decay_power_f64_generic,
    .exp_f32_checked = exp_f32_checked_scalar,
    .power_f32_checked = power_f32_checked_scalar,
    .first_invalid_f32 = first_invalid_f32_scalar,
    .first_invalid_f64 = first_invalid_f64_scalar,
};

/* ------------------------------------------------------------------ */
/* Validation                                                           */
/* ------------------------------------------------------------------ */

#define NO_INDEX SIZE_MAX

static size_t type_size(engram_decay_type type) {
    return type == ENGRAM_DECAY_F32 ? 4 : 8;
}

static inline const void *element(const engram_decay_operand *op, size_t i) {
    return (const char *)op->data + (ptrdiff_t)i * op->stride * (ptrdiff_t)type_size(op->type);
}

/* Invalid age: negative or NaN (integers: negative). */
static inline int age_invalid(engram_decay_type type, const void *x) {
    switch (type) {
        case ENGRAM_DECAY_F32: return !(*(const float *)x >= 0.0f);
        case ENGRAM_DECAY_F64: return !(*(const double *)x >= 0.0);
        case ENGRAM_DECAY_I64: return *(const int64_t *)x < 0;
        default: return 0;
    }
}

/* Invalid stability: <= 0 or NaN. */
static inline int stability_invalid(engram_decay_type type, const void *x) {
    switch (type) {
        case ENGRAM_DECAY_F32: return !(*(const float *)x > 0.0f);
        case ENGRAM_DECAY_F64: return !(*(const double *)x > 0.0);
        case ENGRAM_DECAY_I64: return *(const int64_t *)x <= 0;
        default: return *(const uint64_t *)x == 0;
    }
}

/*
 * Contiguous scans OR a whole stretch of comparisons together (the
 * compiler vectorises that) and look for the index only in a stretch that
 * has one.
 */
#define DEFINE_SCAN(name, T, bad)                                                   \
    static size_t name(const T *x, size_t lo, size_t hi) {                         \
        for (size_t i = lo; i < hi; i += SCAN_STRETCH) {                           \
            size_t end = hi - i < SCAN_STRETCH ? hi : i + SCAN_STRETCH;            \
            int any = 0;                                                            \
            for (size_t j = i; j < end; j++) any |= bad(x[j]);                     \
            if (any)                                                                \
                for (size_t j = i; j < end; j++)                                   \
                    if (bad(x[j])) return j;                                       \
        }                                                                           \
        return NO_INDEX;                                                            \
    }
#define BAD_AGE_F(v) (!((v) >= 0))
#define BAD_AGE_I(v) ((v) < 0)
#define BAD_STAB_F(v) (!((v) > 0))
DEFINE_SCAN(scan_age_f32, float, BAD_AGE_F)
DEFINE_SCAN(scan_age_f64, double, BAD_AGE_F)
DEFINE_SCAN(scan_age_i64, int64_t, BAD_AGE_I)
DEFINE_SCAN(scan_stability_f32, float, BAD_STAB_F)
DEFINE_SCAN(scan_stability_f64, double, BAD_STAB_F)

static size_t first_bad_age(const engram_decay_operand *op, size_t lo, size_t hi) {
    if (op->stride == 0 || op->type == ENGRAM_DECAY_U64) return NO_INDEX;
    if (op->stride == 1) {
        switch (op->type) {
            case ENGRAM_DECAY_F32: return scan_age_f32(op->data, lo, hi);
            case ENGRAM_DECAY_F64: return scan_age_f64(op->data, lo, hi);
            default: return scan_age_i64(op->data, lo, hi);
        }
    }
    for (size_t i = lo; i < hi; i++)
        if (age_invalid(op->type, element(op, i))) return i;
    return NO_INDEX;
}

static size_t first_bad_stability(const engram_decay_operand *op, size_t lo, size_t hi) {
    if (op->stride == 0) return NO_INDEX;
    if (op->stride == 1) {
        if (op->type == ENGRAM_DECAY_F32) return scan_stability_f32(op->data, lo, hi);
        if (op->type == ENGRAM_DECAY_F64) return scan_stability_f64(op->data, lo, hi);
    }
    for (size_t i = lo; i < hi; i++)
        if (stability_invalid(op->type, element(op, i))) return i;
    return NO_INDEX;
}

/* First index in [lo, hi) whose age or stability is invalid (NO_INDEX if none). */
static size_t first_invalid(const engram_decay_args *a, size_t lo, size_t hi) {
    /* contiguous float arrays of one type (or one of them a number): the level's scan */
    const engram_decay_operand *age = &a->age, *stab = &a->stability;
    int age_arr = age->stride != 0, stab_arr = stab->stride != 0;
    engram_decay_type t = age_arr ? age->type : stab->type;
    if ((t == ENGRAM_DECAY_F32 || t == ENGRAM_DECAY_F64) && (!age_arr || age->stride == 1) &&
        (!stab_arr || stab->stride == 1) && (!age_arr || age->type == t) &&
        (!stab_arr || stab->type == t) && (age_arr || stab_arr)) {
        const engram_decay_ops *ops = engram_decay();
        size_t es = type_size(t), i;
        const char *ap = age_arr ? (const char *)age->data + lo * es : NULL;
        const char *sp = stab_arr ? (const char *)stab->data + lo * es : NULL;
        if (t == ENGRAM_DECAY_F32)
            i = ops->first_invalid_f32((const float *)ap, (const float *)sp, hi - lo);
        else
            i = ops->first_invalid_f64((const double *)ap, (const double *)sp, hi - lo);
        return i == hi - lo ? NO_INDEX : lo + i;
    }
    size_t bad_age = first_bad_age(&a->age, lo, hi);
    size_t bad_stab = first_bad_stability(&a->stability, lo, bad_age == NO_INDEX ? hi : bad_age);
    return bad_stab < bad_age ? bad_stab : bad_age;
}

static void format_value(char *buf, size_t size, engram_decay_type type, const void *x) {
    switch (type) {
        case ENGRAM_DECAY_F32: snprintf(buf, size, "%.9g", (double)*(const float *)x); break;
        case ENGRAM_DECAY_F64: snprintf(buf, size, "%.17g", *(const double *)x); break;
        case ENGRAM_DECAY_I64: snprintf(buf, size, "%lld", (long long)*(const int64_t *)x); break;
        default: snprintf(buf, size, "%llu", (unsigned long long)*(const uint64_t *)x); break;
    }
}

static engram_status report_invalid(const engram_decay_args *a, size_t i) {
    char value[48];
    const char *hint = "; pass validate=False to skip this check";
    if (a->age.stride != 0 && age_invalid(a->age.type, element(&a->age, i))) {
        format_value(value, sizeof value, a->age.type, element(&a->age, i));
        return engram_fail(ENGRAM_ERR_VALUE,
                           "decay(): age[%zu] is %s; ages must be >= 0 seconds and not NaN%s", i,
                           value, hint);
    }
    format_value(value, sizeof value, a->stability.type, element(&a->stability, i));
    return engram_fail(ENGRAM_ERR_VALUE,
                       "decay(): stability[%zu] is %s; stabilities must be > 0 and not NaN%s", i,
                       value, hint);
}

/* ------------------------------------------------------------------ */
/* Driver: blocks, strided operands, threads                           */
/* ------------------------------------------------------------------ */

/*
 * Elements per block where blocks are needed: strided copies of four
 * operands (8 bytes each) fit in L1, and validation running just ahead of
 * the computation leaves the block in L1 for it.  Contiguous operands
 * without validation go to the primitive as one range per thread.
 */
#define DECAY_BLOCK 1024
#define DECAY_VALIDATED_BLOCK 2048 /* ages and stabilities of a block: 16 KB of 48 KB L1 */
/* Below this many elements a call runs on one thread (a thread costs ~20-50 us to start). */
#define DECAY_PARALLEL_THRESHOLD ((size_t)1 << 18)
#define DECAY_MIN_PER_THREAD ((size_t)1 << 16)
/* Worker ranges start on a 64-byte boundary of a contiguous float32 array. */
#define DECAY_ALIGN_ELEMENTS 16
/* Primitives are called with a multiple of this many elements (the widest vector). */
#define DECAY_VECTOR 16

typedef struct decay_job {
    const engram_decay_args *args;
    engram_decay_fn fn;
    engram_decay_params params;
    size_t chunk;
    /* per worker: copies of strided operands and conversions, one block each */
    unsigned char *scratch; /* NULL if no operand needs one */
    size_t scratch_per_worker;
    size_t off_strength, off_age, off_stability, off_out; /* SIZE_MAX: not needed */
    size_t block;           /* elements per primitive call (0: the whole range) */
    int fused_validation;
    engram_decay_checked_fn checked; /* validating primitive, with a fresh out */
    int validate_only;
    size_t first_bad[256];
} decay_job;

/* Elements [i, i + len) of an operand of another type, converted like a C cast. */
static void convert_block(const engram_decay_operand *op, size_t i, size_t len,
                          engram_decay_type to, void *dst) {
    for (size_t j = 0; j < len; j++) {
        const void *x = element(op, i + j);
        double d = 0;
        float f = 0;
        switch (op->type) {
            case ENGRAM_DECAY_F32: f = *(const float *)x; d = f; break;
            case ENGRAM_DECAY_F64: d = *(const double *)x; f = (float)d; break;
            case ENGRAM_DECAY_I64: d = (double)*(const int64_t *)x; f = (float)*(const int64_t *)x; break;
            default: d = (double)*(const uint64_t *)x; f = (float)*(const uint64_t *)x; break;
        }
        if (to == ENGRAM_DECAY_F32) ((float *)dst)[j] = f;
        else ((double *)dst)[j] = d;
    }
}

/*
 * Contiguous pointer to elements [i, i + len) of op in type `want`: the
 * data itself, or a copy (strided) or conversion (another type) in scratch.
 * A stride-0 age or stability is a broadcast value the primitives take as a
 * parameter (NULL here); a stride-0 strength (a broadcast array, e.g. from
 * np.broadcast_to) has no such parameter and is expanded into scratch.
 */
static const void *operand_block(const engram_decay_operand *op, size_t i, size_t len,
                                 engram_decay_type want, void *scratch, int broadcast_param) {
    if (op->stride == 0 && broadcast_param) return NULL;
    if (op->type != want) {
        convert_block(op, i, len, want, scratch);
        return scratch;
    }
    if (op->stride == 1) return element(op, i);
    size_t es = type_size(op->type);
    const char *src = element(op, i);
    ptrdiff_t step = op->stride * (ptrdiff_t)es;
    char *dst = scratch;
    if (es == 4)
        for (size_t j = 0; j < len; j++, src += step) memcpy(dst + 4 * j, src, 4);
    else
        for (size_t j = 0; j < len; j++, src += step) memcpy(dst + 8 * j, src, 8);
    return scratch;
}

/*
 * The primitives see whole vectors only: the last n % 16 elements run as
 * one padded vector whose idle lanes hold age 0, stability 1, strength 1.
 */
static size_t call_primitive(const decay_job *job, const engram_decay_block *b) {
    if (job->checked) return job->checked(&job->params, b);
    job->fn(&job->params, b);
    return b->n;
}

/* Runs one block; with a checking primitive, returns its first invalid element (else n). */
static size_t run_block(const decay_job *job, const engram_decay_block *b, size_t es) {
    size_t whole = b->n & ~(size_t)(DECAY_VECTOR - 1);
    if (whole) {
        engram_decay_block head = *b;
        head.n = whole;
        size_t bad = call_primitive(job, &head);
        if (bad < whole) return bad;
    }
    size_t rest = b->n - whole;
    if (rest == 0) return b->n;
    uint64_t age[DECAY_VECTOR] = {0};
    double strength[DECAY_VECTOR], stability[DECAY_VECTOR], out[DECAY_VECTOR];
    size_t ss = type_size(job->params.stability_type);
    for (size_t j = 0; j < DECAY_VECTOR; j++) {
        if (es == 4) ((float *)strength)[j] = 1.0f;
        else strength[j] = 1.0;
        if (ss == 4) ((float *)stability)[j] = 1.0f;
        else stability[j] = 1.0;
    }
    size_t as = type_size(job->params.age_type);
    engram_decay_block tail = {DECAY_VECTOR, out, strength, NULL, NULL};
    memcpy(strength, (const char *)b->strength + whole * es, rest * es);
    if (b->age) {
        memcpy(age, (const char *)b->age + whole * as, rest * as);
        tail.age = age;
    }
    if (b->stability) {
        memcpy(stability, (const char *)b->stability + whole * ss, rest * ss);
        tail.stability = stability;
    }
    size_t bad = call_primitive(job, &tail);
    if (bad < rest) return whole + bad;
    memcpy((char *)b->out + whole * es, out, rest * es);
    return b->n;
}

static void *scratch_at(const decay_job *job, unsigned worker, size_t offset) {
    if (offset == SIZE_MAX) return NULL;
    return job->scratch + (size_t)worker * job->scratch_per_worker + offset;
}

static void decay_worker(void *ctx, unsigned worker, unsigned n_workers) {
    (void)n_workers;
    decay_job *job = ctx;
    const engram_decay_args *a = job->args;
    size_t lo = (size_t)worker * job->chunk;
    size_t hi = lo + job->chunk < a->n ? lo + job->chunk : a->n;
    job->first_bad[worker] = NO_INDEX;
    if (lo >= hi) return;
    if (job->validate_only) {
        job->first_bad[worker] = first_invalid(a, lo, hi);
        return;
    }
    size_t es = type_size(a->strength.type);
    void *strength_scratch = scratch_at(job, worker, job->off_strength);
    void *age_scratch = scratch_at(job, worker, job->off_age);
    void *stability_scratch = scratch_at(job, worker, job->off_stability);
    void *out_scratch = scratch_at(job, worker, job->off_out);
    engram_decay_operand out_op = {a->out, a->out_stride, a->strength.type};
    size_t block = job->block ? job->block : hi - lo;
    for (size_t i = lo; i < hi; i += block) {
        size_t len = hi - i < block ? hi - i : block;
        if (job->fused_validation && !job->checked) {
            size_t bad = first_invalid(a, i, i + len);
            if (bad != NO_INDEX) {
                job->first_bad[worker] = bad;
                return;
            }
        }
        engram_decay_block b;
        b.n = len;
        b.strength = operand_block(&a->strength, i, len, a->strength.type, strength_scratch, 0);
        b.age = operand_block(&a->age, i, len, a->age.type, age_scratch, 1);
        b.stability = operand_block(&a->stability, i, len, job->params.stability_type,
                                    stability_scratch, 1);
        b.out = out_scratch ? out_scratch : (void *)element(&out_op, i);
        size_t bad = run_block(job, &b, es);
        if (bad < len) {
            job->first_bad[worker] = i + bad;
            return;
        }
        if (out_scratch) {
            char *dst = (char *)element(&out_op, i);
            const char *src = b.out;
            ptrdiff_t step = a->out_stride * (ptrdiff_t)es;
            for (size_t j = 0; j < len; j++, dst += step) memcpy(dst, src + es * j, es);
        }
    }
}

/* The broadcast value of a stride-0 operand, converted to double like a C cast. */
static double broadcast_f64(const engram_decay_operand *op) {
    switch (op->type) {
        case ENGRAM_DECAY_F32: return *(const float *)op->data;
        case ENGRAM_DECAY_F64: return *(const double *)op->data;
        case ENGRAM_DECAY_I64: return (double)*(const int64_t *)op->data;
        default: return (double)*(const uint64_t *)op->data;
    }
}

static int strided(const engram_decay_operand *op) {
    return op->stride != 0 && op->stride != 1;
}

/* A region of `bytes` at *offset of a worker's scratch, 64-byte aligned (SIZE_MAX if unused). */
static size_t scratch_region(int needed, size_t bytes, size_t *total) {
    if (!needed) return SIZE_MAX;
    size_t at = *total;
    *total += (bytes + ENGRAM_ARENA_ALIGN - 1) / ENGRAM_ARENA_ALIGN * ENGRAM_ARENA_ALIGN;
    return at;
}

engram_status engram_decay_run(engram_arena *arena, const engram_decay_args *a) {
    if (a->out_stride == 0 && a->n > 1)
        return engram_fail(ENGRAM_ERR_VALUE,
                           "decay(): out has stride 0, so its %zu elements are one memory "
                           "location; pass an array with a nonzero stride",
                           a->n);
    if (a->model == ENGRAM_DECAY_POWER) {
        if (!(a->power > 0.0) || isinf(a->power))
            return engram_fail(ENGRAM_ERR_VALUE,
                               "decay(): power must be a finite number > 0, got %.17g", a->power);
        if (!(a->factor >= 0.0) || isinf(a->factor))
            return engram_fail(ENGRAM_ERR_VALUE,
                               "decay(): factor must be a finite number >= 0, got %.17g",
                               a->factor);
    }
    if (a->validate) {
        char value[48];
        if (a->age.stride == 0 && age_invalid(a->age.type, a->age.data)) {
            format_value(value, sizeof value, a->age.type, a->age.data);
            return engram_fail(ENGRAM_ERR_VALUE,
                               "decay(): age is %s; ages must be >= 0 seconds and not NaN; "
                               "pass validate=False to skip this check",
                               value);
        }
        if (a->stability.stride == 0 && stability_invalid(a->stability.type, a->stability.data)) {
            format_value(value, sizeof value, a->stability.type, a->stability.data);
            return engram_fail(ENGRAM_ERR_VALUE,
                               "decay(): stability is %s; stabilities must be > 0 and not NaN; "
                               "pass validate=False to skip this check",
                               value);
        }
    }
    if (a->n == 0) return ENGRAM_OK;

    decay_job job;
    memset(&job, 0, sizeof job);
    job.args = a;
    int f64 = a->strength.type == ENGRAM_DECAY_F64;
    job.params.age_type = a->age.type;
    /* float32 stabilities stay float32 for float32 strength; every other
     * type is read as double, so nothing is rounded before the division */
    job.params.stability_type =
        !f64 && a->stability.type == ENGRAM_DECAY_F32 ? ENGRAM_DECAY_F32 : ENGRAM_DECAY_F64;
    job.params.power = a->power;
    job.params.factor = a->factor;
    if (a->age.stride == 0) job.params.age = broadcast_f64(&a->age);
    if (a->stability.stride == 0) job.params.stability = broadcast_f64(&a->stability);
    const engram_decay_ops *ops = engram_decay();
    if (a->model == ENGRAM_DECAY_POWER) job.fn = f64 ? ops->power_f64 : ops->power_f32;
    else job.fn = f64 ? ops->exp_f64 : ops->exp_f32;

    /* an explicit request is honoured down to one block per thread, and up
     * to the cores: partitions beyond them would run one after another on
     * the calling thread, each with its own scratch (the results do not
     * depend on the partition) */
    size_t min_per_thread = a->threads > 0 ? DECAY_BLOCK : DECAY_MIN_PER_THREAD;
    unsigned n_workers = engram_threads_for(a->threads, a->n, DECAY_PARALLEL_THRESHOLD,
                                            (a->n + min_per_thread - 1) / min_per_thread);
    unsigned cores = engram_cpu_count();
    if (n_workers > cores) n_workers = cores;
    size_t per = (a->n + n_workers - 1) / n_workers;
    job.chunk = (per + DECAY_ALIGN_ELEMENTS - 1) / DECAY_ALIGN_ELEMENTS * DECAY_ALIGN_ELEMENTS;

    /* scratch for just the operands that need it: at most 4 blocks of 8
     * bytes (32 KB) per worker */
    int stability_array = a->stability.stride != 0;
    int convert = stability_array && a->stability.type != job.params.stability_type;
    size_t es = type_size(a->strength.type), per_worker = 0;
    job.off_strength = scratch_region(a->strength.stride != 1, DECAY_BLOCK * es, &per_worker);
    job.off_age = scratch_region(strided(&a->age), DECAY_BLOCK * type_size(a->age.type),
                                 &per_worker);
    job.off_stability = scratch_region(strided(&a->stability) || convert,
                                       DECAY_BLOCK * type_size(job.params.stability_type),
                                       &per_worker);
    job.off_out = scratch_region(a->out_stride != 1, DECAY_BLOCK * es, &per_worker);
    job.scratch_per_worker = per_worker;
    if (per_worker) {
        job.scratch = engram_arena_alloc(arena, (size_t)n_workers * per_worker);
        if (job.scratch == NULL) return ENGRAM_ERR_NOMEM;
    }

    /* Validation before anything is written: a scan of its own when out is
     * the caller's (it may be strength itself), else block by block just
     * ahead of the computation while the block is in cache. */
    if (a->validate && !a->out_is_fresh) {
        job.validate_only = 1;
        engram_parallel(n_workers, decay_worker, &job);
        for (unsigned w = 0; w < n_workers; w++)
            if (job.first_bad[w] != NO_INDEX) return report_invalid(a, job.first_bad[w]);
        job.validate_only = 0;
    }
    job.fused_validation = a->validate && a->out_is_fresh;
    /* float32 primitives validate as they go (their fast-path test implies
     * validity) where they see the stabilities as given, in float32 */
    if (job.fused_validation && !f64 &&
        (!stability_array || a->stability.type == ENGRAM_DECAY_F32))
        job.checked = a->model == ENGRAM_DECAY_POWER ? ops->power_f32_checked : ops->exp_f32_checked;
    job.block = job.scratch ? DECAY_BLOCK
                : job.fused_validation && !job.checked ? DECAY_VALIDATED_BLOCK : 0;
    engram_parallel(n_workers, decay_worker, &job);
    if (job.fused_validation)
        for (unsigned w = 0; w < n_workers; w++)
            if (job.first_bad[w] != NO_INDEX) return report_invalid(a, job.first_bad[w]);
    return ENGRAM_OK;
}
