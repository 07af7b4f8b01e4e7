# Legacy 32-element block types: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (kquants.md sections 3 and 6).
# Each function quantizes or dequantizes one row of n values (n % 32 == 0).


cdef inline float row_sigma2(const float* x, int64_t n) noexcept nogil:
    # Legacy imatrix paths weight with the mean square of the whole row.
    cdef float sum_x2 = 0
    cdef int64_t j
    for j in range(n):
        sum_x2 += x[j] * x[j]
    return sum_x2 / <float>n


cdef inline void legacy_weights(const float* xb, const float* qw, float sigma2, float* weight) noexcept nogil:
    cdef int j
    for j in range(32):
        weight[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j])


cdef void lanes_fit_qx(const float* x, const float* qw, float sigma2, int nmax, int8_t* L,
                       float* d) noexcept nogil:
    # make_qx_quants on NL consecutive 32-blocks at once; L gets the NL blocks' codes in order.
    cdef float xt[32 * NL]
    cdef float wt[32 * NL]
    cdef int8_t Lt[32 * NL]
    cdef float weight[32]
    cdef int i, k
    for k in range(NL):
        legacy_weights(x + 32 * k, qw + 32 * k, sigma2, weight)
        for i in range(32):
            xt[i * NL + k] = x[32 * k + i]
            wt[i * NL + k] = weight[i]
    make_qx_lanes(32, nmax, xt, wt, Lt, d)
    for k in range(NL):
        for i in range(32):
            L[32 * k + i] = Lt[i * NL + k]


cdef void lanes_fit_qkx(const float* x, const float* qw, float sigma2, int nmax, uint8_t* L,
                        float* d, float* the_min) noexcept nogil:
    # make_qkx3_quants(-0.9, 0.05, 36) on NL consecutive 32-blocks at once.
    cdef float xt[32 * NL]
    cdef float wt[32 * NL]
    cdef uint8_t Lt[32 * NL]
    cdef float weight[32]
    cdef int i, k
    for k in range(NL):
        legacy_weights(x + 32 * k, qw + 32 * k, sigma2, weight)
        for i in range(32):
            xt[i * NL + k] = x[32 * k + i]
            wt[i * NL + k] = weight[i]
    make_qkx_lanes(32, nmax, xt, wt, Lt, d, the_min, <float>-0.9, <float>0.05, 36, False)
    for k in range(NL):
        for i in range(32):
            L[32 * k + i] = Lt[i * NL + k]


cdef inline float hmax4(__m128 v) noexcept nogil:
    v = _mm_max_ps(v, _mm_movehl_ps(v, v))
    return _mm_cvtss_f32(_mm_max_ps(v, _mm_shuffle_ps(v, v, 1)))


cdef inline float hmin4(__m128 v) noexcept nogil:
    v = _mm_min_ps(v, _mm_movehl_ps(v, v))
    return _mm_cvtss_f32(_mm_min_ps(v, _mm_shuffle_ps(v, v, 1)))


cdef inline void absmax_signed(const float* xb, float* amax, float* vmax) noexcept nogil:
    # The first element with the strictly largest |x| (+0.0 when all are zero), as the reference's
    # sequential scan; the largest |x| is found with SSE (max is order-independent for finite
    # values), then its first occurrence by a short scan.
    cdef __m128 sign = _mm_set1_ps(<float>-0.0)
    cdef __m128 m0 = _mm_andnot_ps(sign, _mm_loadu_ps(xb))
    cdef __m128 m1 = _mm_andnot_ps(sign, _mm_loadu_ps(xb + 4))
    cdef int j
    for j in range(8, 32, 8):
        m0 = _mm_max_ps(m0, _mm_andnot_ps(sign, _mm_loadu_ps(xb + j)))
        m1 = _mm_max_ps(m1, _mm_andnot_ps(sign, _mm_loadu_ps(xb + j + 4)))
    cdef float a = hmax4(_mm_max_ps(m0, m1))
    amax[0] = a
    vmax[0] = 0
    if a == 0:
        return
    cdef __m128 va = _mm_set1_ps(a)
    cdef int mask
    for j in range(0, 32, 4):
        mask = _mm_movemask_ps(_mm_cmpeq_ps(_mm_andnot_ps(sign, _mm_loadu_ps(xb + j)), va))
        if mask:
            vmax[0] = xb[j + pq_ctz(mask)]
            return


cdef inline float first_equal(const float* xb, float v) noexcept nogil:
    # The first element equal to v, with its own bits: decides the sign when v is a zero.
    cdef int j
    for j in range(32):
        if xb[j] == v:
            return xb[j]
    return v


cdef inline void minmax32(const float* xb, float* vmin, float* vmax) noexcept nogil:
    # First-occurrence min and max, as the reference's strict-comparison scan (only signed zeros
    # can tie with different bits, so a zero result takes the first zero's bits).
    cdef __m128 v0 = _mm_loadu_ps(xb), v1 = _mm_loadu_ps(xb + 4)
    cdef __m128 mn0 = v0, mx0 = v0, mn1 = v1, mx1 = v1
    cdef int j
    for j in range(8, 32, 8):  # two accumulators: shorter dependency chains
        v0 = _mm_loadu_ps(xb + j)
        v1 = _mm_loadu_ps(xb + j + 4)
        mn0 = _mm_min_ps(v0, mn0)
        mx0 = _mm_max_ps(v0, mx0)
        mn1 = _mm_min_ps(v1, mn1)
        mx1 = _mm_max_ps(v1, mx1)
    cdef float a = hmin4(_mm_min_ps(mn0, mn1)), b = hmax4(_mm_max_ps(mx0, mx1))
    vmin[0] = first_equal(xb, a) if a == 0 else a
    vmax[0] = first_equal(xb, b) if b == 0 else b


cdef inline void codes8(const float* xb, float id, float offset, float shift, int cap,
                        __m128i* q) noexcept nogil:
    # q[k] lanes = min(cap, trunc((x_j - shift) * id + offset)), j = 4k..4k+3 (cap < 0: no clamp)
    cdef __m128 vid = _mm_set1_ps(id), voff = _mm_set1_ps(offset), vsh = _mm_set1_ps(shift)
    cdef __m128i vcap = _mm_set1_epi32(cap)
    cdef __m128i m
    cdef int k
    for k in range(8):
        q[k] = _mm_cvttps_epi32(_mm_add_ps(_mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(xb + 4 * k), vsh), vid), voff))
        if cap >= 0:
            m = _mm_cmpgt_epi32(q[k], vcap)
            q[k] = _mm_or_si128(_mm_and_si128(m, vcap), _mm_andnot_si128(m, q[k]))


cdef inline void pack_nibbles(const __m128i* q, uint8_t* out) noexcept nogil:
    # out[j] = (code[j] & 15) | (code[j + 16] & 15) << 4, j = 0..15
    cdef __m128i m15 = _mm_set1_epi32(15)
    cdef __m128i v[4]
    cdef int k
    for k in range(4):
        v[k] = _mm_or_si128(_mm_and_si128(q[k], m15), _mm_slli_epi32(_mm_and_si128(q[k + 4], m15), 4))
    _mm_storeu_si128(<__m128i*>out, _mm_packus_epi16(_mm_packs_epi32(v[0], v[1]), _mm_packs_epi32(v[2], v[3])))


cdef inline void store_high_bits(const __m128i* q, uint8_t* out) noexcept nogil:
    # little-endian u32 whose bit e is bit 4 of code e (the Q5 qh field)
    cdef uint32_t qh = 0
    cdef int k
    for k in range(8):
        qh |= (<uint32_t>_mm_movemask_ps(_mm_castsi128_ps(_mm_slli_epi32(q[k], 27)))) << (4 * k)
    out[0] = <uint8_t>(qh & 0xff)
    out[1] = <uint8_t>((qh >> 8) & 0xff)
    out[2] = <uint8_t>((qh >> 16) & 0xff)
    out[3] = <uint8_t>(qh >> 24)


cdef inline void pack_q5_codes(const uint8_t* L, uint8_t* qh_out, uint8_t* qs) noexcept nogil:
    # qs: low nibbles of elements 0..15 | 16..31; qh: bit e = bit 4 of code e (little-endian u32).
    cdef uint32_t qh = 0
    cdef int j
    for j in range(16):
        qs[j] = <uint8_t>((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4))
        qh |= ((L[j] & 0x10u) >> 4) << j
        qh |= ((L[j + 16] & 0x10u) >> 4) << (j + 16)
    qh_out[0] = <uint8_t>(qh & 0xff)
    qh_out[1] = <uint8_t>((qh >> 8) & 0xff)
    qh_out[2] = <uint8_t>((qh >> 16) & 0xff)
    qh_out[3] = <uint8_t>(qh >> 24)


cdef inline void block_scales(const float* x, int64_t ib, int64_t nb, bint asym, float divisor,
                              float* d4, float* id4, float* m4) noexcept nogil:
    # Scale d (and min for the asymmetric types) of blocks ib..ib+3 when ib % 4 == 0: the four
    # divisions d = range / divisor and id = d ? 1/d : 0 run as one SSE division each (exact per
    # lane); leftover blocks at the row end get one lane filled. The caller reads lane ib % 4.
    cdef float mn[4]
    cdef float mx[4]
    cdef float a
    cdef int b, cnt
    if ib % 4 != 0:
        return
    cnt = 4 if ib + 4 <= nb else <int>(nb - ib)
    for b in range(4):
        mn[b] = 0
        mx[b] = 0
    for b in range(cnt):
        if asym:
            minmax32(x + 32 * (ib + b), &mn[b], &mx[b])
        else:
            absmax_signed(x + 32 * (ib + b), &a, &mx[b])
    cdef __m128 vmx = _mm_loadu_ps(mx), vmn = _mm_loadu_ps(mn)
    cdef __m128 vd = _mm_div_ps(_mm_sub_ps(vmx, vmn) if asym else vmx, _mm_set1_ps(divisor))
    _mm_storeu_ps(d4, vd)
    _mm_storeu_ps(id4, _mm_and_ps(_mm_cmpneq_ps(vd, _mm_setzero_ps()), _mm_div_ps(_mm_set1_ps(<float>1.0), vd)))
    _mm_storeu_ps(m4, vmn)


cdef void quantize_row_q8_0(const float* x, uint8_t* y, int64_t n, const float* qw) noexcept nogil:
    # The importance matrix is ignored for Q8_0, as in llama.cpp. amax = max |x| (order-free);
    # codes = roundf(x * id), half away from zero: trunc, then +-1 where the exact remainder
    # x*id - trunc(x*id) reaches one half. The byte is the low byte of the 32-bit conversion, as
    # C's (int8_t) of a float compiles on x86-64: x*id = +-inf or NaN (a subnormal block, where
    # 1/d overflows) converts to 0x80000000 and stores 0x00 there too.
    cdef int64_t ib
    cdef int k
    cdef float amax, d, id
    cdef const float* xb
    cdef uint8_t* yb
    cdef __m128 sign = _mm_set1_ps(<float>-0.0), half = _mm_set1_ps(<float>0.5), one = _mm_set1_ps(<float>1.0)
    cdef __m128 m0, m1, v, vid
    cdef __m128i t, adj
    cdef __m128i invalid = _mm_set1_epi32(-2147483648), low8 = _mm_set1_epi32(0xff)
    cdef __m128i q[8]
    for ib in range(n // 32):
        xb = x + ib * 32
        yb = y + ib * 34
        m0 = _mm_andnot_ps(sign, _mm_loadu_ps(xb))
        m1 = _mm_andnot_ps(sign, _mm_loadu_ps(xb + 4))
        for k in range(8, 32, 8):
            m0 = _mm_max_ps(m0, _mm_andnot_ps(sign, _mm_loadu_ps(xb + k)))
            m1 = _mm_max_ps(m1, _mm_andnot_ps(sign, _mm_loadu_ps(xb + k + 4)))
        amax = hmax4(_mm_max_ps(m0, m1))
        d = amax / <float>127.0
        id = <float>1.0 / d if d != 0 else <float>0.0
        store_f16(yb, d)
        vid = _mm_set1_ps(id)
        for k in range(8):
            v = _mm_mul_ps(_mm_loadu_ps(xb + 4 * k), vid)
            t = _mm_cvttps_epi32(v)
            m0 = _mm_cmpnlt_ps(_mm_andnot_ps(sign, _mm_sub_ps(v, _mm_cvtepi32_ps(t))), half)
            adj = _mm_cvttps_epi32(_mm_and_ps(m0, _mm_or_ps(_mm_and_ps(v, sign), one)))
            adj = _mm_andnot_si128(_mm_cmpeq_epi32(t, invalid), adj)  # no rounding step for inf/NaN
            q[k] = _mm_and_si128(_mm_add_epi32(t, adj), low8)
        _mm_storeu_si128(<__m128i*>(yb + 2), _mm_packus_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3])))
        _mm_storeu_si128(<__m128i*>(yb + 18), _mm_packus_epi16(_mm_packs_epi32(q[4], q[5]), _mm_packs_epi32(q[6], q[7])))


cdef void quantize_row_q4_0(const float* x, uint8_t* y, int64_t n, const float* qw) noexcept nogil:
    cdef int64_t ib
    cdef int j
    cdef float amax, vmax, d, id, sigma2 = 0
    cdef float weight[32]
    cdef int8_t L[32]
    cdef uint8_t U[32]
    cdef int8_t Lg[32 * NL]
    cdef float dg[NL]
    cdef int64_t nb = n // 32
    cdef uint8_t xi0, xi1
    cdef __m128i q[8]
    cdef float d4[4]
    cdef float id4[4]
    cdef float m4[4]
    cdef const float* xb
    cdef uint8_t* yb
    if qw != NULL:
        sigma2 = row_sigma2(x, n)
    for ib in range(n // 32):
        xb = x + ib * 32
        yb = y + ib * 18
        if qw == NULL:
            block_scales(x, ib, nb, False, <float>-8.0, d4, id4, m4)
            d = d4[ib % 4]
            id = id4[ib % 4]
            store_f16(yb, d)
            # (x - 0.0) == x exactly, so the shared (x - shift)*id form keeps the bytes
            codes8(xb, id, <float>8.5, <float>0.0, 15, q)
            pack_nibbles(q, yb + 2)
        else:
            if ib % NL == 0 and ib + NL <= nb:
                lanes_fit_qx(x + ib * 32, qw + ib * 32, sigma2, 8, Lg, dg)
            if ib < nb - nb % NL:
                d = dg[ib % NL]
                memcpy(L, Lg + 32 * (ib % NL), 32)
            else:
                legacy_weights(xb, qw + ib * 32, sigma2, weight)
                d = make_qx_quants(32, 8, xb, L, weight)
            store_f16(yb, d)
            for j in range(16):
                yb[2 + j] = <uint8_t>(L[j] | (L[j + 16] << 4))


cdef void quantize_row_q5_0(const float* x, uint8_t* y, int64_t n, const float* qw) noexcept nogil:
    cdef int64_t ib
    cdef int j
    cdef float amax, vmax, d, id, sigma2 = 0
    cdef float weight[32]
    cdef int8_t L[32]
    cdef uint8_t U[32]
    cdef int8_t Lg[32 * NL]
    cdef float dg[NL]
    cdef int64_t nb = n // 32
    cdef __m128i q[8]
    cdef float d4[4]
    cdef float id4[4]
    cdef float m4[4]
    cdef const float* xb
    cdef uint8_t* yb
    if qw != NULL:
        sigma2 = row_sigma2(x, n)
    for ib in range(n // 32):
        xb = x + ib * 32
        yb = y + ib * 22
        if qw == NULL:
            block_scales(x, ib, nb, False, <float>-16.0, d4, id4, m4)
            d = d4[ib % 4]
            id = id4[ib % 4]
            codes8(xb, id, <float>16.5, <float>0.0, 31, q)
            store_f16(yb, d)
            store_high_bits(q, yb + 2)
            pack_nibbles(q, yb + 6)
            continue
        else:
            if ib % NL == 0 and ib + NL <= nb:
                lanes_fit_qx(x + ib * 32, qw + ib * 32, sigma2, 16, Lg, dg)
            if ib < nb - nb % NL:
                d = dg[ib % NL]
                memcpy(L, Lg + 32 * (ib % NL), 32)
            else:
                legacy_weights(xb, qw + ib * 32, sigma2, weight)
                d = make_qx_quants(32, 16, xb, L, weight)
            for j in range(32):
                U[j] = <uint8_t>L[j]
        store_f16(yb, d)
        pack_q5_codes(U, yb + 2, yb + 6)


cdef void quantize_row_q4_1(const float* x, uint8_t* y, int64_t n, const float* qw) noexcept nogil:
    cdef int64_t ib
    cdef int j
    cdef float vmin, vmax, d, id, sigma2 = 0, the_min
    cdef float weight[32]
    cdef uint8_t L[32]
    cdef uint8_t Ug[32 * NL]
    cdef float dg[NL]
    cdef float mg[NL]
    cdef int64_t nb = n // 32
    cdef uint8_t xi0, xi1
    cdef __m128i q[8]
    cdef float d4[4]
    cdef float id4[4]
    cdef float m4[4]
    cdef const float* xb
    cdef uint8_t* yb
    if qw != NULL:
        sigma2 = row_sigma2(x, n)
    for ib in range(n // 32):
        xb = x + ib * 32
        yb = y + ib * 20
        if qw == NULL:
            block_scales(x, ib, nb, True, <float>15.0, d4, id4, m4)
            d = d4[ib % 4]
            id = id4[ib % 4]
            vmin = m4[ib % 4]
            store_f16(yb, d)
            store_f16(yb + 2, vmin)
            codes8(xb, id, <float>0.5, vmin, 15, q)
            pack_nibbles(q, yb + 4)
        else:
            if ib % NL == 0 and ib + NL <= nb:
                lanes_fit_qkx(x + ib * 32, qw + ib * 32, sigma2, 15, Ug, dg, mg)
            if ib < nb - nb % NL:
                d = dg[ib % NL]
                the_min = mg[ib % NL]
                memcpy(L, Ug + 32 * (ib % NL), 32)
            else:
                legacy_weights(xb, qw + ib * 32, sigma2, weight)
                d = make_qkx_quants(32, 15, xb, weight, L, &the_min, <float>-0.9, <float>0.05, 36, False)
            store_f16(yb, d)
            store_f16(yb + 2, -the_min)
            for j in range(16):
                yb[4 + j] = <uint8_t>(L[j] | (L[j + 16] << 4))


cdef void quantize_row_q5_1(const float* x, uint8_t* y, int64_t n, const float* qw) noexcept nogil:
    cdef int64_t ib
    cdef int j
    cdef float vmin, vmax, d, id, sigma2 = 0, the_min
    cdef float weight[32]
    cdef uint8_t L[32]
    cdef uint8_t Ug[32 * NL]
    cdef float dg[NL]
    cdef float mg[NL]
    cdef int64_t nb = n // 32
    cdef __m128i q[8]
    cdef float d4[4]
    cdef float id4[4]
    cdef float m4[4]
    cdef const float* xb
    cdef uint8_t* yb
    if qw != NULL:
        sigma2 = row_sigma2(x, n)
    for ib in range(n // 32):
        xb = x + ib * 32
        yb = y + ib * 24
        if qw == NULL:
            block_scales(x, ib, nb, True, <float>31.0, d4, id4, m4)
            d = d4[ib % 4]
            id = id4[ib % 4]
            vmin = m4[ib % 4]
            store_f16(yb, d)
            store_f16(yb + 2, vmin)
            codes8(xb, id, <float>0.5, vmin, -1, q)  # no clamp, as in llama.cpp
            store_high_bits(q, yb + 4)
            pack_nibbles(q, yb + 8)
            continue
        else:
            if ib % NL == 0 and ib + NL <= nb:
                lanes_fit_qkx(x + ib * 32, qw + ib * 32, sigma2, 31, Ug, dg, mg)
            if ib < nb - nb % NL:
                d = dg[ib % NL]
                the_min = mg[ib % NL]
                memcpy(L, Ug + 32 * (ib % NL), 32)
            else:
                legacy_weights(xb, qw + ib * 32, sigma2, weight)
                d = make_qkx_quants(32, 31, xb, weight, L, &the_min, <float>-0.9, <float>0.05, 36, False)
            store_f16(yb, d)
            store_f16(yb + 2, -the_min)
        pack_q5_codes(L, yb + 4, yb + 8)


# ---------------------------------------------------------------- dequantization (llama.cpp order)

cdef void dequantize_row_q8_0(const uint8_t* y, float* x, int64_t n) noexcept nogil:
    cdef int64_t ib
    cdef int j
    cdef float d
    for ib in range(n // 32):
        d = load_f16(y + ib * 34)
        for j in range(32):
            x[ib * 32 + j] = (<int8_t>y[ib * 34 + 2 + j]) * d


cdef void dequantize_row_q4_0(const uint8_t* y, float* x, int64_t n) noexcept nogil:
    cdef int64_t ib
    cdef int j
    cdef float d
    cdef const uint8_t* qs
    for ib in range(n // 32):
        d = load_f16(y + ib * 18)
        qs = y + ib * 18 + 2
        for j in range(16):
            x[ib * 32 + j] = ((qs[j] & 0x0F) - 8) * d
            x[ib * 32 + j + 16] = ((qs[j] >> 4) - 8) * d


cdef void dequantize_row_q4_1(const uint8_t* y, float* x, int64_t n) noexcept nogil:
    cdef int64_t ib
    cdef int j
    cdef float d, m
    cdef const uint8_t* qs
    for ib in range(n // 32):
        d = load_f16(y + ib * 20)
        m = load_f16(y + ib * 20 + 2)
        qs = y + ib * 20 + 4
        for j in range(16):
            x[ib * 32 + j] = (qs[j] & 0x0F) * d + m
            x[ib * 32 + j + 16] = (qs[j] >> 4) * d + m


cdef inline uint32_t load_u32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0]) | ((<uint32_t>p[1]) << 8) | ((<uint32_t>p[2]) << 16) | ((<uint32_t>p[3]) << 24)


cdef void dequantize_row_q5_0(const uint8_t* y, float* x, int64_t n) noexcept nogil:
    cdef int64_t ib
    cdef int j, x0, x1
    cdef float d
    cdef uint32_t qh
    cdef const uint8_t* qs
    for ib in range(n // 32):
        d = load_f16(y + ib * 22)
        qh = load_u32(y + ib * 22 + 2)
        qs = y + ib * 22 + 6
        for j in range(16):
            x0 = ((qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10)) - 16
            x1 = ((qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16
            x[ib * 32 + j] = x0 * d
            x[ib * 32 + j + 16] = x1 * d


cdef void dequantize_row_q5_1(const uint8_t* y, float* x, int64_t n) noexcept nogil:
    cdef int64_t ib
    cdef int j, x0, x1
    cdef float d, m
    cdef uint32_t qh
    cdef const uint8_t* qs
    for ib in range(n // 32):
        d = load_f16(y + ib * 24)
        m = load_f16(y + ib * 24 + 2)
        qh = load_u32(y + ib * 24 + 4)
        qs = y + ib * 24 + 8
        for j in range(16):
            x0 = (qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10)
            x1 = (qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)
            x[ib * 32 + j] = x0 * d + m
            x[ib * 32 + j + 16] = x1 * d + m
