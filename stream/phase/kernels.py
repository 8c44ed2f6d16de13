"""The phase integration kernels, compiled with numba when it is there.

Plain Python here; :func:`kernels` swaps in numba-compiled versions
(``cache=True``) the first time they are needed, so that importing the
package stays cheap, and runs them once on tiny inputs of the real argument
types, so that a live stream does not stall at its first frame.
"""

from __future__ import annotations

import math

import numpy as np

from ..jit import compiler

__all__ = ["kernels"]

_TWO_PI = 2.0 * np.pi
#: Islands of the integration found by a scan before the rest are sorted.
_SCANNED_ISLANDS = 16
#: Levels per octave of magnitude in the integration's queue: 2**LEVEL_BITS.
LEVEL_BITS = 9


def _strongest(state, key, n):
    """Index of the largest ``key[j]`` among ``j < n`` with ``state[j] == 0`` (-1: none)."""
    i = -1
    best = -1.0
    for j in range(n):
        if state[j] == 0 and key[j] > best:
            best = key[j]
            i = j
    return i


def _open(state, i, n, n_bins):
    """Whether coefficient ``i`` still has a neighbour waiting for a phase."""
    if i + n_bins < n and state[i + n_bins] == 0:
        return True
    if i >= n_bins and state[i - n_bins] == 0:
        return True
    b = i % n_bins
    if b + 1 < n_bins and state[i + 1] == 0:
        return True
    return b > 0 and state[i - 1] == 0


def _levels(key, state):
    """Each coefficient's level in the integration's queue (0: the strongest
    of those to integrate or seed), and the number of levels.

    A level is ``1/2**LEVEL_BITS`` of an octave of magnitude: the float32's
    exponent and its first ``LEVEL_BITS`` mantissa bits (the bits of a
    non-negative float order as the float does), so no logarithm is taken."""
    bits = key.astype(np.float32).view(np.int32)
    shift = 23 - LEVEL_BITS
    top, low = 0, 0x7FFFFFFF
    for i in range(key.shape[0]):
        if state[i] >= 0:
            v = max(bits[i], 0) >> shift
            top = max(top, v)
            low = min(low, v)
    level = np.empty(key.shape[0], np.int32)
    for i in range(key.shape[0]):
        level[i] = top - (max(bits[i], 0) >> shift)
    return level, max(top - low + 1, 1)


def _queue(head, nxt, level, j, cur):
    """Put ``j`` on the queue (first out of its level); the new lowest
    non-empty level."""
    q = level[j]
    nxt[j] = head[q]
    head[q] = j
    return min(q, cur)


def _settle(j, value, phase, state, head, nxt, level, cur, n, n_bins):
    """Give coefficient ``j`` its phase and queue it where it has a
    neighbour still waiting; the queue's new lowest level."""
    phase[j] = value
    state[j] = 1
    if _open(state, j, n, n_bins):
        return _queue(head, nxt, level, j, cur)
    return cur


def _integrate(key, tgrad, fgrad, phase, state, nxt, n_bins):
    """Integrate the phase over a (T, n_bins) grid, every array flat (row-major).

    ``key``: the magnitude; ``state``: 1 = phase known (a seed), 0 = to
    integrate, -1 = leave as it is; integrated coefficients end with state
    1.  ``nxt``: int64 scratch of T*n_bins.  Returns 0.

    The strongest coefficient waiting is taken next, as from a max-heap, but
    the magnitudes are ranked in levels of ``1/2**LEVEL_BITS`` octave (0.012
    dB), last in first out within a level: a bucket queue, O(1) a coefficient
    where a heap is O(log n).  A 4-ary heap was three quarters of the time;
    this is 2.5-3.8x faster (4 s clips: 400 x 201 coefficients 7.4 -> 2.2-2.9
    ms, 173 x 1025 16 -> 4.2-5.8 ms).  The order is the heap's but among
    coefficients within 0.012 dB of each other, which no magnitude tells
    apart; where such a choice turns a region's phase, the result moves as
    it would for any other such choice (ties, a heap's layout).  Measured
    against the heap on 90 grids (speech and music, 16-48 kHz, n_fft
    400-2048, 1.5-4 s): PGHI's spectral convergence the same on average
    (mean -0.014 dB, median 0; 79 within 0.05 dB, the rest -0.65 to +0.15),
    after 32 Griffin-Lim iterations too (mean -0.018 dB, median 0; three
    beyond 0.5 dB, -1.9 to +1.45, as Griffin-Lim's outcome moves with any
    change of its start).  Finer levels cost more empty levels (1/2048
    octave: 1.7x the time) and coarser ones drift (1/32: 0.8 dB worse).
    """
    n = key.shape[0]
    level, n_levels = _levels(key, state)
    head = np.full(n_levels, -1, np.int64)
    cur = n_levels                              # the lowest non-empty level
    for i in range(n):
        if state[i] == 1 and _open(state, i, n, n_bins):
            cur = _queue(head, nxt, level, i, cur)
    order = np.empty(0, np.int64)
    ptr = 0
    islands = 0
    while True:
        if cur == n_levels:
            # A new island: its strongest coefficient starts at phase 0.  A
            # scan costs n: scan for the first islands, which are all most
            # grids have; past them sort the coefficients still waiting
            # (after the first islands, a few: sorting the whole grid took
            # 10 ms for 350 frames of 513 bins).  The same choice either
            # way: the largest key, ties to the lowest index.
            islands += 1
            if n <= 8192 or islands <= _SCANNED_ISLANDS:
                i = _strongest(state, key, n)
            else:
                if order.shape[0] == 0:
                    order = np.flatnonzero(state == 0)
                    order = order[np.argsort(-key[order], kind="mergesort")]
                while ptr < order.shape[0] and state[order[ptr]] != 0:
                    ptr += 1
                i = order[ptr] if ptr < order.shape[0] else -1
            if i < 0:
                return 0
            cur = _settle(i, 0.0, phase, state, head, nxt, level, cur, n, n_bins)
        while cur < n_levels:
            i = head[cur]
            if i < 0:
                cur += 1
                continue
            head[cur] = nxt[i]
            b = i % n_bins
            j = i + n_bins                      # next frame, same bin
            if j < n and state[j] == 0:
                cur = _settle(j, phase[i] + 0.5 * (tgrad[i] + tgrad[j]), phase, state, head,
                              nxt, level, cur, n, n_bins)
            j = i - n_bins                      # previous frame
            if j >= 0 and state[j] == 0:
                cur = _settle(j, phase[i] - 0.5 * (tgrad[i] + tgrad[j]), phase, state, head,
                              nxt, level, cur, n, n_bins)
            j = i + 1                           # next bin
            if b + 1 < n_bins and state[j] == 0:
                cur = _settle(j, phase[i] + 0.5 * (fgrad[i] + fgrad[j]), phase, state, head,
                              nxt, level, cur, n, n_bins)
            j = i - 1                           # previous bin
            if b > 0 and state[j] == 0:
                cur = _settle(j, phase[i] - 0.5 * (fgrad[i] + fgrad[j]), phase, state, head,
                              nxt, level, cur, n, n_bins)


_HALF_PI = 0.5 * np.pi
_INV_HALF_PI = 2.0 / np.pi


def _cis(q):
    """``(cos q, sin q)`` for ``|q| <= 2 pi``: Taylor polynomials on
    ``[-pi/4, pi/4]`` (error < 3e-14) after a quadrant reduction, with no
    branch: libm's sin and cos cost several times more, and were half of a
    frame's time."""
    j = math.floor(q * _INV_HALF_PI + 0.5)
    r = q - j * _HALF_PI
    r2 = r * r
    s = r * (1.0 + r2 * (-1.0 / 6 + r2 * (1.0 / 120 + r2 * (-1.0 / 5040 + r2 * (
        1.0 / 362880 + r2 * (-1.0 / 39916800 + r2 * (1.0 / 6227020800)))))))
    c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24 + r2 * (-1.0 / 720 + r2 * (1.0 / 40320 + r2 * (
        -1.0 / 3628800 + r2 * (1.0 / 479001600 + r2 * (-1.0 / 87178291200)))))))
    quad = int(j) & 3
    sin_sign = 1.0 - 2.0 * ((quad >> 1) & 1)
    cos_sign = 1.0 - 2.0 * (((quad + 1) >> 1) & 1)
    if quad & 1:
        return cos_sign * s, sin_sign * c
    return cos_sign * c, sin_sign * s


def _integrate_frame(pkey, pphase, ptg, key, tg, fg, ph, st, arrive, src):
    """One frame of RTPGHI: heap integration (:func:`_integrate`, with exact
    magnitudes) on two rows, the previous one known, in a few linear passes
    instead of a heap.

    The heap pops coefficients in non-increasing order of the level at
    which they are reached (the "widest path" from a seed: the smallest
    magnitude on the way), and each coefficient takes its phase from the
    first neighbour popped: in one frame that neighbour is the one whose
    path is widest.  A frame is a line of bins, so the widest path from the
    left is one pass, from the right another: no heap, no sort, and the same
    phases as the heap (exact ties apart).  The three sources of a bin:
    its left or right neighbour (``fg``, trapezoidal rule), or the same bin
    of the previous frame (``pphase``, ``ptg``), where ``pkey[m] >= 0``
    (the previous magnitude; -1 where it is below tolerance).  ``st``
    (current frame): 1 known, 0 to integrate, -1 left as it is.  A run of
    bins no path reaches is an island: its strongest bin starts at phase 0.
    ``arrive`` (float) and ``src`` (int8) are scratch of the frame's size.
    """
    B = key.shape[0]
    none = -1.0
    known = 1e300
    # Left to right: arrive[j] = the level of the widest path to j from its left.
    left = none
    for j in range(B):
        arrive[j] = left
        if st[j] == -1:
            left = none
        else:
            a = known if st[j] == 1 else max(pkey[j], left)
            left = min(key[j], a) if a > none else none
    # Right to left: compare the three levels; ties go to the previous frame,
    # then to the left (so that no two bins take their phase from each other).
    right = none
    for j in range(B - 1, -1, -1):
        if st[j] == 0:
            d, lv = pkey[j], arrive[j]
            if d > none and d >= lv and d >= right:
                src[j] = 3
            elif lv > none and lv >= right:
                src[j] = 1
            elif right > none:
                src[j] = 2
            else:
                src[j] = 0
        else:
            src[j] = -1
        if st[j] == -1:
            right = none
        else:
            a = known if st[j] == 1 else max(pkey[j], right)
            right = min(key[j], a) if a > none else none
    # Islands: each run of unreached bins starts at its strongest (the first
    # of equals, as the heap's scan finds it) and spreads both ways.
    j = 0
    while j < B:
        if src[j] != 0:
            j += 1
            continue
        k, best = j, j
        while k < B and src[k] == 0:
            if key[k] > key[best]:
                best = k
            k += 1
        for m in range(j, k):
            src[m] = 1 if m > best else 2
        src[best] = 4
        ph[best] = 0.0
        j = k
    for j in range(B):
        s = src[j]
        if s == 3:
            ph[j] = pphase[j] + 0.5 * (ptg[j] + tg[j])
    for j in range(1, B):
        if src[j] == 1:
            ph[j] = ph[j - 1] + 0.5 * (fg[j - 1] + fg[j])
    for j in range(B - 2, -1, -1):
        if src[j] == 2:
            ph[j] = ph[j + 1] - 0.5 * (fg[j + 1] + fg[j])
    return 0


def _log_row(a, s):
    """``s = ln a`` for a frame's magnitudes, floored 200 dB under the
    frame's maximum (and at 1e-300), as :func:`stream.phase.gradients._log_mag`."""
    peak = 0.0
    for m in range(a.shape[0]):
        peak = max(peak, float(a[m]))
    floor = max(peak * 1e-10, 1e-300)
    for m in range(a.shape[0]):
        s[m] = math.log(max(float(a[m]), floor))


def _time_gradient_row(s, k_t, adv, odd, tg):
    """A frame's dphi/dn from the frequency difference of its log-magnitude
    ``s`` (centred; at the edges the real signal's mirror: 0 at DC, and at
    the last bin 0 unless ``odd`` n_fft, whose last bin mirrors itself)."""
    B = s.shape[0]
    for m in range(B):
        if m == 0:
            d = 0.0
        elif m == B - 1:
            d = 0.5 * (s[m] - s[m - 1]) if odd else 0.0
        else:
            d = 0.5 * (s[m + 1] - s[m - 1])
        tg[m] = k_t * d + adv[m]


def _prepare_rows(A, S, r0, r1):
    """Rows ``r0 <= r < r1`` of the buffer as they came in: ``A`` made
    magnitudes (abs, NaN/Inf -> 0) and ``S`` their log (:func:`_log_row`)."""
    B = A.shape[1]
    for r in range(r0, r1):
        for m in range(B):
            a = abs(A[r, m])
            if not (a <= 1e300):          # NaN and Inf
                a = 0.0
            A[r, m] = a
        _log_row(A[r], S[r])


def _rt_run(S, A, KN, KP, R, n0, r_new, i0, i1, lookahead, odd, tol, k_t, k_f, adv, shift,
            prev_phase, prev_tg, prev_ok, out):
    """RTPGHI over rows ``i0 <= i < i1`` of a buffer of frames.

    ``A``/``S``: (K, B) magnitude and log-magnitude of frames ``n0 .. n0+K-1``
    (history rows before ``i0``, lookahead rows after ``i1`` when present);
    rows from ``r_new`` on are new and prepared here (:func:`_prepare_rows`).
    ``KN`` (int8) / ``KP``: where the phase is known and its value
    (window-centre convention); ``R``: random phases for coefficients below
    tolerance.  ``prev_phase``/``prev_tg`` hold the frame before ``i0`` and
    are updated in place (``prev_ok[0]`` says whether there is one).
    ``out``: (i1 - i0, B) complex frames, written: ``A * exp(i (phase + shift))``
    (``shift``: :func:`centre_shift`).  ``odd``: n_fft is odd (the last
    bin's mirror is itself, not its left neighbour).
    """
    K, B = S.shape
    _prepare_rows(A, S, r_new, K)
    tg = np.empty(B)
    fg = np.empty(B)
    ph = np.empty(B)
    st = np.empty(B, np.int8)
    pkey = np.empty(B)
    arrive = np.empty(B)
    src = np.empty(B, np.int8)
    for i in range(i0, i1):
        n = n0 + i
        _time_gradient_row(S[i], k_t, adv, odd, tg)
        # dphi/dm from the time difference.
        has_next = i + 1 < K
        has_prev = n >= 1 and i >= 1
        for m in range(B):
            if lookahead >= 1:
                if has_next and has_prev:
                    d = 0.5 * (S[i + 1, m] - S[i - 1, m])
                elif has_next:
                    d = S[i + 1, m] - S[i, m]
                elif has_prev:
                    d = S[i, m] - S[i - 1, m]
                else:
                    d = 0.0
            else:
                if n >= 2 and i >= 2:
                    d = 0.5 * (3.0 * S[i, m] - 4.0 * S[i - 1, m] + S[i - 2, m])
                elif has_prev:
                    d = S[i, m] - S[i - 1, m]
                else:
                    d = 0.0
            fg[m] = -k_f * d
        # The tolerance: relative to the largest magnitude in the frames at hand.
        peak = 0.0
        back = prev_ok[0] and i >= 1
        lo = i - 1 if back else i
        hi = min(i + lookahead, K - 1)
        for r in range(lo, hi + 1):
            for m in range(B):
                if A[r, m] > peak:
                    peak = A[r, m]
        thr = tol * peak
        for m in range(B):
            a = A[i, m]
            if KN[i, m]:
                st[m] = 1
                ph[m] = KP[i, m]
            elif a > thr:
                st[m] = 0
                ph[m] = 0.0
            else:
                st[m] = -1
                ph[m] = R[i, m]
            pkey[m] = A[i - 1, m] if back and A[i - 1, m] > thr else -1.0
        _integrate_frame(pkey, prev_phase, prev_tg, A[i], tg, fg, ph, st, arrive, src)
        row = out[i - i0]
        for m in range(B):
            p = ph[m]
            p = p - _TWO_PI * math.floor(p / _TWO_PI + 0.5)   # keep it small
            c, s = _cis(p + shift[m])
            row[m] = complex(A[i, m] * c, A[i, m] * s)
            prev_phase[m] = p
            prev_tg[m] = tg[m]
        prev_ok[0] = True
    return i1 - i0


def _gla_step(m, y, prev, momentum, out, c):
    """One Griffin-Lim projection, flat arrays: ``out = m * y / |y|`` (``m``
    where ``y == 0``) and the next input ``c = out + momentum * (out - prev)``."""
    for i in range(m.shape[0]):
        yr = y[i].real
        yi = y[i].imag
        a = math.sqrt(yr * yr + yi * yi)
        if a > 0:
            g = m[i] / a
            o = complex(yr * g, yi * g)
        else:
            o = complex(m[i], 0.0)
        out[i] = o
        c[i] = o + momentum * (o - prev[i])
    return 0


def _gla_step_numpy(m, y, prev, momentum, out, c):
    """:func:`_gla_step` in numpy, for when there is no numba."""
    ay = np.abs(y)
    out[:] = m * np.where(ay > 0, y / np.where(ay > 0, ay, 1), 1)
    c[:] = out + np.complex64(momentum) * (out - prev)
    return 0


def _gla_part(execute, forward, inverse, fwd_in, fwd_out, inv_in, inv_out, cur, acc, mag,
              prev, out, window, synth, fwd_factor, inv_factor, momentum, a, b, hop, held,
              last):
    """One fast Griffin-Lim iteration over frames ``a .. b`` of every channel,
    with no Python between the transforms: each batch of the plans' rows is
    cut from the signal ``cur`` (times ``window``), transformed
    (``execute(forward)``; times ``fwd_factor`` unless it is empty),
    projected onto the magnitudes ``mag`` by :func:`_gla_step` (into
    ``out``; the next input, times ``inv_factor``, into the inverse plan's
    input), the first ``held.shape[1]`` frames held at ``held``; and,
    unless ``last``, transformed back and overlap-added into ``acc`` times
    ``synth``.  Arrays as :class:`~stream.phase.offline._Consistent` holds
    them: ``(channels, frames, bins)``, signals ``(channels, samples)``."""
    rows, n = fwd_in.shape
    nb = fwd_out.shape[1]
    k_held = held.shape[1]
    cut, added = fwd_in.reshape(1, rows, n), inv_out.reshape(1, rows, n)
    for q in range(mag.shape[0]):
        sig, dst = cur[q:q + 1], acc[q:q + 1]
        for i in range(a, b, rows):
            k = min(rows, b - i)
            _hop_rows(cut, window, sig, i, k, hop, False)
            execute(forward)
            for f in range(k):
                t = i + f
                y, nxt = fwd_out[f], inv_in[f]
                if fwd_factor.shape[0]:
                    for j in range(nb):
                        y[j] *= fwd_factor[j]
                if t < k_held:
                    for j in range(nb):
                        o = held[q, t, j]
                        out[q, t, j] = o
                        nxt[j] = o + momentum * (o - prev[q, t, j])
                else:
                    _gla_step(mag[q, t], y, prev[q, t], momentum, out[q, t], nxt)
                if inv_factor.shape[0]:
                    for j in range(nb):
                        nxt[j] *= inv_factor[j]
            if not last:
                execute(inverse)
                _hop_rows(added, synth, dst, i, k, hop, True)
    return 0


def _gla_run(execute, pause, forward, inverse, fwd_in, fwd_out, inv_in, inv_out, p, a, b,
             lo, hi, flags, sigs, accs, pair, mag, window, synth, gain, fwd_factor,
             inv_factor, momentum, hop, held, iterations):
    """Fast Griffin-Lim's ``iterations``, part ``p`` of ``flags.shape[0]``
    (frames ``a .. b``), each part on a thread of its own, all in one call.

    ``sigs`` ``(2, channels, samples)``: the signal, ``sigs[0]`` the start's;
    ``accs`` ``(parts, channels, samples)``: each part's overlap-add, over
    ``lo[p] .. hi[p]`` (unused with one part, which adds into the signal
    itself); ``pair`` ``(2, channels, frames, bins)``: the
    previous projection and the next (``pair[0]`` the start's frames).  An
    iteration: :func:`_gla_part` of the part into ``accs[p]``; all parts
    wait for each other (:func:`_wait_all`); each part sums the
    overlap-adds over its own samples (``lo[p] .. lo[p+1]``) into the next
    signal, times ``gain``; they wait again.  Returns the index into
    ``pair`` of the last projection."""
    n_parts = flags.shape[0]
    end = sigs.shape[2] if p == n_parts - 1 else lo[p + 1]
    k = 0
    for it in range(iterations):
        last = it == iterations - 1
        cur, nxt = sigs[it % 2], sigs[1 - it % 2]
        acc = nxt if n_parts == 1 else accs[p]      # alone, a part adds into the signal
        if not last:
            acc[:, lo[p]:hi[p]] = 0.0
        _gla_part(execute, forward, inverse, fwd_in, fwd_out, inv_in, inv_out, cur, acc, mag,
                  pair[it % 2], pair[1 - it % 2], window, synth, fwd_factor, inv_factor,
                  momentum, a, b, hop, held, last)
        if last:
            break
        if n_parts == 1:
            for q in range(nxt.shape[0]):
                dst = nxt[q]
                for s in range(gain.shape[0]):
                    dst[s] *= gain[s]
            continue
        k += 1
        _wait_all(pause, flags, p, k)
        for q in range(nxt.shape[0]):       # the overlap-adds where this part's samples are
            dst = nxt[q]
            for s in range(lo[p], end):
                dst[s] = accs[p, q, s]
            for r in range(n_parts):
                s0, s1 = max(lo[r], lo[p]), min(hi[r], end)
                if r != p and s0 < s1:
                    src = accs[r, q]
                    for s in range(s0, s1):
                        dst[s] += src[s]
            for s in range(lo[p], min(end, gain.shape[0])):
                dst[s] *= gain[s]
        k += 1
        _wait_all(pause, flags, p, k)
    return iterations % 2


def _wait_all(pause, flags, p, k):
    """A barrier of the parts: part ``p`` says it has reached step ``k``
    (``flags[p] = k``) and waits till every part has.  Each part writes its
    own flag only, and a flag only grows; ``pause()`` (sched_yield, opaque
    to the compiler) comes before the flag is set, so that what the part
    wrote is in memory first, and between reads, so that each reads it
    anew."""
    pause()
    flags[p] = k
    for q in range(flags.shape[0]):
        while flags[q] < k:
            pause()
    return 0


def _hop_rows(rows, window, sig, first, k, hop, add):
    """Frames of a signal and back, the first ``k`` rows of ``rows``
    ``(channels, batch, n)`` against ``sig`` ``(channels, samples)`` (a whole
    number of hops long), row ``f`` at sample ``(first + f) * hop``:
    ``add``: overlap-add each row times ``window`` into ``sig``; else cut each
    row out of ``sig``, times ``window``."""
    n = rows.shape[2]
    for c in range(rows.shape[0]):
        for f in range(k):
            # Rows as views: the loops index from 0, so numba emits no
            # negative-index check and they vectorise (6x faster).
            base = (first + f) * hop
            seg = sig[c, base:base + n]
            row = rows[c, f]
            if add:
                for j in range(n):
                    seg[j] += row[j] * window[j]
            else:
                for j in range(n):
                    row[j] = seg[j] * window[j]
    return 0


def _hop_rows_numpy(rows, window, sig, first, k, hop, add):
    """:func:`_hop_rows` in numpy (overlap-add one hop of every row at a time)."""
    n = rows.shape[2]
    if not add:
        seg = np.lib.stride_tricks.sliding_window_view(sig, n, axis=1)[:, first * hop::hop]
        np.multiply(seg[:, :k], window, out=rows[:, :k])
        return 0
    hops = sig.reshape(sig.shape[0], -1, hop)           # a view: sig holds whole hops
    for q in range(-(-n // hop)):
        a, b = q * hop, min((q + 1) * hop, n)
        hops[:, first + q:first + q + k, :b - a] += rows[:, :k, a:b] * window[a:b]
    return 0


def _gradients(a, k_t, k_f, adv, odd, tg, fg):
    """PGHI's phase gradients of magnitudes ``a`` (T, B), as
    :func:`stream.phase.gradients.phase_gradients` computes them (the same
    operations: the logs and dphi/dn a frame at a time as RTPGHI's, then the
    time differences) into the float64 ``tg`` and ``fg``."""
    t, b = a.shape
    s = np.empty((t, b))
    for r in range(t):
        _log_row(a[r], s[r])
        _time_gradient_row(s[r], k_t, adv, odd, tg[r])
    for r in range(t):
        for m in range(b):
            if t < 2:
                d = 0.0
            elif r == 0:
                d = s[1, m] - s[0, m]
            elif r == t - 1:
                d = s[r, m] - s[r - 1, m]
            else:
                d = (s[r + 1, m] - s[r - 1, m]) / 2
            fg[r, m] = -k_f * d
    return 0


def _polar(a, phase, shift, out):
    """``out = a * exp(i (phase + shift))``, flat arrays, ``shift`` per bin
    (its length is the row's): :func:`_cis` on the phase wrapped to +-pi."""
    b = shift.shape[0]
    for i in range(a.shape[0]):
        p = phase[i]
        p = p - _TWO_PI * math.floor(p / _TWO_PI + 0.5)
        c, s = _cis(p + shift[i % b])
        out[i] = complex(a[i] * c, a[i] * s)
    return 0


def _polar_numpy(a, phase, shift, out):
    """:func:`_polar` in numpy."""
    b = shift.shape[0]
    out[:] = a * np.exp(1j * (phase.reshape(-1, b) + shift)).reshape(-1)
    return 0


_KERNELS = None


def kernels():
    """``(integrate, rt_run, gla_step, hop_rows, polar, gla_run, gradients)``,
    numba-compiled (and cached on disk) when numba is there; without it
    ``gla_run`` and ``gradients`` are None (plain Python would be slower than
    numpy's steps)."""
    global _KERNELS
    if _KERNELS is not None:
        return _KERNELS
    jit = compiler()
    if jit is None:
        _KERNELS = (_integrate, _rt_run, _gla_step_numpy, _hop_rows_numpy, _polar_numpy,
                    None, None)
        return _KERNELS
    # Module globals are what compiled code calls: bind the compiled versions.
    names = globals()
    inline = compiler(inline=True)
    for name in ("_open", "_queue", "_settle", "_cis"):   # hot loops' helpers, called per cell
        names[name] = inline(names[name])
    for name in ("_strongest", "_levels", "_integrate", "_integrate_frame", "_log_row",
                 "_time_gradient_row", "_prepare_rows", "_rt_run", "_gla_step", "_hop_rows",
                 "_polar", "_gla_part", "_wait_all", "_gla_run", "_gradients"):
        names[name] = jit(names[name])
    _KERNELS = tuple(names[k] for k in ("_integrate", "_rt_run", "_gla_step", "_hop_rows",
                                         "_polar", "_gla_run", "_gradients"))
    _warm_up(*_KERNELS[:2])
    z = np.zeros(2, np.complex64)
    _gla_step(np.ones(2, np.float32), z, z.copy(), 0.99, z.copy(), z.copy())
    # Griffin-Lim's consistency step: float32 plan buffers (channels, batch, n).
    rows, sig, w = np.zeros((1, 2, 4), np.float32), np.zeros((1, 8), np.float32), \
        np.zeros(4, np.float32)
    _hop_rows(rows, w, sig, 0, 2, 2, True)
    _hop_rows(rows, w, sig, 0, 2, 2, False)
    _polar(np.ones(4), np.zeros(4), np.zeros(2), np.empty(4, np.complex64))
    for a in (np.ones((2, 3), np.float32), np.ones((2, 3))):     # pghi's magnitudes
        _gradients(a, 1.0, 1.0, np.zeros(3), False, np.empty((2, 3)), np.empty((2, 3)))
    return _KERNELS


def _warm_up(integrate, rt_run):
    # Compile (or load from the disk cache) now, with the argument types the
    # real calls use (RTPGHI._process and pghi): float64 rows, int8 states,
    # complex64 output, C-contiguous.
    k, b = 3, 5
    z = np.zeros((k, b))
    rt_run(z, z.copy(), np.zeros((k, b), np.int8), z.copy(), z.copy(), 0, 0, 0, 2, 1, False,
           1e-5, 1.0, 1.0, np.zeros(b), np.zeros(b), np.zeros(b), np.zeros(b),
           np.zeros(1, np.bool_), np.empty((2, b), np.complex64))
    a = np.ones(k * b)
    integrate(a, np.zeros(k * b), np.zeros(k * b), np.zeros(k * b),
              np.zeros(k * b, np.int8), np.empty(k * b, np.int64), b)
