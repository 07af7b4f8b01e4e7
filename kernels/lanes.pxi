# Lane-parallel versions of make_qkx_quants and make_qx_quants: NL = 8 independent groups
# (sub-blocks of a super-block, or consecutive 32-blocks of a row) are fitted together, with the
# data transposed to [element][lane]. Each lane is one float of an SSE2 register (two registers
# per 8 lanes), so every lane performs exactly the reference's sequence of IEEE float32 operations
# (sums stay sequential over the elements of its group; SSE2 has no FMA). Branches of the scalar
# code become per-lane masks. SSE2 is part of the x86-64 baseline: no -march flag is needed.
# Results are byte-identical to the scalar helpers in helpers.pxi.
#
# The intrinsics come from kernels/pq_simd.h: <emmintrin.h> on x86-64, and plain-C lanes with the
# same bit-exact semantics elsewhere (aarch64) or with POCKETQUANT_PORTABLE_SIMD=1. Use only what
# is declared below: a new intrinsic needs a portable definition there too.
cdef extern from "pq_simd.h" nogil:
    const char* PQ_SIMD_BACKEND  # "sse2" or "portable"
    int pq_ctz(unsigned int)  # index of the lowest set bit
    ctypedef struct __m128:
        pass
    ctypedef struct __m128i:
        pass
    __m128 _mm_setzero_ps()
    __m128 _mm_set1_ps(float)
    __m128 _mm_loadu_ps(const float*)
    void _mm_storeu_ps(float*, __m128)
    __m128 _mm_add_ps(__m128, __m128)
    __m128 _mm_sub_ps(__m128, __m128)
    __m128 _mm_mul_ps(__m128, __m128)
    __m128 _mm_div_ps(__m128, __m128)
    __m128 _mm_and_ps(__m128, __m128)
    __m128 _mm_andnot_ps(__m128, __m128)
    __m128 _mm_or_ps(__m128, __m128)
    __m128 _mm_xor_ps(__m128, __m128)
    __m128 _mm_cmplt_ps(__m128, __m128)
    __m128 _mm_cmpgt_ps(__m128, __m128)
    __m128 _mm_cmpneq_ps(__m128, __m128)
    __m128 _mm_cmpnlt_ps(__m128, __m128)
    __m128 _mm_cmpeq_ps(__m128, __m128)
    __m128 _mm_max_ps(__m128, __m128)
    __m128 _mm_min_ps(__m128, __m128)
    __m128 _mm_movehl_ps(__m128, __m128)
    __m128 _mm_shuffle_ps(__m128, __m128, unsigned int)
    float _mm_cvtss_f32(__m128)
    int _mm_movemask_ps(__m128)
    __m128i _mm_castps_si128(__m128)
    __m128 _mm_castsi128_ps(__m128i)
    __m128i _mm_set1_epi32(int)
    __m128i _mm_and_si128(__m128i, __m128i)
    __m128i _mm_andnot_si128(__m128i, __m128i)
    __m128i _mm_or_si128(__m128i, __m128i)
    __m128i _mm_sub_epi32(__m128i, __m128i)
    __m128i _mm_add_epi32(__m128i, __m128i)
    __m128i _mm_cmpgt_epi32(__m128i, __m128i)
    __m128i _mm_cmpeq_epi32(__m128i, __m128i)
    __m128 _mm_cvtepi32_ps(__m128i)
    __m128i _mm_cvttps_epi32(__m128)
    void _mm_storeu_si128(__m128i*, __m128i)
    __m128i _mm_slli_epi32(__m128i, int)
    __m128i _mm_srli_epi32(__m128i, int)
    __m128i _mm_srai_epi32(__m128i, int)
    __m128i _mm_loadu_si128(const __m128i*)
    __m128i _mm_packs_epi32(__m128i, __m128i)
    __m128i _mm_packus_epi16(__m128i, __m128i)
    __m128i _mm_packs_epi16(__m128i, __m128i)

cdef enum:
    NL = 8


cdef inline __m128 vsel(__m128 m, __m128 a, __m128 b) noexcept nogil:
    # per lane: m ? a : b
    return _mm_or_ps(_mm_and_ps(m, a), _mm_andnot_ps(m, b))


cdef inline __m128i vnearest_i(__m128 v, __m128i lo, __m128i hi) noexcept nogil:
    # clamp(nearest_int(v), lo, hi): the 1.5 * 2**23 mantissa trick, lane-wise
    cdef __m128 t = _mm_add_ps(v, _mm_set1_ps(<float>12582912.0))
    cdef __m128i i = _mm_sub_epi32(_mm_and_si128(_mm_castps_si128(t), _mm_set1_epi32(0x007fffff)),
                                   _mm_set1_epi32(0x00400000))
    cdef __m128i m = _mm_cmpgt_epi32(lo, i)
    i = _mm_or_si128(_mm_and_si128(m, lo), _mm_andnot_si128(m, i))
    m = _mm_cmpgt_epi32(i, hi)
    return _mm_or_si128(_mm_and_si128(m, hi), _mm_andnot_si128(m, i))


cdef inline __m128 vnearest(__m128 v, __m128i lo, __m128i hi) noexcept nogil:
    return _mm_cvtepi32_ps(vnearest_i(v, lo, hi))


cdef inline void requant(const float* x, int n, float add, float d, int lo, int hi, int off,
                         uint8_t* out) noexcept nogil:
    # out[i] = clamp(nearest_int((x[i] + add) / d), lo, hi) + off, n a multiple of 16. Callers
    # without an offset pass add = 0: x + 0.0 only turns -0.0 into +0.0, which rounds the same.
    cdef __m128 va = _mm_set1_ps(add), vd = _mm_set1_ps(d)
    cdef __m128i vlo = _mm_set1_epi32(lo), vhi = _mm_set1_epi32(hi), voff = _mm_set1_epi32(off)
    cdef __m128i q[4]
    cdef int i, k
    for i in range(0, n, 16):
        for k in range(4):
            q[k] = _mm_add_epi32(vnearest_i(_mm_div_ps(_mm_add_ps(_mm_loadu_ps(x + i + 4 * k), va), vd),
                                            vlo, vhi), voff)
        _mm_storeu_si128(<__m128i*>(out + i),
                         _mm_packus_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3])))


cdef inline __m128 verr(__m128 diff, bint use_mad) noexcept nogil:
    if use_mad:
        return _mm_andnot_ps(_mm_set1_ps(<float>-0.0), diff)
    return _mm_mul_ps(diff, diff)


cdef void make_qkx_lanes(int n, int nmax, const float* xt, const float* wt, uint8_t* Lt,
                         float* scale_out, float* the_min_out, float rmin, float rdelta, int nstep,
                         bint use_mad) noexcept nogil:
    # xt, wt, Lt: n * NL values laid out [i][lane]; n <= 32, nstep >= 1. Lane halves a (0-3), b (4-7).
    cdef float La[32 * NL]
    cdef float Lf[32 * NL]
    cdef int codes[32 * NL]
    cdef int i, iss, o
    cdef float step
    cdef __m128i lo = _mm_set1_epi32(0)
    cdef __m128i hi = _mm_set1_epi32(nmax)
    cdef __m128 zero = _mm_setzero_ps()
    cdef __m128 xa, xb, wa, wb, fa, fb, da, db, wla, wlb, m
    cdef __m128 mna = _mm_loadu_ps(xt), mnb = _mm_loadu_ps(xt + 4)
    cdef __m128 mxa = mna, mxb = mnb
    cdef __m128 swa = _mm_loadu_ps(wt), swb = _mm_loadu_ps(wt + 4)
    cdef __m128 sxa = _mm_mul_ps(swa, mna), sxb = _mm_mul_ps(swb, mnb)
    for i in range(1, n):
        o = i * NL
        xa = _mm_loadu_ps(xt + o)
        xb = _mm_loadu_ps(xt + o + 4)
        wa = _mm_loadu_ps(wt + o)
        wb = _mm_loadu_ps(wt + o + 4)
        mna = vsel(_mm_cmplt_ps(xa, mna), xa, mna)
        mnb = vsel(_mm_cmplt_ps(xb, mnb), xb, mnb)
        mxa = vsel(_mm_cmpgt_ps(xa, mxa), xa, mxa)
        mxb = vsel(_mm_cmpgt_ps(xb, mxb), xb, mxb)
        swa = _mm_add_ps(swa, wa)
        swb = _mm_add_ps(swb, wb)
        sxa = _mm_add_ps(sxa, _mm_mul_ps(wa, xa))
        sxb = _mm_add_ps(sxb, _mm_mul_ps(wb, xb))
    # if min > 0: min = 0 ; degenerate (max == min) lanes are masked out of every update
    mna = _mm_andnot_ps(_mm_cmpgt_ps(mna, zero), mna)
    mnb = _mm_andnot_ps(_mm_cmpgt_ps(mnb, zero), mnb)
    cdef __m128 acta = _mm_cmpneq_ps(mxa, mna), actb = _mm_cmpneq_ps(mxb, mnb)
    cdef __m128 fnmax = _mm_set1_ps(<float>nmax)
    cdef __m128 isca = _mm_div_ps(fnmax, _mm_sub_ps(mxa, mna))
    cdef __m128 iscb = _mm_div_ps(fnmax, _mm_sub_ps(mxb, mnb))
    cdef __m128 one = _mm_set1_ps(<float>1.0)
    cdef __m128 sca = _mm_div_ps(one, isca), scb = _mm_div_ps(one, iscb)
    cdef __m128 besta = zero, bestb = zero
    for i in range(n):
        o = i * NL
        xa = _mm_loadu_ps(xt + o)
        xb = _mm_loadu_ps(xt + o + 4)
        fa = vnearest(_mm_mul_ps(isca, _mm_sub_ps(xa, mna)), lo, hi)
        fb = vnearest(_mm_mul_ps(iscb, _mm_sub_ps(xb, mnb)), lo, hi)
        _mm_storeu_ps(Lf + o, fa)
        _mm_storeu_ps(Lf + o + 4, fb)
        da = verr(_mm_sub_ps(_mm_add_ps(_mm_mul_ps(sca, fa), mna), xa), use_mad)
        db = verr(_mm_sub_ps(_mm_add_ps(_mm_mul_ps(scb, fb), mnb), xb), use_mad)
        besta = _mm_add_ps(besta, _mm_mul_ps(_mm_loadu_ps(wt + o), da))
        bestb = _mm_add_ps(bestb, _mm_mul_ps(_mm_loadu_ps(wt + o + 4), db))
    cdef __m128 sla, slb, sl2a, sl2b, sxla, sxlb, Da, Db, tsa, tsb, tma, tmb, cura, curb, wina, winb
    for iss in range(nstep + 1):
        step = rmin + rdelta * iss + <float>nmax
        isca = _mm_div_ps(_mm_set1_ps(step), _mm_sub_ps(mxa, mna))
        iscb = _mm_div_ps(_mm_set1_ps(step), _mm_sub_ps(mxb, mnb))
        sla = zero
        slb = zero
        sl2a = zero
        sl2b = zero
        sxla = zero
        sxlb = zero
        for i in range(n):
            o = i * NL
            xa = _mm_loadu_ps(xt + o)
            xb = _mm_loadu_ps(xt + o + 4)
            fa = vnearest(_mm_mul_ps(isca, _mm_sub_ps(xa, mna)), lo, hi)
            fb = vnearest(_mm_mul_ps(iscb, _mm_sub_ps(xb, mnb)), lo, hi)
            _mm_storeu_ps(La + o, fa)
            _mm_storeu_ps(La + o + 4, fb)
            wla = _mm_mul_ps(_mm_loadu_ps(wt + o), fa)
            wlb = _mm_mul_ps(_mm_loadu_ps(wt + o + 4), fb)
            sla = _mm_add_ps(sla, wla)
            slb = _mm_add_ps(slb, wlb)
            sl2a = _mm_add_ps(sl2a, _mm_mul_ps(wla, fa))
            sl2b = _mm_add_ps(sl2b, _mm_mul_ps(wlb, fb))
            sxla = _mm_add_ps(sxla, _mm_mul_ps(wla, xa))
            sxlb = _mm_add_ps(sxlb, _mm_mul_ps(wlb, xb))
        Da = _mm_sub_ps(_mm_mul_ps(swa, sl2a), _mm_mul_ps(sla, sla))
        Db = _mm_sub_ps(_mm_mul_ps(swb, sl2b), _mm_mul_ps(slb, slb))
        tsa = _mm_div_ps(_mm_sub_ps(_mm_mul_ps(swa, sxla), _mm_mul_ps(sxa, sla)), Da)
        tsb = _mm_div_ps(_mm_sub_ps(_mm_mul_ps(swb, sxlb), _mm_mul_ps(sxb, slb)), Db)
        tma = _mm_div_ps(_mm_sub_ps(_mm_mul_ps(sl2a, sxa), _mm_mul_ps(sla, sxla)), Da)
        tmb = _mm_div_ps(_mm_sub_ps(_mm_mul_ps(sl2b, sxb), _mm_mul_ps(slb, sxlb)), Db)
        m = _mm_cmpgt_ps(tma, zero)
        tma = _mm_andnot_ps(m, tma)
        tsa = vsel(m, _mm_div_ps(sxla, sl2a), tsa)
        m = _mm_cmpgt_ps(tmb, zero)
        tmb = _mm_andnot_ps(m, tmb)
        tsb = vsel(m, _mm_div_ps(sxlb, sl2b), tsb)
        cura = zero
        curb = zero
        for i in range(n):
            o = i * NL
            da = verr(_mm_sub_ps(_mm_add_ps(_mm_mul_ps(tsa, _mm_loadu_ps(La + o)), tma), _mm_loadu_ps(xt + o)),
                      use_mad)
            db = verr(_mm_sub_ps(_mm_add_ps(_mm_mul_ps(tsb, _mm_loadu_ps(La + o + 4)), tmb),
                                 _mm_loadu_ps(xt + o + 4)), use_mad)
            cura = _mm_add_ps(cura, _mm_mul_ps(_mm_loadu_ps(wt + o), da))
            curb = _mm_add_ps(curb, _mm_mul_ps(_mm_loadu_ps(wt + o + 4), db))
        wina = _mm_and_ps(_mm_and_ps(_mm_cmpgt_ps(Da, zero), acta), _mm_cmplt_ps(cura, besta))
        winb = _mm_and_ps(_mm_and_ps(_mm_cmpgt_ps(Db, zero), actb), _mm_cmplt_ps(curb, bestb))
        if (_mm_movemask_ps(wina) | _mm_movemask_ps(winb)) == 0:
            continue
        besta = vsel(wina, cura, besta)
        bestb = vsel(winb, curb, bestb)
        sca = vsel(wina, tsa, sca)
        scb = vsel(winb, tsb, scb)
        mna = vsel(wina, tma, mna)
        mnb = vsel(winb, tmb, mnb)
        for i in range(n):
            o = i * NL
            _mm_storeu_ps(Lf + o, vsel(wina, _mm_loadu_ps(La + o), _mm_loadu_ps(Lf + o)))
            _mm_storeu_ps(Lf + o + 4, vsel(winb, _mm_loadu_ps(La + o + 4), _mm_loadu_ps(Lf + o + 4)))
    _mm_storeu_ps(scale_out, _mm_and_ps(acta, sca))
    _mm_storeu_ps(scale_out + 4, _mm_and_ps(actb, scb))
    cdef __m128 sign = _mm_set1_ps(<float>-0.0)
    _mm_storeu_ps(the_min_out, _mm_xor_ps(mna, sign))
    _mm_storeu_ps(the_min_out + 4, _mm_xor_ps(mnb, sign))
    for i in range(n):
        o = i * NL
        _mm_storeu_si128(<__m128i*>(codes + o), _mm_cvttps_epi32(_mm_and_ps(acta, _mm_loadu_ps(Lf + o))))
        _mm_storeu_si128(<__m128i*>(codes + o + 4), _mm_cvttps_epi32(_mm_and_ps(actb, _mm_loadu_ps(Lf + o + 4))))
    for i in range(n * NL):
        Lt[i] = <uint8_t>codes[i]


cdef void make_qx_lanes(int n, int nmax, const float* xt, const float* qwt, int8_t* Lt,
                        float* scale_out) noexcept nogil:
    # Lane-parallel make_qx_quants (rmse_type 1): weights qwt[i][lane], or x*x when qwt is NULL.
    cdef float w[32 * NL]
    cdef float wx[32 * NL]
    cdef float Lc[32 * NL]
    cdef float Lb[32 * NL]
    cdef int codes[32 * NL]
    cdef int i, iss, o
    cdef float step
    cdef __m128i lo = _mm_set1_epi32(-nmax)
    cdef __m128i hi = _mm_set1_epi32(nmax - 1)
    cdef __m128 zero = _mm_setzero_ps()
    cdef __m128 absmask = _mm_set1_ps(<float>-0.0)
    cdef __m128 xa, xb, wa, wb, ma, mb, axa, axb, fa, fb
    cdef __m128 amaxa = zero, amaxb = zero, vmaxa = zero, vmaxb = zero
    for i in range(n):
        o = i * NL
        xa = _mm_loadu_ps(xt + o)
        xb = _mm_loadu_ps(xt + o + 4)
        axa = _mm_andnot_ps(absmask, xa)
        axb = _mm_andnot_ps(absmask, xb)
        ma = _mm_cmpgt_ps(axa, amaxa)
        mb = _mm_cmpgt_ps(axb, amaxb)
        amaxa = vsel(ma, axa, amaxa)
        amaxb = vsel(mb, axb, amaxb)
        vmaxa = vsel(ma, xa, vmaxa)
        vmaxb = vsel(mb, xb, vmaxb)
        if qwt != NULL:
            wa = _mm_loadu_ps(qwt + o)
            wb = _mm_loadu_ps(qwt + o + 4)
        else:
            wa = _mm_mul_ps(xa, xa)
            wb = _mm_mul_ps(xb, xb)
        _mm_storeu_ps(w + o, wa)
        _mm_storeu_ps(w + o + 4, wb)
        _mm_storeu_ps(wx + o, _mm_mul_ps(wa, xa))
        _mm_storeu_ps(wx + o + 4, _mm_mul_ps(wb, xb))
    cdef __m128 eps = _mm_set1_ps(<float>1e-15)
    cdef __m128 acta = _mm_cmpnlt_ps(amaxa, eps), actb = _mm_cmpnlt_ps(amaxb, eps)
    cdef __m128 isca = _mm_div_ps(_mm_set1_ps(<float>(-nmax)), vmaxa)
    cdef __m128 iscb = _mm_div_ps(_mm_set1_ps(<float>(-nmax)), vmaxb)
    cdef __m128 slxa = zero, slxb = zero, sl2a = zero, sl2b = zero
    for i in range(n):
        o = i * NL
        fa = vnearest(_mm_mul_ps(isca, _mm_loadu_ps(xt + o)), lo, hi)
        fb = vnearest(_mm_mul_ps(iscb, _mm_loadu_ps(xt + o + 4)), lo, hi)
        _mm_storeu_ps(Lb + o, fa)
        _mm_storeu_ps(Lb + o + 4, fb)
        slxa = _mm_add_ps(slxa, _mm_mul_ps(_mm_loadu_ps(wx + o), fa))
        slxb = _mm_add_ps(slxb, _mm_mul_ps(_mm_loadu_ps(wx + o + 4), fb))
        sl2a = _mm_add_ps(sl2a, _mm_mul_ps(_mm_mul_ps(_mm_loadu_ps(w + o), fa), fa))
        sl2b = _mm_add_ps(sl2b, _mm_mul_ps(_mm_mul_ps(_mm_loadu_ps(w + o + 4), fb), fb))
    cdef __m128 sca = _mm_and_ps(_mm_cmpneq_ps(sl2a, zero), _mm_div_ps(slxa, sl2a))
    cdef __m128 scb = _mm_and_ps(_mm_cmpneq_ps(sl2b, zero), _mm_div_ps(slxb, sl2b))
    cdef __m128 besta = _mm_mul_ps(sca, slxa), bestb = _mm_mul_ps(scb, slxb)
    cdef __m128 wina, winb, nsa, nsb
    for iss in range(-9, 10):
        if iss == 0:
            continue
        step = -(<float>nmax + <float>0.1 * iss)
        isca = _mm_div_ps(_mm_set1_ps(step), vmaxa)
        iscb = _mm_div_ps(_mm_set1_ps(step), vmaxb)
        slxa = zero
        slxb = zero
        sl2a = zero
        sl2b = zero
        for i in range(n):
            o = i * NL
            fa = vnearest(_mm_mul_ps(isca, _mm_loadu_ps(xt + o)), lo, hi)
            fb = vnearest(_mm_mul_ps(iscb, _mm_loadu_ps(xt + o + 4)), lo, hi)
            _mm_storeu_ps(Lc + o, fa)
            _mm_storeu_ps(Lc + o + 4, fb)
            slxa = _mm_add_ps(slxa, _mm_mul_ps(_mm_loadu_ps(wx + o), fa))
            slxb = _mm_add_ps(slxb, _mm_mul_ps(_mm_loadu_ps(wx + o + 4), fb))
            sl2a = _mm_add_ps(sl2a, _mm_mul_ps(_mm_mul_ps(_mm_loadu_ps(w + o), fa), fa))
            sl2b = _mm_add_ps(sl2b, _mm_mul_ps(_mm_mul_ps(_mm_loadu_ps(w + o + 4), fb), fb))
        wina = _mm_and_ps(_mm_cmpgt_ps(sl2a, zero),
                          _mm_cmpgt_ps(_mm_mul_ps(slxa, slxa), _mm_mul_ps(besta, sl2a)))
        winb = _mm_and_ps(_mm_cmpgt_ps(sl2b, zero),
                          _mm_cmpgt_ps(_mm_mul_ps(slxb, slxb), _mm_mul_ps(bestb, sl2b)))
        if (_mm_movemask_ps(wina) | _mm_movemask_ps(winb)) == 0:
            continue
        nsa = _mm_div_ps(slxa, sl2a)
        nsb = _mm_div_ps(slxb, sl2b)
        besta = vsel(wina, _mm_mul_ps(nsa, slxa), besta)
        bestb = vsel(winb, _mm_mul_ps(nsb, slxb), bestb)
        sca = vsel(wina, nsa, sca)
        scb = vsel(winb, nsb, scb)
        for i in range(n):
            o = i * NL
            _mm_storeu_ps(Lb + o, vsel(wina, _mm_loadu_ps(Lc + o), _mm_loadu_ps(Lb + o)))
            _mm_storeu_ps(Lb + o + 4, vsel(winb, _mm_loadu_ps(Lc + o + 4), _mm_loadu_ps(Lb + o + 4)))
    _mm_storeu_ps(scale_out, _mm_and_ps(acta, sca))
    _mm_storeu_ps(scale_out + 4, _mm_and_ps(actb, scb))
    cdef __m128 off = _mm_set1_ps(<float>nmax)
    for i in range(n):
        o = i * NL
        _mm_storeu_si128(<__m128i*>(codes + o),
                         _mm_cvttps_epi32(_mm_and_ps(acta, _mm_add_ps(_mm_loadu_ps(Lb + o), off))))
        _mm_storeu_si128(<__m128i*>(codes + o + 4),
                         _mm_cvttps_epi32(_mm_and_ps(actb, _mm_add_ps(_mm_loadu_ps(Lb + o + 4), off))))
    for i in range(n * NL):
        Lt[i] = <int8_t>codes[i]


cdef inline void transpose_in(const float* src, int stride, int n, float* dst) noexcept nogil:
    # dst[i][k] = src[k * stride + i] for NL groups of n values, group k starting at k * stride
    cdef int i, k
    for k in range(NL):
        for i in range(n):
            dst[i * NL + k] = src[k * stride + i]


cdef void make_q3_lanes(const float* xt, int8_t* Lt, float* scale_out) noexcept nogil:
    # Lane-parallel make_q3_quants (n = 16, nmax = 4, do_rmse): the refinement passes visit the
    # elements in order within each lane, updates become per-lane masks. A lane whose pass changed
    # nothing would change nothing in a further pass, so passes stop when no lane changed.
    cdef float Lf[16 * NL]
    cdef float w[16 * NL]
    cdef float wx[16 * NL]
    cdef int codes[16 * NL]
    cdef int i, o, itry, h
    cdef __m128i lo = _mm_set1_epi32(-4)
    cdef __m128i hi = _mm_set1_epi32(3)
    cdef __m128 zero = _mm_setzero_ps()
    cdef __m128 absmask = _mm_set1_ps(<float>-0.0)
    cdef __m128 x, ax, m, amax, vmax, isc, fl, wv, wxv, slx, sl2, nl, slx2, sl22, upd, changed, li
    cdef __m128 sumlx[2]
    cdef __m128 suml2[2]
    cdef __m128 act[2]
    cdef int any_changed
    for h in range(2):
        amax = zero
        vmax = zero
        for i in range(16):
            x = _mm_loadu_ps(xt + i * NL + 4 * h)
            ax = _mm_andnot_ps(absmask, x)
            m = _mm_cmpgt_ps(ax, amax)
            amax = vsel(m, ax, amax)
            vmax = vsel(m, x, vmax)
        act[h] = _mm_cmpnlt_ps(amax, _mm_set1_ps(<float>1e-15))
        isc = _mm_div_ps(_mm_set1_ps(<float>-4.0), vmax)
        sumlx[h] = zero
        suml2[h] = zero
        for i in range(16):
            o = i * NL + 4 * h
            x = _mm_loadu_ps(xt + o)
            fl = vnearest(_mm_mul_ps(isc, x), lo, hi)
            _mm_storeu_ps(Lf + o, fl)
            wv = _mm_mul_ps(x, x)
            wxv = _mm_mul_ps(wv, x)
            _mm_storeu_ps(w + o, wv)
            _mm_storeu_ps(wx + o, wxv)
            sumlx[h] = _mm_add_ps(sumlx[h], _mm_mul_ps(wxv, fl))
            suml2[h] = _mm_add_ps(suml2[h], _mm_mul_ps(_mm_mul_ps(wv, fl), fl))
    for itry in range(5):
        any_changed = 0
        for h in range(2):
            changed = zero
            for i in range(16):
                o = i * NL + 4 * h
                x = _mm_loadu_ps(xt + o)
                wv = _mm_loadu_ps(w + o)
                wxv = _mm_loadu_ps(wx + o)
                li = _mm_loadu_ps(Lf + o)
                slx = _mm_sub_ps(sumlx[h], _mm_mul_ps(wxv, li))
                sl2 = _mm_sub_ps(suml2[h], _mm_mul_ps(_mm_mul_ps(wv, li), li))
                nl = vnearest(_mm_div_ps(_mm_mul_ps(x, sl2), slx), lo, hi)
                slx2 = _mm_add_ps(slx, _mm_mul_ps(wxv, nl))
                sl22 = _mm_add_ps(sl2, _mm_mul_ps(_mm_mul_ps(wv, nl), nl))
                upd = _mm_and_ps(_mm_and_ps(_mm_cmpgt_ps(slx, zero), _mm_cmpneq_ps(nl, li)),
                                 _mm_and_ps(_mm_cmpgt_ps(sl22, zero),
                                            _mm_cmpgt_ps(_mm_mul_ps(_mm_mul_ps(slx2, slx2), suml2[h]),
                                                         _mm_mul_ps(_mm_mul_ps(sumlx[h], sumlx[h]), sl22))))
                _mm_storeu_ps(Lf + o, vsel(upd, nl, li))
                sumlx[h] = vsel(upd, slx2, sumlx[h])
                suml2[h] = vsel(upd, sl22, suml2[h])
                changed = _mm_or_ps(changed, upd)
            any_changed |= _mm_movemask_ps(changed)
        if any_changed == 0:
            break
    cdef __m128 off = _mm_set1_ps(<float>4.0)
    for h in range(2):
        _mm_storeu_ps(scale_out + 4 * h,
                      _mm_and_ps(_mm_and_ps(act[h], _mm_cmpgt_ps(suml2[h], zero)),
                                 _mm_div_ps(sumlx[h], suml2[h])))
        for i in range(16):
            o = i * NL + 4 * h
            _mm_storeu_si128(<__m128i*>(codes + o),
                             _mm_cvttps_epi32(_mm_and_ps(act[h], _mm_add_ps(_mm_loadu_ps(Lf + o), off))))
    for i in range(16 * NL):
        Lt[i] = <int8_t>codes[i]
