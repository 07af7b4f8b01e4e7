# Lane-parallel versions of make_qkx_quants and make_qx_quants: NL independent groups (sub-blocks
# of a super-block, or consecutive 32-blocks of a row) are fitted together, with the data
# transposed to [element][lane]. Every innermost loop runs over the NL lanes, so the compiler
# vectorizes ACROSS groups while each lane still performs exactly the reference's sequence of
# float32 operations (sums stay sequential over elements within a lane). Branches of the scalar
# code become per-lane selects. Results are byte-identical to the scalar helpers.

cdef enum:
    NL = 8


cdef inline int lane_nearest(float fval) noexcept nogil:
    return nearest_int(fval)


cdef void make_qkx_lanes(int n, int nmax, const float* xt, const float* wt, uint8_t* Lt,
                         float* scale_out, float* the_min_out, float rmin, float rdelta, int nstep,
                         bint use_mad) noexcept nogil:
    # xt, wt, Lt: n * NL values laid out [i][lane]; n <= 32, nstep >= 1.
    cdef float vmin[NL]
    cdef float vmax[NL]
    cdef float sum_w[NL]
    cdef float sum_x[NL]
    cdef float iscale[NL]
    cdef float scale[NL]
    cdef float best[NL]
    cdef float sl[NL]
    cdef float sl2[NL]
    cdef float sxl[NL]
    cdef float ts[NL]
    cdef float tm[NL]
    cdef float cur[NL]
    cdef int active[NL]
    cdef int win[NL]
    cdef float La[32 * NL]
    cdef float Lf[32 * NL]
    cdef int i, k, l, iss, o
    cdef float x, w, diff, wl, D, fl, step
    cdef float fnmax = <float>nmax
    for k in range(NL):
        vmin[k] = xt[k]
        vmax[k] = xt[k]
        sum_w[k] = wt[k]
        sum_x[k] = wt[k] * xt[k]
    for i in range(1, n):
        o = i * NL
        for k in range(NL):
            x = xt[o + k]
            vmin[k] = x if x < vmin[k] else vmin[k]
            vmax[k] = x if x > vmax[k] else vmax[k]
            w = wt[o + k]
            sum_w[k] = sum_w[k] + w
            sum_x[k] = sum_x[k] + w * x
    for k in range(NL):
        vmin[k] = <float>0.0 if vmin[k] > 0 else vmin[k]
        active[k] = vmax[k] != vmin[k]
        iscale[k] = fnmax / (vmax[k] - vmin[k])
        scale[k] = <float>1.0 / iscale[k]
        best[k] = 0
    for i in range(n):
        o = i * NL
        for k in range(NL):
            x = xt[o + k]
            l = lane_nearest(iscale[k] * (x - vmin[k]))
            l = 0 if l < 0 else l
            l = nmax if l > nmax else l
            fl = <float>l
            Lf[o + k] = fl
            diff = scale[k] * fl + vmin[k] - x
            if use_mad:
                diff = fabsf(diff)
            else:
                diff = diff * diff
            best[k] = best[k] + wt[o + k] * diff
    for iss in range(nstep + 1):
        step = rmin + rdelta * iss + fnmax
        for k in range(NL):
            iscale[k] = step / (vmax[k] - vmin[k])
            sl[k] = 0
            sl2[k] = 0
            sxl[k] = 0
        for i in range(n):
            o = i * NL
            for k in range(NL):
                x = xt[o + k]
                l = lane_nearest(iscale[k] * (x - vmin[k]))
                l = 0 if l < 0 else l
                l = nmax if l > nmax else l
                fl = <float>l
                La[o + k] = fl
                wl = wt[o + k] * fl
                sl[k] = sl[k] + wl
                sl2[k] = sl2[k] + wl * fl
                sxl[k] = sxl[k] + wl * x
        for k in range(NL):
            D = sum_w[k] * sl2[k] - sl[k] * sl[k]
            win[k] = D > 0
            ts[k] = (sum_w[k] * sxl[k] - sum_x[k] * sl[k]) / D
            tm[k] = (sl2[k] * sum_x[k] - sl[k] * sxl[k]) / D
            if tm[k] > 0:
                tm[k] = 0
                ts[k] = sxl[k] / sl2[k]
            cur[k] = 0
        if use_mad:
            for i in range(n):
                o = i * NL
                for k in range(NL):
                    diff = ts[k] * La[o + k] + tm[k] - xt[o + k]
                    cur[k] = cur[k] + wt[o + k] * fabsf(diff)
        else:
            for i in range(n):
                o = i * NL
                for k in range(NL):
                    diff = ts[k] * La[o + k] + tm[k] - xt[o + k]
                    cur[k] = cur[k] + wt[o + k] * (diff * diff)
        for k in range(NL):
            win[k] = win[k] and active[k] and cur[k] < best[k]
            if win[k]:
                best[k] = cur[k]
                scale[k] = ts[k]
                vmin[k] = tm[k]
        for i in range(n):
            o = i * NL
            for k in range(NL):
                Lf[o + k] = La[o + k] if win[k] else Lf[o + k]
    for k in range(NL):
        if active[k]:
            scale_out[k] = scale[k]
        else:
            scale_out[k] = 0
        the_min_out[k] = -vmin[k]
    for i in range(n):
        o = i * NL
        for k in range(NL):
            Lt[o + k] = <uint8_t>Lf[o + k] if active[k] else 0


cdef void make_qx_lanes(int n, int nmax, const float* xt, const float* qwt, int8_t* Lt,
                        float* scale_out) noexcept nogil:
    # Lane-parallel make_qx_quants (rmse_type 1): weights qwt[i][lane], or x*x when qwt is NULL.
    cdef float amax[NL]
    cdef float vmax[NL]
    cdef float iscale[NL]
    cdef float sumlx[NL]
    cdef float suml2[NL]
    cdef float scale[NL]
    cdef float best[NL]
    cdef int active[NL]
    cdef int win[NL]
    cdef float w[32 * NL]
    cdef float wx[32 * NL]
    cdef float Lc[32 * NL]
    cdef float Lb[32 * NL]
    cdef int i, k, l, iss, o
    cdef float x, ax, fl, step
    cdef float fnmax = <float>nmax
    for k in range(NL):
        amax[k] = 0
        vmax[k] = 0
    for i in range(n):
        o = i * NL
        for k in range(NL):
            x = xt[o + k]
            ax = fabsf(x)
            if ax > amax[k]:
                amax[k] = ax
                vmax[k] = x
            w[o + k] = qwt[o + k] if qwt != NULL else x * x
            wx[o + k] = w[o + k] * x
    for k in range(NL):
        active[k] = not (amax[k] < <float>1e-15)
        iscale[k] = (<float>(-nmax)) / vmax[k]
        sumlx[k] = 0
        suml2[k] = 0
    for i in range(n):
        o = i * NL
        for k in range(NL):
            l = lane_nearest(iscale[k] * xt[o + k])
            l = -nmax if l < -nmax else l
            l = nmax - 1 if l > nmax - 1 else l
            fl = <float>l
            Lb[o + k] = fl
            sumlx[k] = sumlx[k] + wx[o + k] * fl
            suml2[k] = suml2[k] + w[o + k] * fl * fl
    for k in range(NL):
        scale[k] = sumlx[k] / suml2[k] if suml2[k] != 0 else <float>0.0
        best[k] = scale[k] * sumlx[k]
    for iss in range(-9, 10):
        if iss == 0:
            continue
        step = -(fnmax + <float>0.1 * iss)
        for k in range(NL):
            iscale[k] = step / vmax[k]
            sumlx[k] = 0
            suml2[k] = 0
        for i in range(n):
            o = i * NL
            for k in range(NL):
                l = lane_nearest(iscale[k] * xt[o + k])
                l = -nmax if l < -nmax else l
                l = nmax - 1 if l > nmax - 1 else l
                fl = <float>l
                Lc[o + k] = fl
                sumlx[k] = sumlx[k] + wx[o + k] * fl
                suml2[k] = suml2[k] + w[o + k] * fl * fl
        for k in range(NL):
            win[k] = suml2[k] > 0 and sumlx[k] * sumlx[k] > best[k] * suml2[k]
            if win[k]:
                scale[k] = sumlx[k] / suml2[k]
                best[k] = scale[k] * sumlx[k]
        for i in range(n):
            o = i * NL
            for k in range(NL):
                Lb[o + k] = Lc[o + k] if win[k] else Lb[o + k]
    for k in range(NL):
        scale_out[k] = scale[k] if active[k] else <float>0.0
    for i in range(n):
        o = i * NL
        for k in range(NL):
            Lt[o + k] = <int8_t>(<int>Lb[o + k] + nmax) if active[k] else 0


cdef inline void transpose_in(const float* src, int stride, int n, float* dst) noexcept nogil:
    # dst[i][k] = src[k * stride + i] for NL groups of n values, group k starting at k * stride
    cdef int i, k
    for k in range(NL):
        for i in range(n):
            dst[i * NL + k] = src[k * stride + i]
