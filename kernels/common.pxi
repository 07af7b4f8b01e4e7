# Shared low-level helpers: integer types, round-half-even, fp16 / bf16 conversion, byte stores.
#
# Every float quantity is a C `float` and every literal is cast with <float>, so the generated C
# never promotes to double; setup.py compiles with -ffp-contract=off so no multiply-add is fused.
# These are the exact rounding rules of llama.cpp's reference quantizers (kquants.md section 1).

from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t
from libc.string cimport memcpy, memset
from libc.math cimport sqrtf, fabsf, roundf

cdef enum:
    QK_K = 256


cdef inline int nearest_int(float fval) noexcept nogil:
    # Round half to even by adding 1.5 * 2**23 and reading the mantissa bits (valid for |f| < 2**22);
    # the bit read (rather than a float subtraction) keeps the reference's result even beyond that.
    cdef float val = fval + <float>12582912.0
    cdef int32_t i
    memcpy(&i, &val, 4)
    return (i & 0x007fffff) - 0x00400000


cdef inline int imin(int a, int b) noexcept nogil:
    return a if a < b else b


cdef inline int imax(int a, int b) noexcept nogil:
    return a if a > b else b


cdef inline uint16_t fp32_to_fp16(float f) noexcept nogil:
    # IEEE binary16 round-to-nearest-even with subnormals and overflow to inf; NaN -> sign | 0x7E00
    # (the quiet NaN llama.cpp's portable converter produces).
    cdef uint32_t u
    memcpy(&u, &f, 4)
    cdef uint32_t sign = (u >> 16) & 0x8000
    cdef uint32_t a = u & 0x7fffffff
    cdef uint32_t h, rem, half, m, shift
    if a > 0x7f800000:
        return <uint16_t>(sign | 0x7e00)
    if a >= 0x477ff000:  # >= 65520 rounds to infinity
        return <uint16_t>(sign | 0x7c00)
    if a >= 0x38800000:  # normal binary16 range
        h = (a - 0x38000000) >> 13
        rem = a & 0x1fff
        if rem > 0x1000 or (rem == 0x1000 and (h & 1)):
            h += 1
        return <uint16_t>(sign | h)
    if a <= 0x33000000:  # <= 2**-25 rounds to (signed) zero
        return <uint16_t>sign
    # subnormal result: count units of 2**-24
    m = (a & 0x7fffff) | 0x800000
    shift = 126 - (a >> 23)
    h = m >> shift
    rem = m & ((1u << shift) - 1)
    half = 1u << (shift - 1)
    if rem > half or (rem == half and (h & 1)):
        h += 1
    return <uint16_t>(sign | h)


cdef inline float fp16_bits_to_fp32(uint16_t h) noexcept nogil:
    # Exact widening (used once to fill FP16_TABLE).
    cdef uint32_t sign = (<uint32_t>(h & 0x8000)) << 16
    cdef uint32_t e = (h >> 10) & 0x1f
    cdef uint32_t m = h & 0x3ff
    cdef uint32_t bits
    cdef float f
    if e == 0x1f:
        bits = sign | 0x7f800000 | (m << 13)
    elif e == 0:
        f = (<float>m) * <float>5.9604644775390625e-08  # m * 2**-24, exact
        memcpy(&bits, &f, 4)
        bits |= sign
    else:
        bits = sign | ((e + 112) << 23) | (m << 13)
    memcpy(&f, &bits, 4)
    return f


cdef float FP16_TABLE[65536]


cdef void _fill_fp16_table() noexcept nogil:
    cdef int i
    for i in range(65536):
        FP16_TABLE[i] = fp16_bits_to_fp32(<uint16_t>i)


_fill_fp16_table()


cdef inline float fp16_to_fp32(uint16_t h) noexcept nogil:
    return FP16_TABLE[h]


cdef inline uint16_t fp32_to_bf16(float f) noexcept nogil:
    # Round to nearest even on the upper 16 bits; NaN is kept NaN by forcing the quiet bit.
    cdef uint32_t u
    memcpy(&u, &f, 4)
    if (u & 0x7fffffff) > 0x7f800000:
        return <uint16_t>((u >> 16) | 64)
    return <uint16_t>((u + (0x7fff + ((u >> 16) & 1))) >> 16)


cdef inline float bf16_to_fp32(uint16_t h) noexcept nogil:
    cdef uint32_t bits = (<uint32_t>h) << 16
    cdef float f
    memcpy(&f, &bits, 4)
    return f


cdef inline void store_f16(uint8_t* p, float v) noexcept nogil:
    # Little-endian fp16 store; returns nothing, callers re-read with load_f16 when they need the
    # rounded value (the K-quants requantize with the stored fp16 scale).
    cdef uint16_t h = fp32_to_fp16(v)
    p[0] = <uint8_t>(h & 0xff)
    p[1] = <uint8_t>(h >> 8)


cdef inline float load_f16(const uint8_t* p) noexcept nogil:
    return FP16_TABLE[(<uint16_t>p[0]) | ((<uint16_t>p[1]) << 8)]
