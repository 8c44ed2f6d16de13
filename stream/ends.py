"""Where the signal ended: the end padding that the last frames show.

An analysis that pads the end of the signal (librosa's and scipy's zeros,
torch's reflection, scipy's ``padded=True`` zero-filled last segment) makes
frames that reach past the signal's last sample.  The inverse of those frames
(:meth:`~stream.spec.STFTSpec.covered_samples` long) holds the padding too, and
the padding tells where the signal stopped:

* zeros -- the inverse is zero, to the rounding of the transform, from the
  signal's end on (constant padding, scipy's padded segments);
* a mirror -- ``y[L - 1 + k] = y[L - 1 - k]`` for ``k >= 1`` (reflect
  padding, which repeats the samples before the last one backwards).

The length must also give the number of frames there are
(:meth:`~stream.spec.STFTSpec.frames_for`), which bounds the search.  When
neither shows (the padding is beyond what the frames cover, or there is no
phase to invert), the whole coverage is kept and the range the original
length lies in is said.  Frames that are no exact STFT (noise, edits: a
consistency above 1e-3 over the last frames) show nothing about an end:
their length is the inverse's own, ``spec.samples_for``.

The signal's end depends only on the last frames: :func:`end_of_frames`
inverts those alone, before the file is reconstructed, so that a file's
``reconstruct`` and its ``send`` agree on the length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine import consistency, istft
from .spec import STFTSpec

__all__ = ["SignalEnd", "length_range", "find_end", "end_of_frames", "tail_frames"]

#: Samples of mirror image needed before a reflection is believed.
_MIN_MIRROR = 8
#: Relative level below which a sample counts as the padding's zero.
_ZERO = 1e-5
_MIRROR = 1e-4


@dataclass(frozen=True)
class SignalEnd:
    """Where the signal ends: ``length`` samples (the output's), ``how`` it was
    found ('zeros', 'mirror', 'covered': what the frames hold, 'given'), and
    ``low``/``high``, the range of lengths the frames allow."""

    length: int
    how: str
    low: int
    high: int

    def describe(self) -> str:
        if self.how == "zeros":
            return (f"the padding after sample {self.length} is zeros: the signal was "
                    f"{self.length} samples long")
        if self.how == "mirror":
            return (f"the samples after {self.length} mirror those before: reflect padding, "
                    f"the signal was {self.length} samples long")
        if self.how == "inconsistent":
            return (f"{self.length} samples (the inverse's own length: the last frames are "
                    "no exact STFT, so they show no end)")
        if self.how == "silent":
            return (f"the signal ends in digital silence: {self.length} samples, or up to "
                    f"{self.high} with more silence")
        if self.low == self.high:
            return f"{self.length} samples, all the frames hold"
        return (f"{self.length} samples, all the frames hold; the original was "
                f"{self.low}..{self.high} samples long")


def length_range(spec: STFTSpec, n_frames: int) -> tuple[int, int]:
    """``(low, high)``: the signal lengths whose analysis makes ``n_frames`` frames
    with centred frames; uncentred frames hold no end padding, so any length
    from what they cover to a hop less one sample more fits."""
    cover = spec.covered_samples(n_frames)
    if not spec.center:
        return cover, max(cover, spec.max_samples_for(n_frames))
    high = spec.max_samples_for(n_frames)
    low = high
    while low > 0 and spec.frames_for(low - 1) == n_frames:
        low -= 1
        if high - low > 4 * spec.hop_length:       # never: frames_for steps by hop
            break
    return low, high


def find_end(tail: np.ndarray, start: int, spec: STFTSpec, n_frames: int) -> SignalEnd:
    """The signal's length from the last samples of the inverse.

    ``tail``: the inverse's samples ``start .. covered_samples(n_frames)``
    (``(n,)`` or ``(channels, n)``), from some way before the shortest length
    the frames allow (a frame span before it is plenty).
    """
    cover = start + tail.shape[-1]
    low, high = length_range(spec, n_frames)
    # Uncentred frames pad no end, except where they pad the start too
    # (pyroomacoustics zero-fills its last frame): there zeros are sought.
    padded = spec.center or spec.first_sample < 0
    if not padded or high <= low and cover <= low:
        return SignalEnd(cover, "covered", low, high)
    if not spec.center:
        low = max(cover - spec.frame_span, 0)
    # Near the end only the last frames weigh a sample, their windows
    # tapering to zero: the inverse's rounding grows as 1/envelope there.
    env = _envelope(spec, n_frames, start, cover)
    signed = np.atleast_2d(np.asarray(tail, dtype=np.float64))
    y = np.abs(signed * env).max(axis=0)
    peak = float(y.max()) if y.size else 0.0
    if peak == 0:
        return SignalEnd(min(cover, high), "covered", low, high)
    loud = np.flatnonzero(y > _ZERO * peak)
    last = start + int(loud[-1]) + 1 if loud.size else start
    # scipy's padded=True zero-fills a last segment librosa's counting would
    # not make: zeros from up to a hop before the shortest length count too.
    if last < cover and last >= low - spec.hop_length:
        return SignalEnd(last, "zeros", min(low, last), high)
    if last < low and cover > low:
        # zeros from before the shortest length: the signal itself ends silent
        return SignalEnd(low, "silent", low, high)
    if not spec.center:
        return SignalEnd(cover, "covered", low, high)
    m = _mirror_end(signed, env, start, low, min(high, cover), cover)
    if m is not None:
        return SignalEnd(m, "mirror", low, high)
    return SignalEnd(min(cover, high), "covered", low, min(high, max(cover, low)))


def _envelope(spec: STFTSpec, n_frames: int, start: int, stop: int) -> np.ndarray:
    """``sqrt(sum_t w**2)`` at the samples ``start..stop`` over its interior
    value: how much of the window weighs each sample near the end."""
    w2 = spec.padded_window ** 2
    h, n = spec.hop_length, spec.n_fft
    out = np.zeros(stop - start)
    first = max(0, (start + spec.start_trim - n) // h)
    for t in range(first, n_frames):
        a = t * h - spec.start_trim              # the frame's first sample
        lo, hi = max(a, start), min(a + n, stop)
        if lo < hi:
            out[lo - start:hi - start] += w2[lo - a:hi - a]
    ref = float(spec.window_sumsquare_periodic.max())
    return np.sqrt(out / ref) if ref > 0 else out


def _mirror_end(y: np.ndarray, env: np.ndarray, start: int, low: int, high: int,
                cover: int) -> int | None:
    """The length L in ``low..high`` after which ``y`` mirrors itself
    (``y[L-1+k] = y[L-1-k]``), or None; differences weighted by ``env``."""
    best, best_err = None, np.inf
    for n in range(max(low, start + 2), high + 1):
        k = min(cover - n, n - 1 - start)
        if k < _MIN_MIRROR:
            break
        c = n - 1 - start                      # index of the last sample in y
        e = env[c + 1:c + 1 + k]
        after = y[:, c + 1:c + 1 + k]
        before = y[:, c - k:c][:, ::-1]
        den = float((np.abs(before) * e).sum() + (np.abs(after) * e).sum())
        if den <= 0:
            continue
        err = float((np.abs(after - before) * e).sum()) / den
        if err < best_err:
            best, best_err = n, err
    return best if best_err < _MIRROR else None


def tail_frames(spec: STFTSpec) -> int:
    """How many of the last frames :func:`end_of_frames` needs."""
    return 2 * -(-spec.n_fft // spec.hop_length) + 4


def end_of_frames(frames: np.ndarray, spec: STFTSpec, n_frames: int) -> SignalEnd:
    """The signal's end from the last :func:`tail_frames` frames of ``n_frames``
    (complex, ``(k, bins)`` or ``(channels, k, bins)``, in ``spec``'s
    conventions; fewer when the file has fewer)."""
    x = np.asarray(frames)
    k = x.shape[-2]
    low, high = length_range(spec, n_frames)
    if k == 0:
        return SignalEnd(0, "covered", 0, 0)
    block = spec.replace(center=False, first_frame=0, first_sample=0)
    first = n_frames - k                        # the block's first frame in the file
    r = -(-spec.n_fft // spec.hop_length)
    chans = x if x.ndim == 3 else x[None]
    if k >= 3 and max(consistency(c, block, margin=min(r, (k - 1) // 2)) for c in chans) > 1e-3:
        own = spec.samples_for(n_frames)
        return SignalEnd(own, "inconsistent", low, high)
    y = np.stack([istft(c, block, dtype=np.float64) for c in chans])
    # Block sample j is signal sample first*H - start_trim + j; the first
    # r - 1 hops of the block have fewer frames over them than the file does.
    offset = first * spec.hop_length - spec.start_trim
    skip = (r - 1) * spec.hop_length if first > 0 else 0
    start = offset + skip
    if start < 0:
        skip, start = skip - start, 0
    cover = spec.covered_samples(n_frames)
    tail = y[:, skip:skip + max(cover - start, 0)]
    return find_end(tail if x.ndim == 3 else tail[0], start, spec, n_frames)
