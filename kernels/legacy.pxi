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


cdef void quantize_row_q8_0(const float* x, uint8_t* y, int64_t n, const float* qw) noexcept nogil:
    # The importance matrix is ignored for Q8_0, as in llama.cpp.
    cdef int64_t ib
    cdef int j
    cdef float amax, ax, d, id
    cdef const float* xb
    cdef uint8_t* yb
    for ib in range(n // 32):
        xb = x + ib * 32
        yb = y + ib * 34
        amax = 0
        for j in range(32):
            ax = fabsf(xb[j])
            amax = amax if amax > ax else ax
        d = amax / <float>127.0
        id = <float>1.0 / d if d != 0 else <float>0.0
        store_f16(yb, d)
        for j in range(32):
            yb[2 + j] = <uint8_t><int8_t>roundf(xb[j] * id)


cdef inline void absmax_signed(const float* xb, float* amax, float* vmax) noexcept nogil:
    # First element with the strictly largest |x|, +0.0 when all are zero.
    cdef float a = 0, m = 0, ax
    cdef int j
    for j in range(32):
        ax = fabsf(xb[j])
        if a < ax:
            a = ax
            m = xb[j]
    amax[0] = a
    vmax[0] = m


cdef inline void minmax32(const float* xb, float* vmin, float* vmax) noexcept nogil:
    cdef float mn = <float>3.4028234663852886e+38, mx = <float>-3.4028234663852886e+38
    cdef int j
    for j in range(32):
        if xb[j] < mn:
            mn = xb[j]
        if xb[j] > mx:
            mx = xb[j]
    vmin[0] = mn
    vmax[0] = mx


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


cdef void quantize_row_q4_0(const float* x, uint8_t* y, int64_t n, const float* qw) noexcept nogil:
    cdef int64_t ib
    cdef int j
    cdef float amax, vmax, d, id, sigma2 = 0
    cdef float weight[32]
    cdef int8_t L[32]
    cdef int8_t Lg[32 * NL]
    cdef float dg[NL]
    cdef int64_t nb = n // 32
    cdef uint8_t xi0, xi1
    cdef const float* xb
    cdef uint8_t* yb
    if qw != NULL:
        sigma2 = row_sigma2(x, n)
    for ib in range(n // 32):
        xb = x + ib * 32
        yb = y + ib * 18
        if qw == NULL:
            absmax_signed(xb, &amax, &vmax)
            d = vmax / <float>-8.0
            id = <float>1.0 / d if d != 0 else <float>0.0
            store_f16(yb, d)
            for j in range(16):
                xi0 = <uint8_t>imin(15, <int8_t>(xb[j] * id + <float>8.5))
                xi1 = <uint8_t>imin(15, <int8_t>(xb[j + 16] * id + <float>8.5))
                yb[2 + j] = xi0 | (xi1 << 4)
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
    cdef const float* xb
    cdef uint8_t* yb
    if qw != NULL:
        sigma2 = row_sigma2(x, n)
    for ib in range(n // 32):
        xb = x + ib * 32
        yb = y + ib * 22
        if qw == NULL:
            absmax_signed(xb, &amax, &vmax)
            d = vmax / <float>-16.0
            id = <float>1.0 / d if d != 0 else <float>0.0
            for j in range(32):
                U[j] = <uint8_t>imin(31, <int8_t>(xb[j] * id + <float>16.5))
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
    cdef const float* xb
    cdef uint8_t* yb
    if qw != NULL:
        sigma2 = row_sigma2(x, n)
    for ib in range(n // 32):
        xb = x + ib * 32
        yb = y + ib * 20
        if qw == NULL:
            minmax32(xb, &vmin, &vmax)
            d = (vmax - vmin) / <float>15.0
            id = <float>1.0 / d if d != 0 else <float>0.0
            store_f16(yb, d)
            store_f16(yb + 2, vmin)
            for j in range(16):
                xi0 = <uint8_t>imin(15, <int8_t>((xb[j] - vmin) * id + <float>0.5))
                xi1 = <uint8_t>imin(15, <int8_t>((xb[j + 16] - vmin) * id + <float>0.5))
                yb[4 + j] = xi0 | (xi1 << 4)
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
    cdef const float* xb
    cdef uint8_t* yb
    if qw != NULL:
        sigma2 = row_sigma2(x, n)
    for ib in range(n // 32):
        xb = x + ib * 32
        yb = y + ib * 24
        if qw == NULL:
            minmax32(xb, &vmin, &vmax)
            d = (vmax - vmin) / <float>31.0
            id = <float>1.0 / d if d != 0 else <float>0.0
            store_f16(yb, d)
            store_f16(yb + 2, vmin)
            for j in range(32):
                L[j] = <uint8_t>((xb[j] - vmin) * id + <float>0.5)  # no clamp, as in llama.cpp
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
