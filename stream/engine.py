"""The streaming inverse STFT (and its forward twin).  No I/O here.

:class:`Reconstructor` turns complex frames into samples with FFTW's inverse
real FFT and a least-squares overlap-add.  Every push returns exactly the
samples that became final: once frame ``t`` is in, no later frame touches
any sample before frame ``t + 1`` starts, so those samples leave at once.
That is the whole algorithmic latency; the engine adds nothing to it.

Overlap-add
-----------
Only the window's support (its non-zero run, ``S`` samples starting at
``lead``) is added, so time is counted in "support coordinates"
``u = n - lead``: frame ``t`` covers ``u`` in ``[t*H, t*H + S)`` and, after it,
every ``u < (t + 1)*H`` is final.  The numerator ``sum_t w*y_t`` accumulates in
a fixed buffer of ``(K + ceil(S/H))*H`` samples per channel, read forward and
rewound (one copy of ``S - H`` samples) every ``K`` hops: a ring buffer
unrolled, so that a frame's add is one contiguous slice.  The denominator
``sum_t w**2`` is periodic with period ``H`` except in the first ``S - H``
samples (fewer frames overlap there) and in the tail that :meth:`flush`
returns; its inverse is precomputed for both.  Where it is zero (the edges of
a window that reaches zero) the numerator is left as it is, as librosa does.

Blocks of frames go through batched FFTW plans and a vectorised overlap-add
that adds the same products in the same order as frame by frame: a short
block by ``ceil(S/H)`` strided adds of hop-sized pieces into the buffer, a
block that follows one (or of ``2*ceil(S/H)`` frames or more) by one
``einsum`` over a strided view of the FFT output itself, which windows and
sums the pieces of each hop in one pass (see
:meth:`Reconstructor._sum_pieces`; the two give the same samples bit for
bit).  A push of more than :data:`SEGMENT_BLOCKS` blocks goes in segments
that transform again the frames before them, so that threads can take them
at once (``workers``; the samples do not depend on how many, beyond one).  The samples
are the same as frame by frame to the rounding of the FFT (FFTW may pick a
different algorithm for one frame than for a batch; where it does not, they
are equal bit for bit).

Frame by frame, the per-call Python is most of the cost (the FFT of 1024
samples takes ~1 us): once the head is out, :meth:`Reconstructor.push` of one
frame runs on views made at construction, with no trimming to do, for as many
frames as :meth:`Reconstructor._arm` allows (up to the next rewind or the
end that ``length`` sets); every other call takes the general path.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from . import fft
from .batch import FFT_ROWS, Batch
from .spec import SpecError, STFTSpec
from .workers import default_workers, run_parts

__all__ = ["Reconstructor", "Analyzer", "istft", "stft", "consistency"]


def as_block(x, spec: STFTSpec, what: str = "frames", dtype=None) -> np.ndarray:
    """One frame or a block -> a ``(channels, n_frames, bins)`` view.

    Mono takes ``(bins,)`` or ``(n_frames, bins)``; more channels take
    ``(channels, bins)`` or ``(channels, n_frames, bins)``.
    """
    a = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
    c, b = spec.channels, spec.n_bins
    if c == 1 and a.ndim in (1, 2):
        a = a.reshape((1,) * (3 - a.ndim) + a.shape)
    elif c > 1 and a.ndim == 2:
        a = a[:, None, :]
    if a.ndim != 3 or a.shape[0] != c or a.shape[2] != b:
        lay = "(bins,) or (n_frames, bins)" if c == 1 else \
            "(channels, bins) or (channels, n_frames, bins)"
        raise SpecError(f"{what} of shape {np.shape(x)} do not fit {lay} with "
                        f"channels={c}, bins={b} (n_fft={spec.n_fft})")
    return a


def _support(w: np.ndarray) -> tuple[int, int]:
    nz = np.flatnonzero(w)
    return int(nz[0]), int(nz[-1] - nz[0] + 1)


def overlap_hops(spec: STFTSpec) -> int:
    """``R``: the hops one frame's window support spans (the frames that
    overlap each sample, at most)."""
    return -(-_support(spec.padded_window)[1] // spec.hop_length)


def _window_sumsquare(ws2: np.ndarray, hop: int, u0: int, u1: int, t_first: int,
                      t_last: int) -> np.ndarray:
    """``sum_t ws2[u - t*hop]`` for ``u`` in ``[u0, u1)`` over frames ``t_first..t_last``."""
    out = np.zeros(u1 - u0)
    s = len(ws2)
    lo = max(t_first, (u0 - s) // hop)
    hi = min(t_last, (u1 - 1) // hop)
    for t in range(lo, hi + 1):
        a, b = max(u0, t * hop), min(u1, t * hop + s)
        if a < b:
            out[a - u0:b - u0] += ws2[a - t * hop:b - t * hop]
    return out


def _safe_inverse(wss: np.ndarray, dtype, ref: float = 0.0) -> np.ndarray:
    # librosa's rule: divide where the sum exceeds the smallest normal number,
    # leave the numerator (which is ~0 there) where it does not.  Also leave it
    # where the window is below the rounding of the FFT (sqrt(wss) < eps *
    # sqrt(ref), e.g. blackman's w[0] = -1.4e-17 at an edge with center=False):
    # dividing there turns rounding noise into a spike of 1e9.
    fi = np.finfo(dtype)
    tiny = max(float(fi.tiny), float(fi.eps) ** 2 * ref)
    return np.where(wss > tiny, 1.0 / np.where(wss > tiny, wss, 1.0), 1.0).astype(dtype)


def _default_threads() -> int:
    # One FFTW thread unless SPECSTREAM_FFTW_THREADS asks for more: the batches
    # are many small 1-D transforms, where a second thread gained little on an
    # idle 2-core machine and cost 2-60x (stalls of seconds) on a busy one.
    try:
        n = int(os.environ.get("SPECSTREAM_FFTW_THREADS", "1"))
    except ValueError:
        n = 1
    return max(1, min(n, os.cpu_count() or 1))


#: Blocks per segment of a long push: segments are independent (each
#: transforms again the R-1 frames before it), so threads take them in any
#: order; ~10 ms of work at 256 frames of 1024, so that a thread the machine
#: has not scheduled holds back little.
SEGMENT_BLOCKS = 16


class Reconstructor:
    """Streaming least-squares inverse STFT.

    Parameters
    ----------
    spec : STFTSpec
        How the frames were made.  Its scaling and phase reference are undone
        here (folded into the copy of each frame into the FFT buffer).
    length : int, optional
        Total samples to produce (after the centre trim): output stops there,
        and :meth:`flush` pads with zeros up to it.  Default: the analysis'
        own length, ``spec.samples_for(frames)``.
    dtype : numpy float dtype
        float32 (default) or float64 for the FFT and the overlap-add.
    block_frames : int
        Frames per batched FFT in :meth:`push` of a block.
    threads : int
        FFTW threads for the batched plan (single frames always use one).
        Default 1, or ``SPECSTREAM_FFTW_THREADS``.
    planning : str
        How the FFT plans are made (:data:`stream.fft.PLANNING`): 'measure'
        (default; FFTW measures once per size and the wisdom file keeps it),
        'wisdom' (measured plans only for sizes the wisdom file knows, else by
        estimate, the file never written: a receiver's choice for sizes a
        remote peer picked, so that no header can stall it), 'estimate'.
    workers : int
        Threads for a push of more than :data:`SEGMENT_BLOCKS` blocks
        (``stream.istft``, a long file).  With more than one, it goes in
        segments of that many blocks, each of which transforms again the
        ``R-1`` frames before it, so that segments run at once (FFTW and
        numpy release the GIL); any number of threads gives the same samples,
        bit for bit, and one (all on the caller's thread, no segments) the
        same to the rounding of the FFT.  Default: the CPUs this process may
        use, at most 4, or ``SPECSTREAM_BLOCK_THREADS``.  Frames one by one and
        shorter pushes stay on the caller's thread.

    Output arrays are ``(n_samples,)`` for one channel and
    ``(channels, n_samples)`` for more.
    """

    def __init__(self, spec: STFTSpec, length: int | None = None, dtype=np.float32,
                 block_frames: int = 256, threads: int | None = None,
                 planning: str = "measure", workers: int | None = None):
        self.spec = spec
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise SpecError(f"dtype must be float32 or float64, got {self.dtype}")
        self.cdtype = np.result_type(self.dtype, np.complex64)
        if length is not None and int(length) < 0:
            raise SpecError(f"length must be >= 0, got {length}")
        self._length = None if length is None else int(length)
        self.block_frames = max(1, int(block_frames))
        self._hop = spec.hop_length
        self.threads = _default_threads() if threads is None else max(1, int(threads))
        self.workers = default_workers() if workers is None else max(1, int(workers))
        if planning not in fft.PLANNING:
            raise SpecError(f"planning={planning!r} is not one of {', '.join(fft.PLANNING)}")
        self.planning = planning

        n, h, c = spec.n_fft, spec.hop_length, spec.channels
        w = spec.padded_window
        self._lead, self._S = _support(w)
        ws = w[self._lead:self._lead + self._S]
        ws2 = ws ** 2
        self._R = overlap_hops(spec)                  # hops one frame's support spans
        # Synthesis window with FFTW's missing 1/n_fft; the analysis scale s and
        # the phase reference r become one factor per bin, applied on the copy.
        self._synth = (ws / n).astype(self.dtype)
        # The same over all n_fft samples (zero outside the support): a block's
        # frames are windowed in one contiguous multiply, ~3x faster in numpy
        # than one on the support's strided view, with the same products.
        self._synth_full = np.zeros(n, self.dtype)
        self._synth_full[self._lead:self._lead + self._S] = self._synth
        self._ola_weights = self._make_ola_weights()
        self._bin_factor = self._make_bin_factor()

        period = _window_sumsquare(ws2, h, self._R * h, (self._R + 1) * h, -1 << 40, 1 << 40)
        self._wss_ref = float(period.max())
        self._inv_periodic = _safe_inverse(period, self.dtype, self._wss_ref)
        self._u_head = self._R * h                    # beyond this the sum is periodic
        self._inv_head = _safe_inverse(
            _window_sumsquare(ws2, h, 0, self._u_head, 0, 1 << 40), self.dtype, self._wss_ref)
        self._ws2 = ws2

        self._cap = (self.block_frames + self._R) * h
        self._acc = np.zeros((c, self._cap), dtype=self.dtype)
        self._k = 0            # hops from the start of _acc to the next final sample
        self.frames = 0        # frames pushed so far; support sample frames * H is next final
        self._plan1 = fft.irfft_plan((c,), n, self.dtype, threads=1, planning=self.planning)
        self._plans = {}
        # Each segment thread's batches (this thread's first) for later segments.
        self._stores = [{} for _ in range(self.workers)]
        # The raw FFT output of the last R-1 frames, when the last block left it
        # (einsum path): valid while frames == _carried_at.
        self._carried = None
        self._carried_at = -1
        # Output bookkeeping in signal samples: n = u + lead, then the centre trim.
        self._skip = max(spec.start_trim - self._lead, 0)
        self._zeros_first = max(self._lead - spec.start_trim, 0)
        self.samples_out = 0
        self._held = None      # final samples that may be end padding (no length given)
        self._one_shape = (spec.n_bins,) if c == 1 else (c, spec.n_bins)
        self._end_offset = spec.frame_span - h - spec.start_trim - spec.end_trim
        self._flushed = False
        self._make_hot_path()

    def _make_hot_path(self):
        # One frame costs ~2 us of numpy and FFTW work, so each attribute
        # lookup and slice counts: everything a frame touches is made here,
        # once, and push() unpacks it from one tuple.  Views for mono are 1-D,
        # so the hop returned needs no [0].
        h, lead, s, c = self._hop, self._lead, self._S, self.spec.channels
        plan = self._plan1
        # The same plan as a batch of one frame, for _finish.
        self._one = Batch.of_plan(plan)
        fill = plan.input_array[0] if c == 1 else plan.input_array
        out = plan.output_array[0] if c == 1 else plan.output_array
        acc = self._acc[0] if c == 1 else self._acc
        # Frame by frame, the buffer is rewound after at most _hot_hops hops
        # (a rewind moves the overlap exactly, so the samples do not change).
        self._hot_hops = min(self.block_frames, 512)
        ks = range(self._hot_hops + 1)
        adds = [acc[..., k * h:k * h + s] for k in ks]       # where the frame at hop k adds
        finals = [acc[..., k * h:k * h + h] for k in ks]     # the hop it completes
        self._hot = (self._one_shape, fill, self._bin_factor, plan.execute,
                     out[..., lead:lead + s], self._synth, adds, finals, self._inv_periodic, h)
        # push() takes a frame by the hot path while frames < _hot_until (_arm).
        self._hot_until = 0

    # ------------------------------------------------------------ properties
    @property
    def length(self) -> int | None:
        """Total samples to produce, or None for the analysis' own length.
        May be changed between pushes (a stream cut short ends at its frames)."""
        return self._length

    @length.setter
    def length(self, value: int | None):
        self._length = None if value is None else int(value)
        self._hot_until = 0     # the next push takes the full path and re-arms

    @property
    def latency(self) -> int:
        """Samples between a sample's position in the signal and the end of
        the frame that completes it: ``S - H`` in the support (``n_fft - hop``
        for a window with no zero ends)."""
        return self._S - self.spec.hop_length

    @property
    def pending(self) -> int:
        """Samples held in the overlap buffer, not yet final."""
        return (self._S - self.spec.hop_length) if self.frames else 0

    # --------------------------------------------------------------- pushing
    def push(self, frames) -> np.ndarray:
        """Add frames; return the samples that became final.

        ``frames``: complex bins, one frame ``(bins,)`` or ``(channels, bins)``,
        or a block ``(n_frames, bins)`` or ``(channels, n_frames, bins)``.
        """
        if self.frames < self._hot_until and type(frames) is np.ndarray:
            # The streaming hot path: one frame whose hop _deliver would pass
            # through unchanged (see _arm), the arithmetic of _finish.
            shape, fill, factor, execute, seg, synth, adds, finals, inv, hop = self._hot
            if frames.shape == shape and frames.dtype.kind == "c":
                k = self._k
                if factor is None:
                    fill[...] = frames
                else:
                    np.multiply(frames, factor, out=fill)
                execute()
                seg *= synth
                acc = adds[k]
                acc += seg
                self._k = k + 1
                self.frames += 1
                self.samples_out += hop
                return finals[k] * inv
        y = self._push(frames)
        self._arm()
        return y

    def _push(self, frames) -> np.ndarray:
        if self._flushed:
            raise SpecError("push after flush: make a new Reconstructor for a new stream")
        if (type(frames) is np.ndarray and frames.shape == self._one_shape
                and frames.dtype.kind == "c"):
            x = frames.reshape(self.spec.channels, 1, -1)    # one frame: skip as_block's checks
        else:
            x = self._as_block(frames)
        t = x.shape[1]
        if t == 0:   # nothing ready yet (e.g. a phase rebuilder's lookahead)
            return self._deliver(np.zeros((x.shape[0], 0), self.dtype))
        y = np.empty((x.shape[0], t * self._hop), self.dtype)
        self._run_blocks(x, y)
        return self._deliver(y)

    def _arm(self):
        """Set how many frames the hot path of :meth:`push` may take from here.

        Once the head is out (the trim skipped, the zeros for the lead added,
        the window-sum past its start), a frame's hop leaves unchanged unless
        ``length`` is near or samples are held; and held samples, once any
        are, are held for good (the margin to the end stays what it is).
        """
        if (self._flushed or self._skip or self._zeros_first or self._held is not None
                or self.frames < self._R):
            self._hot_until = 0
            return
        n = self._hot_hops + 1 - self._k                 # frames until a rewind
        if self._length is not None:
            n = min(n, (self._length - self.samples_out) // self._hop)
        self._hot_until = self.frames + max(n, 0)

    def flush(self) -> np.ndarray:
        """End of stream: return the remaining samples (and the zero padding
        that ``length`` asks for).  Later pushes are refused."""
        self._hot_until = 0
        if self._flushed:
            return self._deliver(np.zeros((self.spec.channels, 0), self.dtype))
        self._flushed = True
        h = self._hop
        if self.frames == 0:
            tail = np.zeros((self.spec.channels, 0), self.dtype)
        else:
            u, u1 = self.frames * h, (self.frames - 1) * h + self._S
            wss = _window_sumsquare(self._ws2, h, u, u1, 0, self.frames - 1)
            p = self._k * h
            tail = self._acc[:, p:p + u1 - u] * _safe_inverse(wss, self.dtype, self._wss_ref)
        out = self._deliver(tail)
        target = self._length
        if target is None:
            target = self.spec.samples_for(self.frames)
        short = target - self.samples_out
        if short > 0:   # the trailing zeros of the window span, or padding to length
            pad = np.zeros(out.shape[:-1] + (short,), self.dtype)
            self.samples_out += short
            out = np.concatenate([out, pad], axis=-1)
        elif short < 0:   # the centre padding at the end, when it came out already
            cut = min(-short, out.shape[-1])
            self.samples_out -= cut
            out = out[..., :out.shape[-1] - cut]
        return out

    # ------------------------------------------------------------- internals
    def _make_ola_weights(self):
        # _overlap_interior's window, piece j of the oldest frame first: row j
        # is synth[(R-1-j)*H:(R-j)*H]; the oldest piece has `last` samples.
        h, r = self._hop, self._R
        last = self._S - (r - 1) * h
        rows = np.zeros((r, h), self.dtype)
        for j in range(r):
            piece = self._synth[(r - 1 - j) * h:(r - j) * h]
            rows[j, :len(piece)] = piece
        return rows[:, :last].copy(), rows[1:, last:].copy(), last

    def _views(self, batch) -> tuple:
        """:meth:`_overlap_interior`'s strided views of ``batch.buf``.

        ``va[:, k, j, i]`` is support sample ``(R-1-j)*H + i`` of buffer row
        ``k + j``: the ``R`` pieces that hop ``k`` sums, the oldest frame's
        first, ``last`` samples each; ``vb``: the samples past ``last``, from
        the ``R-1`` newer frames.  Neither reaches outside a frame's support.
        """
        h, r, lead, c = self._hop, self._R, self._lead, self.spec.channels
        last = self._ola_weights[2]
        rows = batch.t + r - 1
        st, it = batch.buf.strides, batch.buf.itemsize
        strides = (st[0], st[1], st[1] - h * it, it)
        va = np.lib.stride_tricks.as_strided(batch.buf[:, :, lead + (r - 1) * h:],
                                             (c, rows, r, last), strides, writeable=False)
        vb = None
        if last < h:
            vb = np.lib.stride_tricks.as_strided(batch.buf[:, 1:, lead + (r - 2) * h + last:],
                                                 (c, rows, r - 1, h - last), strides,
                                                 writeable=False)
        return va, vb

    def _make_bin_factor(self):
        spec = self.spec
        gain = 1.0 / spec.scale
        r = spec.phase_reference
        if r:
            m = np.arange(spec.n_bins)
            return (gain * np.exp(-2j * np.pi * m * r / spec.n_fft)).astype(self.cdtype)
        if gain != 1.0:
            return np.full(spec.n_bins, gain, dtype=self.dtype)
        return None

    def _as_block(self, frames) -> np.ndarray:
        x = np.asarray(frames)
        if not np.iscomplexobj(x):
            raise SpecError("frames must be complex bins; decode magnitude and phase "
                            "with stream.Decoder, or rebuild a phase with stream.phase")
        return as_block(x, self.spec)

    def _batch(self, t: int, store: dict | None = None, views: bool = False) -> Batch:
        """The FFTW plans, buffers and views for a block of ``t`` frames, from
        ``store`` (a segment's; default the stream's own).  The views of the
        einsum path (:meth:`_sum_pieces`) come with blocks of ``4(R-1)`` frames
        or more, whose buffer they make at most half as large again, or when
        asked for (a segment's blocks)."""
        views = views or t >= 4 * (self._R - 1)
        if store is None:
            store = self._plans
            if t == 1 and not views:
                return self._one
        batch = store.get((t, views))
        if batch is None:
            if len(store) > 4:
                store.clear()
            # Measure only the plans every full block uses (FFT_ROWS frames
            # each); odd sizes (the last block of a file, a live stream's
            # messages) are one plan by estimate, in microseconds, whose rounding
            # measured wisdom for another size does not change.
            c, r = self.spec.channels, self._R
            full = t == self.block_frames
            batch = Batch(self.spec.n_fft, (c, t, self.spec.n_bins), self.dtype, self.threads,
                          self.planning if full else "estimate", r - 1 if views else 0,
                          FFT_ROWS if full else t)
            if views:
                batch.views = self._views(batch)
                # The numerators of its t hops and of the R-1 after (their partial sums).
                batch.num = np.empty((c, t + r - 1, self._hop), self.dtype)
            store[t, views] = batch
        return batch

    def _run_blocks(self, x, dest):
        """The frames of ``x`` (``(c, t, bins)``) in, block by block; the ``t*H``
        samples they complete written into ``dest`` (``(c, t*H)``, before any
        trim: :meth:`_deliver` does that).

        More than :data:`SEGMENT_BLOCKS` blocks, with ``workers`` > 1, go in
        segments: the first goes on from the frames before, on this thread; the
        others transform again the ``R-1`` frames before them and run on up to
        ``workers`` threads; afterwards the state is the last segment's.
        """
        t, step, r = x.shape[1], self.block_frames, self._R
        span = SEGMENT_BLOCKS * step
        if self.workers == 1 or t <= span or step < 16 or span < 2 * r:
            self._sequential(x, dest)
            return
        u0 = self.frames * self._hop
        later = list(range(span, t, span))
        ends = {}
        lock = threading.Lock()

        def run(store):
            while True:
                with lock:
                    if not later:
                        return
                    f0 = later.pop(0)
                ends[f0] = self._segment(x, f0, min(f0 + span, t), dest, u0, store)

        def stopping_all(fn):
            def call():
                try:
                    fn()
                except BaseException:
                    with lock:
                        later.clear()       # the others stop at their next segment
                    raise
            return call

        def first():
            self._sequential(x[:, :span], dest[:, :span * self._hop])
            run(self._stores[0])

        run_parts([stopping_all(first)] +
                  [stopping_all(lambda store=store: run(store))
                   for store in self._stores[1:min(self.workers, len(later))]])
        tail, raw = ends[max(ends)]
        self.frames += t - span
        self._acc[...] = 0
        self._acc[:, :tail.shape[1] * self._hop] = tail.reshape(tail.shape[0], -1)
        self._k = 0
        self._carried = raw
        self._carried_at = self.frames

    def _sequential(self, x, dest):
        """:meth:`_run_blocks` on this thread, each block going on from the last."""
        h = self._hop
        for i in range(0, x.shape[1], self.block_frames):
            block = x[:, i:i + self.block_frames]
            batch = self._batch(block.shape[1])
            batch.transform(block, self._bin_factor)
            self._finish(batch, dest[:, i * h:(i + block.shape[1]) * h])

    def _segment(self, x, f0, f1, dest, u0, store):
        """Frames ``f0 .. f1`` of ``x`` (``f0 >= R-1``) with no state but the
        frames before them, transformed again; samples into ``dest``.  Returns
        the partial sums of the ``R-1`` hops after and the raw FFT output of
        the last ``R-1`` frames (the state the last segment leaves)."""
        c, h, r, step = self.spec.channels, self._hop, self._R, self.block_frames
        raw = None
        for i in range(f0, f1, step):
            t = min(step, f1 - i)
            batch = self._batch(t, store, views=True)
            batch.transform(x[:, i:i + t], self._bin_factor)
            if raw is None:
                batch.transform_before(x[:, i - (r - 1):i], self._bin_factor)
            elif raw is not batch:
                batch.buf[:, :r - 1] = raw.buf[:, :r - 1]
            num = self._sum_pieces(batch, 0)
            np.multiply(num[:, :t], self._inverse(u0 + i * h, t),
                        out=dest[:, i * h:(i + t) * h].reshape(c, t, h))
            batch.buf[:, :r - 1] = batch.buf[:, t:t + r - 1]
            raw = batch
        return num[:, t:].copy(), raw.buf[:, :r - 1].copy()

    def _finish(self, batch, dest):
        """The overlap-add of a transformed block, going on from the state: the
        ``t`` hops it completes into ``dest`` (a ``(c, t*H)`` view)."""
        c, t, h = self.spec.channels, batch.t, self._hop
        carried = self._carried_at == self.frames
        if batch.views is not None and (carried or t >= 2 * self._R):
            num = self._overlap_interior(batch, carried)
        else:
            # The last frame must end inside _acc; one frame at a time, the hot
            # path's views end at _hot_hops.
            if self._k + t - 1 > (self.block_frames if t > 1 else self._hot_hops):
                self._rewind()
            num = self._overlap_pieces(batch.out, self._k * h)
            self._k += t
        np.multiply(num, self._inverse(self.frames * h, t), out=dest.reshape(c, t, h))
        self.frames += t

    def _untrimmed(self, t: int) -> bool:
        """Whether the samples of the next ``t`` frames leave as they are (no
        trim, no zeros before them, nothing held, within ``length``): then
        they may be written where the caller says, :meth:`_deliver` skipped."""
        return not (self._skip or self._zeros_first or self._held is not None
                    or self._flushed or self._length is None
                    or self.samples_out + t * self._hop > self._length)

    def _overlap_pieces(self, out, p) -> np.ndarray:
        """The numerator of the ``t`` hops a block completes, ``(c, t, H)``: ``R``
        strided adds into ``_acc``, which keeps what later frames add to."""
        c, t, _ = out.shape
        h, s, r = self._hop, self._S, self._R
        out *= self._synth_full
        seg = out[:, :, self._lead:self._lead + s]
        view = self._acc[:, p:p + (t + r - 1) * h].reshape(c, t + r - 1, h)
        # Hop-sized pieces of every frame at once, the oldest frame's piece
        # first: the same order of additions as frame by frame, same rounding.
        for j in reversed(range(r)):
            piece = seg[:, :, j * h:min((j + 1) * h, s)]
            view[:, j:j + t, :piece.shape[2]] += piece
        return view[:, :t]

    def _sum_pieces(self, batch: Batch, k0: int) -> np.ndarray:
        """``batch.num`` from hop ``k0`` on: each hop ``sum_j w_j * piece_j`` over
        the ``R`` frames of ``batch.buf`` that overlap it, oldest first (the
        order of :meth:`_overlap_pieces`' additions), by ``einsum`` over the
        strided views of :meth:`_views`: windowed and summed in one pass."""
        a, b, last = self._ola_weights
        va, vb = batch.views
        y = batch.num
        np.einsum("ckji,ji->cki", va[:, k0:], a, out=y[:, k0:, :last])
        if vb is not None:    # the oldest piece ends with the support: one frame fewer
            np.einsum("ckji,ji->cki", vb[:, k0:], b, out=y[:, k0:, last:])
        return y

    def _overlap_interior(self, batch: Batch, carried: bool) -> np.ndarray:
        """:meth:`_overlap_pieces` by :meth:`_sum_pieces`: the same products
        added in the same order, in fewer passes over memory.

        The rows before the block's own in ``batch.buf`` hold the last ``R-1``
        frames' raw output when the last block left it (``carried``); else
        (``t >= 2R``) the first ``R-1`` hops add the block's first frames to
        the partial sums in ``_acc``.  The zero rows after give the partial
        sums of the ``R-1`` hops after the block, which go to ``_acc`` from its
        start (``_k`` = 0, as if rewound).
        """
        c, t = self.spec.channels, batch.t
        h, r = self._hop, self._R
        if carried:
            batch.buf[:, :r - 1] = self._carried
        y = self._sum_pieces(batch, 0 if carried else r - 1)
        p = self._k * h
        if not carried:
            self._add_to_overlap(batch.out[:, :r - 1], p, y[:, :r - 1])
        if p:    # what was written since the last rewind (the head added in place)
            self._acc[:, :p + (r - 1) * h] = 0
        self._acc[:, :(r - 1) * h] = y[:, t:].reshape(c, -1)
        self._k = 0
        self._carried = batch.buf[:, t:t + r - 1].copy()
        self._carried_at = self.frames + t
        return y[:, :t]

    def _add_to_overlap(self, first, p, y):
        """The first ``R-1`` hops of a block into ``y``: the partial sums in
        ``_acc`` from ``p`` plus the block's first ``R-1`` frames ``first``."""
        c = first.shape[0]
        h, s, r, lead = self._hop, self._S, self._R, self._lead
        seg = first[:, :, lead:lead + s] * self._synth
        head = self._acc[:, p:p + (r - 1) * h].reshape(c, r - 1, h)
        for j in reversed(range(r - 1)):
            head[:, j:] += seg[:, :r - 1 - j, j * h:(j + 1) * h]
        y[...] = head

    def _inverse(self, u: int, t: int) -> np.ndarray:
        """1 / window-sum-square for the ``t`` hops of support samples from ``u``
        (a multiple of H): ``(t, H)``, or ``(H,)`` that broadcasts to it."""
        h = self._hop
        if u >= self._u_head:
            return self._inv_periodic
        head = self._inv_head[u:u + t * h].reshape(-1, h)
        if len(head) == t:
            return head
        return np.concatenate([head, np.broadcast_to(self._inv_periodic, (t - len(head), h))])

    def _rewind(self):
        # Move the unfinished overlap (S - H samples) to the front; clear what
        # was written after it (nothing past p + S - H ever is: the last frame
        # added ends there), so the buffer is zero beyond the overlap again.
        live = self._S - self._hop
        p = self._k * self._hop
        self._acc[:, :live] = self._acc[:, p:p + live]
        self._acc[:, live:p + live] = 0
        self._k = 0

    def _deliver(self, y: np.ndarray) -> np.ndarray:
        if self._skip:
            k = min(self._skip, y.shape[1])
            y = y[:, k:]
            self._skip -= k
        if self._zeros_first:
            y = np.concatenate([np.zeros((y.shape[0], self._zeros_first), y.dtype), y], axis=1)
            self._zeros_first = 0
        if self._length is not None:
            y = y[:, :max(self._length - self.samples_out, 0)]
        else:
            # No length: the end is the analysis' own length, samples_for(frames).
            # When the hop exceeds half the frame span less the window's lead,
            # samples that are final may still be the centre padding at the end
            # if no frame follows; hold them until the next frame (or flush) says.
            if self._held is not None:
                y = np.concatenate([self._held, y], axis=1)
                self._held = None
            end = self.frames * self._hop + self._end_offset if self.frames else 0
            limit = max(end - self.samples_out, 0)     # end = spec.samples_for(self.frames)
            if y.shape[1] > limit:
                self._held = y[:, limit:]
                y = y[:, :limit]
        self.samples_out += y.shape[1]
        return y[0] if self.spec.channels == 1 else y


class Analyzer:
    """Streaming forward STFT in the conventions of ``spec`` (the inverse's twin).

    ``push(samples)`` takes ``(n,)`` or ``(channels, n)`` float samples and
    returns the complex frames that became complete, ``(n_frames, bins)`` or
    ``(channels, n_frames, bins)``; ``flush()`` pads the end as the analysis
    does (zeros past the signal, half a frame with ``center``).
    """

    def __init__(self, spec: STFTSpec, dtype=np.float32):
        self.spec = spec
        self.dtype = np.dtype(dtype)
        c, n = spec.channels, spec.n_fft
        self._window = spec.padded_window.astype(self.dtype)
        r = spec.phase_reference
        m = np.arange(spec.n_bins)
        factor = spec.scale * np.exp(2j * np.pi * m * r / n) if r else None
        if factor is None and spec.scale != 1.0:
            factor = np.full(spec.n_bins, spec.scale)
        self._factor = None if factor is None else factor.astype(
            np.result_type(self.dtype, np.complex64))
        # Samples before the signal: the centre padding, as zeros (or, for
        # frames that start after sample 0, the samples to skip).
        pad = spec.start_trim
        self._buf = np.zeros((c, max(pad, 0)), self.dtype)
        self._skip = max(-pad, 0)
        self._span = spec.frame_span
        self._plans = {}
        self.samples_in = 0
        self.frames = 0

    def push(self, samples) -> np.ndarray:
        x = np.asarray(samples, dtype=self.dtype)
        x = x[None] if x.ndim == 1 else x
        if x.shape[0] != self.spec.channels:
            raise SpecError(f"samples of shape {np.shape(samples)} do not fit "
                            f"channels={self.spec.channels}")
        self.samples_in += x.shape[1]
        if self._skip:
            k = min(self._skip, x.shape[1])
            x, self._skip = x[:, k:], self._skip - k
        self._buf = np.concatenate([self._buf, x], axis=1)
        return self._frames(final=False)

    def flush(self) -> np.ndarray:
        c = self.spec.channels
        want = self.spec.frames_for(self.samples_in)
        h, n = self.spec.hop_length, self.spec.n_fft
        need = (want - self.frames - 1) * h + n
        if need > self._buf.shape[1]:
            self._buf = np.concatenate(
                [self._buf, np.zeros((c, need - self._buf.shape[1]), self.dtype)], axis=1)
        return self._frames(final=True, limit=max(want - self.frames, 0))

    def _frames(self, final: bool, limit: int | None = None) -> np.ndarray:
        h, n = self.spec.hop_length, self.spec.n_fft
        avail = 0 if self._buf.shape[1] < n else 1 + (self._buf.shape[1] - n) // h
        if limit is not None:
            avail = min(avail, limit)
        c = self.spec.channels
        if avail == 0:
            out = np.zeros((c, 0, self.spec.n_bins), np.result_type(self.dtype, np.complex64))
        else:
            frames = np.lib.stride_tricks.sliding_window_view(self._buf, n, axis=1)[:, ::h][:, :avail]
            plan = self._plans.get(avail)
            if plan is None:
                if len(self._plans) > 8:
                    self._plans.clear()
                plan = self._plans[avail] = fft.rfft_plan((c, avail), n, self.dtype, 1,
                                                          planning="estimate")
            np.multiply(frames, self._window, out=plan.input_array)
            plan.execute()
            out = plan.output_array.copy()
            if self._factor is not None:
                out *= self._factor
            self._buf = self._buf[:, avail * h:].copy()
            self.frames += avail
        return out[0] if c == 1 else out


def stft(x, spec: STFTSpec, dtype=np.float32) -> np.ndarray:
    """Whole-signal forward STFT, ``(n_frames, bins)`` (or ``(channels, n_frames, bins)``)."""
    a = Analyzer(spec, dtype=dtype)
    parts = [a.push(x), a.flush()]
    return np.concatenate(parts, axis=-2)


def istft(frames, spec: STFTSpec, length: int | None = None, dtype=np.float32,
          workers: int | None = None) -> np.ndarray:
    """Whole-array inverse: frames ``(n_frames, bins)`` or ``(channels, n_frames, bins)``
    (``workers``: :class:`Reconstructor`'s)."""
    x = as_block(frames, spec)                       # (channels, n_frames, bins)
    if length is None:   # a whole array: we know the end, trim its padding exactly
        length = spec.samples_for(x.shape[1])
    r = Reconstructor(spec, length=length, dtype=dtype, workers=workers)
    x = r._as_block(x)
    # The output is written in place: the signal is in RAM once, not once in
    # pieces and again joined.  The frames whose samples leave untrimmed (all
    # but the first block's and the last few) are normalised straight into it.
    c, h, step, n = spec.channels, spec.hop_length, r.block_frames, x.shape[1]
    out = np.empty((c, length) if c > 1 else (length,), r.dtype)
    flat = out.reshape(c, length)
    pos = i = 0

    def push(block):
        nonlocal pos
        y = r.push(block)
        out[..., pos:pos + y.shape[-1]] = y
        pos += y.shape[-1]

    while i < n and not r._untrimmed(min(step, n - i)):
        push(x[:, i:i + step])
        i += step
    body = min(n - i, max(length - r.samples_out, 0) // h) if i < n else 0
    if body:
        r._run_blocks(x[:, i:i + body], flat[:, pos:pos + body * h])
        r.samples_out += body * h
        pos += body * h
        i += body
    for j in range(i, n, step):
        push(x[:, j:j + step])
    y = r.flush()
    out[..., pos:pos + y.shape[-1]] = y
    return out


def consistency(frames: np.ndarray, spec: STFTSpec, margin: int | None = None,
                mask: np.ndarray | None = None) -> float:
    """``||X - STFT(ISTFT(X))|| / ||X||`` on the interior frames of a block.

    ``frames``: complex ``(n_frames, bins)`` in ``spec``'s conventions.  The
    block is treated as uncentred (a slice from inside the file); the first
    and last ``margin`` frames (default: frames one window spans) are left
    out, since fewer frames overlap there.  ``mask`` (same shape as
    ``frames``, bool) limits the measure to the bins it marks.
    """
    spec = spec.replace(center=False, first_frame=0)
    x = np.asarray(frames, dtype=np.complex128)
    y = istft(x, spec, dtype=np.float64)
    z = stft(y, spec, dtype=np.float64)
    r = -(-spec.n_fft // spec.hop_length) if margin is None else margin
    t = min(len(x), len(z))
    if t - 2 * r < 1:
        r = max(0, (t - 1) // 2)
    a, b = x[r:t - r], z[r:t - r]
    if mask is not None:
        # Only the bins that were stored faithfully: a dB floor (top_db)
        # replaced the others by a constant, which no signal would make.
        m = np.asarray(mask)[r:t - r]
        a, b = a * m, b * m
    den = np.linalg.norm(a)
    return float(np.linalg.norm(a - b) / den) if den > 0 else float("inf")
