"""Offline PGHI + fast Griffin-Lim in overlapping blocks: flat memory for a
magnitude of any length.

The phase of a frame depends on the frames near it only: the heap
integration spreads from each frame's neighbours, and one Griffin-Lim
iteration moves information by one window span.  So a long file is phased a
block at a time: block ``k`` holds its ``block`` core frames, ``context``
frames before them (already phased: the previous block's final frames, kept
fixed, so that the seam is consistent with what was output) and ``context``
frames after them (phased here, phased again as the next block's core).  PGHI
starts from the fixed frames' phases (its hybrid mode), then ``iterations`` of
fast Griffin-Lim refine the block with the fixed frames reset after each
projection.  Memory is that of one block (a few MB), whatever the file's
length; a block takes well under a second, so Ctrl-C is honoured at once.

:class:`BlockPhase` is the pipeline stage (``push(mag)`` returns the frames
that are final, ``flush()`` the rest); ``method`` is 'pghi' (PGHI, then
Griffin-Lim), 'griffinlim' (random phase, then Griffin-Lim), 'zeros' or
'random' (no context needed).
"""

from __future__ import annotations

import time

import numpy as np

from ..spec import SpecError, STFTSpec
from ..workers import default_workers, run_parts
from ._shapes import _as_block, _rng
from .offline import METHODS, _Consistent, pghi
from .rtpghi import RTPGHI

__all__ = ["BlockPhase", "BLOCK_METHODS", "phase_stage"]

#: The methods :class:`BlockPhase` runs.
BLOCK_METHODS = ("pghi", "griffinlim", "zeros", "random")


class BlockPhase:
    """Phase from magnitude, block by block (see the module's docstring).

    Parameters
    ----------
    spec : STFTSpec
        How the frames were made (its phase convention is the output's).
    method : str
        One of :data:`BLOCK_METHODS`.
    iterations : int, optional
        Griffin-Lim iterations per block (default 32).
    block : int
        Core frames per block (default 1024).
    context : int, optional
        Frames of context on each side (default: four window spans, at least 16).
    rng : seed or Generator
        For the random phases (below PGHI's tolerance, or 'griffinlim'/'random').
    momentum : float
        Fast Griffin-Lim's momentum (0.99).
    tol : float
        PGHI's tolerance, relative to each block's largest magnitude.
    workers : int or None
        Threads Griffin-Lim shares a block's frames among (None:
        :func:`stream.workers.default_workers`); their overlap-adds are summed
        where their frames meet, so the result is one thread's to float32
        rounding, not to the bit.  (PGHI stays on one: two runs of frames
        integrated apart left a seam Griffin-Lim did not mend, frames there
        5-11x the error of one run's.)

    ``seconds`` is the time spent phasing; ``blocks`` the blocks done.
    """

    def __init__(self, spec: STFTSpec, method: str = "pghi", iterations: int | None = None,
                 block: int = 1024, context: int | None = None, rng=0, momentum: float = 0.99,
                 tol: float = 1e-5, callback=None, workers: int | None = None):
        if method not in BLOCK_METHODS:
            raise SpecError(f"method={method!r} is not one of {', '.join(BLOCK_METHODS)}")
        self.spec, self.method = spec, method
        self.iterations = 32 if iterations is None else int(iterations)
        if self.iterations < 0:
            raise SpecError(f"iterations must be >= 0, got {iterations}")
        self.block = max(1, int(block))
        span = -(-spec.n_fft // spec.hop_length)
        self.context = max(16, 4 * span) if context is None else max(0, int(context))
        self.momentum, self.tol = momentum, tol
        self.callback = callback
        self.workers = default_workers() if workers is None else max(1, int(workers))
        self._rng = _rng(rng)
        c, b = spec.channels, spec.n_bins
        self._mag = np.zeros((c, 0, b), np.float32)     # frames not yet final (and context)
        self._fixed = np.zeros((c, 0, b), np.complex64)  # the last final frames, for the seam
        self._steps = {}                                 # frames -> _Consistent
        self.seconds = 0.0
        self.blocks = 0

    @property
    def latency(self) -> int:
        """Frames held before they are final: a block and its right context."""
        return self.block + self.context

    def push(self, mag) -> np.ndarray:
        """Linear magnitudes in (frames on axis -2); the complex frames now final out."""
        m = np.abs(_as_block(mag, self.spec, "magnitude", np.float32))
        m[~np.isfinite(m)] = 0.0
        if self.method in ("zeros", "random"):
            return self._trivial(m)
        self._mag = np.concatenate([self._mag, m], axis=1)
        outs = []
        while self._mag.shape[1] >= self.block + self.context:
            outs.append(self._run(self.block))
        return self._join(outs)

    def flush(self) -> np.ndarray:
        """The remaining frames."""
        if self.method in ("zeros", "random") or self._mag.shape[1] == 0:
            return self._join([])
        return self._run(self._mag.shape[1])

    # ------------------------------------------------------------ internals
    def _trivial(self, m: np.ndarray) -> np.ndarray:
        if self.method == "zeros":
            return m.astype(np.complex64)
        ph = self._rng.uniform(-np.pi, np.pi, size=m.shape)
        return (m * np.exp(1j * ph)).astype(np.complex64)

    def _run(self, core: int) -> np.ndarray:
        """Phase the first ``core`` held frames (with the context around them)."""
        t0 = time.perf_counter()
        fixed = self._fixed.shape[1]
        m = np.concatenate([np.abs(self._fixed), self._mag[:, :core + self.context]], axis=1)
        out = np.empty(m.shape, np.complex64)
        for ch in range(m.shape[0]):
            out[ch] = self._phase_one(m[ch], self._fixed[ch], fixed)
        final = out[:, fixed:fixed + core]
        keep = min(self.context, fixed + core)
        self._fixed = out[:, fixed + core - keep:fixed + core].copy()
        self._mag = self._mag[:, core:]
        self.seconds += time.perf_counter() - t0
        self.blocks += 1
        if self.callback is not None:
            self.callback(self.blocks)
        return final

    def _phase_one(self, m: np.ndarray, fixed: np.ndarray, k: int) -> np.ndarray:
        """One channel: ``m`` (frames, bins), its first ``k`` frames' phases
        given by ``fixed``."""
        spec = self.spec.replace(channels=1)
        if self.method == "pghi":
            phase = np.full(m.shape, np.nan)
            if k:
                phase[:k] = np.angle(fixed)
            def integrate():
                return pghi(m, spec, tol=self.tol, phase=phase if k else None, rng=self._rng,
                            workers=self.workers)
            t = m.shape[0]
            if self.workers > 1 and self.iterations and t and t not in self._steps:
                # PGHI's integration is one thread's: beside it, the Griffin-Lim
                # step of this block size is made (its FFT plans and buffers).
                c, _ = run_parts([integrate, lambda: self._consistent(t)])
            else:
                c = integrate()
        else:
            ph = self._rng.uniform(-np.pi, np.pi, size=m.shape)
            c = (m * np.exp(1j * ph)).astype(np.complex64)
            if k:
                c[:k] = fixed
        return self._fgla(m, c, fixed, k)

    def _fgla(self, m, c, fixed, k) -> np.ndarray:
        """Fast Griffin-Lim with the first ``k`` frames held at ``fixed``.

        Each block is analysed as the file is (its centring and edges): at the
        file's start and end that is right, and inside the file the edges fall
        on the frames held fixed or phased again by the next block.  The
        consistency step is :class:`~stream.phase.offline._Consistent` of the
        block's size (its FFT plans made once, for every block of that size)."""
        t = m.shape[0]
        c = np.ascontiguousarray(c, np.complex64)
        if self.iterations == 0 or t == 0:
            return c
        held = np.ascontiguousarray(fixed[None, :k], np.complex64) if k else None
        return self._consistent(t).iterate(np.ascontiguousarray(m, np.float32)[None], c[None],
                                           self.iterations, self.momentum, held)[0]

    def _consistent(self, t: int) -> _Consistent:
        """The consistency step for blocks of ``t`` frames (at most two sizes
        are in use: the full block and the file's last)."""
        cons = self._steps.get(t)
        if cons is None:
            spec = self.spec.replace(channels=1)
            if len(self._steps) >= 2:
                self._steps.pop(next(iter(self._steps)))
            cons = self._steps[t] = _Consistent(spec, t, spec.max_samples_for(t),
                                                self.workers)
        return cons

    def _join(self, outs) -> np.ndarray:
        if not outs:
            return np.zeros((self.spec.channels, 0, self.spec.n_bins), np.complex64)
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=1)


def phase_stage(spec: STFTSpec, method: str = "pghi", iterations: int | None = None,
                rng=0, callback=None, workers: int | None = None):
    """The phase stage of a :class:`stream.pipeline.FramePipeline` for ``method``:
    the streaming :class:`RTPGHI` (one frame of lookahead), or a
    :class:`BlockPhase` (flat memory; ``callback(k)`` after each block;
    ``workers``: its threads)."""
    if method not in METHODS:
        raise SpecError(f"phase method {method!r} is not one of {', '.join(METHODS)}")
    if method == "rtpghi":
        return RTPGHI(spec, lookahead=1, rng=rng)
    return BlockPhase(spec, method, iterations, rng=rng, callback=callback, workers=workers)
