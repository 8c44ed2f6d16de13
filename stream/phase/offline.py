"""Whole-file phase from magnitude: PGHI, fast Griffin-Lim, and the methods
of ``--phase-method`` as one function and as a pipeline stage."""

from __future__ import annotations

import time

import numpy as np

from ..spec import SpecError, STFTSpec
from ._shapes import _as_block, _known, _rng, _unblock
from .gradients import centre_shift, phase_gradients, window_gamma
from .kernels import kernels
from .quality import longest_length
from .rtpghi import RTPGHI

__all__ = ["METHODS", "pghi", "fgla", "reconstruct_phase", "WholeFilePhase"]

METHODS = ("rtpghi", "pghi", "griffinlim", "zeros", "random")


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
    integrate = kernels()[0]
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
    from ..engine import istft, stft
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


# ------------------------------------------------------ the pipeline stage
class WholeFilePhase:
    """A whole-file method as a pipeline stage: holds the magnitudes it is
    pushed and phases them all at :meth:`flush` (:func:`reconstruct_phase`).

    ``seconds`` is the time the method took.  ``callback(i)`` is called after
    each Griffin-Lim iteration (progress)."""

    def __init__(self, spec: STFTSpec, method: str = "pghi", iterations: int | None = None,
                 rng=0, callback=None):
        if method not in METHODS or method == "rtpghi":
            raise SpecError(f"method={method!r} is not a whole-file phase method")
        self.spec, self.method, self.iterations = spec, method, iterations
        self.rng, self.callback = rng, callback
        self.seconds = 0.0
        self._blocks = []

    def push(self, mag) -> np.ndarray:
        self._blocks.append(_as_block(mag, self.spec, "magnitude", np.float32).copy())
        return np.zeros((self.spec.channels, 0, self.spec.n_bins), np.complex64)

    def flush(self) -> np.ndarray:
        c, b = self.spec.channels, self.spec.n_bins
        mag = np.concatenate(self._blocks, axis=1) if self._blocks else np.zeros((c, 0, b))
        self._blocks = []
        t0 = time.perf_counter()
        out = reconstruct_phase(mag, self.spec, self.method, self.iterations, rng=self.rng,
                                callback=self.callback)
        self.seconds = time.perf_counter() - t0
        return out
