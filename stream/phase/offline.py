"""Whole-file phase from magnitude: PGHI, fast Griffin-Lim, and the methods
of ``--phase-method`` as one function and as a pipeline stage."""

from __future__ import annotations

import time

import numpy as np

from ..engine import as_block
from ..spec import SpecError, STFTSpec
from ..workers import default_workers, run_parts
from ._shapes import _as_block, _known, _rng, _unblock
from .gradients import centre_shift, phase_gradients, window_gamma
from .kernels import kernels
from .quality import longest_length
from .rtpghi import RTPGHI

__all__ = ["METHODS", "pghi", "fgla", "reconstruct_phase", "WholeFilePhase"]

METHODS = ("rtpghi", "pghi", "griffinlim", "zeros", "random")


def pghi(mag, spec: STFTSpec, tol: float = 1e-5, phase=None, known=None, rng=0,
         gamma: float | None = None, workers: int = 1) -> np.ndarray:
    """Whole-file phase-gradient heap integration: magnitudes -> complex frames.

    ``mag``: linear magnitudes ``(n_frames, bins)`` (or ``(channels, n_frames,
    bins)``), all in RAM (the heap spans the whole file).  ``tol``: relative to
    the file's largest magnitude; below it the phase is random (``rng``).
    Hybrid: ``phase`` (radians, spec convention; NaN where unknown) and/or a
    boolean ``known`` mask seed the integration.  Returns complex64 frames in
    the spec's convention.  ``workers``: threads for the magnitudes and phases'
    product (the integration itself is sequential).
    """
    a = np.abs(_as_block(mag, spec, "magnitude"))
    a[~np.isfinite(a)] = 0.0
    kn, kp = _known(a, phase, known, spec)
    if gamma is None:
        gamma, _ = window_gamma(spec)
    integrate, polar = kernels()[0], kernels()[4]
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
        key = np.ascontiguousarray(a[ch]).reshape(-1)
        integrate(key, tg.ravel(), fg.ravel(), ph.ravel(), state.ravel(), heap, b)
        _polar_rows(polar, key, ph.reshape(-1), shift, out[ch].reshape(-1), workers)
    return _unblock(out, spec)


#: Coefficients a thread's share of the polar product is worth (a thread
#: start costs about 0.1 ms, the product 14 ns a coefficient).
_PER_THREAD = 1 << 15


def _polar_rows(polar, a, phase, shift, out, workers: int):
    """``polar(a, phase, shift, out)`` (flat rows of ``len(shift)`` bins) in
    runs of whole rows on up to ``workers`` threads."""
    b = shift.shape[0]
    t = a.shape[0] // b
    n = max(1, min(int(workers), a.shape[0] // _PER_THREAD, t))
    cuts = [t * i // n * b for i in range(n + 1)]
    run_parts(lambda lo=lo, hi=hi: polar(a[lo:hi], phase[lo:hi], shift, out[lo:hi])
              for lo, hi in zip(cuts, cuts[1:]))


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
         callback=None, workers: int | None = None) -> np.ndarray:
    """Fast Griffin-Lim (Perraudin, Balazs & Sondergaard 2013) on our own STFT.

    ``init_phase``: complex frames (their angle is used), real phases in
    radians (spec convention), or None for zero phase.  Each iteration is
    ``t = P_mag(stft(istft(c)))``, ``c = t + momentum * (t - t_prev)``; the
    last ``t`` is returned (complex64, spec convention).  The whole
    magnitude and a few complex copies are in RAM.  ``workers``: threads
    (None: :func:`stream.workers.default_workers`; see :class:`_Consistent`).
    """
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
    if iterations == 0 or t == 0:
        return _unblock(c, spec)
    workers = default_workers() if workers is None else workers
    consistent = _Consistent(spec, t, longest_length(spec, t), workers)
    return _unblock(consistent.iterate(m, c, iterations, momentum, callback=callback), spec)


class _Consistent:
    """``stft(istft(c, length), spec)`` for whole arrays of ``n_frames`` frames,
    with the plans, the window-sum-square and the signal's extent made once:
    Griffin-Lim's inner step, the same frames as the engine's (to the FFT's
    rounding) at a third of the cost.  The frames returned are the plan's
    own buffer: use them before the next call.

    Frames live in "padded" samples: frame ``t`` covers ``[t*H, t*H + n_fft)``
    and the signal is ``[start_trim, start_trim + length)``; outside it the
    analysis sees zeros.

    :meth:`iterate` runs each iteration in one compiled call per part of the
    frames (:func:`~stream.phase.kernels._gla_part`, FFTW called from it:
    no Python between the transforms), the parts on ``workers`` threads,
    each with plans of its own and, but the first, a signal buffer of its
    own, added into the shared one where the parts' frames overlap.  Where
    numba or ctypes' FFTW is missing, the same steps run from Python.
    """

    def __init__(self, spec: STFTSpec, n_frames: int, length: int, workers: int = 1):
        from .. import fft
        from ..engine import _safe_inverse
        c, n, h, t = spec.channels, spec.n_fft, spec.hop_length, n_frames
        self.spec, self.t = spec, t
        w = spec.padded_window
        self._w = w.astype(np.float32)
        m = np.arange(spec.n_bins)
        factor = spec.scale * np.exp(2j * np.pi * m * spec.phase_reference / n)
        # librosa's conventions (no scaling, phase from the frame's start)
        # need no factor: FFTW's missing 1/n goes into the synthesis window.
        plain = spec.scale == 1.0 and spec.phase_reference == 0
        self._fwd = None if plain else factor.astype(np.complex64)
        self._inv = None if plain else (1.0 / factor).astype(np.complex64)
        self._synth = (w / n).astype(np.float32)
        self._r = -(-n // h)                      # hops a frame spans
        span = (t - 1) * h + n
        wss = np.zeros((t + self._r - 1) * h)
        w2 = np.zeros(self._r * h)
        w2[:n] = w ** 2
        for k in range(self._r):
            wss[k * h:k * h + t * h] += np.tile(w2[k * h:(k + 1) * h], t)
        period = np.zeros(h)
        for k in range(self._r):
            period += w2[k * h:(k + 1) * h]
        gain = _safe_inverse(wss[:span], np.float32, float(period.max())).astype(np.float32)
        lo = spec.start_trim
        gain[:max(lo, 0)] = 0.0
        gain[lo + length:] = 0.0
        self._gain = gain
        self._span = span
        # Measured plans of a fixed batch (FFTW's wisdom keeps them) run 1.2-3x
        # faster than estimated plans of the file's own frame count.
        b = min(t, _FGLA_BATCH)
        self._inv_plan = fft.irfft_plan((c, b), n, np.float32, planning="measure")
        self._fwd_plan = fft.rfft_plan((c, b), n, np.float32, planning="measure")
        # The signal and the next iteration's (the compiled parts' sigs[0], sigs[1]).
        self._sigs = np.zeros((2, c, (t + self._r - 1) * h), np.float32)
        self._acc, self._acc2 = self._sigs
        self._out = np.empty((c, t, spec.n_bins), np.complex64)
        self._hop_rows, self._step = kernels()[3], kernels()[2]
        self._parts = self._compiled_parts(b, workers)

    def _compiled_parts(self, batch: int, workers: int):
        """The parts of the frames for :func:`~stream.phase.kernels._gla_run`
        (plans of their own, first frames, last), or None (no numba, no FFTW
        by ctypes): at most ``workers``, of equal numbers of frames, each worth
        a thread (at least 64)."""
        from .. import fft
        if kernels()[5] is None or self.t == 0 or _pause() is None:
            return None
        n_parts = max(1, min(int(workers), self.t // 64))
        cuts = [self.t * i // n_parts for i in range(n_parts + 1)]    # equal shares
        parts = []
        for a, z in zip(cuts, cuts[1:]):
            plans = fft.raw_plans(self.spec.n_fft, min(batch, z - a))
            if plans is None:
                return None
            parts.append((plans, a, z))
        h, r = self.spec.hop_length, self._r
        # The samples each part's overlap-add reaches, and its buffer for them.
        self._lo = np.array([a * h for _, a, _ in parts], np.int64)
        self._hi = np.array([(z + r - 1) * h for _, _, z in parts], np.int64)
        self._accs = np.zeros((n_parts if n_parts > 1 else 0,) + self._acc.shape, np.float32)
        return parts

    def __call__(self, frames) -> np.ndarray:
        t = self.t
        acc = self._synthesise(as_block(frames, self.spec), self._acc)
        fwd_out, out = self._fwd_plan.output_array, self._out
        b = fwd_out.shape[1]
        for i in range(0, t, b):
            k = min(b, t - i)
            self._analyse(acc, i, k)
            np.copyto(out[:, i:i + k], fwd_out[:, :k])
        return out                                # valid until the next call

    def iterate(self, mag, c, iterations: int, momentum: float, held=None,
                callback=None) -> np.ndarray:
        """Fast Griffin-Lim: ``iterations`` of ``t = P_mag(self(c))``, ``c = t +
        momentum * (t - t_prev)`` from ``c``; the last ``t`` (a new array).

        ``mag`` float32 and ``c`` complex64, ``(channels, n_frames, bins)``;
        ``held``: the first frames, held at these values ``(channels, k, bins)``
        (the seam of :class:`~stream.phase.blocks.BlockPhase`).  One pass per
        iteration, a batch of frames at a time: analysed, projected, and
        synthesised at once into the next iteration's signal (a second
        buffer), so the frames go through memory once an iteration.
        ``callback(i)`` after iteration ``i`` (compiled: once, at the end)."""
        if self._parts is not None and iterations > 0:
            return self._iterate_compiled(mag, c, iterations, momentum, held, callback)
        t, ch = self.t, self.spec.channels
        k_held = 0 if held is None else held.shape[1]
        prev = np.array(c, np.complex64)
        out = np.empty_like(prev)
        cur, nxt = self._synthesise(prev, self._acc), self._acc2
        inv_in, fwd_out = self._inv_plan.input_array, self._fwd_plan.output_array
        b = fwd_out.shape[1]
        mom = np.complex64(momentum)
        for it in range(iterations):
            last = it == iterations - 1
            if not last:
                nxt[:] = 0.0
            for i in range(0, t, b):
                k = min(b, t - i)
                self._analyse(cur, i, k)
                for q in range(ch):     # out = the projection, inv_in = the next c
                    self._step(mag[q, i:i + k].reshape(-1), fwd_out[q, :k].reshape(-1),
                               prev[q, i:i + k].reshape(-1), float(momentum),
                               out[q, i:i + k].reshape(-1), inv_in[q, :k].reshape(-1))
                if i < k_held:
                    j = min(k_held - i, k)
                    kept = held[:, i:i + j]
                    out[:, i:i + j] = kept
                    inv_in[:, :j] = kept + mom * (kept - prev[:, i:i + j])
                if not last:
                    self._synthesise_batch(nxt, i, k)
            if not last:
                nxt[:, :self._span] *= self._gain
                cur, nxt = nxt, cur
            prev, out = out, prev           # this projection is the next step's prev
            if callback is not None:
                callback(it + 1)
        return prev

    def _iterate_compiled(self, mag, c, iterations, momentum, held, callback):
        """:meth:`iterate` as one :func:`~stream.phase.kernels._gla_run` call
        per part, on threads of their own (``callback`` once, at the end)."""
        gla_run = kernels()[5]
        ch, b = self.spec.channels, self.spec.n_bins
        self._synthesise(np.asarray(c, np.complex64), self._sigs[0])
        pair = np.empty((2, ch, self.t, b), np.complex64)
        pair[0] = c
        flags = np.zeros(len(self._parts), np.int64)
        held = np.zeros((ch, 0, b), np.complex64) if held is None else \
            np.ascontiguousarray(held, np.complex64)
        none = np.zeros(0, np.complex64)
        fwd = none if self._fwd is None else self._fwd
        inv = none if self._inv is None else self._inv
        mag = np.ascontiguousarray(mag, np.float32)
        ends = run_parts(
            lambda i=i, pl=pl, a=a, z=z: gla_run(
                pl.execute, _pause(), pl.forward, pl.inverse, pl.fwd_in, pl.fwd_out, pl.inv_in,
                pl.inv_out, i, a, z, self._lo, self._hi, flags, self._sigs, self._accs, pair,
                mag, self._w, self._synth, self._gain, fwd, inv, float(momentum),
                self.spec.hop_length, held, iterations)
            for i, (pl, a, z) in enumerate(self._parts))
        if callback is not None:
            callback(iterations)
        return pair[ends[0]].copy()

    def _synthesise(self, x, acc) -> np.ndarray:
        """The signal of frames ``x`` (the inverse STFT, overlap-added) into ``acc``."""
        acc[:] = 0.0
        inv_in = self._inv_plan.input_array
        b = inv_in.shape[1]
        for i in range(0, self.t, b):
            k = min(b, self.t - i)
            np.copyto(inv_in[:, :k], x[:, i:i + k])
            self._synthesise_batch(acc, i, k)
        acc[:, :self._span] *= self._gain       # the frames read no further than the span
        return acc

    def _synthesise_batch(self, acc, i: int, k: int):
        """Overlap-add the inverse FFT of the plan's input (frames ``i .. i+k``) into ``acc``."""
        inv_in = self._inv_plan.input_array
        if self._inv is not None:
            np.multiply(inv_in[:, :k], self._inv, out=inv_in[:, :k])
        self._inv_plan.execute()
        self._hop_rows(self._inv_plan.output_array, self._synth, acc, i, k,
                       self.spec.hop_length, True)

    def _analyse(self, acc, i: int, k: int):
        """Frames ``i .. i+k`` of the signal ``acc`` into the forward plan's output."""
        self._hop_rows(self._fwd_plan.input_array, self._w, acc, i, k, self.spec.hop_length,
                       False)
        self._fwd_plan.execute()
        if self._fwd is not None:
            y = self._fwd_plan.output_array[:, :k]
            np.multiply(y, self._fwd, out=y)


#: Frames per FFT batch of Griffin-Lim's whole-array step: a batch's frames
#: stay in cache from its analysis to its synthesis.  Measured (32 iterations
#: of _Consistent.iterate, 344 frames of n_fft 1024, best of 9, on a shared
#: machine): 40 ms at 32 frames, 43 at 64, 45 at 128; the same within noise at
#: n_fft 2048 and 400.
_FGLA_BATCH = 32


def reconstruct_phase(mag, spec: STFTSpec, method: str = "pghi", iterations: int | None = None,
                      rng=0, lookahead: int = 1, tol: float = 1e-5, momentum: float = 0.99,
                      callback=None) -> np.ndarray:
    """Complex frames (spec convention) for linear magnitudes, by ``method``:

    - 'rtpghi': the streaming :class:`RTPGHI` (``lookahead``), no iterations;
    - 'pghi': whole-file :func:`pghi`, then ``iterations`` (default 32) of :func:`fgla`
      (and a random start instead where PGHI's stalls them: :func:`_unstalled`);
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
        out = fgla(a, spec, init, iterations=n_it, momentum=momentum, callback=callback)
        return _unstalled(a, spec, out, n_it, momentum, gen)
    init = gen.uniform(-np.pi, np.pi, size=a.shape)
    return fgla(a, spec, init, iterations=n_it, momentum=momentum, callback=callback)


#: Frames of the sample on which the PGHI start is tried against a random one
#: (at least; an eighth of longer files).
STALL_SAMPLE = 64


def _unstalled(a, spec: STFTSpec, out, iterations: int, momentum: float, gen):
    """Griffin-Lim from PGHI's phase, unless a random start does better.

    A start that is consistent in each region but not across them (a steady
    dual tone beating inside one bin: PGHI's phase jumps where the
    magnitude dips) can hold the iterations in a worse optimum than a
    random start reaches (at n_fft 2048 / hop 512: -27 dB against -34).  So
    the ``STALL_SAMPLE`` frames (an eighth of a long file) where the result
    is worst are run again from
    random phases, as a clip of their own, for the same iterations; where
    that wins by more than 1 dB on the frames inside the sample, the whole
    file is run from the same random start too (the sample's draws in
    place) and the better of the two is kept.
    Costs two consistency checks and the sample's iterations (a fifth of
    the work on a 4 s clip at hop 512, an eighth on long files); twice the
    work where it stalls.
    """
    a3 = _as_block(a, spec, "magnitude", np.float32)
    t = a3.shape[1]
    edge = -(-spec.n_fft // spec.hop_length)       # frames the sample's ends leave unsure
    if iterations < 1 or t < 4 * edge + 4:
        return out
    err = _frame_errors(a3, _as_block(out, spec, "frames", None), spec)
    w = min(t, max(STALL_SAMPLE, t // 8))
    window = np.convolve(err, np.ones(w), mode="valid")
    i0 = int(np.argmax(window))
    part = a3[:, i0:i0 + w]
    start = gen.uniform(-np.pi, np.pi, size=a3.shape)     # the sample's draws are the file's
    trial = fgla(_unblock(part, spec), spec, start[:, i0:i0 + w], iterations=iterations,
                 momentum=momentum)
    e_trial = _frame_errors(part, _as_block(trial, spec, "frames", None), spec)
    inner = slice(edge, w - edge) if w < t else slice(None)
    if not e_trial[inner].sum() < err[i0:i0 + w][inner].sum() * 10 ** -0.1:
        return out
    if w == t:                                   # the sample was the whole file
        return trial
    other = fgla(a, spec, _unblock(start, spec), iterations=iterations, momentum=momentum)
    e_other = _frame_errors(a3, _as_block(other, spec, "frames", None), spec)
    return other if e_other.sum() < err.sum() else out


def _frame_errors(mag3, frames3, spec: STFTSpec) -> np.ndarray:
    """Per frame, ``|| |STFT(ISTFT(frames))| - mag ||**2`` summed over channels and bins."""
    t = mag3.shape[1]
    y = _Consistent(spec, t, longest_length(spec, t))(frames3)
    return ((np.abs(y) - mag3) ** 2).sum(axis=(0, 2))


# ------------------------------------------------------ the pipeline stage
class WholeFilePhase:
    """A whole-file method as a pipeline stage: holds the magnitudes it is
    pushed and phases them all at :meth:`flush` (:func:`reconstruct_phase`).

    ``seconds`` is the time the method took.  ``callback(i)`` is called after
    Griffin-Lim's iteration ``i`` (progress; where the iterations are
    compiled, once, after the last)."""

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


_PAUSE = None


def _pause():
    """libc's ``sched_yield`` by ctypes (what the compiled parts wait with), or None."""
    global _PAUSE
    if _PAUSE is None:
        import ctypes
        try:
            f = ctypes.CDLL(None).sched_yield
            f.restype, f.argtypes = ctypes.c_int, []
            _PAUSE = f
        except (OSError, AttributeError):
            _PAUSE = False
    return _PAUSE or None
