/* pq_simd.h: the SSE2 subset the kernel uses, on any CPU.
 *
 * On x86-64 (SSE2 is part of the baseline) this is just <emmintrin.h>. Elsewhere (aarch64:
 * Apple Silicon, Graviton, Raspberry Pi, Android), or on x86-64 when PQ_PORTABLE_SIMD is
 * defined (setup.py: POCKETQUANT_PORTABLE_SIMD=1, used by tests/kernel to check this file),
 * it defines __m128 / __m128i and exactly the _mm_* functions the kernel calls in plain C,
 * lane by lane, with the x86 semantics bit for bit:
 *   - float lanes: one IEEE binary32 operation per lane (C float arithmetic; setup.py passes
 *     -ffp-contract=off so no multiply-add is fused, which aarch64 GCC would otherwise do);
 *   - comparisons give all-ones / all-zero masks; the "not" forms are true on NaN;
 *   - max/min return the SECOND operand when either is NaN or both are zeros (a > b ? a : b);
 *   - cvttps truncates and gives 0x80000000 for NaN and out-of-range values (C's (int)f is
 *     undefined there, and aarch64 saturates instead);
 *   - packs/packus saturate signed / unsigned, shifts by more than 31 give 0 (or the sign);
 *   - shuffle/movehl/movemask follow the immediate and lane order of the instructions.
 * Lanes are laid out as in an x86 register stored to memory (lane 0 first, little-endian);
 * the kernel writes little-endian GGUF bytes anyway, so big-endian hosts are refused.
 * Speed: setup.py force-inlines the kernel's small helpers in portable builds, after which the
 * compiler vectorizes these lanes again (figures in docs/kernel.md).
 */
#ifndef PQ_SIMD_H
#define PQ_SIMD_H

#include <float.h>
#include <stdint.h>
#include <string.h>

/* Float expressions must be evaluated in float: byte identity depends on it (x87 would not). */
#if defined(FLT_EVAL_METHOD) && (FLT_EVAL_METHOD == 1 || FLT_EVAL_METHOD == 2)
#error "pocketquant kernel needs FLT_EVAL_METHOD 0 (on 32-bit x86 build with -msse2 -mfpmath=sse)"
#endif

#if !defined(PQ_PORTABLE_SIMD) && (defined(__SSE2__) || defined(_M_X64))

#include <emmintrin.h>
#define PQ_SIMD_BACKEND "sse2"

#else /* portable plain-C lanes */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pocketquant kernel supports little-endian CPUs only (GGUF is little-endian)"
#endif

#define PQ_SIMD_BACKEND "portable"

/* Lanes as plain values (no unions): compilers keep them in registers and may vectorize them.
 * Integer registers are four uint32 lanes; 16- and 8-bit lanes (packs) are their little-endian
 * halves and bytes, as in an x86 register. */
typedef struct {
    float f[4];
} pq_m128;

typedef struct {
    uint32_t u[4];
} pq_m128i;

#define PQ_INL static inline

PQ_INL uint32_t pq_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

PQ_INL float pq_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#define PQ_MASK(c) ((c) ? 0xFFFFFFFFu : 0u)

/* ---- float lanes */

PQ_INL pq_m128 pq_setzero_ps(void) {
    pq_m128 r;
    int k;
    for (k = 0; k < 4; k++) r.f[k] = 0.0f;
    return r;
}

PQ_INL pq_m128 pq_set1_ps(float a) {
    pq_m128 r;
    int k;
    for (k = 0; k < 4; k++) r.f[k] = a;
    return r;
}

/* void* pointers: the kernel loads and stores at any alignment, as the u(naligned) forms allow */
PQ_INL pq_m128 pq_loadu_ps(const void *p) {
    pq_m128 r;
    memcpy(r.f, p, 16);
    return r;
}

PQ_INL void pq_storeu_ps(void *p, pq_m128 a) { memcpy(p, a.f, 16); }

/* A two-operand lane-wise function of type T: lane k of the result (field `lane`) is expr. */
#define PQ_LANES(name, T, lane, expr)                             \
    PQ_INL T name(T a, T b) {                                     \
        T r;                                                      \
        int k;                                                    \
        for (k = 0; k < 4; k++) r.lane[k] = (expr);               \
        return r;                                                 \
    }

#define PQ_FLOAT_OP(name, op) PQ_LANES(name, pq_m128, f, a.f[k] op b.f[k])
PQ_FLOAT_OP(pq_add_ps, +)
PQ_FLOAT_OP(pq_sub_ps, -)
PQ_FLOAT_OP(pq_mul_ps, *)
PQ_FLOAT_OP(pq_div_ps, /)

/* expr computes the uint32 bits of lane k from a.f[k], b.f[k] */
#define PQ_FLOAT_BITS(name, expr) PQ_LANES(name, pq_m128, f, pq_float(expr))
PQ_FLOAT_BITS(pq_and_ps, pq_bits(a.f[k]) & pq_bits(b.f[k]))
PQ_FLOAT_BITS(pq_andnot_ps, ~pq_bits(a.f[k]) & pq_bits(b.f[k]))
PQ_FLOAT_BITS(pq_or_ps, pq_bits(a.f[k]) | pq_bits(b.f[k]))
PQ_FLOAT_BITS(pq_xor_ps, pq_bits(a.f[k]) ^ pq_bits(b.f[k]))
PQ_FLOAT_BITS(pq_cmplt_ps, PQ_MASK(a.f[k] < b.f[k]))
PQ_FLOAT_BITS(pq_cmpgt_ps, PQ_MASK(a.f[k] > b.f[k]))
PQ_FLOAT_BITS(pq_cmpeq_ps, PQ_MASK(a.f[k] == b.f[k]))
PQ_FLOAT_BITS(pq_cmpneq_ps, PQ_MASK(!(a.f[k] == b.f[k])))
PQ_FLOAT_BITS(pq_cmpnlt_ps, PQ_MASK(!(a.f[k] < b.f[k])))
/* maxps / minps: the second operand unless the first is strictly greater / smaller */
PQ_FLOAT_BITS(pq_max_ps, a.f[k] > b.f[k] ? pq_bits(a.f[k]) : pq_bits(b.f[k]))
PQ_FLOAT_BITS(pq_min_ps, a.f[k] < b.f[k] ? pq_bits(a.f[k]) : pq_bits(b.f[k]))

PQ_INL pq_m128 pq_movehl_ps(pq_m128 a, pq_m128 b) {
    pq_m128 r;
    r.f[0] = b.f[2];
    r.f[1] = b.f[3];
    r.f[2] = a.f[2];
    r.f[3] = a.f[3];
    return r;
}

PQ_INL pq_m128 pq_shuffle_ps(pq_m128 a, pq_m128 b, unsigned int imm) {
    pq_m128 r;
    r.f[0] = a.f[imm & 3];
    r.f[1] = a.f[(imm >> 2) & 3];
    r.f[2] = b.f[(imm >> 4) & 3];
    r.f[3] = b.f[(imm >> 6) & 3];
    return r;
}

PQ_INL float pq_cvtss_f32(pq_m128 a) { return a.f[0]; }

PQ_INL int pq_movemask_ps(pq_m128 a) {
    return (int)((pq_bits(a.f[0]) >> 31) | ((pq_bits(a.f[1]) >> 31) << 1) | ((pq_bits(a.f[2]) >> 31) << 2) |
                 ((pq_bits(a.f[3]) >> 31) << 3));
}

/* ---- casts and conversions */

PQ_INL pq_m128i pq_castps_si128(pq_m128 a) {
    pq_m128i r;
    int k;
    for (k = 0; k < 4; k++) r.u[k] = pq_bits(a.f[k]);
    return r;
}

PQ_INL pq_m128 pq_castsi128_ps(pq_m128i a) {
    pq_m128 r;
    int k;
    for (k = 0; k < 4; k++) r.f[k] = pq_float(a.u[k]);
    return r;
}

PQ_INL pq_m128 pq_cvtepi32_ps(pq_m128i a) {
    pq_m128 r;
    int k;
    for (k = 0; k < 4; k++) r.f[k] = (float)(int32_t)a.u[k]; /* rounds to nearest even, as cvtdq2ps */
    return r;
}

PQ_INL pq_m128i pq_cvttps_epi32(pq_m128 a) {
    pq_m128i r;
    int k;
    for (k = 0; k < 4; k++) {
        float f = a.f[k];
        /* in range: [-2**31, 2**31); NaN fails both tests. x86's "integer indefinite" otherwise */
        r.u[k] = (f >= -2147483648.0f && f < 2147483648.0f) ? (uint32_t)(int32_t)f : 0x80000000u;
    }
    return r;
}

/* ---- 32-bit integer lanes (arithmetic in uint32_t: wraps like the hardware, no C overflow) */

PQ_INL pq_m128i pq_set1_epi32(int a) {
    pq_m128i r;
    int k;
    for (k = 0; k < 4; k++) r.u[k] = (uint32_t)a;
    return r;
}

PQ_INL pq_m128i pq_loadu_si128(const void *p) {
    pq_m128i r;
    memcpy(r.u, p, 16);
    return r;
}

PQ_INL void pq_storeu_si128(void *p, pq_m128i a) { memcpy(p, a.u, 16); }

#define PQ_INT_OP(name, expr) PQ_LANES(name, pq_m128i, u, expr)
PQ_INT_OP(pq_and_si128, a.u[k] & b.u[k])
PQ_INT_OP(pq_andnot_si128, ~a.u[k] & b.u[k])
PQ_INT_OP(pq_or_si128, a.u[k] | b.u[k])
PQ_INT_OP(pq_add_epi32, a.u[k] + b.u[k])
PQ_INT_OP(pq_sub_epi32, a.u[k] - b.u[k])
PQ_INT_OP(pq_cmpgt_epi32, PQ_MASK((int32_t)a.u[k] > (int32_t)b.u[k]))
PQ_INT_OP(pq_cmpeq_epi32, PQ_MASK(a.u[k] == b.u[k]))

PQ_INL pq_m128i pq_slli_epi32(pq_m128i a, int imm) {
    pq_m128i r;
    unsigned int n = (unsigned int)imm & 0xFFu;
    int k;
    for (k = 0; k < 4; k++) r.u[k] = n > 31 ? 0u : a.u[k] << n;
    return r;
}

PQ_INL pq_m128i pq_srli_epi32(pq_m128i a, int imm) {
    pq_m128i r;
    unsigned int n = (unsigned int)imm & 0xFFu;
    int k;
    for (k = 0; k < 4; k++) r.u[k] = n > 31 ? 0u : a.u[k] >> n;
    return r;
}

PQ_INL pq_m128i pq_srai_epi32(pq_m128i a, int imm) {
    /* arithmetic shift without relying on C's implementation-defined >> of negative values */
    pq_m128i r;
    unsigned int n = (unsigned int)imm & 0xFFu;
    int k;
    if (n > 31) n = 31;
    for (k = 0; k < 4; k++) r.u[k] = (a.u[k] >> n) | ((a.u[k] >> 31) ? ~(0xFFFFFFFFu >> n) : 0u);
    return r;
}

/* ---- saturating packs: a's lanes fill the low half of the result, b's the high half */

PQ_INL uint32_t pq_sat_i16(uint32_t v) { /* int32 lane -> int16 bits */
    int32_t s = (int32_t)v;
    return (uint32_t)(uint16_t)(int16_t)(s > 32767 ? 32767 : s < -32768 ? -32768 : s);
}

PQ_INL int32_t pq_lane16(pq_m128i a, int k) { /* signed 16-bit lane k (0..7), little-endian halves */
    uint32_t h = (a.u[k >> 1] >> ((k & 1) * 16)) & 0xFFFFu;
    return (int32_t)h - (int32_t)((h & 0x8000u) << 1);
}

PQ_INL uint32_t pq_sat_u8(int32_t v) { return (uint32_t)(v > 255 ? 255 : v < 0 ? 0 : v); }

PQ_INL uint32_t pq_sat_i8(int32_t v) { return (uint32_t)(uint8_t)(int8_t)(v > 127 ? 127 : v < -128 ? -128 : v); }

PQ_INL pq_m128i pq_packs_epi32(pq_m128i a, pq_m128i b) {
    pq_m128i r;
    r.u[0] = pq_sat_i16(a.u[0]) | (pq_sat_i16(a.u[1]) << 16);
    r.u[1] = pq_sat_i16(a.u[2]) | (pq_sat_i16(a.u[3]) << 16);
    r.u[2] = pq_sat_i16(b.u[0]) | (pq_sat_i16(b.u[1]) << 16);
    r.u[3] = pq_sat_i16(b.u[2]) | (pq_sat_i16(b.u[3]) << 16);
    return r;
}

#define PQ_PACK8(name, sat)                                                                    \
    PQ_INL pq_m128i name(pq_m128i a, pq_m128i b) {                                             \
        pq_m128i r;                                                                            \
        int j;                                                                                 \
        for (j = 0; j < 2; j++) {                                                              \
            r.u[j] = sat(pq_lane16(a, 4 * j)) | (sat(pq_lane16(a, 4 * j + 1)) << 8) |          \
                     (sat(pq_lane16(a, 4 * j + 2)) << 16) | (sat(pq_lane16(a, 4 * j + 3)) << 24); \
            r.u[j + 2] = sat(pq_lane16(b, 4 * j)) | (sat(pq_lane16(b, 4 * j + 1)) << 8) |      \
                         (sat(pq_lane16(b, 4 * j + 2)) << 16) | (sat(pq_lane16(b, 4 * j + 3)) << 24); \
        }                                                                                      \
        return r;                                                                              \
    }
PQ_PACK8(pq_packus_epi16, pq_sat_u8)
PQ_PACK8(pq_packs_epi16, pq_sat_i8)

/* The kernel's Cython code names the intrinsics; map them here (macros, so that an
 * <xmmintrin.h> pulled in earlier by some other header cannot clash with these definitions). */
#define __m128 pq_m128
#define __m128i pq_m128i
#define _mm_setzero_ps pq_setzero_ps
#define _mm_set1_ps pq_set1_ps
#define _mm_loadu_ps pq_loadu_ps
#define _mm_storeu_ps pq_storeu_ps
#define _mm_add_ps pq_add_ps
#define _mm_sub_ps pq_sub_ps
#define _mm_mul_ps pq_mul_ps
#define _mm_div_ps pq_div_ps
#define _mm_and_ps pq_and_ps
#define _mm_andnot_ps pq_andnot_ps
#define _mm_or_ps pq_or_ps
#define _mm_xor_ps pq_xor_ps
#define _mm_cmplt_ps pq_cmplt_ps
#define _mm_cmpgt_ps pq_cmpgt_ps
#define _mm_cmpneq_ps pq_cmpneq_ps
#define _mm_cmpnlt_ps pq_cmpnlt_ps
#define _mm_cmpeq_ps pq_cmpeq_ps
#define _mm_max_ps pq_max_ps
#define _mm_min_ps pq_min_ps
#define _mm_movehl_ps pq_movehl_ps
#define _mm_shuffle_ps pq_shuffle_ps
#define _mm_cvtss_f32 pq_cvtss_f32
#define _mm_movemask_ps pq_movemask_ps
#define _mm_castps_si128 pq_castps_si128
#define _mm_castsi128_ps pq_castsi128_ps
#define _mm_set1_epi32 pq_set1_epi32
#define _mm_and_si128 pq_and_si128
#define _mm_andnot_si128 pq_andnot_si128
#define _mm_or_si128 pq_or_si128
#define _mm_sub_epi32 pq_sub_epi32
#define _mm_add_epi32 pq_add_epi32
#define _mm_cmpgt_epi32 pq_cmpgt_epi32
#define _mm_cmpeq_epi32 pq_cmpeq_epi32
#define _mm_cvtepi32_ps pq_cvtepi32_ps
#define _mm_cvttps_epi32 pq_cvttps_epi32
#define _mm_storeu_si128 pq_storeu_si128
#define _mm_slli_epi32 pq_slli_epi32
#define _mm_srli_epi32 pq_srli_epi32
#define _mm_srai_epi32 pq_srai_epi32
#define _mm_loadu_si128 pq_loadu_si128
#define _mm_packs_epi32 pq_packs_epi32
#define _mm_packus_epi16 pq_packus_epi16
#define _mm_packs_epi16 pq_packs_epi16

#endif /* portable */

/* Index of the lowest set bit (x != 0): the GCC/Clang builtin, or a loop elsewhere (MSVC). */
#if defined(__GNUC__) || defined(__clang__)
#define pq_ctz(x) __builtin_ctz(x)
#else
static inline int pq_ctz(unsigned int x) {
    int n = 0;
    while (!(x & 1u)) {
        x >>= 1;
        n++;
    }
    return n;
}
#endif

#endif /* PQ_SIMD_H */
