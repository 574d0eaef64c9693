/*
 * decay_internal.h -- constants of the decay kernel shared by decay.c and
 * the decay sections of the csrc/simd files, so every level evaluates the
 * same polynomials and takes the same lanes down the same paths.
 *
 * Operands: ages and stabilities of every type are first converted to
 * double exactly as a C cast does (exact for float32, float64 and 64-bit
 * integers up to 2^53; beyond, rounded to nearest).  Nothing is rounded to
 * float32 before a division, so values that pass validation (any finite
 * positive stability, any age >= 0) divide as the float64 evaluation does.
 *
 * float32 exponential (bit-identical on every level)
 *   y = (float)((double)age / (double)stability)
 *                                             the float32 argument; for two float32
 *                                             operands this is the IEEE float32
 *                                             quotient (double rounding of a quotient
 *                                             is innocuous: 53 >= 2 * 24 + 2), which
 *                                             the vector levels divide in float32
 *                                             wherever both operands are float32
 *                                             values (integer ages below 2^24 too)
 *   y clamped to [-710, 746]                  exp(-y) is then 0 or inf in float64 anyway
 *   n = rint(-y * log2(e))                    FMA with a 1.5 * 2^23 shifter
 *   w = y + n * ln2                           two-constant Cody-Waite, the first FMA exact
 *   q = exp(-w) - 1 = -w + w^2 * t(w)         t: degree-4 minimax, |w| <= ln2/2
 *   m = strength + strength * q               one rounding: strength * exp(-w)
 *   result = m * 2^n                          rounded once (subnormal results included)
 * Fast lanes (0 <= y <= 76, 2^-16 <= strength < 2^100) round m to float32
 * and scale exactly; all other lanes form m in float64 and round m * 2^n
 * once, so no float32 operation ever sees a subnormal (a microcode assist
 * of ~150 cycles on x86).  The product with strength happens before the
 * scaling, so the result is within ~1.1 ulp of the float64 value
 * strength * exp(-y) for every strength, also where exp(-y) alone would be
 * subnormal (measured: 1.02 ulp over every float32 y in [0, 104] with
 * strength 1, 1.1 ulp with others).  NaN, infinite strengths and the zeros
 * and infinities of float64 exp follow the float64 product
 * (engram_decay_exp_f32_lane).
 *
 * float32 power: in float64, rounded once to float32:
 *   u = 1 + (factor * age) / stability        power > 1: the float64 evaluation's own
 *                                             u, bit for bit (IEEE multiply, divide, add)
 *     = 1 + factor * y                        power <= 1, stability an array: y the
 *                                             float32 argument above
 *     = 1 + age * (factor / stability)        power <= 1, one stability (fused)
 *   u^-power = 1 / sqrt(u)                    power 0.5 (the FSRS curve)
 *            = exp(max(-power * log(u), -700)) otherwise
 * log(1) = 0 exactly on every level, and the logarithm's error next to
 * u = 1 is relative, not absolute: power multiplies it (an absolute error
 * of 3e-12 would put power 1e6 58 ulp away, and 1e15 at 0).  Every
 * result s * exp(Y) that is not 0 in float32 has |Y| <= 193 (float32
 * strengths are below 2^128), and the error of Y is bounded by that, not
 * by the power (the logs below, the AVX-512 one in its own comment).
 * Bound against the float64 evaluation s * u^-power, u as it forms it, for
 * every finite power > 0:
 *   power > 1:   0.5 + 2^-12 ulp              the same u; |error of Y| < 2^-36.5 on
 *                                             every level, exp within 2^-42 relative
 *   power <= 1:  0.5 + power + 0.13 ulp       the float32 argument perturbs u - 1 by
 *                                             2^-24 relative, u^-power by <= power ulp;
 *                                             0.13: AVX-512's reciprocal square root
 *                                             (2^-27) and its float64 exp (2^-34)
 * Measured (2^18 random ages spread over power * log(u) in [0, 120], every
 * level): power > 1 (1.01 .. 1e15): 0.5 + 4e-6 ulp; power 0.3: 0.75 ulp;
 * power 0.5: 0.98 ulp; power 1: 1.43 ulp.  The clamp at -700 keeps every
 * double normal; below it strength * u^-power rounds to 0 in float32 for
 * every float32 strength, and it also takes -inf, so a power too large for
 * power * log(u) gives strength where u = 1 and 0 elsewhere, as the float64
 * evaluation does; age 0 or factor 0 (u = 1) gives strength exactly.
 *
 * float64 exponential: the float32 scheme in float64 (degree-13 Taylor
 * polynomial), within ~1.1 ulp.  float64 power: the C library's pow.
 */
#ifndef ENGRAM_DECAY_INTERNAL_H
#define ENGRAM_DECAY_INTERNAL_H

/* ---- float32 exponential ---- */
#define DECAY_F32_LOG2E 0x1.715476p+0f
#define DECAY_F32_SHIFTER 0x1.8p23f /* rint for |x| < 2^22: the integer lands in the low mantissa bits */
#define DECAY_F32_LN2_HI 0x1.62e430p-1f
#define DECAY_F32_LN2_LO -0x1.05c610p-29f
/* t(w) = (exp(-w) - 1 + w) / w^2 on |w| <= ln2/2; relative error of 1 - w + w^2 t(w): 4.4e-9 */
#define DECAY_F32_T0 0x1.fffffcp-2f
#define DECAY_F32_T1 -0x1.555490p-3f
#define DECAY_F32_T2 0x1.5558f4p-5f
#define DECAY_F32_T3 -0x1.123a6cp-7f
#define DECAY_F32_T4 0x1.6a2352p-10f
#define DECAY_F32_Y_MIN -710.0f
#define DECAY_F32_Y_MAX 746.0f
/* |y| below this rounds exp(-y) like y = 0; flushing it keeps subnormals out of the FMAs */
#define DECAY_F32_Y_TINY 0x1p-30f
/* float32 y from which exp(-y) is 0 in float64 (inf * that is NaN), and up to which it is inf */
#define DECAY_F32_Y_ZERO 0x1.74910ep+9f  /* 745.13324 */
#define DECAY_F32_Y_INF -0x1.62e43p+9f   /* -709.7827 */
/*
 * Vector fast path: 0 <= y <= 76 and 2^-16 <= strength <= 2^100 (tested on
 * the bit patterns).  Then strength * exp(-y) >= 2^-125.6 is normal, the
 * scaling by 2^n is exact and no operation meets a subnormal (which would
 * cost a microcode assist of ~150 cycles on x86).  Other lanes take the
 * float64 scaling path, which rounds the same value once.
 */
#define DECAY_F32_FAST_Y_MAX_BITS 0x42980000u    /* 76.0f */
#define DECAY_F32_FAST_S_MIN_BITS 0x37800000u    /* 2^-16 */
#define DECAY_F32_FAST_S_SPAN_BITS 0x3a000000u   /* bits(2^100) - bits(2^-16) */
/* n beyond +-300 makes m * 2^n round to 0 or overflow in float32; the clamp keeps it a normal double */
#define DECAY_F32_N_LIMIT 300.0f

/* ---- float64 exponential ---- */
#define DECAY_F64_LOG2E 0x1.71547652b82fep+0
#define DECAY_F64_SHIFTER 0x1.8p52
#define DECAY_F64_LN2_HI 0x1.62e42fee00000p-1 /* trailing zeros: n * LN2_HI is exact without FMA */
#define DECAY_F64_LN2_LO 0x1.a39ef35793c76p-33
/* beyond, exp(-y) underflows to 0 in float64 and the element takes the plain s * exp(-y) */
#define DECAY_F64_Y_MAX 745.0
/* fast lanes: 0 <= y <= 690 and 2^-26 <= |strength| <= 2^1000 keep every step normal */
#define DECAY_F64_FAST_Y_MAX 690.0
#define DECAY_F64_FAST_S_MIN 0x1p-26
#define DECAY_F64_FAST_S_MAX 0x1p1000
/* t(w) = sum_{k=2..13} (-w)^(k-2) / k!; truncation error w^14/14! < 5e-18 for |w| <= ln2/2 */
#define DECAY_F64_T0 0x1.0000000000000p-1
#define DECAY_F64_T1 -0x1.5555555555555p-3
#define DECAY_F64_T2 0x1.5555555555555p-5
#define DECAY_F64_T3 -0x1.1111111111111p-7
#define DECAY_F64_T4 0x1.6c16c16c16c17p-10
#define DECAY_F64_T5 -0x1.a01a01a01a01ap-13
#define DECAY_F64_T6 0x1.a01a01a01a01ap-16
#define DECAY_F64_T7 -0x1.71de3a556c734p-19
#define DECAY_F64_T8 0x1.27e4fb7789f5cp-22
#define DECAY_F64_T9 -0x1.ae64567f544e4p-26
#define DECAY_F64_T10 0x1.1eed8eff8d898p-29
#define DECAY_F64_T11 -0x1.6124613a86d09p-33

/* ---- float32 power, evaluated in float64 ---- */
/* exp(Y) is only needed down to Y = -700: below, strength * exp(Y) rounds to 0 in float32
 * for every float32 strength, and staying above keeps every double normal. */
#define DECAY_POW_Y_MIN -700.0
/* AVX2/NEON log(1 + f) = 2 atanh(s), s = f / (2 + f), |s| <= 3 - 2 sqrt(2):
 * 2s (1 + z A(z)), z = s^2, A minimax of degree 5 (relative error < 2^-50;
 * AVX2's s from a reciprocal with two Newton steps, < 2^-47): the log is
 * relative everywhere, so |error of Y| <= 193 * 2^-47 = 2^-39.4 */
#define DECAY_POW_LOG_OFFSET 0x3fe6a09e667f3bcdull /* bits of sqrt(1/2): mantissa in [sqrt(1/2), sqrt(2)) */
#define DECAY_POW_LN2 0x1.62e42fefa39efp-1
/*
 * AVX-512 log(m) for m in [1, 2): row j of a 16-row table by the top 4
 * fraction bits, log(m) = log(c_j) + log1p(r), r = m / c_j - 1.  Row 0 is
 * c = 1 (r = m - 1 exactly, log(1) = 0 exactly, the error relative next to
 * 1); rows 1..15 are centred, |r| <= 1/35.  log1p(r) = r + r^2 P(r), P
 * minimax on [-1/34, 1/16] with |error| <= e_P.  The error of
 * Y = -power * log(u) is then at most power * r^2 e_P: next to 1 (row 0,
 * u < 1 + 1/16) that is |Y| r e_P <= |Y| e_P / 16, elsewhere (log(u) >=
 * 0.06) |Y| e_P / (0.06 * 35^2), so for |Y| <= 193 (nonzero float32
 * results) at most 12 e_P whatever the power; for power <= 1 also at most
 * e_P / 256.
 *   power > 1:   degree 6, e_P = 2^-40.3: |error of Y| < 2^-36.7
 *   power <= 1:  degree 4, e_P = 2^-29.0: |error of Y| < 2^-37
 */
#define DECAY_POW_LOG6_P0 -0x1.0000000000cc7p-1
#define DECAY_POW_LOG6_P1 0x1.55555553ba357p-2
#define DECAY_POW_LOG6_P2 -0x1.ffffff48485bcp-3
#define DECAY_POW_LOG6_P3 0x1.9999c963fdaf2p-3
#define DECAY_POW_LOG6_P4 -0x1.555d422fb1afbp-3
#define DECAY_POW_LOG6_P5 0x1.242d4d9c60886p-3
#define DECAY_POW_LOG6_P6 -0x1.cf9f8c304dd78p-4
#define DECAY_POW_LOG4_P0 -0x1.ffffffe3bec46p-2
#define DECAY_POW_LOG4_P1 0x1.555558ce7ef7dp-2
#define DECAY_POW_LOG4_P2 -0x1.0003019df1604p-2
#define DECAY_POW_LOG4_P3 0x1.999811f03c784p-3
#define DECAY_POW_LOG4_P4 -0x1.3ec2466487361p-3
#define DECAY_POW_ATANH_A0 0x1.55555555553b8p-2
#define DECAY_POW_ATANH_A1 0x1.9999999b8677ap-3
#define DECAY_POW_ATANH_A2 0x1.2492462af84abp-3
#define DECAY_POW_ATANH_A3 0x1.c71fccd953895p-4
#define DECAY_POW_ATANH_A4 0x1.7382dbfa1ce75p-4
#define DECAY_POW_ATANH_A5 0x1.546a3155bacbfp-4
/* AVX2/NEON exp(w), |w| <= ln2/2: 1 + w + w^2 Q(w), Q minimax of degree 8
 * (relative error < 2^-49) */
#define DECAY_POW_EXP_Q0 0x1.0000000000000p-1
#define DECAY_POW_EXP_Q1 0x1.5555555553b7dp-3
#define DECAY_POW_EXP_Q2 0x1.5555555554cb8p-5
#define DECAY_POW_EXP_Q3 0x1.1111111c45d5bp-7
#define DECAY_POW_EXP_Q4 0x1.6c16c1738ecf7p-10
#define DECAY_POW_EXP_Q5 0x1.a019adabfb6abp-13
#define DECAY_POW_EXP_Q6 0x1.a019c9ab213aap-16
#define DECAY_POW_EXP_Q7 0x1.72c720b2e07bfp-19
#define DECAY_POW_EXP_Q8 0x1.28803926c8ea8p-22

/* ---- operands as the definition reads them ---- */
#include "engram.h"

#include <stdint.h>

/* Age i of a block (or the broadcast age) converted to double like a C cast. */
static inline double decay_age_f64(const engram_decay_params *p, const void *age, size_t i) {
    if (age == NULL) return p->age;
    switch (p->age_type) {
        case ENGRAM_DECAY_F32: return (double)((const float *)age)[i];
        case ENGRAM_DECAY_F64: return ((const double *)age)[i];
        case ENGRAM_DECAY_I64: return (double)((const int64_t *)age)[i];
        default: return (double)((const uint64_t *)age)[i];
    }
}

/* Stability i of a block (or the broadcast stability) as a double. */
static inline double decay_stability_f64(const engram_decay_params *p, const void *stability,
                                         size_t i) {
    if (stability == NULL) return p->stability;
    if (p->stability_type == ENGRAM_DECAY_F32) return (double)((const float *)stability)[i];
    return ((const double *)stability)[i];
}

/* Whether a double is a float32 value (then float32 arithmetic on it is exact). */
static inline int decay_is_f32(double x) {
    if (!(x >= -0x1.fffffep127 && x <= 0x1.fffffep127)) return x == x; /* infinities are */
    return (double)(float)x == x;
}

#endif
