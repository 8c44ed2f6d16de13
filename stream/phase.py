"""Phase from magnitude: streaming RTPGHI, offline PGHI and fast Griffin-Lim.

Written from the papers' formulas (Prusa & Sondergaard, "Real-Time Spectrogram
Inversion Using Phase Gradient Heap Integration", DAFx-16; Prusa, Balazs &
Sondergaard, "A Noniterative Method for Reconstruction of Phase from STFT
Magnitude", IEEE/ACM TASLP 25(5), 2017; Perraudin, Balazs & Sondergaard, "A
fast Griffin-Lim algorithm", WASPAA 2013).  No code of the reference
implementations is used.

Phase-gradient relations
------------------------
For a Gaussian window ``exp(-pi l**2 / gamma)`` (``l`` in samples) and the STFT
whose phase refers to the window's centre, with ``s = ln|X|``, hop ``a``,
``M = n_fft`` and bin ``m``::

    dphi/dn (m, n) =  (a M / gamma) * ds/dm + 2 pi a m / M     (radians per frame)
    dphi/dm (m, n) = -(gamma / (a M)) * ds/dn                   (radians per bin)

with the derivatives of ``s`` taken as differences: centred in frequency,
centred in time with one frame of lookahead, or the second-order backward
difference ``(3 s[n] - 4 s[n-1] + s[n-2]) / 2`` without lookahead.  Other
windows use ``gamma = C * win_length**2`` (:data:`GAMMA_CONSTANTS`); for a
custom window ``gamma`` is estimated by a least-squares fit of a unit-height
Gaussian to the peak-normalised window (that fit reproduces the published
constants to 0.2 %; :func:`window_gamma` says when it estimated).

The phase is then integrated from the strongest coefficient outwards (a max
heap, trapezoidal rule to each neighbour); coefficients below ``tol`` times
the maximum get a random phase; each new island starts at phase 0; where some
phases are known (``known`` masks), integration starts from them.

Phase convention
----------------
The relations hold for the phase referenced to the window centre ``c`` (a
sample position inside the frame, fractional for odd lengths of DFT-even
windows).  A spec frame referenced to sample ``r`` of the frame
(``spec.phase_reference``: 0 for 'frame-start') is::

    X_spec[m] = X_centre[m] * exp(-2j pi m (c - r) / n_fft)

which is ``(-1)**m`` for 'frame-start' when ``c = n_fft / 2`` -- also for odd
``n_fft`` with a DFT-even window, whose centre is the half-integer
``n_fft / 2``, not ``n_fft // 2``.  :func:`centre_shift` returns the factor;
every function here takes and returns frames in the spec's convention.

Speed
-----
The heap integration is compiled with numba (``pip install specstream[fast]``)
on first use -- the first :class:`RTPGHI` or :func:`pghi` call, never at a
live stream's first frame -- and cached on disk (``cache=True``): a few
seconds once per installation, about 0.5 s to load afterwards.  Importing
this module does not import numba.  Without numba (or with
``SPECSTREAM_NO_NUMBA=1``) the same code runs as plain Python, about 50x
slower.  RTPGHI at 48 kHz, n_fft 1024, hop 256 runs at about 80x real time
on one core, frame by frame (``tools/bench_phase.py``).

Memory: :class:`RTPGHI` keeps a few frames.  :func:`pghi`, :func:`fgla` and
the offline methods of :func:`reconstruct_phase` hold the whole magnitude
and its complex frames in RAM (plus the signal, for Griffin-Lim).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings

import numpy as np

from .engine import as_block
from .spec import SpecError, STFTSpec

__all__ = [
    "GAMMA_CONSTANTS", "METHODS", "RTPGHI", "window_gamma", "window_centre",
    "centre_shift", "phase_gradients", "pghi", "fgla", "reconstruct_phase", "longest_length",
    "spectral_convergence", "rebuild_source",
]

#: gamma / win_length**2 of the PGHI relations for the named windows.
GAMMA_CONSTANTS = {
    "hann": 0.25645, "hamming": 0.29794, "blackman": 0.17954,
    "sine": 0.41532, "sqrt-hann": 0.41532, "bartlett": 0.27561,
}
#: Phase methods of :func:`reconstruct_phase` (and ``--phase-method``).
METHODS = ("rtpghi", "pghi", "griffinlim", "zeros", "random")

_TWO_PI = 2.0 * np.pi


# ------------------------------------------------------------------ window
def window_gamma(spec: STFTSpec, estimate_ok: bool = True) -> tuple[float, str]:
    """``(gamma, how)``: the Gaussian parameter (samples**2) the window stands for.

    ``how`` is 'table' for a window of :data:`GAMMA_CONSTANTS`, 'gaussian' when
    the window values are a sampled Gaussian (gamma fitted exactly), 'estimated'
    for any other window (least-squares Gaussian fit; the rectangular window
    fits badly and PGHI is a poor choice for it).
    """
    name = spec.window_name
    w = spec.window_values
    if name in GAMMA_CONSTANTS:
        return GAMMA_CONSTANTS[name] * spec.win_length ** 2, "table"
    centre = _window_centre_in_window(spec)
    t = np.arange(len(w)) - centre
    peak = float(np.abs(w).max())
    if peak <= 0:
        raise SpecError("the window is all zeros")
    g = w / peak
    # A sampled Gaussian: ln g = -pi t^2 / gamma exactly.
    inside = g > 1e-12
    if inside.sum() >= 3 and np.all(g[inside] <= 1 + 1e-12):
        tt = t[inside] ** 2
        if tt.max() > 0:
            gam = -np.pi * (tt @ tt) / (tt @ np.log(g[inside]))
            if gam > 0 and np.allclose(np.exp(-np.pi * t ** 2 / gam), g, rtol=1e-6, atol=1e-9):
                return float(gam), "gaussian"
    if not estimate_ok:
        raise SpecError(f"no PGHI constant for window {name!r}")
    n = len(w)
    far = np.arange(1, 8 * n + 1, dtype=np.float64)
    tails = np.concatenate([t[0] - far, t[-1] + far])

    def err(lam):
        return (np.sum((g - np.exp(-np.pi * t ** 2 / lam)) ** 2)
                + np.sum(np.exp(-2 * np.pi * tails ** 2 / lam)))

    lo, hi = 0.01 * n * n, 2.0 * n * n   # golden-section search after a coarse grid
    grid = np.geomspace(lo, hi, 60)
    k = int(np.argmin([err(v) for v in grid]))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    phi = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        c1, c2 = b - phi * (b - a), a + phi * (b - a)
        if err(c1) < err(c2):
            b = c2
        else:
            a = c1
    return float((a + b) / 2), "estimated"


def _window_centre_in_window(spec: STFTSpec) -> float:
    name, n = spec.window_name, spec.win_length
    if name in ("hann", "hamming", "blackman", "bartlett", "sqrt-hann"):
        return n / 2.0            # DFT-even: symmetric about n/2 (w[0] is the extra point)
    if name in ("sine", "rectangular"):
        return (n - 1) / 2.0
    w2 = spec.window_values ** 2  # custom: centre of the window's energy
    return float(np.arange(n) @ w2 / w2.sum())


def window_centre(spec: STFTSpec) -> float:
    """Position of the window's centre inside the ``n_fft`` frame (may be fractional)."""
    return spec.window_offset + _window_centre_in_window(spec)


def centre_shift(spec: STFTSpec) -> np.ndarray:
    """Per-bin phase (radians) to add to a window-centre phase to get the spec's phase:
    ``-2 pi m (c - r) / n_fft`` (``pi * m`` modulo 2 pi for frame-start, ``c = n_fft/2``)."""
    m = np.arange(spec.n_bins)
    d = window_centre(spec) - spec.phase_reference
    return np.remainder(-_TWO_PI * m * d / spec.n_fft + np.pi, _TWO_PI) - np.pi


# --------------------------------------------------------------- gradients
def _log_mag(mag: np.ndarray) -> np.ndarray:
    """ln|X| per frame, floored 200 dB under each frame's maximum (and at 1e-300)."""
    mag = np.asarray(mag, dtype=np.float64)
    peak = mag.max(axis=-1, keepdims=True) if mag.size else np.zeros(mag.shape[:-1] + (1,))
    return np.log(np.maximum(mag, np.maximum(peak * 1e-10, 1e-300)))


def _freq_diff(s: np.ndarray, n_fft: int) -> np.ndarray:
    """ds/dm (centred difference over bins) with the real signal's mirror at the edges."""
    d = np.empty_like(s)
    d[..., 1:-1] = (s[..., 2:] - s[..., :-2]) / 2
    d[..., 0] = 0.0                                  # |X[-1]| = |X[1]|
    if n_fft % 2 == 0:
        d[..., -1] = 0.0                             # |X[M/2+1]| = |X[M/2-1]|
    else:
        d[..., -1] = (s[..., -1] - s[..., -2]) / 2   # |X[(M+1)/2]| = |X[(M-1)/2]|
    return d


def _gradient_consts(spec: STFTSpec, gamma: float | None = None):
    if gamma is None:
        gamma, _ = window_gamma(spec)
    a, m_ = spec.hop_length, spec.n_fft
    k_t = a * m_ / gamma
    k_f = gamma / (a * m_)
    adv = _TWO_PI * a * np.arange(spec.n_bins) / m_
    return k_t, k_f, adv


def phase_gradients(mag, spec: STFTSpec, gamma: float | None = None):
    """``(dphi/dn, dphi/dm)`` in radians per frame and per bin, window-centre phase,
    from linear magnitudes ``(n_frames, bins)`` (centred differences in time,
    one-sided at the ends)."""
    s = _log_mag(mag)
    k_t, k_f, adv = _gradient_consts(spec, gamma)
    tgrad = k_t * _freq_diff(s, spec.n_fft) + adv
    ds = np.zeros_like(s)
    n = s.shape[-2]
    if n >= 3:
        ds[..., 1:-1, :] = (s[..., 2:, :] - s[..., :-2, :]) / 2
    if n >= 2:
        ds[..., 0, :] = s[..., 1, :] - s[..., 0, :]
        ds[..., -1, :] = s[..., -1, :] - s[..., -2, :]
    return tgrad, -k_f * ds


# ------------------------------------------------------- heap integration
# Plain Python here; _kernels() swaps in numba-compiled versions (cache=True)
# the first time they are needed, so that importing this module stays cheap.

def _heap_push(heap, hkey, size, idx, v):
    """Push ``idx`` with priority ``v`` on a binary max-heap (keys kept inline)."""
    i = size
    while i > 0:
        p = (i - 1) >> 1
        if hkey[p] >= v:
            break
        heap[i] = heap[p]
        hkey[i] = hkey[p]
        i = p
    heap[i] = idx
    hkey[i] = v
    return size + 1


def _heap_pop(heap, hkey, size):
    """Pop the index of the largest priority; returns ``(index, new size)``."""
    top = heap[0]
    size -= 1
    if size > 0:
        last = heap[size]
        v = hkey[size]
        i = 0
        while True:
            c = 2 * i + 1
            if c >= size:
                break
            kc = hkey[c]
            if c + 1 < size:
                k2 = hkey[c + 1]
                if k2 > kc:
                    c += 1
                    kc = k2
            if kc <= v:
                break
            heap[i] = heap[c]
            hkey[i] = kc
            i = c
        heap[i] = last
        hkey[i] = v
    return top, size


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


def _integrate(key, tgrad, fgrad, phase, state, heap, n_bins):
    """Integrate the phase over a (T, n_bins) grid, every array flat (row-major).

    ``key``: the heap's priority (magnitude); ``state``: 1 = phase known (a
    seed), 0 = to integrate, -1 = leave as it is; integrated coefficients end
    with state 1.  ``heap``: int64 scratch of T*n_bins.  Returns 0.
    """
    n = key.shape[0]
    hkey = np.empty(n)
    size = 0
    remaining = 0
    for i in range(n):
        if state[i] == 0:
            remaining += 1
    for i in range(n):
        if state[i] == 1 and _open(state, i, n, n_bins):
            size = _heap_push(heap, hkey, size, i, key[i])
    order = np.empty(0, np.int64)
    ptr = 0
    while remaining > 0:
        if size == 0:
            # A new island: its strongest coefficient starts at phase 0.
            if n <= 8192:       # a frame or two (RTPGHI): a scan is cheaper than a sort
                i = _strongest(state, key, n)
            else:
                if order.shape[0] == 0:
                    order = np.argsort(-key, kind="mergesort")
                while state[order[ptr]] != 0:
                    ptr += 1
                i = order[ptr]
            phase[i] = 0.0
            state[i] = 1
            remaining -= 1
            size = _heap_push(heap, hkey, size, i, key[i])
        while size > 0:
            i, size = _heap_pop(heap, hkey, size)
            b = i % n_bins
            j = i + n_bins                      # next frame, same bin
            if j < n and state[j] == 0:
                phase[j] = phase[i] + 0.5 * (tgrad[i] + tgrad[j])
                state[j] = 1
                remaining -= 1
                if _open(state, j, n, n_bins):
                    size = _heap_push(heap, hkey, size, j, key[j])
            j = i - n_bins                      # previous frame
            if j >= 0 and state[j] == 0:
                phase[j] = phase[i] - 0.5 * (tgrad[i] + tgrad[j])
                state[j] = 1
                remaining -= 1
                if _open(state, j, n, n_bins):
                    size = _heap_push(heap, hkey, size, j, key[j])
            if b + 1 < n_bins:                  # next bin
                j = i + 1
                if state[j] == 0:
                    phase[j] = phase[i] + 0.5 * (fgrad[i] + fgrad[j])
                    state[j] = 1
                    remaining -= 1
                    if _open(state, j, n, n_bins):
                        size = _heap_push(heap, hkey, size, j, key[j])
            if b > 0:                           # previous bin
                j = i - 1
                if state[j] == 0:
                    phase[j] = phase[i] - 0.5 * (fgrad[i] + fgrad[j])
                    state[j] = 1
                    remaining -= 1
                    if _open(state, j, n, n_bins):
                        size = _heap_push(heap, hkey, size, j, key[j])
    return remaining


def _integrate_frame(pkey, pphase, ptg, key, tg, fg, ph, st, heap, hkey):
    """One frame of RTPGHI: the heap integration of :func:`_integrate` on two
    rows, the previous one known, done with less heap traffic.

    The previous frame's seeds (``pkey[m] >= 0``; their phases ``pphase``
    and time gradients ``ptg``) only ever pass a phase forward to the same
    bin, so instead of going through the heap they are sorted once and
    merged with it: the heap holds the current frame's frontier only.  The
    order of events is the same as with one heap of both rows (ties apart).
    ``st`` (current frame): 1 known, 0 to integrate, -1 left as it is.
    """
    B = key.shape[0]
    nc = 0
    for m in range(B):
        if pkey[m] >= 0.0 and st[m] == 0:
            heap[nc] = m
            nc += 1
    cand = heap[:nc].copy()
    if nc > 1:
        vals = np.empty(nc)
        for j in range(nc):
            vals[j] = -pkey[cand[j]]
        cand = cand[np.argsort(vals)]
    remaining = 0
    for m in range(B):
        if st[m] == 0:
            remaining += 1
    size = 0
    for m in range(B):
        if st[m] == 1 and ((m + 1 < B and st[m + 1] == 0) or (m > 0 and st[m - 1] == 0)):
            size = _heap_push(heap, hkey, size, m, key[m])
    p = 0
    while remaining > 0:
        while p < nc and st[cand[p]] != 0:
            p += 1
        if size > 0 and (p >= nc or hkey[0] >= pkey[cand[p]]):
            i, size = _heap_pop(heap, hkey, size)
            j = i + 1
            if j < B and st[j] == 0:
                ph[j] = ph[i] + 0.5 * (fg[i] + fg[j])
                st[j] = 1
                remaining -= 1
                if j + 1 < B and st[j + 1] == 0:
                    size = _heap_push(heap, hkey, size, j, key[j])
            j = i - 1
            if j >= 0 and st[j] == 0:
                ph[j] = ph[i] - 0.5 * (fg[i] + fg[j])
                st[j] = 1
                remaining -= 1
                if j > 0 and st[j - 1] == 0:
                    size = _heap_push(heap, hkey, size, j, key[j])
            continue
        if p < nc:                 # a phase passed on in time from the previous frame
            m = cand[p]
            p += 1
            ph[m] = pphase[m] + 0.5 * (ptg[m] + tg[m])
        else:                      # a new island: its strongest coefficient starts at 0
            m = _strongest(st, key, B)
            ph[m] = 0.0
        st[m] = 1
        remaining -= 1
        if (m + 1 < B and st[m + 1] == 0) or (m > 0 and st[m - 1] == 0):
            size = _heap_push(heap, hkey, size, m, key[m])
    return 0


def _rt_run(S, A, KN, KP, R, n0, i0, i1, lookahead, odd, tol, k_t, k_f, adv, shift,
            prev_phase, prev_tg, prev_ok, out):
    """RTPGHI over rows ``i0 <= i < i1`` of a buffer of frames.

    ``S``/``A``: (K, B) log-magnitude and magnitude of frames ``n0 .. n0+K-1``
    (history rows before ``i0``, lookahead rows after ``i1`` when present).
    ``KN`` (int8) / ``KP``: where the phase is known and its value
    (window-centre convention); ``R``: random phases for coefficients below
    tolerance.  ``prev_phase``/``prev_tg`` hold the frame before ``i0`` and
    are updated in place (``prev_ok[0]`` says whether there is one).
    ``out``: (i1 - i0, B) complex frames, written: ``A * exp(i (phase + shift))``
    (``shift``: :func:`centre_shift`).  ``odd``: n_fft is odd (the last
    bin's mirror is itself, not its left neighbour).
    """
    K, B = S.shape
    pkey = np.empty(B)
    tg = np.empty(B)
    fg = np.empty(B)
    ph = np.empty(B)
    st = np.empty(B, np.int8)
    heap = np.empty(B, np.int64)
    hkey = np.empty(B)
    for i in range(i0, i1):
        n = n0 + i
        # dphi/dn of this frame from the frequency difference of ln|X|.
        for m in range(B):
            if m == 0:
                d = 0.0
            elif m == B - 1:
                d = 0.5 * (S[i, m] - S[i, m - 1]) if odd else 0.0
            else:
                d = 0.5 * (S[i, m + 1] - S[i, m - 1])
            tg[m] = k_t * d + adv[m]
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
        lo = i - 1 if (prev_ok[0] and i >= 1) else i
        hi = min(i + lookahead, K - 1)
        for r in range(lo, hi + 1):
            for m in range(B):
                if A[r, m] > peak:
                    peak = A[r, m]
        thr = tol * peak
        for m in range(B):
            if prev_ok[0] and i >= 1 and A[i - 1, m] > thr:
                pkey[m] = A[i - 1, m]
            else:
                pkey[m] = -1.0
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
        _integrate_frame(pkey, prev_phase, prev_tg, A[i], tg, fg, ph, st, heap, hkey)
        for m in range(B):
            p = ph[m]
            p = p - _TWO_PI * math.floor(p / _TWO_PI + 0.5)   # keep it small
            q = p + shift[m]
            out[i - i0, m] = complex(A[i, m] * math.cos(q), A[i, m] * math.sin(q))
            prev_phase[m] = p
            prev_tg[m] = tg[m]
        prev_ok[0] = True
    return i1 - i0


_KERNELS = None


def _kernels():
    """``(integrate, rt_run)``, numba-compiled (and cached on disk) when numba is there."""
    global _KERNELS, _heap_push, _heap_pop, _open, _strongest, _integrate, _integrate_frame, _rt_run
    if _KERNELS is not None:
        return _KERNELS
    try:
        if os.environ.get("SPECSTREAM_NO_NUMBA"):
            raise ImportError("SPECSTREAM_NO_NUMBA is set")
        import numba
    except ImportError as e:
        warnings.warn(f"no numba ({e}): phase reconstruction runs as plain Python, about "
                      "50x slower, near real time at best (pip install specstream[fast])",
                      RuntimeWarning, stacklevel=3)
        _KERNELS = (_integrate, _rt_run)
        return _KERNELS
    jit = numba.njit(cache=True, nogil=True)
    # Module globals are what compiled code calls: bind the compiled versions.
    _heap_push = jit(_heap_push)
    _heap_pop = jit(_heap_pop)
    _open = jit(_open)
    _strongest = jit(_strongest)
    _integrate = jit(_integrate)
    _integrate_frame = jit(_integrate_frame)
    _rt_run = jit(_rt_run)
    _KERNELS = (_integrate, _rt_run)
    _warm_up()
    return _KERNELS


def _warm_up():
    # Compile (or load from the disk cache) now, with the argument types the
    # real calls use, so that a live stream does not stall at its first frame.
    spec = STFTSpec(n_fft=8, hop_length=2)
    r = RTPGHI(spec, lookahead=1, rng=0)
    r.push(np.ones((3, spec.n_bins)))
    r.flush()
    pghi(np.ones((3, spec.n_bins)), spec)


# ------------------------------------------------------------------ shapes
def _as_block(x, spec: STFTSpec, what: str, dtype=np.float64) -> np.ndarray:
    """One frame or a block -> (channels, n, bins), as the engine takes frames."""
    return as_block(x, spec, what, dtype)


def _unblock(a: np.ndarray, spec: STFTSpec) -> np.ndarray:
    return a[0] if spec.channels == 1 else a


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _known(mag3, phase, known, spec):
    """(mask int8, phase in window-centre convention) for the hybrid mode."""
    if phase is None:
        if known is not None:
            raise SpecError("a 'known' mask needs the 'phase' it refers to")
        return None, None
    ph = _as_block(phase, spec, "phase")
    if ph.shape != mag3.shape:
        raise SpecError(f"phase shape {np.shape(phase)} and magnitude shape differ")
    kn = np.isfinite(ph)
    if known is not None:
        kn &= np.broadcast_to(_as_block(known, spec, "known", bool), ph.shape)
    phc = np.where(kn, ph - centre_shift(spec), 0.0)
    return kn.astype(np.int8), phc


# --------------------------------------------------------------- streaming
class RTPGHI:
    """Streaming phase from magnitude: real-time phase-gradient heap integration.

    Parameters
    ----------
    spec : STFTSpec
        How the magnitudes were made (window, hop, n_fft, phase convention).
    lookahead : int
        1 (default): the frequency-direction gradient uses a centred time
        difference, and each frame's phase leaves when the next frame is in
        (``latency_frames = 1``, i.e. one hop more latency).  0: causal, a
        second-order backward difference; no added latency.
    tol : float
        Coefficients below ``tol`` times the largest magnitude of the frames
        at hand (previous, current, lookahead) get a random phase.
    rng : None, int or numpy Generator
        Source of those random phases (seed it for reproducible output).
    gamma : float, optional
        Override the window's Gaussian parameter (samples**2).

    ``push(mag)`` takes linear magnitudes -- one frame ``(bins,)``, a block
    ``(n, bins)``, or with channels ``(channels, bins)`` / ``(channels, n, bins)``
    -- and returns the complex frames that are ready, ``(k, bins)`` or
    ``(channels, k, bins)``, in the spec's phase convention (ready for
    :class:`stream.engine.Reconstructor`).  ``flush()`` returns the rest.
    Pushing a block gives the same frames as pushing its frames one by one.

    Hybrid: ``push(mag, phase, known)`` with phases (radians, spec convention)
    for some coefficients -- NaN where unknown, or a boolean ``known`` mask --
    keeps those phases and integrates the others from them.
    """

    def __init__(self, spec: STFTSpec, lookahead: int = 1, tol: float = 1e-5, rng=None,
                 gamma: float | None = None):
        if lookahead not in (0, 1):
            raise SpecError(f"lookahead must be 0 or 1 frame, got {lookahead!r}")
        if not (0 <= float(tol) < 1):
            raise SpecError(f"tol must be in [0, 1), got {tol!r}")
        self.spec = spec
        self.lookahead = int(lookahead)
        self.tol = float(tol)
        self.rng = _rng(rng)
        if gamma is None:
            gamma, self.gamma_source = window_gamma(spec)
        else:
            self.gamma_source = "given"
        self.gamma = float(gamma)
        self._k_t, self._k_f, self._adv = _gradient_consts(spec, self.gamma)
        self._shift = centre_shift(spec)
        self._run = _kernels()[1]
        c, b = spec.channels, spec.n_bins
        self._cap = 0
        self._rows = 0                # valid rows in the buffers
        self._n0 = 0                  # frame index of buffer row 0
        self._grow(16)
        self._next = 0                # frame index of the next frame to output
        self._prev_phase = np.zeros((c, b))
        self._prev_tg = np.zeros((c, b))
        self._prev_ok = np.zeros((c, 1), np.bool_)
        self.frames_in = 0
        self.frames_out = 0
        self._flushed = False

    @property
    def latency_frames(self) -> int:
        """Frames a magnitude waits for before its phase is out (the lookahead)."""
        return self.lookahead

    @property
    def latency(self) -> int:
        """Added latency in samples: ``lookahead * hop_length``."""
        return self.lookahead * self.spec.hop_length

    def push(self, mag, phase=None, known=None) -> np.ndarray:
        """Add magnitude frames; return the complex frames that are ready."""
        if self._flushed:
            raise SpecError("push after flush: make a new RTPGHI for a new stream")
        a = _as_block(mag, self.spec, "magnitude")
        kn, kp = _known(a, phase, known, self.spec)
        c, n, b = a.shape
        if n > self._CHUNK:   # long blocks in cache-sized pieces (same frames out)
            outs = []
            for i in range(0, n, self._CHUNK):
                j = i + self._CHUNK
                outs.append(self._push(a[:, i:j], None if kn is None else kn[:, i:j],
                                       None if kp is None else kp[:, i:j]))
            return _unblock(np.concatenate(outs, axis=1), self.spec)
        return _unblock(self._push(a, kn, kp), self.spec)

    _CHUNK = 64

    def _push(self, a, kn, kp) -> np.ndarray:
        c, n, b = a.shape
        if n:
            a = np.abs(a)
            bad = ~np.isfinite(a)
            if bad.any():
                a[bad] = 0.0
            self._make_room(n)
            r0, r1 = self._rows, self._rows + n
            self._A[:, r0:r1] = a
            self._S[:, r0:r1] = _log_mag(a)
            # Random phases drawn frame by frame (all channels of a frame in a
            # row), so that a block gives the same draws as its frames one by one.
            self._R[:, r0:r1] = self.rng.uniform(-np.pi, np.pi, size=(n, c, b)).transpose(1, 0, 2)
            if kn is None:
                self._KN[:, r0:r1] = 0
            else:
                self._KN[:, r0:r1] = kn
                self._KP[:, r0:r1] = kp
            self._rows = r1
            self.frames_in += n
        return self._process(self.frames_in - self.lookahead)

    def flush(self) -> np.ndarray:
        """End of stream: the frames still waiting for their lookahead."""
        if self._flushed:
            return _unblock(np.zeros((self.spec.channels, 0, self.spec.n_bins),
                                     np.complex64), self.spec)
        out = _unblock(self._process(self.frames_in), self.spec)
        self._flushed = True
        return out

    def _grow(self, cap):
        c, b = self.spec.channels, self.spec.n_bins
        old = (getattr(self, "_S", None), getattr(self, "_A", None), getattr(self, "_KN", None),
               getattr(self, "_KP", None), getattr(self, "_R", None))
        self._S, self._A, self._KP, self._R = (np.zeros((c, cap, b)) for _ in range(4))
        self._KN = np.zeros((c, cap, b), np.int8)
        if old[0] is not None and self._rows:
            k = self._rows
            for dst, src in zip((self._S, self._A, self._KN, self._KP, self._R), old):
                dst[:, :k] = src[:, :k]
        self._cap = cap

    def _make_room(self, n):
        if self._rows + n <= self._cap:
            return
        # Drop the rows no longer needed: keep two processed frames of
        # history (the backward difference) and the frames still waiting.
        drop = max(self._next - 2 - self._n0, 0)
        if drop:
            k = self._rows - drop
            for buf in (self._S, self._A, self._KN, self._KP, self._R):
                buf[:, :k] = buf[:, drop:self._rows]
            self._rows = k
            self._n0 += drop
        if self._rows + n > self._cap:
            self._grow(max(2 * self._cap, self._rows + n))

    def _process(self, stop: int) -> np.ndarray:
        """Frames up to ``stop`` (exclusive), as (channels, n, bins)."""
        c, b = self.spec.channels, self.spec.n_bins
        i0, i1 = self._next - self._n0, stop - self._n0
        if i1 <= i0:
            return np.zeros((c, 0, b), np.complex64)
        out = np.empty((c, i1 - i0, b), np.complex64)
        odd = bool(self.spec.n_fft % 2)
        k = self._rows
        for ch in range(c):
            self._run(self._S[ch, :k], self._A[ch, :k], self._KN[ch, :k], self._KP[ch, :k],
                      self._R[ch, :k], self._n0, i0, i1, self.lookahead, odd, self.tol,
                      self._k_t, self._k_f, self._adv, self._shift, self._prev_phase[ch],
                      self._prev_tg[ch], self._prev_ok[ch], out[ch])
        self._next = stop
        self.frames_out += i1 - i0
        return out


# ----------------------------------------------------------------- offline
def pghi(mag, spec: STFTSpec, tol: float = 1e-5, phase=None, known=None, rng=0,
         gamma: float | None = None) -> np.ndarray:
    """Whole-file phase-gradient heap integration: magnitudes -> complex frames.

    ``mag``: linear magnitudes ``(n_frames, bins)`` (or ``(channels, n_frames,
    bins)``), all in RAM (the heap spans the whole file).  ``tol``: relative to
    the file's largest magnitude; below it the phase is random (``rng``).
    Hybrid: ``phase`` (radians, spec convention; NaN where unknown) and/or a
    boolean ``known`` mask seed the integration.  Returns complex64 frames in
    the spec's convention.
    """
    a = np.abs(_as_block(mag, spec, "magnitude"))
    a[~np.isfinite(a)] = 0.0
    kn, kp = _known(a, phase, known, spec)
    if gamma is None:
        gamma, _ = window_gamma(spec)
    integrate = _kernels()[0]
    gen = _rng(rng)
    shift = centre_shift(spec)
    c, t, b = a.shape
    out = np.empty((c, t, b), np.complex64)
    for ch in range(c):
        tg, fg = phase_gradients(a[ch], spec, gamma)
        thr = tol * float(a[ch].max()) if a[ch].size else 0.0
        state = np.where(a[ch] > thr, 0, -1).astype(np.int8)
        ph = gen.uniform(-np.pi, np.pi, size=(t, b))
        if kn is not None:
            state[kn[ch] == 1] = 1
            ph = np.where(kn[ch] == 1, kp[ch], ph)
        ph = np.ascontiguousarray(ph)
        heap = np.empty(t * b, np.int64)
        integrate(a[ch].ravel().copy(), tg.ravel(), fg.ravel(), ph.ravel(), state.ravel(),
                  heap, b)
        out[ch] = a[ch] * np.exp(1j * (ph + shift))
    return _unblock(out, spec)


def _frames_to_fit(x: np.ndarray, t: int) -> np.ndarray:
    n = x.shape[-2]
    if n == t:
        return x
    if n > t:
        return x[..., :t, :]
    pad = [(0, 0)] * x.ndim
    pad[-2] = (0, t - n)
    return np.pad(x, pad)


def fgla(mag, spec: STFTSpec, init_phase=None, iterations: int = 32, momentum: float = 0.99,
         callback=None) -> np.ndarray:
    """Fast Griffin-Lim (Perraudin, Balazs & Sondergaard 2013) on our own STFT.

    ``init_phase``: complex frames (their angle is used), real phases in
    radians (spec convention), or None for zero phase.  Each iteration is
    ``t = P_mag(stft(istft(c)))``, ``c = t + momentum * (t - t_prev)``; the
    last ``t`` is returned (complex64, spec convention).  The whole
    magnitude and two complex copies are in RAM.
    """
    from .engine import istft, stft
    if iterations < 0:
        raise SpecError(f"iterations must be >= 0, got {iterations}")
    m = np.abs(_as_block(mag, spec, "magnitude", np.float32))
    c3, t, b = m.shape
    if init_phase is None:
        c = m.astype(np.complex64)
    else:
        p = np.asarray(init_phase)
        if np.iscomplexobj(p):
            p = _as_block(p, spec, "init_phase", np.complex64)
            mag_p = np.abs(p)
            u = np.where(mag_p > 0, p / np.where(mag_p > 0, mag_p, 1), 1)
        else:
            u = np.exp(1j * _as_block(p, spec, "init_phase"))
        c = (m * u).astype(np.complex64)
    m2 = m[0] if spec.channels == 1 else m
    c = _unblock(c, spec)
    length = longest_length(spec, t)
    prev = c
    out = c
    for it in range(iterations):
        x = istft(c, spec, length=length)
        y = _frames_to_fit(stft(x, spec), t)
        ay = np.abs(y)
        out = (m2 * np.where(ay > 0, y / np.where(ay > 0, ay, 1), 1)).astype(np.complex64)
        c = out + np.complex64(momentum) * (out - prev) if momentum else out
        prev = out
        if callback is not None:
            callback(it + 1)
    return out


def reconstruct_phase(mag, spec: STFTSpec, method: str = "pghi", iterations: int | None = None,
                      rng=0, lookahead: int = 1, tol: float = 1e-5, momentum: float = 0.99,
                      callback=None) -> np.ndarray:
    """Complex frames (spec convention) for linear magnitudes, by ``method``:

    - 'rtpghi': the streaming :class:`RTPGHI` (``lookahead``), no iterations;
    - 'pghi': whole-file :func:`pghi`, then ``iterations`` (default 32) of :func:`fgla`;
    - 'griffinlim': :func:`fgla` from random phase, ``iterations`` (default 32);
    - 'zeros' / 'random': zero or uniformly random phase.

    All but 'rtpghi' hold the whole magnitude in RAM.
    """
    if method not in METHODS:
        raise SpecError(f"phase method {method!r} is not one of {', '.join(METHODS)}")
    a = np.abs(_as_block(mag, spec, "magnitude", np.float32))
    a[~np.isfinite(a)] = 0.0
    gen = _rng(rng)
    if method == "rtpghi":
        r = RTPGHI(spec, lookahead=lookahead, tol=tol, rng=gen)
        return np.concatenate([r.push(a), r.flush()], axis=-2)
    if method == "zeros":
        return _unblock(np.abs(a).astype(np.complex64), spec)
    if method == "random":
        ph = gen.uniform(-np.pi, np.pi, size=a.shape)
        return _unblock((np.abs(a) * np.exp(1j * ph)).astype(np.complex64), spec)
    n_it = 32 if iterations is None else int(iterations)
    if method == "pghi":
        init = pghi(a, spec, tol=tol, rng=gen)
    else:
        init = gen.uniform(-np.pi, np.pi, size=a.shape)
    return fgla(a, spec, init, iterations=n_it, momentum=momentum, callback=callback)


# ------------------------------------------------------- measuring quality
def _sc_accumulate(mag_blocks, spectra_blocks, n_frames: int) -> float:
    """20 log10(||S - M|| / ||M||) over two streams of frame blocks (frames on axis -2)."""
    num = den = 0.0
    pend_m, pend_s = [], []
    have_m = have_s = 0
    mags = iter(mag_blocks)
    done_m = False
    for s in spectra_blocks:
        s = np.abs(np.asarray(s)).astype(np.float64)
        if s.shape[-2] == 0:
            continue
        pend_s.append(s)
        have_s += s.shape[-2]
        while have_m < have_s and not done_m:
            try:
                mb = np.abs(np.asarray(next(mags))).astype(np.float64)
            except StopIteration:
                done_m = True
                break
            pend_m.append(mb)
            have_m += mb.shape[-2]
        k = min(have_m, have_s)
        if k:
            mm = np.concatenate(pend_m, axis=-2)
            ss = np.concatenate(pend_s, axis=-2)
            num += float(np.sum((ss[..., :k, :] - mm[..., :k, :]) ** 2))
            den += float(np.sum(mm[..., :k, :] ** 2))
            pend_m, pend_s = [mm[..., k:, :]], [ss[..., k:, :]]
            have_m -= k
            have_s -= k
    # Magnitude frames the signal did not reach count as all error.
    for mb in pend_m + list(mags):
        q = float(np.sum(np.abs(np.asarray(mb, np.float64)) ** 2))
        num += q
        den += q
    if den <= 0:
        return float("nan") if num <= 0 else float("inf")
    return 10.0 * math.log10(max(num, 1e-300) / den)


def _blocks_of(a, size=1024):
    n = a.shape[-2]
    for i in range(0, n, size):
        yield a[..., i:i + size, :]


def longest_length(spec: STFTSpec, n_frames: int) -> int:
    """The longest signal whose analysis gives ``n_frames`` frames.

    ``spec.samples_for`` (what the inverse writes when no length is given)
    may be up to a hop shorter; the frames can describe those last samples,
    so Griffin-Lim and :func:`spectral_convergence` keep them.
    """
    if n_frames <= 0:
        return 0
    h = spec.hop_length
    if spec.center:
        n = (n_frames + spec.first_frame) * h - 1
    else:
        n = (n_frames - 1) * h + spec.frame_span + h - 1
    while n > 0 and spec.frames_for(n) > n_frames:    # never more frames than given
        n -= 1
    return max(n, 0)


def _spectra_of_frames(frames_blocks, spec: STFTSpec, n_frames: int, length=None):
    from .engine import Analyzer, Reconstructor
    rec = Reconstructor(spec, length=longest_length(spec, n_frames) if length is None
                        else length)
    an = Analyzer(spec)
    for f in frames_blocks:
        yield an.push(rec.push(f))
    yield an.push(rec.flush())
    yield an.flush()


def spectral_convergence(mag, x_or_frames, spec: STFTSpec, length: int | None = None) -> float:
    """``20 log10(|| |STFT(x)| - M ||_F / ||M||_F)`` in dB (lower is better).

    ``mag``: target linear magnitudes ``(n_frames, bins)`` (or with channels
    first).  ``x_or_frames``: real samples ``(n,)`` / ``(channels, n)``, or
    complex frames -- inverted with the least-squares ISTFT first (to
    ``length`` samples, default :func:`longest_length`), so that the measure
    is that of the audio they make.  Computed block by block:
    memory stays flat for memory-mapped inputs.
    """
    from .engine import Analyzer
    m = np.asarray(mag)
    n_frames = m.shape[-2]
    y = np.asarray(x_or_frames)
    if np.iscomplexobj(y):
        spectra = _spectra_of_frames(_blocks_of(y), spec, n_frames, length)
    else:
        an = Analyzer(spec)
        step = 1 << 18

        def gen():
            for i in range(0, max(y.shape[-1], 1), step):
                yield an.push(y[..., i:i + step])
            yield an.flush()
        spectra = gen()
    return _sc_accumulate(_blocks_of(m), spectra, n_frames)


# ------------------------------------------------------------------ the CLI
#: rtpghi output larger than this (bytes) goes to a temporary memory-mapped file.
_RAM_LIMIT = 256 << 20

def rebuild_source(source, spec: STFTSpec, decoder, method: str = "pghi",
                   iterations: int | None = None, quiet: bool = False, rng=0,
                   measure: bool | None = None, length: int | None = None):
    """A magnitude-only :class:`FrameSource` -> one with complex frames (``.first``).

    Magnitudes go through ``decoder.magnitude``; the frames that come back are
    in the spec's conventions (scaling and phase reference), for the CLI's
    Reconstructor to undo.  'rtpghi' streams block by block (a large output
    goes to a temporary memory-mapped file); the offline methods ('pghi',
    'griffinlim') hold the whole magnitude and its complex frames in RAM.

    The returned source has ``phase_report``: method, seconds and the spectral
    convergence in dB (measured unless ``quiet``; ``measure`` overrides) of
    the audio the frames make at ``length`` samples (default
    ``spec.samples_for(n_frames)``, what the CLI writes).
    """
    from .files import FrameSource
    if method not in METHODS:
        raise SpecError(f"phase method {method!r} is not one of {', '.join(METHODS)}")
    t0 = time.perf_counter()
    n, b, c = source.n_frames, source.n_bins, spec.channels
    bad = [0]

    def mags(block):   # stored values -> linear magnitude, NaN/Inf -> 0 (counted)
        m = decoder.magnitude(block)
        nf = ~np.isfinite(m)
        if nf.any():
            m = np.where(nf, 0, m)
            bad[0] += int(np.count_nonzero(nf))
        return m

    shape = (n, b) if c == 1 else (c, n, b)
    per_frame = method in ("rtpghi", "zeros", "random")
    bar = _bar(n if per_frame else (32 if iterations is None else iterations),
               f"phase ({method})", "frame" if per_frame else "it", quiet)
    if method == "rtpghi":
        nbytes = int(np.prod(shape)) * 8
        if nbytes > _RAM_LIMIT:
            tmp = tempfile.NamedTemporaryFile(prefix="specstream-phase-", suffix=".npy",
                                              delete=False)
            tmp.close()
            out = np.lib.format.open_memmap(tmp.name, mode="w+", dtype=np.complex64,
                                            shape=shape)
            os.unlink(tmp.name)   # the mapping keeps it alive; gone when unmapped
        else:
            out = np.empty(shape, np.complex64)
        rt = RTPGHI(spec, lookahead=1, rng=rng)
        k = 0
        for first, _ in source.blocks(1024):
            y = rt.push(mags(first))
            out[..., k:k + y.shape[-2], :] = y
            k += y.shape[-2]
            bar.update(first.shape[-2])
        y = rt.flush()
        out[..., k:k + y.shape[-2], :] = y
    else:
        mag = np.concatenate([mags(f) for f, _ in source.blocks(4096)], axis=-2) \
            if n else np.zeros(shape, np.float32)
        out = reconstruct_phase(mag, spec, method, iterations, rng=rng,
                                callback=lambda i: bar.update(1))
        if method in ("zeros", "random"):
            bar.update(n)
    bar.close()
    seconds = time.perf_counter() - t0
    result = FrameSource(out, None, "frames-bins")
    sc = None
    if (not quiet) if measure is None else measure:
        n_bad = bad[0]
        sc = _sc_accumulate((mags(f) for f, _ in source.blocks(1024)),
                            _spectra_of_frames(_blocks_of(out), spec, n,
                                               spec.samples_for(n) if length is None
                                               else length), n)
        bad[0] = n_bad
    result.phase_report = {"method": method, "seconds": seconds, "spectral_convergence": sc,
                           "nonfinite": bad[0],
                           "iterations": (None if method in ("rtpghi", "zeros", "random")
                                          else (32 if iterations is None else iterations))}
    return result


def _bar(total, desc, unit, quiet):
    try:
        from .cli.common import progress
        return progress(total, desc, unit=unit, quiet=quiet)
    except ImportError:   # tqdm missing: no bar
        class _Null:
            def update(self, n=1):
                pass

            def close(self):
                pass
        return _Null()
