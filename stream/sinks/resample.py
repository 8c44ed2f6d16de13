"""Variable-ratio resampling of a stream of blocks, for drift compensation.

:class:`Resampler` converts interleaved float32 frames by a ratio that may
change at every call (output rate / input rate, within a few per mille of
1), with libsamplerate's band-limited sinc converter (through the
``samplerate`` package, imported when the ratio first leaves 1).  Until
then it passes the frames through untouched, so a producer on the device's
own clock plays bit for bit.  When the ratio first leaves 1, the converter
is primed with the last :data:`HISTORY` frames already passed through, and
its output for them is discarded: the audio goes on without a seam.

Measured on this kind of machine (``tools/bench_drift.py --resampler``),
converting 2-channel 48 kHz audio in 256-frame blocks at a ratio of
1/1.002: ``sinc_medium`` (the default) 123-145 dB SNR against the ideal
for sines of 1-15 kHz, about 8 ms of CPU per second of audio;
``sinc_best`` 143-148 dB, 27-33 ms; ``sinc_fastest`` 105 dB, 4 ms.
libsamplerate moves the ratio linearly across a call from the previous
call's ratio to the new one, so a changing ratio does not click.
"""

from __future__ import annotations

import numpy as np

from .base import SinkError

__all__ = ["Resampler", "HISTORY", "import_samplerate"]

#: Frames of history kept to prime the converter (more than the sinc filter's
#: half length: 143 frames for ``sinc_best``, 47 for ``sinc_medium``).
HISTORY = 256


def import_samplerate():
    """The ``samplerate`` module (libsamplerate), or a :class:`SinkError` that
    says what to install."""
    try:
        import samplerate
    except ImportError:
        raise SinkError("drift compensation needs the Python package samplerate "
                        "(libsamplerate): pip install samplerate") from None
    return samplerate


class Resampler:
    """Resample blocks of ``(n, channels)`` float32 frames by a changing ratio.

    Parameters
    ----------
    channels : int
        Samples per frame.
    converter : str
        libsamplerate converter: ``sinc_medium`` (default), ``sinc_best``
        or ``sinc_fastest``.

    ``held``: input frames inside the converter, not yet output (0 while
    passing through; about half the filter length once converting).
    ``active``: True once the ratio has left 1 (until :meth:`drain`);
    ``used``: True once it ever did.
    """

    def __init__(self, channels: int, converter: str = "sinc_medium"):
        self.channels = int(channels)
        self.converter = converter
        self._src = None
        self._history = np.zeros((HISTORY, self.channels), np.float32)
        self._discard = 0         # output frames still to drop after priming
        self._in = 0              # input frames given to the converter since it started
        self._used = 0.0          # input frames its output stands for (output / ratio)
        self._ratio = 1.0         # the previous call's ratio
        self.used = False

    @property
    def active(self) -> bool:
        return self._src is not None

    @property
    def held(self) -> float:
        return self._in - self._used

    def process(self, frames: np.ndarray, ratio: float) -> np.ndarray:
        """Convert ``frames`` ((n, channels) float32) at ``ratio`` (output
        rate / input rate); returns the frames ready ((m, channels) float32).
        While the ratio is exactly 1 and was never anything else, returns
        ``frames`` itself."""
        if self._src is None:
            if ratio == 1.0:
                self._remember(frames)
                return frames
            self._start()
        out = self._src.process(np.ascontiguousarray(frames, np.float32), float(ratio))
        if self._discard:
            k = min(self._discard, len(out))
            out, self._discard = out[k:], self._discard - k
        # libsamplerate moves the ratio linearly over the call from the last one.
        self._in += len(frames)
        self._used += len(out) * 2.0 / (ratio + self._ratio)
        self._ratio = float(ratio)
        return out

    def drain(self) -> np.ndarray:
        """The end of a stream: the frames still inside the converter
        (followed by a few frames of silence), and back to passing through."""
        if self._src is None:
            self._history.fill(0.0)
            return np.zeros((0, self.channels), np.float32)
        tail = self._src.process(np.zeros((2 * HISTORY, self.channels), np.float32), 1.0)
        tail = tail[min(self._discard, len(tail)):]
        self._src, self._discard, self._in, self._used, self._ratio = None, 0, 0, 0.0, 1.0
        self._history.fill(0.0)
        return tail

    # ------------------------------------------------------------ internals
    def _remember(self, frames):
        n = len(frames)
        h = self._history
        if n >= HISTORY:
            h[:] = frames[n - HISTORY:]
        else:
            h[:HISTORY - n] = h[n:]
            h[HISTORY - n:] = frames

    def _start(self):
        sr = import_samplerate()
        self._src = sr.Resampler(self.converter, self.channels)
        self.used = True
        # Prime the filter with what was already played, at ratio 1, and drop
        # the output for it: the converted audio continues the passed-through.
        primed = self._src.process(self._history, 1.0)
        self._discard = HISTORY - len(primed)
        self._in, self._used, self._ratio = 0, 0.0, 1.0
