/*
 * decay: each SIMD level against the scalar table (the spec).
 *
 * float32 exponential: bit-identical to the scalar level for every input
 * (the levels evaluate the same operations), the argument being
 * (float)((double)age / (double)stability) for operands of every type.
 * float32 power: within 0.5 + power + 0.13 ulp of the float64 evaluation
 * for power <= 1 (the float32 argument), 0.5 + 2^-10 above (the float64
 * evaluation's own u), for powers up to the largest double.  float64
 * exponential: within an ulp of the scalar level and 2 ulp of a long double
 * evaluation.  64-bit integer ages: converted to double exactly like a C cast.
 */
#include <math.h>
#include <string.h>

#include "ctest.h"

#define N_CASES 4096 /* a multiple of 16: the primitives see whole vectors */

static uint32_t bits32(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float from_bits32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static uint64_t next_u64(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* |got - exact| in ulps of float32 at exact (the smallest subnormal at least). */
static double ulps_f32(float got, double exact) {
    if (isnan(exact)) return isnan(got) ? 0 : INFINITY;
    if (isinf(exact) || isinf(got)) return (double)got == exact ? 0 : INFINITY;
    double a = fabs(exact);
    double ulp = a < 0x1p-126 ? 0x1p-149 : ldexp(1.0, ilogb(a) - 23);
    return fabs((double)got - exact) / ulp;
}

static double ulps_f64(double got, long double exact) {
    if (isnan(exact)) return isnan(got) ? 0 : INFINITY;
    if (isinf(exact) || isinf(got)) return (long double)got == exact ? 0 : INFINITY;
    long double a = fabsl(exact);
    long double ulp = a < 0x1p-1022L ? 0x1p-1074L : ldexpl(1.0L, ilogbl(a) - 52);
    return (double)(fabsl((long double)got - exact) / ulp);
}

static int same_f32(float a, float b) {
    return bits32(a) == bits32(b) || (isnan(a) && isnan(b));
}

/* Awkward values of y = age / stability and of strength, then random ones. */
static const float y_edges[] = {0.0f, -0.0f, 0x1p-149f, 0x1p-126f, 0x1p-30f, 1e-8f, 0.1f, 0.34657f,
                                0.34658f, 0.5f, 1.0f, 10.0f, 75.99f, 76.0f, 76.01f, 87.3f, 87.4f,
                                100.0f, 103.97f, 103.98f, 104.0f, 150.0f, 192.0f, 700.0f, 745.2f,
                                746.0f, 1e6f, 1e30f, INFINITY, NAN, -1.0f, -88.0f, -100.0f,
                                -709.0f, -710.0f, -1e30f, -INFINITY};
static const float s_edges[] = {1.0f, 0.5f, 0.0f, -0.0f, 0x1p-149f, 0x1p-130f, 0x1p-126f,
                                0x1p-16f, 0x1.fffffep-17f, 1e-30f, 1e6f, 0x1p100f, 0x1.000002p100f,
                                1e38f, 0x1.fffffep127f, INFINITY, -INFINITY, NAN, -1.0f, -1e-40f};

static void fill_exp_f32(uint64_t *rng, float *y, float *s, size_t n) {
    size_t ny = sizeof y_edges / sizeof y_edges[0], ns = sizeof s_edges / sizeof s_edges[0];
    for (size_t i = 0; i < n; i++) {
        if (i < ny * ns) {
            y[i] = y_edges[i % ny];
            s[i] = s_edges[i / ny];
            continue;
        }
        uint64_t r = next_u64(rng);
        /* y uniform over [0, 110) for most, any bit pattern for some */
        y[i] = (r & 7) ? (float)((r >> 11) * 0x1p-53 * 110.0) : from_bits32((uint32_t)(r >> 32));
        uint64_t t = next_u64(rng);
        s[i] = (t & 3) ? (float)((t >> 11) * 0x1p-53) : from_bits32((uint32_t)(t >> 32));
    }
}

static void run(engram_decay_fn fn, const engram_decay_params *p, void *out, const void *str,
                const void *age, const void *stab, size_t n) {
    engram_decay_block b = {n, out, str, age, stab};
    fn(p, &b);
}

static void test_exp_f32(ctest *t, const engram_decay_ops *ops) {
    static float y[N_CASES], s[N_CASES], ones[N_CASES], want[N_CASES], got[N_CASES];
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    fill_exp_f32(&rng, y, s, N_CASES);
    for (size_t i = 0; i < N_CASES; i++) ones[i] = 1.0f;
    engram_decay_params p = {.age_type = ENGRAM_DECAY_F32, .stability_type = ENGRAM_DECAY_F32};
    /* ages y with stability 1: the quotient is y itself */
    run(engram_decay_ops_scalar.exp_f32, &p, want, s, y, ones, N_CASES);
    run(ops->exp_f32, &p, got, s, y, ones, N_CASES);
    for (size_t i = 0; i < N_CASES; i++)
        CTEST_CHECK(t, same_f32(got[i], want[i]), "exp f32 y=%a s=%a: %a, scalar %a", (double)y[i],
                    (double)s[i], (double)got[i], (double)want[i]);
    /* in place, broadcast stability 2, broadcast age */
    memcpy(got, s, sizeof got);
    p.stability = 2.0;
    run(engram_decay_ops_scalar.exp_f32, &p, want, s, y, NULL, N_CASES);
    run(ops->exp_f32, &p, got, got, y, NULL, N_CASES);
    for (size_t i = 0; i < N_CASES; i++)
        CTEST_CHECK(t, same_f32(got[i], want[i]), "exp f32 in place y=%a s=%a", (double)y[i],
                    (double)s[i]);
    p.age = 3.5;
    run(engram_decay_ops_scalar.exp_f32, &p, want, s, NULL, y, N_CASES);
    run(ops->exp_f32, &p, got, s, NULL, y, N_CASES);
    for (size_t i = 0; i < N_CASES; i++)
        CTEST_CHECK(t, same_f32(got[i], want[i]), "exp f32 broadcast age S=%a", (double)y[i]);
}

/*
 * The float32 argument (float)((double)age / (double)stability) for
 * operands that are not float32: float64 and 64-bit integer ages, float64
 * stabilities (arrays and single values), values that are not float32
 * values or do not fit float32.  Every level gives the scalar level's bits,
 * and the scalar level is the definition.
 */
static void test_exp_f32_wide_operands(ctest *t, const engram_decay_ops *ops) {
    static double ad[N_CASES], Sd[N_CASES];
    static int64_t ai[N_CASES];
    static float s[N_CASES], Sf[N_CASES], want[N_CASES], got[N_CASES];
    uint64_t rng = 2718281828;
    for (size_t i = 0; i < N_CASES; i++) {
        uint64_t r = next_u64(&rng);
        double y = (r >> 11) * 0x1p-53 * 110.0;
        Sd[i] = ldexp(1.0 + (next_u64(&rng) >> 11) * 0x1p-53, (int)(next_u64(&rng) % 400) - 200);
        ad[i] = y * Sd[i];
        if (i % 5 == 0) ad[i] = (float)ad[i]; /* some float32 values among them */
        if (i % 7 == 0) Sd[i] = (float)Sd[i];
        Sf[i] = (float)(1.0 + (next_u64(&rng) >> 11) * 0x1p-53 * 1e6);
        ai[i] = (int64_t)(next_u64(&rng) >> (next_u64(&rng) % 64)) * ((i & 1) ? 1 : -1);
        s[i] = (float)((next_u64(&rng) >> 11) * 0x1p-53);
    }
    /* beyond float32: a stability of 1e-50 and ages and stabilities of 1e39 */
    Sd[1] = 1e-50, ad[1] = 0.0;
    Sd[2] = 1e39, ad[2] = 1e39;
    Sd[3] = 1e-300, ad[3] = 1e-300;
    ai[4] = (int64_t)((1ull << 60) + (1ull << 36) + 1); /* float32 first would round up */
    Sd[4] = 0x1p60;
    const void *ages[] = {ad, ai, ad};
    const engram_decay_type age_types[] = {ENGRAM_DECAY_F64, ENGRAM_DECAY_I64, ENGRAM_DECAY_F64};
    for (int k = 0; k < 3; k++) {
        for (int mode = 0; mode < 4; mode++) {
            /* stabilities: float64 array, float32 array, one float32 value, one other */
            engram_decay_params p = {.age_type = age_types[k],
                                     .stability_type = mode == 1 ? ENGRAM_DECAY_F32 : ENGRAM_DECAY_F64,
                                     .stability = mode == 2 ? 86400.0 : 0.1};
            const void *stab = mode == 0 ? (const void *)Sd : mode == 1 ? (const void *)Sf : NULL;
            const void *age = k == 2 ? NULL : ages[k];
            p.age = k == 2 ? 1e9 + 0.5 : 0.0; /* one age that is not a float32 value */
            run(engram_decay_ops_scalar.exp_f32, &p, want, s, age, stab, N_CASES);
            run(ops->exp_f32, &p, got, s, age, stab, N_CASES);
            for (size_t i = 0; i < N_CASES; i++) {
                CTEST_CHECK(t, same_f32(got[i], want[i]), "exp f32 ages %d stabilities %d i=%zu: %a, scalar %a",
                            k, mode, i, (double)got[i], (double)want[i]);
                double a = k == 2 ? p.age : k == 1 ? (double)ai[i] : ad[i];
                double S = mode == 0 ? Sd[i] : mode == 1 ? (double)Sf[i] : p.stability;
                float y = (float)(a / S);
                CTEST_CHECK(t, same_f32(want[i], engram_decay_exp_f32_lane(y, s[i])),
                            "scalar argument a=%a S=%a", a, S);
            }
        }
    }
    /* the cases that rounding the operands to float32 first got wrong */
    engram_decay_params p = {.age_type = ENGRAM_DECAY_F64, .stability_type = ENGRAM_DECAY_F64};
    run(ops->exp_f32, &p, got, s, ad, Sd, 16);
    CTEST_CHECK(t, got[1] == s[1], "age 0, stability 1e-50: %a, strength %a", (double)got[1], (double)s[1]);
    CTEST_CHECK(t, same_f32(got[2], engram_decay_exp_f32_lane(1.0f, s[2])), "age = stability = 1e39: %a",
                (double)got[2]);
    CTEST_CHECK(t, same_f32(got[3], engram_decay_exp_f32_lane(1.0f, s[3])), "age = stability = 1e-300");
    p.age_type = ENGRAM_DECAY_I64;
    run(ops->exp_f32, &p, got, s, ai, Sd, 16);
    CTEST_CHECK(t, same_f32(got[4], engram_decay_exp_f32_lane(1.0f, s[4])),
                "age 2^60 + 2^36 + 1 over 2^60: %a", (double)got[4]);
}

/* The element definition against float64 exp on a sweep: <= 1.2 ulp with strength 1. */
static void test_exp_f32_accuracy(ctest *t) {
    double worst = 0, worst_product = 0;
    uint64_t rng = 12345;
    for (uint32_t u = 0; u <= 0x42D00000u; u += 97) { /* y in [0, 104] */
        float y = from_bits32(u);
        worst = fmax(worst, ulps_f32(engram_decay_exp_f32_lane(y, 1.0f), exp(-(double)y)));
        float s = (float)((next_u64(&rng) >> 11) * 0x1p-53 * 4.0);
        worst_product = fmax(worst_product, ulps_f32(engram_decay_exp_f32_lane(y, s),
                                                     (double)s * exp(-(double)y)));
    }
    CTEST_CHECK(t, worst <= 1.2, "exp f32 max error %.3f ulp", worst);
    CTEST_CHECK(t, worst_product <= 1.5, "strength * exp f32 max error %.3f ulp", worst_product);
}

static void test_exp_f64(ctest *t, const engram_decay_ops *ops) {
    static double y[N_CASES], s[N_CASES], ones[N_CASES], want[N_CASES], got[N_CASES];
    static float yf[N_CASES], sf[N_CASES];
    uint64_t rng = 777;
    fill_exp_f32(&rng, yf, sf, N_CASES);
    for (size_t i = 0; i < N_CASES; i++) {
        uint64_t r = next_u64(&rng);
        y[i] = (i % 3 == 0) ? (double)yf[i] : (r >> 11) * 0x1p-53 * 760.0;
        s[i] = (i % 5 == 0) ? (double)sf[i] : (next_u64(&rng) >> 11) * 0x1p-53;
        ones[i] = 1.0;
    }
    engram_decay_params p = {.age_type = ENGRAM_DECAY_F64, .stability_type = ENGRAM_DECAY_F64};
    run(engram_decay_ops_scalar.exp_f64, &p, want, s, y, ones, N_CASES);
    run(ops->exp_f64, &p, got, s, y, ones, N_CASES);
    for (size_t i = 0; i < N_CASES; i++) {
        CTEST_CHECK(t, ulps_f64(got[i], (long double)want[i]) <= 1.0,
                    "exp f64 y=%a s=%a: %a, scalar %a", y[i], s[i], got[i], want[i]);
        /* where exp(-y) or the result is not a normal double, the float64 evaluation
         * s * exp(-y) defines it (overflow, underflow), up to the absolute error
         * s * 2^-1074 that a subnormal exp(-y) carries */
        long double exact = (long double)s[i] * expl(-(long double)y[i]);
        if (isnormal(exp(-y[i])) && isnormal((double)exact)) {
            CTEST_CHECK(t, ulps_f64(got[i], exact) <= 2.0, "exp f64 y=%a s=%a: %a, exact %La",
                        y[i], s[i], got[i], exact);
        } else {
            double plain = s[i] * exp(-y[i]);
            double slack = fabs(s[i]) * 0x1p-1074 + 0x1p-1073;
            CTEST_CHECK(t, (isnan(plain) && isnan(got[i])) || got[i] == plain ||
                               fabs(got[i] - plain) <= slack,
                        "exp f64 y=%a s=%a: %a, plain %a", y[i], s[i], got[i], plain);
        }
    }
}

/* The float64 evaluation of the power model: u as it forms it, then pow. */
static double power_exact(double a, double S, float s, double power, double factor) {
    double u = 1.0 + factor * a / S;
    return (double)s * pow(u, -power);
}

static void test_power_f32(ctest *t, const engram_decay_ops *ops) {
    static float a[N_CASES], S[N_CASES], s[N_CASES], want[N_CASES], got[N_CASES];
    uint64_t rng = 4242;
    static const double powers[] = {0.5, 0.3, 1.0, 2.5, 7.0, 1e3, 1e6, 1e9, 1e12};
    for (size_t k = 0; k < sizeof powers / sizeof powers[0]; k++) {
        double power = powers[k];
        for (size_t i = 0; i < N_CASES; i++) {
            S[i] = (float)(1.0 + (next_u64(&rng) >> 11) * 0x1p-53 * 1e6);
            /* power * log(u) spread over [0, 110]: results from strength down to 0 */
            double target = (next_u64(&rng) >> 11) * 0x1p-53 * 110.0 / power;
            a[i] = (float)(expm1(target) / (19.0 / 81.0) * (double)S[i]);
            if (i % 5 == 0) a[i] = (float)((next_u64(&rng) >> 11) * 0x1p-53 * 1e7);
            s[i] = (float)((next_u64(&rng) >> 11) * 0x1p-53);
        }
        /* edges: age 0, inf, NaN, negative; stability 0, inf; strength inf, NaN, 0, huge */
        a[1] = 0; a[2] = INFINITY; a[3] = NAN; a[4] = -5.0f; a[5] = 3e38f;
        S[6] = 0; S[7] = INFINITY; S[8] = 0x1p-149f;
        s[9] = INFINITY; s[10] = NAN; s[11] = 0; s[12] = 3e38f; s[13] = 0x1p-149f;
        a[14] = 0; s[14] = 3e38f;
        a[15] = 0; s[15] = 0x1p-149f;
        a[16] = 0x1p-149f; /* u - 1 far below double precision: u = 1 */
        engram_decay_params p = {.age_type = ENGRAM_DECAY_F32, .stability_type = ENGRAM_DECAY_F32,
                                 .power = power, .factor = 19.0 / 81.0};
        /* power <= 1 uses the float32 argument: <= power ulp more; above, the same u */
        double bound = power <= 1.0 ? 0.5 + power + 0.13 : 0.5 + 0x1p-10;
        for (int broadcast = 0; broadcast < 2; broadcast++) {
            p.stability = 86400.0;
            const float *stab = broadcast ? NULL : S;
            run(engram_decay_ops_scalar.power_f32, &p, want, s, a, stab, N_CASES);
            run(ops->power_f32, &p, got, s, a, stab, N_CASES);
            double worst = 0;
            for (size_t i = 0; i < N_CASES; i++) {
                double Si = broadcast ? 86400.0 : (double)S[i];
                double exact = power_exact((double)a[i], Si, s[i], p.power, p.factor);
                CTEST_CHECK(t, ulps_f32(want[i], exact) <= 0.5 + 0x1p-20,
                            "power f32 scalar p=%g a=%a S=%a s=%a: %a, exact %a", p.power,
                            (double)a[i], Si, (double)s[i], (double)want[i], exact);
                worst = fmax(worst, ulps_f32(got[i], exact));
                CTEST_CHECK(t, ulps_f32(got[i], exact) <= bound,
                            "power f32 p=%g a=%a S=%a s=%a: %a, exact %a", p.power, (double)a[i],
                            Si, (double)s[i], (double)got[i], exact);
            }
            (void)worst;
        }
    }
}

/* Age 0 or factor 0 gives strength exactly, and huge powers give strength * [u == 1]. */
static void test_power_f32_limits(ctest *t, const engram_decay_ops *ops) {
    enum { N = 64 };
    static float a[N], S[N], s[N], got[N];
    static const double powers[] = {5e-324, 1e-300, 0.5, 1.0, 1.0000000000000002, 2.0, 1e3, 1e6,
                                    1e9, 1e12, 1e15, 1e100, 7.8e306, 8e306, 1e308, 0x1.fffffffffffffp1023};
    uint64_t rng = 5;
    for (size_t i = 0; i < N; i++) {
        s[i] = (float)((next_u64(&rng) >> 11) * 0x1p-53 * 4.0 - 1.0);
        S[i] = (float)(1.0 + (next_u64(&rng) >> 11) * 0x1p-53 * 1e6);
        a[i] = (i % 2) ? 0.0f : (float)((next_u64(&rng) >> 11) * 0x1p-53 * 1e6);
    }
    s[2] = 3e38f, s[4] = 0x1p-149f, s[6] = -0.0f;
    for (size_t k = 0; k < sizeof powers / sizeof powers[0]; k++) {
        for (int variant = 0; variant < 3; variant++) {
            /* stabilities an array, one value; factor 0 with every age */
            engram_decay_params p = {.age_type = ENGRAM_DECAY_F32, .stability_type = ENGRAM_DECAY_F32,
                                     .stability = 86400.0, .power = powers[k],
                                     .factor = variant == 2 ? 0.0 : 19.0 / 81.0};
            run(ops->power_f32, &p, got, s, a, variant == 1 ? NULL : S, N);
            for (size_t i = 0; i < N; i++) {
                double Si = variant == 1 ? 86400.0 : (double)S[i];
                if (a[i] == 0.0f || p.factor == 0.0) {
                    CTEST_CHECK(t, same_f32(got[i], s[i]), "power %g factor %g age 0: %a, strength %a",
                                p.power, p.factor, (double)got[i], (double)s[i]);
                } else {
                    double exact = power_exact((double)a[i], Si, s[i], p.power, p.factor);
                    CTEST_CHECK(t, ulps_f32(got[i], exact) <= (p.power <= 1.0 ? 0.5 + p.power + 0.13
                                                                               : 0.5 + 0x1p-10),
                                "power %g a=%a S=%a s=%a: %a, exact %a", p.power, (double)a[i], Si,
                                (double)s[i], (double)got[i], exact);
                }
            }
        }
    }
}

/* 64-bit integer ages give the results of the same ages converted to double by a C cast. */
static void test_integer_ages(ctest *t, const engram_decay_ops *ops) {
    static int64_t ai[N_CASES];
    static uint64_t au[N_CASES];
    static float s[N_CASES], Sf[N_CASES], want[N_CASES], got[N_CASES];
    static double ai_d[N_CASES], au_d[N_CASES], sd[N_CASES], wantd[N_CASES], gotd[N_CASES];
    uint64_t rng = 99;
    for (size_t i = 0; i < N_CASES; i++) {
        uint64_t r = next_u64(&rng);
        int shift = (int)(next_u64(&rng) % 64); /* every magnitude, many beyond 2^53 */
        au[i] = r >> shift;
        if (i % 7 == 0) au[i] = (1ull << 53) + (r & 0xfff); /* around the double rounding */
        if (i % 11 == 0) au[i] = ((r >> 40) << 40) | (1ull << 39); /* float32 ties */
        if (i % 13 == 0) au[i] = ((r >> 40) << 40) | (1ull << 39) | 1; /* ties once in double */
        if (i % 17 == 0) au[i] = r >> 41; /* float32 values: the float32 division */
        ai[i] = (int64_t)au[i];
        au_d[i] = (double)au[i];
        s[i] = 1.0f;
        sd[i] = 1.0;
        Sf[i] = 0x1p60f;
    }
    /* stability 2^60: y = age / 2^60 is exact and lands in [0, 16); then ages below
     * 2^24 (the float32 path) with a larger one in every third vector, stability 3 * 2^18 */
    for (int array = 0; array < 4; array++) {
        if (array == 2) {
            for (size_t i = 0; i < N_CASES; i++) {
                uint64_t r = next_u64(&rng);
                au[i] = (r >> 40) % (1u << 24);
                if (i % 96 == 47) au[i] = r >> 20;
                if (i % 96 == 95) au[i] = (1u << 24) + ((r >> 40) | 1) % (1u << 24); /* not float32 */
                au_d[i] = (double)au[i];
                Sf[i] = 0x1.8p19f; /* not a power of 2: rounding the age first would show */
            }
        }
        const float *stab = array % 2 ? Sf : NULL;
        engram_decay_params p = {.age_type = ENGRAM_DECAY_U64, .stability_type = ENGRAM_DECAY_F32,
                                 .stability = array < 2 ? 0x1p60 : 0x1.8p19};
        engram_decay_params pd = p;
        pd.age_type = ENGRAM_DECAY_F64;
        run(ops->exp_f32, &p, got, s, au, stab, N_CASES);
        run(engram_decay_ops_scalar.exp_f32, &pd, want, s, au_d, stab, N_CASES);
        for (size_t i = 0; i < N_CASES; i++)
            CTEST_CHECK(t, same_f32(got[i], want[i]), "u64 age %llu", (unsigned long long)au[i]);
        /* stability -2^60 would be invalid; negate through the ages instead: both signs */
        p.age_type = ENGRAM_DECAY_I64;
        for (size_t i = 0; i < N_CASES; i++) {
            int64_t v = (int64_t)au[i];
            ai[i] = (array < 2 ? i % 2 : i % 48 != 23) ? v : -v;
            ai_d[i] = (double)ai[i];
        }
        run(ops->exp_f32, &p, got, s, ai, stab, N_CASES);
        run(engram_decay_ops_scalar.exp_f32, &pd, want, s, ai_d, stab, N_CASES);
        for (size_t i = 0; i < N_CASES; i++)
            CTEST_CHECK(t, same_f32(got[i], want[i]), "i64 age %lld", (long long)ai[i]);
    }
    /* float64 working precision, on every magnitude */
    for (size_t i = 0; i < N_CASES; i++) {
        uint64_t r = next_u64(&rng);
        au[i] = r >> (next_u64(&rng) % 64);
        if (i % 7 == 0) au[i] = (1ull << 53) + (r & 0xfff);
        au_d[i] = (double)au[i];
        ai[i] = (i % 2) ? (int64_t)au[i] : -(int64_t)(au[i] >> 1);
        ai_d[i] = (double)ai[i];
    }
    engram_decay_params pd = {.age_type = ENGRAM_DECAY_U64, .stability_type = ENGRAM_DECAY_F64,
                              .stability = 0x1p60};
    engram_decay_params pdf = pd;
    pdf.age_type = ENGRAM_DECAY_F64;
    run(ops->exp_f64, &pd, gotd, sd, au, NULL, N_CASES);
    run(ops->exp_f64, &pdf, wantd, sd, au_d, NULL, N_CASES);
    for (size_t i = 0; i < N_CASES; i++)
        CTEST_CHECK(t, gotd[i] == wantd[i], "u64 age %llu as double", (unsigned long long)au[i]);
    pd.age_type = ENGRAM_DECAY_I64;
    run(ops->exp_f64, &pd, gotd, sd, ai, NULL, N_CASES);
    run(ops->exp_f64, &pdf, wantd, sd, ai_d, NULL, N_CASES);
    for (size_t i = 0; i < N_CASES; i++)
        CTEST_CHECK(t, gotd[i] == wantd[i], "i64 age %lld as double", (long long)ai[i]);
}

/* The validating primitives: the first invalid element, and the unchecked results otherwise. */
static void test_checked(ctest *t, const engram_decay_ops *ops) {
    enum { N = 1024 };
    static float a[N], S[N], s[N], want[N], got[N];
    static double ad[N];
    uint64_t rng = 31337;
    for (int trial = 0; trial < 64; trial++) {
        for (size_t i = 0; i < N; i++) {
            a[i] = (float)((next_u64(&rng) >> 11) * 0x1p-53 * 3e6);
            ad[i] = a[i];
            S[i] = (float)(3600.0 + (next_u64(&rng) >> 11) * 0x1p-53 * 3e6);
            s[i] = (float)((next_u64(&rng) >> 11) * 0x1p-53);
        }
        a[next_u64(&rng) % N] = -0.0f; /* valid */
        S[next_u64(&rng) % N] = INFINITY; /* valid */
        if (trial % 4 != 3) {
            size_t i = next_u64(&rng) % N;
            static const float bad_ages[] = {-1.0f, NAN, -INFINITY, -1e-30f};
            a[i] = bad_ages[trial % 4];
            ad[i] = trial % 2 ? -1e-300 : (double)a[i]; /* -1e-300 is -0.0 as float32 */
        }
        if (trial % 3 == 0) {
            static const float bad_stabilities[] = {0.0f, -1.0f, NAN};
            S[next_u64(&rng) % N] = bad_stabilities[trial % 3 == 0 ? (trial / 3) % 3 : 0];
        }
        if (trial % 5 == 0) { /* both negative: a positive quotient of invalid inputs */
            size_t i = next_u64(&rng) % N;
            a[i] = -3600.0f;
            ad[i] = -3600.0;
            S[i] = -86400.0f;
        }
        for (int use_f64 = 0; use_f64 < 2; use_f64++) {
            engram_decay_params p = {.age_type = use_f64 ? ENGRAM_DECAY_F64 : ENGRAM_DECAY_F32,
                                     .stability_type = ENGRAM_DECAY_F32,
                                     .power = trial % 2 ? 0.5 : (trial % 3 ? 0.3 : 2.5),
                                     .factor = 19.0 / 81.0};
            const void *age = use_f64 ? (const void *)ad : (const void *)a;
            engram_decay_block b = {N, got, s, age, S};
            size_t expected = engram_decay_first_invalid_block(&p, &b);
            for (int power = 0; power < 2; power++) {
                engram_decay_checked_fn checked = power ? ops->power_f32_checked : ops->exp_f32_checked;
                engram_decay_fn plain = power ? ops->power_f32 : ops->exp_f32;
                size_t idx = checked(&p, &b);
                CTEST_CHECK(t, idx == expected, "checked %s f64-ages=%d trial %d: %zu, expected %zu",
                            power ? "power" : "exp", use_f64, trial, idx, expected);
                if (expected == N) {
                    engram_decay_block w = {N, want, s, age, S};
                    plain(&p, &w);
                    for (size_t i = 0; i < N; i++)
                        CTEST_CHECK(t, same_f32(got[i], want[i]), "checked results differ at %zu", i);
                }
            }
        }
    }
}

/* The whole entry point: awkward lengths, strides, in place, threads, validation. */
static void test_entry(ctest *t) {
    enum { N = 1000 };
    static float str[2 * N], age[N], out[N], want[N];
    engram_arena *arena = engram_arena_get();
    for (size_t i = 0; i < N; i++) {
        age[i] = (float)(i * 37 % 1000) * 100.0f;
        str[2 * i] = (float)(i % 13) / 13.0f;
        want[i] = engram_decay_exp_f32_lane(age[i] / 3600.0f, str[2 * i]);
    }
    static const size_t lengths[] = {0, 1, 15, 16, 17, 31, 33, 999, 1000};
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        float stability = 3600.0f;
        engram_decay_args a = {lengths[k],
                               {str, 2, ENGRAM_DECAY_F32},
                               {age, 1, ENGRAM_DECAY_F32},
                               {&stability, 0, ENGRAM_DECAY_F32},
                               out,
                               1,
                               ENGRAM_DECAY_EXPONENTIAL,
                               0.5,
                               19.0 / 81.0,
                               1,
                               0,
                               (int)(k % 3) + 1};
        memset(out, 0, sizeof out);
        CTEST_CHECK(t, engram_decay_run(arena, &a) == ENGRAM_OK, "run n=%zu", lengths[k]);
        engram_arena_reset(arena);
        for (size_t i = 0; i < lengths[k]; i++)
            CTEST_CHECK(t, same_f32(out[i], want[i]), "strided n=%zu i=%zu", lengths[k], i);
    }
    /* a negative age is found before anything is written, whatever the thread count */
    float stability = 3600.0f;
    age[517] = -1.0f;
    for (int threads = 1; threads <= 3; threads++) {
        engram_decay_args a = {N, {str, 2, ENGRAM_DECAY_F32}, {age, 1, ENGRAM_DECAY_F32},
                               {&stability, 0, ENGRAM_DECAY_F32}, str, 2,
                               ENGRAM_DECAY_EXPONENTIAL, 0.5, 19.0 / 81.0, 1, 0, threads};
        float before = str[0];
        CTEST_CHECK(t, engram_decay_run(arena, &a) == ENGRAM_ERR_VALUE, "negative age accepted");
        CTEST_CHECK(t, strstr(engram_last_error(), "age[517]") != NULL, "message: %s",
                    engram_last_error());
        CTEST_CHECK(t, str[0] == before, "written before the error");
        engram_arena_reset(arena);
    }
    age[517] = 0.0f;
    /* an out of stride 0 is one location for every result: rejected, nothing written */
    float one_location = 7.0f;
    engram_decay_args a = {N, {str, 2, ENGRAM_DECAY_F32}, {age, 1, ENGRAM_DECAY_F32},
                           {&stability, 0, ENGRAM_DECAY_F32}, &one_location, 0,
                           ENGRAM_DECAY_EXPONENTIAL, 0.5, 19.0 / 81.0, 0, 0, 1};
    CTEST_CHECK(t, engram_decay_run(arena, &a) == ENGRAM_ERR_VALUE, "out of stride 0 accepted");
    CTEST_CHECK(t, strstr(engram_last_error(), "stride 0") != NULL, "message: %s", engram_last_error());
    CTEST_CHECK(t, one_location == 7.0f, "out of stride 0 written");
    engram_arena_reset(arena);
    a.n = 1; /* one element: a stride means nothing */
    CTEST_CHECK(t, engram_decay_run(arena, &a) == ENGRAM_OK, "one element, stride 0");
    engram_arena_reset(arena);
}

void ctest_decay(ctest *t) {
    const engram_decay_ops *ops = engram_decay();
    test_exp_f32(t, ops);
    test_exp_f64(t, ops);
    test_power_f32(t, ops);
    test_power_f32_limits(t, ops);
    test_exp_f32_wide_operands(t, ops);
    test_integer_ages(t, ops);
    test_checked(t, ops);
    test_entry(t);
    if (ops == &engram_decay_ops_scalar) test_exp_f32_accuracy(t);
}
