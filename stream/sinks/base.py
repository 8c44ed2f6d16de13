"""What every sink shares: the :class:`Sink` base class (block layout checks,
counters, life cycle), :class:`SinkError`, and :class:`NullSink`.

A block is ``(n_samples,)`` for one channel or ``(channels, n_samples)``
(channels first, as :class:`stream.engine.Reconstructor` returns it),
float, full scale 1.0.  :meth:`Sink.write` checks it, replaces NaN and Inf
by 0 (counted), and hands the subclass an ``(n_samples, channels)`` float32
view: the interleaved layout that files, pipes, sockets and PortAudio take.
"""

from __future__ import annotations

import numpy as np

from ..errors import DeviceError

__all__ = ["SinkError", "Sink", "NullSink", "URI_FORMS"]

#: The sink URIs :func:`stream.sinks.open_sink` takes, as error messages list them.
URI_FORMS = ("sounddevice", "sounddevice:DEVICE", "wav:PATH (.wav/.w64/.rf64 float, .flac 24-bit)",
             "raw:- (stdout)", "raw:PATH", "null", "zmq:ENDPOINT", "zmq:bind:ENDPOINT",
             "zmq:connect:ENDPOINT")


class SinkError(DeviceError):
    """A sink that cannot be made, opened or written; the message says what to do."""


def forms() -> str:
    """The valid sink URIs, for the end of an error message."""
    return "valid sinks: " + ", ".join(URI_FORMS)


def hz(rate: float) -> str:
    """A sample rate for a message: ``48000 Hz``, ``44100.5 Hz``."""
    return f"{rate:.10g} Hz"


class Sink:
    """Base class: block layout checks, counters, context manager.

    Subclasses implement ``_open()``, ``_write(frames)`` with ``frames`` a
    ``(n, channels)`` float32 array (interleaved view, maybe not contiguous)
    and ``_close(drain)``.
    """

    uri = "?"

    def __init__(self):
        self.sample_rate: float | None = None
        self.channels: int | None = None
        self.samples = 0          # samples per channel accepted by write()
        self.blocks = 0
        self.nonfinite = 0        # NaN/Inf values replaced by 0
        self.closed = False
        self._opened = False

    # ---------------------------------------------------------------- life
    def open(self, sample_rate: float, channels: int) -> "Sink":
        """Get ready to take samples.

        Parameters
        ----------
        sample_rate : float
            Samples per second per channel (Hz).
        channels : int
            Channels of every block that :meth:`write` will get (>= 1).

        Returns the sink, so ``open_sink(uri).open(rate, ch)`` chains.
        """
        if self._opened:
            raise SinkError(f"{self.uri}: sink is already open")
        sample_rate = float(sample_rate)
        if not (sample_rate > 0 and np.isfinite(sample_rate)):
            raise SinkError(f"sample rate must be a positive number of Hz, got {sample_rate}")
        if int(channels) != channels or int(channels) < 1:
            raise SinkError(f"channels must be an integer >= 1, got {channels}")
        self.sample_rate, self.channels = sample_rate, int(channels)
        self._open()
        self._opened = True
        return self

    def prepare(self) -> "Sink":
        """Optional, before :meth:`open`: do the slow part of opening that
        needs no sample rate yet (the audio sink loads PortAudio and finds
        its device), so that :meth:`open` is quick when the first stream
        comes and errors show early.  Returns the sink."""
        self._prepare()
        return self

    def write(self, block, timestamp: float | None = None) -> None:
        """Take one block of samples.

        Parameters
        ----------
        block : array_like, float
            ``(n_samples,)`` for one channel or ``(channels, n_samples)``:
            the layout :class:`stream.engine.Reconstructor` returns.  Values
            are linear amplitude, full scale = 1.0; converted to float32.
            NaN and Inf are replaced by 0 and counted (``stats['nonfinite']``).
        timestamp : float, optional
            The producer's clock when it sent the block (Unix seconds);
            the audio device uses it to measure jitter and drift, the other
            sinks ignore it.
        """
        if not self._opened or self.closed:
            raise SinkError(f"{self.uri}: write on a sink that is "
                            f"{'closed' if self.closed else 'not open: call open() first'}")
        frames = self._frames(block)
        if len(frames):
            if not np.isfinite(frames).all():        # never a blast of noise: zero, count
                bad = ~np.isfinite(frames)
                self.nonfinite += int(np.count_nonzero(bad))
                frames = np.where(bad, np.float32(0), frames)
            self._write(frames)
        self.samples += len(frames)
        self.blocks += 1

    def flush(self) -> None:
        """The producer has no more samples for now (a stream ended; another
        may follow on the same sink).  Files and pipes push their buffers out;
        the audio device plays out what it holds, and the silence after it is
        an idle gap, not an underrun."""
        if self._opened and not self.closed:
            self._flush()

    def close(self, drain: bool = True) -> None:
        """Finish.  With ``drain`` play or flush everything written so far
        first; without it stop at once (what is buffered is lost).  Closing
        twice is harmless."""
        if self.closed:
            return
        self.closed = True
        if self._opened:
            self._close(bool(drain))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(drain=exc_type is None)

    def queued_seconds(self) -> float | None:
        """Seconds until a sample written now is heard, as far as the sink
        knows (its queue plus the device's); None for sinks that do not play."""
        return None

    @property
    def stats(self) -> dict:
        """Counters: ``samples`` (per channel, written), ``underruns``, and
        what the sink adds.  A fresh dict at every access."""
        return {"sink": self.uri, "samples": self.samples, "blocks": self.blocks,
                "underruns": 0, "overflows": 0, "nonfinite": self.nonfinite,
                "seconds": self.samples / self.sample_rate if self.sample_rate else 0.0}

    # ------------------------------------------------------------ internals
    def _frames(self, block) -> np.ndarray:
        a = np.asarray(block)
        if not np.issubdtype(a.dtype, np.floating):
            raise SinkError(f"blocks must be float samples (full scale 1.0), got {a.dtype}")
        if a.dtype != np.float32:
            a = a.astype(np.float32)
        c = self.channels
        if a.ndim == 1:
            if c != 1:
                raise SinkError(f"a 1-D block is one channel, but the sink was opened for {c} "
                                f"channels: pass ({c}, n_samples)")
            return a[:, None]
        if a.ndim == 2 and a.shape[0] == c:
            return a.T
        raise SinkError(f"block of shape {a.shape}: expected ({c}, n_samples)"
                        + (" or (n_samples,)" if c == 1 else "")
                        + " (channels first, as the engine returns them)")

    def _prepare(self):
        pass

    def _open(self):
        pass

    def _write(self, frames: np.ndarray):
        raise NotImplementedError

    def _close(self, drain: bool):
        pass

    def _flush(self):
        pass


class NullSink(Sink):
    """Discards samples; counts them (``stats['samples']``) and their peak."""

    uri = "null"

    def __init__(self):
        super().__init__()
        self.peak = 0.0

    def _write(self, frames):
        self.peak = max(self.peak, float(np.max(np.abs(frames))))

    @property
    def stats(self):
        return {**super().stats, "peak": self.peak}

