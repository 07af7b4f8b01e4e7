# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""pocketquant._quants: block quantize / dequantize for GGUF types, byte-identical to llama.cpp.

The algorithms are llama.cpp's reference quantizers restated in ../shared/reference/kquants.md
(no source copied). Rows are independent, so they run in parallel with OpenMP (prange) with the
GIL released; the bytes never depend on the thread count. Python objects appear only in the thin
entry points at the bottom of this file.
"""

cimport cython
from cython.parallel cimport prange

include "common.pxi"
include "helpers.pxi"
include "lanes.pxi"
include "legacy.pxi"
include "kquants.pxi"

# which implementation of the SSE2 intrinsics was compiled in (kernels/pq_simd.h): same bytes either way
SIMD_BACKEND = PQ_SIMD_BACKEND.decode("ascii")

# ggml type ids (GGMLQuantizationType values)
cdef enum:
    T_F32 = 0
    T_F16 = 1
    T_Q4_0 = 2
    T_Q4_1 = 3
    T_Q5_0 = 6
    T_Q5_1 = 7
    T_Q8_0 = 8
    T_Q2_K = 10
    T_Q3_K = 11
    T_Q4_K = 12
    T_Q5_K = 13
    T_Q6_K = 14
    T_BF16 = 30

# (elements per block, bytes per block)
BLOCK_INFO = {
    T_F32: (1, 4), T_F16: (1, 2), T_BF16: (1, 2),
    T_Q4_0: (32, 18), T_Q4_1: (32, 20), T_Q5_0: (32, 22), T_Q5_1: (32, 24), T_Q8_0: (32, 34),
    T_Q2_K: (256, 84), T_Q3_K: (256, 110), T_Q4_K: (256, 144), T_Q5_K: (256, 176), T_Q6_K: (256, 210),
}


ctypedef void (*quant_fn)(const float*, uint8_t*, int64_t, const float*) noexcept nogil
ctypedef void (*dequant_fn)(const uint8_t*, float*, int64_t) noexcept nogil


cdef void quantize_row_f32(const float* x, uint8_t* y, int64_t n, const float* qw) noexcept nogil:
    memcpy(y, x, n * 4)


cdef void quantize_row_f16(const float* x, uint8_t* y, int64_t n, const float* qw) noexcept nogil:
    cdef int64_t j
    cdef uint16_t h
    for j in range(n):
        h = fp32_to_fp16(x[j])
        y[2 * j] = <uint8_t>(h & 0xff)
        y[2 * j + 1] = <uint8_t>(h >> 8)


cdef inline __m128i bf16x4(__m128i u) noexcept nogil:
    # fp32_to_bf16 on 4 lanes, returned sign-extended to 32 bits so a signed pack keeps the bits
    cdef __m128i r = _mm_srli_epi32(_mm_add_epi32(u, _mm_add_epi32(_mm_set1_epi32(0x7fff),
                                    _mm_and_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(1)))), 16)
    cdef __m128i nan = _mm_cmpgt_epi32(_mm_and_si128(u, _mm_set1_epi32(0x7fffffff)), _mm_set1_epi32(0x7f800000))
    r = _mm_or_si128(_mm_and_si128(nan, _mm_or_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(64))),
                     _mm_andnot_si128(nan, r))
    return _mm_srai_epi32(_mm_slli_epi32(r, 16), 16)


cdef void quantize_row_bf16(const float* x, uint8_t* y, int64_t n, const float* qw) noexcept nogil:
    cdef int64_t j
    cdef uint16_t h
    cdef int64_t n8 = n - n % 8
    for j in range(0, n8, 8):
        _mm_storeu_si128(<__m128i*>(y + 2 * j),
                         _mm_packs_epi32(bf16x4(_mm_loadu_si128(<const __m128i*>(x + j))),
                                         bf16x4(_mm_loadu_si128(<const __m128i*>(x + j + 4)))))
    for j in range(n8, n):
        h = fp32_to_bf16(x[j])
        y[2 * j] = <uint8_t>(h & 0xff)
        y[2 * j + 1] = <uint8_t>(h >> 8)


cdef void dequantize_row_f32(const uint8_t* y, float* x, int64_t n) noexcept nogil:
    memcpy(x, y, n * 4)


cdef void dequantize_row_f16(const uint8_t* y, float* x, int64_t n) noexcept nogil:
    cdef int64_t j
    for j in range(n):
        x[j] = FP16_TABLE[(<uint16_t>y[2 * j]) | ((<uint16_t>y[2 * j + 1]) << 8)]


cdef void dequantize_row_bf16(const uint8_t* y, float* x, int64_t n) noexcept nogil:
    cdef int64_t j
    for j in range(n):
        x[j] = bf16_to_fp32((<uint16_t>y[2 * j]) | ((<uint16_t>y[2 * j + 1]) << 8))


# row functions indexed by ggml type id (NULL where unsupported)
cdef quant_fn QUANT[32]
cdef dequant_fn DEQUANT[32]
memset(QUANT, 0, sizeof(QUANT))
memset(DEQUANT, 0, sizeof(DEQUANT))
QUANT[T_F32], DEQUANT[T_F32] = quantize_row_f32, dequantize_row_f32
QUANT[T_F16], DEQUANT[T_F16] = quantize_row_f16, dequantize_row_f16
QUANT[T_BF16], DEQUANT[T_BF16] = quantize_row_bf16, dequantize_row_bf16
QUANT[T_Q8_0], DEQUANT[T_Q8_0] = quantize_row_q8_0, dequantize_row_q8_0
QUANT[T_Q4_0], DEQUANT[T_Q4_0] = quantize_row_q4_0, dequantize_row_q4_0
QUANT[T_Q4_1], DEQUANT[T_Q4_1] = quantize_row_q4_1, dequantize_row_q4_1
QUANT[T_Q5_0], DEQUANT[T_Q5_0] = quantize_row_q5_0, dequantize_row_q5_0
QUANT[T_Q5_1], DEQUANT[T_Q5_1] = quantize_row_q5_1, dequantize_row_q5_1
QUANT[T_Q2_K], DEQUANT[T_Q2_K] = quantize_row_q2_K, dequantize_row_q2_K
QUANT[T_Q3_K], DEQUANT[T_Q3_K] = quantize_row_q3_K, dequantize_row_q3_K
QUANT[T_Q4_K], DEQUANT[T_Q4_K] = quantize_row_q4_K, dequantize_row_q4_K
QUANT[T_Q5_K], DEQUANT[T_Q5_K] = quantize_row_q5_K, dequantize_row_q5_K
QUANT[T_Q6_K], DEQUANT[T_Q6_K] = quantize_row_q6_K, dequantize_row_q6_K


def _check_type(int qtype):
    if qtype not in BLOCK_INFO or qtype < 0 or qtype >= 32 or QUANT[qtype] == NULL:
        raise ValueError(f"unsupported ggml type id {qtype}")


def _encoded_row_bytes(int qtype, int64_t n, int64_t nrows, int64_t enc_rows, int64_t enc_cols):
    # bytes of one encoded row of n values; checks what could otherwise corrupt memory
    _check_type(qtype)
    blck, bsize = BLOCK_INFO[qtype]
    if n % blck != 0:
        raise ValueError(f"row length {n} is not a multiple of the block size {blck}")
    row_bytes = (n // blck) * bsize
    if enc_rows != nrows or enc_cols != row_bytes:
        raise ValueError(f"encoded array must have shape ({nrows}, {row_bytes}), not ({enc_rows}, {enc_cols})")
    return row_bytes


cdef int _threads_for(int nthreads, int64_t nrows):
    cdef int nt = nthreads if nthreads > 0 else 1
    return <int>nrows if nt > nrows else nt


@cython.boundscheck(False)
def quantize_rows(int qtype, const float[:, ::1] src, uint8_t[:, ::1] dst, imatrix=None, int nthreads=1):
    """Quantize each row of src (float32, C-contiguous) into dst (uint8, one encoded row per row).

    imatrix: None or a float32 C-contiguous vector of n_per_row importance weights.
    The caller (pocketquant.quants) validates shapes; this re-checks what could corrupt memory.
    """
    cdef int64_t nrows = src.shape[0]
    cdef int64_t n = src.shape[1]
    cdef int64_t row_bytes = _encoded_row_bytes(qtype, n, nrows, dst.shape[0], dst.shape[1])
    cdef const float[::1] qwv
    cdef const float* qw = NULL
    if imatrix is not None:
        qwv = imatrix
        if qwv.shape[0] != n:
            raise ValueError(f"imatrix has {qwv.shape[0]} values, rows have {n}")
        if n > 0:
            qw = &qwv[0]
    if nrows == 0 or n == 0:
        return
    cdef const float* sp = &src[0, 0]
    cdef uint8_t* dp = &dst[0, 0]
    cdef int64_t r
    cdef int nt = _threads_for(nthreads, nrows)
    cdef quant_fn fn = QUANT[qtype]
    # hand out rows in chunks of >= 16 Ki values: short rows would otherwise cost more in
    # scheduling than in quantizing (llama-quantize chunks the same way)
    cdef int chunk = <int>max(1, 16384 // n)
    if nt == 1:
        with nogil:
            for r in range(nrows):
                fn(sp + r * n, dp + r * row_bytes, n, qw)
    else:
        for r in prange(nrows, nogil=True, schedule="dynamic", chunksize=chunk, num_threads=nt):
            fn(sp + r * n, dp + r * row_bytes, n, qw)


def dequantize_rows(int qtype, const uint8_t[:, ::1] src, float[:, ::1] dst, int nthreads=1):
    """Decode each encoded row of src into a float32 row of dst (n_per_row = dst.shape[1])."""
    cdef int64_t nrows = dst.shape[0]
    cdef int64_t n = dst.shape[1]
    cdef int64_t row_bytes = _encoded_row_bytes(qtype, n, nrows, src.shape[0], src.shape[1])
    if nrows == 0 or n == 0:
        return
    cdef const uint8_t* sp = &src[0, 0]
    cdef float* dp = &dst[0, 0]
    cdef int64_t r
    cdef int nt = _threads_for(nthreads, nrows)
    cdef dequant_fn fn = DEQUANT[qtype]
    if nt == 1:
        with nogil:
            for r in range(nrows):
                fn(sp + r * row_bytes, dp + r * n, n)
    else:
        for r in prange(nrows, nogil=True, schedule="static", num_threads=nt):
            fn(sp + r * row_bytes, dp + r * n, n)


def convert_flat(int qtype, const float[::1] src, uint8_t[::1] dst, int nthreads=1):
    """Element-wise F32 -> F16 / BF16 / F32 of a flat array, in parallel chunks of 64 Ki values."""
    if qtype not in (T_F16, T_BF16, T_F32):
        raise ValueError(f"convert_flat handles F32/F16/BF16, not type id {qtype}")
    cdef int64_t n = src.shape[0]
    cdef int64_t esize = 4 if qtype == T_F32 else 2
    if dst.shape[0] != n * esize:
        raise ValueError(f"dst must hold {n * esize} bytes")
    if n == 0:
        return
    cdef int64_t chunk = 1 << 16
    cdef int64_t nchunks = (n + chunk - 1) // chunk
    cdef int64_t c, lo, hi
    cdef const float* sp = &src[0]
    cdef uint8_t* dp = &dst[0]
    cdef int nt = _threads_for(nthreads, nchunks)
    cdef quant_fn fn = QUANT[qtype]
    if nt == 1:  # no OpenMP region at all: see the fork note in pocketquant/quants.py
        with nogil:
            fn(sp, dp, n, NULL)
        return
    for c in prange(nchunks, nogil=True, schedule="static", num_threads=nt):
        lo = c * chunk
        hi = lo + chunk
        if hi > n:
            hi = n
        fn(sp + lo, dp + lo * esize, hi - lo, NULL)


def count_nonfinite(const float[::1] x, int nthreads=1):
    """Number of NaN or +-Inf values in a flat float32 array (bit test: exponent all ones)."""
    cdef int64_t n = x.shape[0]
    cdef int64_t total = 0
    cdef int64_t c, j, lo, hi
    cdef int64_t chunk = 1 << 16
    cdef int64_t nchunks = (n + chunk - 1) // chunk
    cdef const uint32_t* p
    if n == 0:
        return 0
    p = <const uint32_t*>&x[0]
    cdef int nt = _threads_for(nthreads, nchunks)
    if nt == 1:
        with nogil:
            total = count_nonfinite_span(p, 0, n)
        return total
    for c in prange(nchunks, nogil=True, schedule="static", num_threads=nt):
        lo = c * chunk
        hi = lo + chunk
        if hi > n:
            hi = n
        total += count_nonfinite_span(p, lo, hi)
    return total


cdef inline int64_t count_nonfinite_span(const uint32_t* p, int64_t lo, int64_t hi) noexcept nogil:
    cdef int64_t j, k = 0
    for j in range(lo, hi):
        k += (p[j] & 0x7f800000) == 0x7f800000
    return k
