"""One frame pipeline: stored frames -> decode -> (phase) -> engine -> samples.

Every path that turns frames into audio goes through :class:`FramePipeline`:
``specstream reconstruct`` (files), the live receiver (frames off the wire)
and the magnitude-only paths (a phase rebuilt on the way).  The file and the
live output are the same samples because they are made by the same code::

    stored values --Decoder--> complex bins --Reconstructor--> samples
    magnitudes    --Decoder--> linear |X| --phase stage--> complex bins --> ...

The NaN/Inf policy is the decoder's (zeroed and counted, never passed on).
Missing frames (a gap in a live stream) are concealed here, so timing holds.
No I/O: the callers own files, sockets and sinks.
"""

from __future__ import annotations

import numpy as np

from .decode import Decoder, Encoding
from .engine import Reconstructor, as_block
from .spec import SpecError, STFTSpec

__all__ = ["FRAME_KINDS", "FramePipeline"]

#: What the stored frames hold: complex bins, magnitude + phase, magnitude only.
FRAME_KINDS = ("complex", "magphase", "magnitude")


class FramePipeline:
    """Decode, rebuild a phase where there is none, invert, count.

    Parameters
    ----------
    spec : STFTSpec
        How the frames were made.
    encoding : Encoding
        Units of the stored magnitudes and phases.
    kind : str
        One of :data:`FRAME_KINDS`.
    phase : object, optional
        For ``kind='magnitude'``: the phase stage, with ``push(mag)`` and
        ``flush()`` taking linear magnitudes and returning the complex frames
        that are ready (:class:`stream.phase.RTPGHI`, or a whole-file method
        from :func:`stream.phase.phase_stage`).  Required for that kind.
    length : int, optional
        Samples to produce, as :class:`~stream.engine.Reconstructor` takes it.
    output : str
        'audio' (default): :meth:`push` returns samples, ``(n,)`` or
        ``(channels, n)``.  'frames': it returns the decoded complex frames,
        ``(channels, n, bins)``, and no inverse STFT is made.
    monitor : object, optional
        Told what goes in and what comes out: ``add_target(mag)`` with the
        linear magnitudes of magnitude-only frames and ``add_audio(y)`` with
        every block of samples (a :class:`stream.phase.ConvergenceMeter`).
    block_frames, threads, planning :
        Passed to the Reconstructor (frames per batched FFT, FFTW threads,
        how its FFT plans are made).

    Counters: ``frames`` (real frames pushed), ``concealed`` (frames made up
    for gaps), ``nonfinite`` (NaN/Inf values zeroed), ``samples_out``.
    """

    def __init__(self, spec: STFTSpec, encoding: Encoding = Encoding(), *,
                 kind: str = "complex", phase=None, length: int | None = None,
                 output: str = "audio", monitor=None, block_frames: int = 256,
                 threads: int | None = None, planning: str = "measure"):
        if kind not in FRAME_KINDS:
            raise SpecError(f"kind={kind!r} is not one of {', '.join(FRAME_KINDS)}")
        if output not in ("audio", "frames"):
            raise SpecError(f"output={output!r} is not 'audio' or 'frames'")
        if kind == "magnitude" and phase is None:
            raise SpecError("magnitude-only frames need a phase stage (stream.phase)")
        self.spec = spec
        self.kind = kind
        self.decoder = Decoder(spec, encoding)
        self.phase = phase if kind == "magnitude" else None
        self.monitor = monitor
        self.engine = (Reconstructor(spec, length=length, block_frames=block_frames,
                                     threads=threads, planning=planning)
                       if output == "audio" else None)
        self.frames = 0
        self.concealed = 0
        self._finished = False

    # ------------------------------------------------------------ counters
    @property
    def nonfinite(self) -> int:
        """NaN/Inf values zeroed so far."""
        return self.decoder.nonfinite

    @property
    def samples_out(self) -> int:
        """Samples per channel that left the engine."""
        return 0 if self.engine is None else self.engine.samples_out

    @property
    def latency(self) -> int:
        """Samples from a frame's arrival to the last sample it completes:
        the engine's, plus the phase stage's lookahead."""
        extra = getattr(self.phase, "latency", 0) or 0
        return self.spec.latency + extra

    # ----------------------------------------------------------------- api
    def push(self, first, second=None) -> np.ndarray:
        """Stored frames in; what became final out.

        ``first``: complex bins, or magnitudes in the encoding's unit;
        ``second``: phases (``kind='magphase'`` only).  One frame or a block,
        frequency on the last axis, as :func:`stream.engine.as_block` takes them.
        """
        n = np.shape(first)[-2] if np.ndim(first) >= 2 + (self.spec.channels > 1) else 1
        if self.kind == "magnitude":
            mag = self.decoder.magnitude(first)
            if self.monitor is not None:
                self.monitor.add_target(mag)
            bins = self.phase.push(mag)
        elif self.kind == "magphase":
            bins = self.decoder.decode(first, second)
        else:
            bins = self.decoder.decode(first)
        self.frames += n
        return self._out(bins)

    def conceal(self, n_frames: int) -> np.ndarray:
        """``n_frames`` missing frames: filled with silence, so timing holds
        (a magnitude-only stream's phase stage sees zero magnitudes)."""
        spec = self.spec
        shape = (spec.channels, n_frames, spec.n_bins)
        if self.kind == "magnitude":
            z = np.zeros(shape, np.float32)
            bins = self.phase.push(z[0] if spec.channels == 1 else z)
        else:
            bins = np.zeros(shape, np.complex64)
        self.concealed += n_frames
        return self._out(bins)

    def flush(self, complete: bool = True) -> np.ndarray:
        """End of stream: the phase stage's last frames and the engine's tail.

        ``complete=False`` when the stream was cut short: the rest of
        ``length`` would be padded with silence, so the output ends at the
        frames that came instead."""
        if self._finished:
            return self._empty()
        self._finished = True
        parts = []
        if self.phase is not None:
            parts.append(self._out(self.phase.flush()))
        if self.engine is not None:
            if not complete:
                self.engine.length = None
            parts.append(self._audio(self.engine.flush()))
        if not parts:
            return self._empty()
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)

    # ------------------------------------------------------------ internals
    def _out(self, bins) -> np.ndarray:
        if self.engine is None:
            return as_block(bins, self.spec)
        return self._audio(self.engine.push(bins))

    def _audio(self, y: np.ndarray) -> np.ndarray:
        if self.monitor is not None and y.shape[-1]:
            self.monitor.add_audio(y)
        return y

    def _empty(self) -> np.ndarray:
        c = self.spec.channels
        if self.engine is None:
            return np.zeros((c, 0, self.spec.n_bins), np.complex64)
        return np.zeros((0,) if c == 1 else (c, 0), np.float32)
