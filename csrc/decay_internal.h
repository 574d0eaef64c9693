/*
 * decay_internal.h -- constants of the decay kernel shared by decay.c and
 * the decay sections of the csrc/simd files, so every level evaluates the
 * same polynomials and takes the same lanes down the same paths.
 *
 * float32 exponential (bit-identical on every level)
 *   y = age / stability                       IEEE float32 division
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
 *   u = 1 + factor * (age / stability)        the float32 IEEE quotient when power <= 1
 *                                             (costs <= power ulp), else a float64 one
 *   u^-power = 1 / sqrt(u)                    power 0.5 (the FSRS curve)
 *            = exp(-power * log(u))           otherwise (log and exp to ~2^-33)
 * Within 0.5 + min(power, 1) + 0.1 ulp of the float64 evaluation.
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
/* AVX2/NEON log(1 + f) = 2 atanh(s), s = f / (2 + f), |s| <= 0.1716:
 * 2s (1 + s^2/3 + ... + s^10/11), error < 2^-35; then exp(w), |w| <= ln2/2, degree-9 Taylor */
#define DECAY_POW_LOG_OFFSET 0x3fe6a09e667f3bcdull /* bits of sqrt(1/2): mantissa in [sqrt(1/2), sqrt(2)) */

#endif
