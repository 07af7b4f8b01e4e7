# Scalar fitting helpers (kquants.md section 4): symmetric fit (make_qx), asymmetric scale+min fit
# (make_qkx2 / make_qkx3, one function) and the non-negative super-scale fit (make_qp). Same float32
# operation order as llama.cpp. The per-group fits mostly run lane-parallel (lanes.pxi, including
# the Q3_K reference fit make_q3); these serve the super-scale fits and leftover legacy blocks.


cdef float make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* qw) noexcept nogil:
    # Symmetric fit x ~ scale * (L - nmax), rmse_type = 1: weights qw, or x*x when qw is NULL.
    # n <= 32 at every call site.
    cdef float w[32]
    cdef float wx[32]
    cdef int8_t Lt[32]
    cdef float amax = 0, vmax = 0, ax
    cdef int i, l, iss
    for i in range(n):
        ax = fabsf(x[i])
        if ax > amax:
            amax = ax
            vmax = x[i]
    if amax < <float>1e-15:
        memset(L, 0, n)
        return 0
    for i in range(n):
        w[i] = qw[i] if qw != NULL else x[i] * x[i]
        wx[i] = w[i] * x[i]
    cdef float iscale = (<float>(-nmax)) / vmax
    cdef float sumlx = 0, suml2 = 0
    for i in range(n):
        l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])))
        L[i] = <int8_t>(l + nmax)
        sumlx += wx[i] * l
        suml2 += w[i] * l * l
    cdef float scale = sumlx / suml2 if suml2 != 0 else <float>0.0
    cdef float best = scale * sumlx
    for iss in range(-9, 10):
        if iss == 0:
            continue
        iscale = -((<float>nmax) + <float>0.1 * iss) / vmax
        sumlx = 0
        suml2 = 0
        for i in range(n):
            l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])))
            Lt[i] = <int8_t>(l + nmax)
            sumlx += wx[i] * l
            suml2 += w[i] * l * l
        if suml2 > 0 and sumlx * sumlx > best * suml2:
            memcpy(L, Lt, n)
            scale = sumlx / suml2
            best = scale * sumlx
    return scale


cdef float make_qkx_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                           float* the_min, float rmin, float rdelta, int nstep,
                           bint use_mad) noexcept nogil:
    # Asymmetric fit x ~ scale * L + min (min <= 0): llama.cpp's make_qkx2_quants, and also
    # make_qkx3_quants with weights (identical there). n <= 32.
    # Speed-up that keeps the bytes: a search step whose codes equal the previous step's codes
    # yields the same sums and error, which cannot beat the best already seen, so it is skipped.
    cdef uint8_t Laux[32]
    cdef float wl[32]
    cdef float vmin = x[0], vmax = x[0]
    cdef float sum_w = weights[0]
    cdef float sum_x = sum_w * x[0]
    cdef float w, diff, iscale, scale, best_error, sum_l, sum_l2, sum_xl, D
    cdef float this_scale, this_min, cur_error, rng
    cdef int i, l, iss
    cdef bint changed
    for i in range(1, n):
        if x[i] < vmin:
            vmin = x[i]
        if x[i] > vmax:
            vmax = x[i]
        w = weights[i]
        sum_w += w
        sum_x += w * x[i]
    if vmin > 0:
        vmin = 0
    if vmax == vmin:
        memset(L, 0, n)
        the_min[0] = -vmin
        return 0
    iscale = (<float>nmax) / (vmax - vmin)
    scale = <float>1.0 / iscale
    best_error = 0
    for i in range(n):
        l = nearest_int(iscale * (x[i] - vmin))
        L[i] = <uint8_t>imax(0, imin(nmax, l))
        diff = scale * L[i] + vmin - x[i]
        diff = fabsf(diff) if use_mad else diff * diff
        best_error += weights[i] * diff
    if nstep < 1:
        the_min[0] = -vmin
        return scale
    memset(Laux, 0, 32)
    for iss in range(nstep + 1):
        rng = vmax - vmin
        iscale = (rmin + rdelta * iss + nmax) / rng
        changed = iss == 0
        for i in range(n):
            l = imax(0, imin(nmax, nearest_int(iscale * (x[i] - vmin))))
            if Laux[i] != l:
                changed = True
            Laux[i] = <uint8_t>l
        if not changed:
            continue
        sum_l = 0
        sum_l2 = 0
        sum_xl = 0
        for i in range(n):
            w = weights[i]
            wl[i] = w * Laux[i]
            sum_l += wl[i]
            sum_l2 += wl[i] * Laux[i]
            sum_xl += wl[i] * x[i]
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > 0:
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > 0:
                this_min = 0
                this_scale = sum_xl / sum_l2
            cur_error = 0
            for i in range(n):
                diff = this_scale * Laux[i] + this_min - x[i]
                diff = fabsf(diff) if use_mad else diff * diff
                cur_error += weights[i] * diff
            if cur_error < best_error:
                memcpy(L, Laux, n)
                best_error = cur_error
                scale = this_scale
                vmin = this_min
    the_min[0] = -vmin
    return scale


cdef float make_qp_quants(int n, int nmax, const float* x, uint8_t* L,
                          const float* quant_weights) noexcept nogil:
    # Fit of non-negative values x ~ scale * L, L in [0, nmax], used for the K-quant super-scales
    # when an importance matrix is given. n <= 16. L is uint8 as in llama.cpp (a negative
    # nearest_int would wrap the same way there).
    cdef float vmax = 0
    cdef int i, iss, l, new_l, itry, n_changed
    cdef float w, diff, iscale_is, scale_is, mse, slx, sl2
    for i in range(n):
        vmax = vmax if vmax > x[i] else x[i]
    if vmax < <float>1e-15:
        memset(L, 0, n)
        return 0
    cdef float iscale = (<float>nmax) / vmax
    for i in range(n):
        L[i] = <uint8_t>nearest_int(iscale * x[i])
    cdef float scale = <float>1.0 / iscale
    cdef float best_mse = 0
    for i in range(n):
        diff = x[i] - scale * L[i]
        w = quant_weights[i]
        best_mse += w * diff * diff
    for iss in range(-4, 5):
        if iss == 0:
            continue
        iscale_is = (<float>0.1 * iss + nmax) / vmax
        scale_is = <float>1.0 / iscale_is
        mse = 0
        for i in range(n):
            l = imin(nmax, nearest_int(iscale_is * x[i]))
            diff = x[i] - scale_is * l
            w = quant_weights[i]
            mse += w * diff * diff
        if mse < best_mse:
            best_mse = mse
            iscale = iscale_is
    cdef float sumlx = 0, suml2 = 0
    for i in range(n):
        l = imin(nmax, nearest_int(iscale * x[i]))
        L[i] = <uint8_t>l
        w = quant_weights[i]
        sumlx += w * x[i] * l
        suml2 += w * l * l
    for itry in range(5):
        n_changed = 0
        for i in range(n):
            w = quant_weights[i]
            slx = sumlx - w * x[i] * L[i]
            sl2 = suml2 - w * L[i] * L[i]
            if slx > 0 and sl2 > 0:
                new_l = imin(nmax, nearest_int(x[i] * sl2 / slx))
                if new_l != L[i]:
                    slx = slx + w * x[i] * new_l
                    sl2 = sl2 + w * new_l * new_l
                    if slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = <uint8_t>new_l
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    return sumlx / suml2 if suml2 > 0 else <float>0.0
