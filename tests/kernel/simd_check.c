/* Every intrinsic of kernels/pq_simd.h's portable path against the real SSE2 instruction, bit for
 * bit, on special values (signed zeros, infinities, NaNs with payloads, subnormals, conversion
 * limits, saturation limits) and random bit patterns. Built and run by test_kernel_portable.py on
 * x86-64. The same body is expanded twice: before pq_simd.h is included the _mm_* names are the
 * real intrinsics (emmintrin.h), after it they are macros for the portable definitions.
 * Prints one line per intrinsic ("name cases mismatches") and exits 1 on any mismatch.
 */
#include <emmintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define NCASES 200000

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static const uint32_t SPECIAL[] = {
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFBFFFFF,
    0x7FA12345, 0x00000001, 0x807FFFFF, 0x00800000, 0x3F800000, 0xBF800000, 0x3F000000, 0xBF000000,
    0x3FC00000, 0xBFC00000, 0x4F000000, 0xCF000000, 0x4EFFFFFF, 0xCEFFFFFF, 0xCF000001, 0x7F7FFFFF,
    0xFF7FFFFF, 0x4B400000, 0x4B000000, 0x46FFFE00, 0x47000000, 0xC7000100, 0x437F0000, 0x43800000,
    0x00007FFF, 0x00008000, 0xFFFF8000, 0xFFFF7FFF, 0x0000FFFF, 0x000000FF, 0x00000100, 0xFFFFFF80,
    0x7FFFFFFF, 0x00010000, 0x0000007F, 0x00000080, 0xFFFFFFFF, 0x80000001, 0x00000010, 0x0000001F,
};
#define NSPECIAL (sizeof(SPECIAL) / sizeof(SPECIAL[0]))

static uint32_t lane_value(void) {
    uint32_t r = rnd();
    switch (r & 7) {
    case 0: case 1: case 2:
        return SPECIAL[rnd() % NSPECIAL];
    case 3:  /* small signed integers: pack saturation and shifts */
        return (uint32_t)((int32_t)(rnd() % 1200) - 600);
    case 4:  /* small floats around representable ints: conversion and rounding */
        {
            float f = (float)((int32_t)(rnd() % 4001) - 2000) / 8.0f;
            uint32_t u;
            memcpy(&u, &f, 4);
            return u;
        }
    default:
        return rnd();
    }
}

static void fill(uint32_t *v) {
    int k;
    for (k = 0; k < 4; k++) v[k] = lane_value();
}

typedef struct {
    const char *name;
    long cases;
    long bad;
} result;

static result results[128];
static int nresults = 0;

static void record(const char *name, int ok) {
    int i;
    for (i = 0; i < nresults; i++)
        if (strcmp(results[i].name, name) == 0) break;
    if (i == nresults) {
        results[i].name = name;
        results[i].cases = 0;
        results[i].bad = 0;
        nresults++;
    }
    results[i].cases++;
    if (!ok) results[i].bad++;
}

/* One case of every intrinsic: inputs a, b (16 bytes each), output bytes into out[name index]. */
#define BODY(F, a, b, o)                                                                        \
    do {                                                                                        \
        __m128 fa = _mm_loadu_ps((const float *)(a)), fb = _mm_loadu_ps((const float *)(b));    \
        __m128i ia = _mm_loadu_si128((const __m128i *)(a));                                     \
        __m128i ib = _mm_loadu_si128((const __m128i *)(b));                                     \
        int n = 0;                                                                              \
        float s;                                                                                \
        int m;                                                                                  \
        _mm_storeu_ps((float *)o[n++], _mm_add_ps(fa, fb));                                     \
        _mm_storeu_ps((float *)o[n++], _mm_sub_ps(fa, fb));                                     \
        _mm_storeu_ps((float *)o[n++], _mm_mul_ps(fa, fb));                                     \
        _mm_storeu_ps((float *)o[n++], _mm_div_ps(fa, fb));                                     \
        _mm_storeu_ps((float *)o[n++], _mm_and_ps(fa, fb));                                     \
        _mm_storeu_ps((float *)o[n++], _mm_andnot_ps(fa, fb));                                  \
        _mm_storeu_ps((float *)o[n++], _mm_or_ps(fa, fb));                                      \
        _mm_storeu_ps((float *)o[n++], _mm_xor_ps(fa, fb));                                     \
        _mm_storeu_ps((float *)o[n++], _mm_cmplt_ps(fa, fb));                                   \
        _mm_storeu_ps((float *)o[n++], _mm_cmpgt_ps(fa, fb));                                   \
        _mm_storeu_ps((float *)o[n++], _mm_cmpneq_ps(fa, fb));                                  \
        _mm_storeu_ps((float *)o[n++], _mm_cmpnlt_ps(fa, fb));                                  \
        _mm_storeu_ps((float *)o[n++], _mm_cmpeq_ps(fa, fb));                                   \
        _mm_storeu_ps((float *)o[n++], _mm_max_ps(fa, fb));                                     \
        _mm_storeu_ps((float *)o[n++], _mm_min_ps(fa, fb));                                     \
        _mm_storeu_ps((float *)o[n++], _mm_movehl_ps(fa, fb));                                  \
        _mm_storeu_ps((float *)o[n++], _mm_shuffle_ps(fa, fb, 1));                              \
        _mm_storeu_ps((float *)o[n++], _mm_shuffle_ps(fa, fb, 0x1B));                           \
        _mm_storeu_ps((float *)o[n++], _mm_shuffle_ps(fa, fb, 0xE4));                           \
        _mm_storeu_ps((float *)o[n++], _mm_shuffle_ps(fa, fb, 0x93));                           \
        s = _mm_cvtss_f32(fa);                                                                  \
        memset(o[n], 0, 16);                                                                    \
        memcpy(o[n++], &s, 4);                                                                  \
        m = _mm_movemask_ps(fa);                                                                \
        memset(o[n], 0, 16);                                                                    \
        memcpy(o[n++], &m, sizeof m);                                                           \
        _mm_storeu_si128((__m128i *)o[n++], _mm_castps_si128(fa));                              \
        _mm_storeu_ps((float *)o[n++], _mm_castsi128_ps(ia));                                   \
        _mm_storeu_ps((float *)o[n++], _mm_cvtepi32_ps(ia));                                    \
        _mm_storeu_si128((__m128i *)o[n++], _mm_cvttps_epi32(fa));                              \
        _mm_storeu_ps((float *)o[n++], _mm_setzero_ps());                                       \
        _mm_storeu_ps((float *)o[n++], _mm_set1_ps(_mm_cvtss_f32(fb)));                         \
        _mm_storeu_si128((__m128i *)o[n++], _mm_set1_epi32((int)((const uint32_t *)(b))[1]));   \
        _mm_storeu_si128((__m128i *)o[n++], _mm_and_si128(ia, ib));                             \
        _mm_storeu_si128((__m128i *)o[n++], _mm_andnot_si128(ia, ib));                          \
        _mm_storeu_si128((__m128i *)o[n++], _mm_or_si128(ia, ib));                              \
        _mm_storeu_si128((__m128i *)o[n++], _mm_sub_epi32(ia, ib));                             \
        _mm_storeu_si128((__m128i *)o[n++], _mm_add_epi32(ia, ib));                             \
        _mm_storeu_si128((__m128i *)o[n++], _mm_cmpgt_epi32(ia, ib));                           \
        _mm_storeu_si128((__m128i *)o[n++], _mm_cmpeq_epi32(ia, ib));                           \
        _mm_storeu_si128((__m128i *)o[n++], _mm_cmpeq_epi32(ia, ia));                           \
        _mm_storeu_si128((__m128i *)o[n++], _mm_slli_epi32(ia, 4));                             \
        _mm_storeu_si128((__m128i *)o[n++], _mm_slli_epi32(ia, 27));                            \
        _mm_storeu_si128((__m128i *)o[n++], _mm_slli_epi32(ia, 32));                            \
        _mm_storeu_si128((__m128i *)o[n++], _mm_srli_epi32(ia, 16));                            \
        _mm_storeu_si128((__m128i *)o[n++], _mm_srli_epi32(ia, 31));                            \
        _mm_storeu_si128((__m128i *)o[n++], _mm_srli_epi32(ia, 40));                            \
        _mm_storeu_si128((__m128i *)o[n++], _mm_srai_epi32(ia, 16));                            \
        _mm_storeu_si128((__m128i *)o[n++], _mm_srai_epi32(ia, 0));                             \
        _mm_storeu_si128((__m128i *)o[n++], _mm_srai_epi32(ia, 33));                            \
        _mm_storeu_si128((__m128i *)o[n++], _mm_packs_epi32(ia, ib));                           \
        _mm_storeu_si128((__m128i *)o[n++], _mm_packus_epi16(ia, ib));                          \
        _mm_storeu_si128((__m128i *)o[n++], _mm_packs_epi16(ia, ib));                           \
        _mm_storeu_si128((__m128i *)o[n++], _mm_packus_epi16(_mm_packs_epi32(ia, ib), ib));     \
    } while (0)

static const char *NAMES[] = {
    "add_ps", "sub_ps", "mul_ps", "div_ps", "and_ps", "andnot_ps", "or_ps", "xor_ps", "cmplt_ps",
    "cmpgt_ps", "cmpneq_ps", "cmpnlt_ps", "cmpeq_ps", "max_ps", "min_ps", "movehl_ps",
    "shuffle_ps(1)", "shuffle_ps(0x1B)", "shuffle_ps(0xE4)", "shuffle_ps(0x93)", "cvtss_f32",
    "movemask_ps", "castps_si128", "castsi128_ps", "cvtepi32_ps", "cvttps_epi32", "setzero_ps",
    "set1_ps", "set1_epi32", "and_si128", "andnot_si128", "or_si128", "sub_epi32", "add_epi32",
    "cmpgt_epi32", "cmpeq_epi32", "cmpeq_epi32(a,a)", "slli_epi32(4)", "slli_epi32(27)",
    "slli_epi32(32)", "srli_epi32(16)", "srli_epi32(31)", "srli_epi32(40)", "srai_epi32(16)",
    "srai_epi32(0)", "srai_epi32(33)", "packs_epi32", "packus_epi16", "packs_epi16",
    "packus_epi16(packs_epi32)",
};
#define NOUT ((int)(sizeof(NAMES) / sizeof(NAMES[0])))

static void run_sse2(const uint32_t *a, const uint32_t *b, uint8_t (*o)[16]) { BODY(sse2, a, b, o); }

#define PQ_PORTABLE_SIMD 1
#include "pq_simd.h"

static void run_portable(const uint32_t *a, const uint32_t *b, uint8_t (*o)[16]) { BODY(portable, a, b, o); }

int main(void) {
    static uint8_t want[NOUT][16], got[NOUT][16];
    uint32_t a[4], b[4];
    long c;
    int i, failed = 0;
    if (strcmp(PQ_SIMD_BACKEND, "portable") != 0) {
        printf("pq_simd.h did not select the portable path\n");
        return 2;
    }
    for (c = 0; c < NCASES; c++) {
        fill(a);
        fill(b);
        if (c % 4 == 0) b[c / 4 % 4] = a[c / 4 % 4];  /* equal lanes: ties, cmpeq, max/min of equals */
        memset(want, 0xAA, sizeof want);
        memset(got, 0x55, sizeof got);
        run_sse2(a, b, want);
        run_portable(a, b, got);
        for (i = 0; i < NOUT; i++) record(NAMES[i], memcmp(want[i], got[i], 16) == 0);
    }
    for (i = 0; i < nresults; i++) {
        printf("%s %ld %ld\n", results[i].name, results[i].cases, results[i].bad);
        if (results[i].bad) failed = 1;
    }
    return failed;
}
