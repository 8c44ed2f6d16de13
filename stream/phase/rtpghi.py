"""Streaming phase from magnitude: real-time phase-gradient heap integration."""

from __future__ import annotations

import numpy as np

from ..spec import SpecError, STFTSpec
from ._shapes import _as_block, _known, _rng, _unblock
from .gradients import _gradient_consts, centre_shift, window_gamma
from .kernels import kernels

__all__ = ["RTPGHI"]


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
        self._run = kernels()[1]
        c, b = spec.channels, spec.n_bins
        self._cap = 0
        self._rows = 0                # valid rows in the buffers
        self._n0 = 0                  # frame index of buffer row 0
        self._grow(16)
        self._ready = 0               # rows the kernel has prepared (abs, log)
        self._pool = np.zeros((0, c, b))
        self._pool_pos = 0
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
        n = a.shape[1]
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
        n = a.shape[1]
        if n:
            # The kernel makes these rows magnitudes (abs, NaN/Inf -> 0) and
            # takes their log (_prepare_rows): no per-frame numpy calls here.
            self._make_room(n)
            r0, r1 = self._rows, self._rows + n
            self._A[:, r0:r1] = a
            self._random_rows(r0, r1)
            if kn is None:
                self._KN[:, r0:r1] = 0
            else:
                self._KN[:, r0:r1] = kn
                self._KP[:, r0:r1] = kp
            self._rows = r1
            self.frames_in += n
        return self._process(self.frames_in - self.lookahead)

    def _random_rows(self, r0, r1):
        """Random phases for rows r0..r1, drawn frame by frame (all channels of
        a frame in a row) from a pool of frames drawn at once: a block gets the
        same draws as its frames one by one."""
        r = r0
        while r < r1:
            if self._pool_pos == len(self._pool):
                c, b = self.spec.channels, self.spec.n_bins
                self._pool = self.rng.uniform(-np.pi, np.pi, size=(self._CHUNK, c, b))
                self._pool_pos = 0
            k = min(r1 - r, len(self._pool) - self._pool_pos)
            p = self._pool_pos
            self._R[:, r:r + k] = self._pool[p:p + k].transpose(1, 0, 2)
            self._pool_pos += k
            r += k

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
            self._ready = max(self._ready - drop, 0)
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
                      self._R[ch, :k], self._n0, self._ready, i0, i1, self.lookahead, odd,
                      self.tol, self._k_t, self._k_f, self._adv, self._shift,
                      self._prev_phase[ch], self._prev_tg[ch], self._prev_ok[ch], out[ch])
        self._ready = k
        self._next = stop
        self.frames_out += i1 - i0
        return out
