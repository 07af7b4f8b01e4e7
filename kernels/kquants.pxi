# K-quants on 256-element super-blocks: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (kquants.md sections 2, 5, 6).
# qw == NULL selects llama.cpp's reference path (what llama-quantize uses without an imatrix);
# otherwise the importance-weighted path. The imatrix slice passed in starts at this row's column 0.


cdef inline void pack_2bit(const uint8_t* L, uint8_t* qs) noexcept nogil:
    # Q2_K / Q3_K low bits: 4 codes per byte, 32 bytes per 128-element half.
    cdef int j, l
    for j in range(0, 256, 128):
        for l in range(32):
            qs[j // 4 + l] = <uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6))


cdef inline void super_sigma2(const float* x, float factor, float* sigma2) noexcept nogil:
    cdef float sumx2 = 0
    cdef int j
    for j in range(256):
        sumx2 += x[j] * x[j]
    sigma2[0] = factor * sumx2 / <float>256.0


cdef inline void untranspose_codes(const uint8_t* Lt, int n, uint8_t* L) noexcept nogil:
    # L[k * n + i] = Lt[i][k]
    cdef int i, k
    for k in range(NL):
        for i in range(n):
            L[k * n + i] = Lt[i * NL + k]


cdef inline void untranspose_codes8(const int8_t* Lt, int n, int8_t* L) noexcept nogil:
    cdef int i, k
    for k in range(NL):
        for i in range(n):
            L[k * n + i] = Lt[i * NL + k]


# ------------------------------------------------------------------------------------------ Q2_K

cdef void quantize_row_q2_K(const float* x, uint8_t* y, int64_t n, const float* qw) noexcept nogil:
    cdef uint8_t L[256]
    cdef float weights[16]
    cdef float mins[16]
    cdef float scales[16]
    cdef float sw[16]
    cdef uint8_t Ls[16]
    cdef uint8_t Lm[16]
    cdef float xt[16 * NL]
    cdef float wt[16 * NL]
    cdef uint8_t Lt[16 * NL]
    cdef float max_scale, max_min, iscale, d, dm, mm, sigma2, s
    cdef int64_t ib
    cdef int j, l, ii, h
    cdef const float* xb
    cdef uint8_t* yb
    cdef uint8_t* sc
    for ib in range(n // 256):
        xb = x + ib * 256
        yb = y + ib * 84
        sc = yb  # scales[16] at offset 0; qs at 16; d at 80; dmin at 82
        if qw == NULL:
            max_scale = 0
            max_min = 0
            for h in range(2):
                transpose_in(xb + 128 * h, 16, 16, xt)
                for l in range(16 * NL):
                    wt[l] = fabsf(xt[l])
                make_qkx_lanes(16, 3, xt, wt, Lt, scales + 8 * h, mins + 8 * h,
                               <float>-0.5, <float>0.1, 15, True)
                untranspose_codes(Lt, 16, L + 128 * h)
            for j in range(16):
                if scales[j] > max_scale:
                    max_scale = scales[j]
                if mins[j] > max_min:
                    max_min = mins[j]
            if max_scale > 0:
                iscale = <float>15.0 / max_scale
                for j in range(16):
                    sc[j] = <uint8_t>nearest_int(iscale * scales[j])
                store_f16(yb + 80, max_scale / <float>15.0)
            else:
                for j in range(16):
                    sc[j] = 0
                store_f16(yb + 80, 0)
            if max_min > 0:
                iscale = <float>15.0 / max_min
                for j in range(16):
                    sc[j] = <uint8_t>(sc[j] | (nearest_int(iscale * mins[j]) << 4))
                store_f16(yb + 82, max_min / <float>15.0)
            else:
                store_f16(yb + 82, 0)
        else:
            super_sigma2(xb, <float>1.0, &sigma2)
            for j in range(16):
                for l in range(16):
                    weights[l] = qw[ib * 256 + 16 * j + l] * sqrtf(sigma2 + xb[16 * j + l] * xb[16 * j + l])
                s = 0
                for l in range(16):
                    s += weights[l]
                    wt[l * NL + (j % 8)] = weights[l]
                sw[j] = s
                if j % 8 == 7:
                    h = j // 8
                    transpose_in(xb + 128 * h, 16, 16, xt)
                    make_qkx_lanes(16, 3, xt, wt, Lt, scales + 8 * h, mins + 8 * h,
                                   <float>-0.9, <float>0.05, 36, False)
                    untranspose_codes(Lt, 16, L + 128 * h)
            dm = make_qp_quants(16, 15, scales, Ls, sw)
            mm = make_qp_quants(16, 15, mins, Lm, sw)
            store_f16(yb + 80, dm)
            store_f16(yb + 82, mm)
            for j in range(16):
                sc[j] = <uint8_t>(Ls[j] | (Lm[j] << 4))
        dm = load_f16(yb + 80)
        mm = load_f16(yb + 82)
        for j in range(16):
            d = dm * (sc[j] & 0xF)
            if d == 0:
                continue
            s = mm * (sc[j] >> 4)
            requant(xb + 16 * j, 16, s, d, 0, 3, 0, L + 16 * j)
        pack_2bit(L, yb + 16)


cdef void dequantize_row_q2_K(const uint8_t* y, float* x, int64_t n) noexcept nogil:
    cdef int64_t ib
    cdef int half, j, l, shift, iss
    cdef float d, vmin, dl, ml
    cdef const uint8_t* yb
    cdef const uint8_t* q
    cdef uint8_t s
    cdef float* out
    for ib in range(n // 256):
        yb = y + ib * 84
        d = load_f16(yb + 80)
        vmin = load_f16(yb + 82)
        out = x + ib * 256
        iss = 0
        for half in range(2):
            q = yb + 16 + 32 * half
            shift = 0
            for j in range(4):
                s = yb[iss]
                iss += 1
                dl = d * (s & 0xF)
                ml = vmin * (s >> 4)
                for l in range(16):
                    out[0] = dl * ((q[l] >> shift) & 3) - ml
                    out += 1
                s = yb[iss]
                iss += 1
                dl = d * (s & 0xF)
                ml = vmin * (s >> 4)
                for l in range(16):
                    out[0] = dl * ((q[l + 16] >> shift) & 3) - ml
                    out += 1
                shift += 2


# ------------------------------------------------------------------------------------------ Q3_K

cdef void quantize_row_q3_K(const float* x, uint8_t* y, int64_t n, const float* qw) noexcept nogil:
    cdef int8_t L[256]
    cdef uint8_t U[256]
    cdef float scales[16]
    cdef float weight[16]
    cdef float sw[16]
    cdef int8_t Ls[16]
    cdef int codes[16]
    cdef float xt[16 * NL]
    cdef float wt[16 * NL]
    cdef int8_t Lt[16 * NL]
    cdef float max_scale, amax, a, iscale, d, dall, sigma2, s
    cdef int64_t ib
    cdef int j, l, ii, m, c, h
    cdef const float* xb
    cdef uint8_t* yb
    cdef uint8_t* sc
    for ib in range(n // 256):
        xb = x + ib * 256
        yb = y + ib * 110
        sc = yb + 96  # hmask[32] at 0, qs[64] at 32, scales[12] at 96, d at 108
        memset(sc, 0, 12)
        if qw == NULL:
            max_scale = 0
            amax = 0
            for h in range(2):
                transpose_in(xb + 128 * h, 16, 16, xt)
                make_q3_lanes(xt, Lt, scales + 8 * h)
                untranspose_codes8(Lt, 16, L + 128 * h)
            for j in range(16):
                a = fabsf(scales[j])
                if a > amax:
                    amax = a
                    max_scale = scales[j]
            if max_scale != 0:
                iscale = <float>-32.0 / max_scale
                for j in range(16):
                    codes[j] = imax(-32, imin(31, <int8_t>nearest_int(iscale * scales[j]))) + 32
                store_f16(yb + 108, <float>1.0 / iscale)
            else:
                for j in range(16):
                    codes[j] = 0
                store_f16(yb + 108, 0)
        else:
            super_sigma2(xb, <float>2.0, &sigma2)
            for j in range(16):
                for l in range(16):
                    weight[l] = qw[ib * 256 + 16 * j + l] * sqrtf(sigma2 + xb[16 * j + l] * xb[16 * j + l])
                s = 0
                for l in range(16):
                    s += weight[l]
                    wt[l * NL + (j % 8)] = weight[l]
                sw[j] = s
                if j % 8 == 7:
                    h = j // 8
                    transpose_in(xb + 128 * h, 16, 16, xt)
                    make_qx_lanes(16, 4, xt, wt, Lt, scales + 8 * h)
                    untranspose_codes8(Lt, 16, L + 128 * h)
            d = make_qx_quants(16, 32, scales, Ls, sw)
            for j in range(16):
                codes[j] = Ls[j]
            store_f16(yb + 108, d)
        # 6-bit scale codes: low nibbles in bytes 0..7, high 2 bits in bytes 8..11
        for j in range(16):
            c = codes[j]
            if j < 8:
                sc[j] = <uint8_t>(c & 0xF)
            else:
                sc[j - 8] = <uint8_t>(sc[j - 8] | ((c & 0xF) << 4))
            sc[j % 4 + 8] = <uint8_t>(sc[j % 4 + 8] | ((c >> 4) << (2 * (j // 4))))
        dall = load_f16(yb + 108)
        for j in range(16):
            # the code read back from the packed bytes (6 bits) minus 32
            c = ((sc[j] & 0xF) if j < 8 else (sc[j - 8] >> 4)) | (((sc[8 + j % 4] >> (2 * (j // 4))) & 3) << 4)
            d = dall * <int8_t>(c - 32)
            if d == 0:
                continue
            requant(xb + 16 * j, 16, <float>0.0, d, -4, 3, 4, <uint8_t*>(L + 16 * j))
        # hmask[m] bit b is set iff code(32b + m) >= 4 (bit 2 of a 0..7 code); low 2 bits go to qs.
        # Branch-free: the codes are close to random, a branch here mispredicts half the time.
        memset(yb, 0, 32)
        for j in range(8):
            for m in range(32):
                yb[m] = yb[m] | <uint8_t>(((L[32 * j + m] >> 2) & 1) << j)
                U[32 * j + m] = <uint8_t>(L[32 * j + m] & 3)
        pack_2bit(U, yb + 32)


cdef void dequantize_row_q3_K(const uint8_t* y, float* x, int64_t n) noexcept nogil:
    cdef int64_t ib
    cdef int half, j, l, shift, iss, c
    cdef int8_t sc[16]
    cdef float dall, dl
    cdef const uint8_t* yb
    cdef const uint8_t* q
    cdef const uint8_t* hmask
    cdef const uint8_t* s
    cdef uint8_t m
    cdef float* out
    for ib in range(n // 256):
        yb = y + ib * 110
        hmask = yb
        s = yb + 96
        dall = load_f16(yb + 108)
        for j in range(16):
            c = ((s[j] & 0xF) if j < 8 else (s[j - 8] >> 4)) | (((s[8 + j % 4] >> (2 * (j // 4))) & 3) << 4)
            sc[j] = <int8_t>c
        out = x + ib * 256
        iss = 0
        m = 1
        for half in range(2):
            q = yb + 32 + 32 * half
            shift = 0
            for j in range(4):
                dl = dall * (sc[iss] - 32)
                iss += 1
                for l in range(16):
                    out[0] = dl * (<int8_t>((q[l] >> shift) & 3) - (0 if (hmask[l] & m) else 4))
                    out += 1
                dl = dall * (sc[iss] - 32)
                iss += 1
                for l in range(16):
                    out[0] = dl * (<int8_t>((q[l + 16] >> shift) & 3) - (0 if (hmask[l + 16] & m) else 4))
                    out += 1
                shift += 2
                m = <uint8_t>(m << 1)


# ------------------------------------------------------------------------------------ Q4_K, Q5_K

cdef inline void pack_scales_k4(const uint8_t* ls, const uint8_t* lm, uint8_t* s) noexcept nogil:
    # 6-bit scale and min codes of 8 sub-blocks into 12 bytes (get_scale_min_k4 is the inverse).
    cdef int j
    for j in range(8):
        if j < 4:
            s[j] = ls[j]
            s[j + 4] = lm[j]
        else:
            s[j + 4] = <uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4))
            s[j - 4] = <uint8_t>(s[j - 4] | ((ls[j] >> 4) << 6))
            s[j] = <uint8_t>(s[j] | ((lm[j] >> 4) << 6))


cdef inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) noexcept nogil:
    if j < 4:
        d[0] = q[j] & 63
        m[0] = q[j + 4] & 63
    else:
        d[0] = <uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4))
        m[0] = <uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4))


cdef void quantize_super_k45(const float* xb, uint8_t* hdr, uint8_t* L, int nmax,
                             const float* qw) noexcept nogil:
    # Shared by Q4_K (nmax 15) and Q5_K (nmax 31): fits 8 sub-blocks of 32, writes d, dmin and the
    # 12 scale bytes at hdr (d @0, dmin @2, scales @4) and leaves the final codes in L.
    cdef float weights[32]
    cdef float mins[8]
    cdef float scales[8]
    cdef float sw[8]
    cdef uint8_t ls[8]
    cdef uint8_t lm[8]
    cdef float xt[32 * NL]
    cdef float wt[32 * NL]
    cdef uint8_t Lt[32 * NL]
    cdef float max_scale, max_min, sum_x2, av_x, inv_scale, inv_min, sigma2, s, d, dm
    cdef int j, l, ii
    cdef uint8_t sc, m
    cdef uint8_t* packed = hdr + 4
    if qw == NULL:
        max_scale = 0
        max_min = 0
        transpose_in(xb, 32, 32, xt)
        for j in range(8):
            sum_x2 = 0
            for l in range(32):
                sum_x2 += xb[32 * j + l] * xb[32 * j + l]
            av_x = sqrtf(sum_x2 / <float>32.0)
            for l in range(32):
                wt[l * NL + j] = av_x + fabsf(xb[32 * j + l])
        if nmax == 15:
            make_qkx_lanes(32, 15, xt, wt, Lt, scales, mins, <float>-1.0, <float>0.1, 20, False)
        else:
            make_qkx_lanes(32, 31, xt, wt, Lt, scales, mins, <float>-0.5, <float>0.1, 15, False)
        untranspose_codes(Lt, 32, L)
        for j in range(8):
            if scales[j] > max_scale:
                max_scale = scales[j]
            if mins[j] > max_min:
                max_min = mins[j]
        inv_scale = <float>63.0 / max_scale if max_scale > 0 else <float>0.0
        inv_min = <float>63.0 / max_min if max_min > 0 else <float>0.0
        for j in range(8):
            # wrapped to uint8 first, then clamped, as llama.cpp does
            ls[j] = <uint8_t>nearest_int(inv_scale * scales[j])
            lm[j] = <uint8_t>nearest_int(inv_min * mins[j])
            ls[j] = ls[j] if ls[j] < 63 else 63
            lm[j] = lm[j] if lm[j] < 63 else 63
        pack_scales_k4(ls, lm, packed)
        store_f16(hdr, max_scale / <float>63.0)
        store_f16(hdr + 2, max_min / <float>63.0)
    else:
        super_sigma2(xb, <float>2.0, &sigma2)
        transpose_in(xb, 32, 32, xt)
        for j in range(8):
            for l in range(32):
                weights[l] = qw[32 * j + l] * sqrtf(sigma2 + xb[32 * j + l] * xb[32 * j + l])
            s = 0
            for l in range(32):
                s += weights[l]
                wt[l * NL + j] = weights[l]
            sw[j] = s
        make_qkx_lanes(32, nmax, xt, wt, Lt, scales, mins, <float>-0.9, <float>0.05, 36, False)
        untranspose_codes(Lt, 32, L)
        d = make_qp_quants(8, 63, scales, ls, sw)
        dm = make_qp_quants(8, 63, mins, lm, sw)
        if nmax == 31:  # only the Q5_K path clamps here
            for j in range(8):
                ls[j] = ls[j] if ls[j] < 63 else 63
                lm[j] = lm[j] if lm[j] < 63 else 63
        pack_scales_k4(ls, lm, packed)
        store_f16(hdr, d)
        store_f16(hdr + 2, dm)
    d = load_f16(hdr)
    dm = load_f16(hdr + 2)
    for j in range(8):
        get_scale_min_k4(j, packed, &sc, &m)
        s = d * sc
        if s == 0:
            continue
        requant(xb + 32 * j, 32, dm * m, s, 0, nmax, 0, L + 32 * j)


cdef void quantize_row_q4_K(const float* x, uint8_t* y, int64_t n, const float* qw) noexcept nogil:
    cdef uint8_t L[256]
    cdef int64_t ib
    cdef int j, l
    cdef uint8_t* q
    for ib in range(n // 256):
        quantize_super_k45(x + ib * 256, y + ib * 144, L, 15, qw + ib * 256 if qw != NULL else NULL)
        q = y + ib * 144 + 16
        for j in range(0, 256, 64):
            for l in range(32):
                q[l] = <uint8_t>(L[j + l] | (L[j + l + 32] << 4))
            q += 32


cdef void quantize_row_q5_K(const float* x, uint8_t* y, int64_t n, const float* qw) noexcept nogil:
    cdef uint8_t L[256]
    cdef int64_t ib
    cdef int nn, j, l1, l2
    cdef uint8_t m1, m2
    cdef uint8_t* qh
    cdef uint8_t* ql
    for ib in range(n // 256):
        quantize_super_k45(x + ib * 256, y + ib * 176, L, 31, qw + ib * 256 if qw != NULL else NULL)
        qh = y + ib * 176 + 16
        ql = y + ib * 176 + 48
        memset(qh, 0, 32)
        m1 = 1
        m2 = 2
        for nn in range(0, 256, 64):
            for j in range(32):
                l1 = L[nn + j]
                if l1 > 15:
                    l1 -= 16
                    qh[j] = qh[j] | m1
                l2 = L[nn + j + 32]
                if l2 > 15:
                    l2 -= 16
                    qh[j] = qh[j] | m2
                ql[j] = <uint8_t>(l1 | (l2 << 4))
            m1 = <uint8_t>(m1 << 2)
            m2 = <uint8_t>(m2 << 2)
            ql += 32


cdef void dequantize_row_q4_K(const uint8_t* y, float* x, int64_t n) noexcept nogil:
    cdef int64_t ib
    cdef int j, l, iss
    cdef float d, vmin, d1, m1, d2, m2
    cdef uint8_t sc, m
    cdef const uint8_t* yb
    cdef const uint8_t* q
    cdef float* out
    for ib in range(n // 256):
        yb = y + ib * 144
        d = load_f16(yb)
        vmin = load_f16(yb + 2)
        q = yb + 16
        out = x + ib * 256
        iss = 0
        for j in range(0, 256, 64):
            get_scale_min_k4(iss, yb + 4, &sc, &m)
            d1 = d * sc
            m1 = vmin * m
            get_scale_min_k4(iss + 1, yb + 4, &sc, &m)
            d2 = d * sc
            m2 = vmin * m
            for l in range(32):
                out[l] = d1 * (q[l] & 0xF) - m1
            for l in range(32):
                out[32 + l] = d2 * (q[l] >> 4) - m2
            out += 64
            q += 32
            iss += 2


cdef void dequantize_row_q5_K(const uint8_t* y, float* x, int64_t n) noexcept nogil:
    cdef int64_t ib
    cdef int j, l, iss
    cdef float d, vmin, d1, m1, d2, m2
    cdef uint8_t sc, m, u1, u2
    cdef const uint8_t* yb
    cdef const uint8_t* ql
    cdef const uint8_t* qh
    cdef float* out
    for ib in range(n // 256):
        yb = y + ib * 176
        d = load_f16(yb)
        vmin = load_f16(yb + 2)
        qh = yb + 16
        ql = yb + 48
        out = x + ib * 256
        iss = 0
        u1 = 1
        u2 = 2
        for j in range(0, 256, 64):
            get_scale_min_k4(iss, yb + 4, &sc, &m)
            d1 = d * sc
            m1 = vmin * m
            get_scale_min_k4(iss + 1, yb + 4, &sc, &m)
            d2 = d * sc
            m2 = vmin * m
            for l in range(32):
                out[l] = d1 * ((ql[l] & 0xF) + (16 if (qh[l] & u1) else 0)) - m1
            for l in range(32):
                out[32 + l] = d2 * ((ql[l] >> 4) + (16 if (qh[l] & u2) else 0)) - m2
            out += 64
            ql += 32
            iss += 2
            u1 = <uint8_t>(u1 << 2)
            u2 = <uint8_t>(u2 << 2)


# ------------------------------------------------------------------------------------------ Q6_K

cdef void quantize_row_q6_K(const float* x, uint8_t* y, int64_t n, const float* qw) noexcept nogil:
    cdef int8_t L[256]
    cdef float scales[16]
    cdef float xt[16 * NL]
    cdef float wt[16 * NL]
    cdef int8_t Lt[16 * NL]
    cdef float max_scale, max_abs_scale, a, iscale, d, dall
    cdef int64_t ib
    cdef int j, l, ii, h
    cdef const float* xb
    cdef uint8_t* yb
    cdef int8_t* sc
    cdef uint8_t* ql
    cdef uint8_t* qh
    cdef uint8_t q1, q2, q3, q4
    for ib in range(n // 256):
        xb = x + ib * 256
        yb = y + ib * 210  # ql[128] @0, qh[64] @128, scales[16] @192, d @208
        sc = <int8_t*>(yb + 192)
        max_scale = 0
        max_abs_scale = 0
        for h in range(2):
            transpose_in(xb + 128 * h, 16, 16, xt)
            if qw != NULL:
                transpose_in(qw + ib * 256 + 128 * h, 16, 16, wt)
            make_qx_lanes(16, 32, xt, wt if qw != NULL else NULL, Lt, scales + 8 * h)
            untranspose_codes8(Lt, 16, L + 128 * h)
        for j in range(16):
            a = fabsf(scales[j])
            if a > max_abs_scale:
                max_abs_scale = a
                max_scale = scales[j]
        if max_abs_scale < <float>1e-15:
            memset(yb, 0, 210)
            continue
        iscale = <float>-128.0 / max_scale
        store_f16(yb + 208, <float>1.0 / iscale)
        for j in range(16):
            sc[j] = <int8_t>imin(127, nearest_int(iscale * scales[j]))
        dall = load_f16(yb + 208)
        for j in range(16):
            d = dall * sc[j]
            if d == 0:
                continue
            requant(xb + 16 * j, 16, <float>0.0, d, -32, 31, 32, <uint8_t*>(L + 16 * j))
        ql = yb
        qh = yb + 128
        for j in range(0, 256, 128):
            for l in range(32):
                q1 = L[j + l] & 0xF
                q2 = L[j + l + 32] & 0xF
                q3 = L[j + l + 64] & 0xF
                q4 = L[j + l + 96] & 0xF
                ql[l] = <uint8_t>(q1 | (q3 << 4))
                ql[l + 32] = <uint8_t>(q2 | (q4 << 4))
                qh[l] = <uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2)
                                  | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6))
            ql += 64
            qh += 32


cdef void dequantize_row_q6_K(const uint8_t* y, float* x, int64_t n) noexcept nogil:
    cdef int64_t ib
    cdef int nn, l, iss
    cdef float d
    cdef int8_t q1, q2, q3, q4
    cdef const uint8_t* yb
    cdef const uint8_t* ql
    cdef const uint8_t* qh
    cdef const int8_t* sc
    cdef float* out
    for ib in range(n // 256):
        yb = y + ib * 210
        d = load_f16(yb + 208)
        ql = yb
        qh = yb + 128
        sc = <const int8_t*>(yb + 192)
        out = x + ib * 256
        for nn in range(0, 256, 128):
            for l in range(32):
                iss = l // 16
                q1 = <int8_t>((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32
                q2 = <int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32
                q3 = <int8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32
                q4 = <int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32
                out[l] = d * sc[iss] * q1
                out[l + 32] = d * sc[iss + 2] * q2
                out[l + 64] = d * sc[iss + 4] * q3
                out[l + 96] = d * sc[iss + 6] * q4
            out += 128
            ql += 64
            qh += 32
            sc += 8
