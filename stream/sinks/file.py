"""Files: sound files (``wav:PATH``) and headerless samples (``raw:PATH``, ``raw:-``).

:class:`SoundFileWriter` is the one sound-file writer: the ``wav:`` sink
(:class:`FileSink`) and ``specstream reconstruct`` both write through it.

``wav:PATH``
    A sound file: 32-bit float WAV for ``.wav`` (``.w64`` and ``.rf64`` too),
    24-bit FLAC for ``.flac`` (FLAC holds no floats; samples beyond full scale
    are clipped and counted in ``stats['clipped']``).
``raw:-`` or ``raw:PATH``
    Headerless float32 little-endian samples, interleaved, to stdout or a file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from .base import Sink, SinkError, hz

__all__ = ["SoundFileWriter", "FileSink", "RawSink", "FILE_FORMATS"]

#: File name extension -> (soundfile format, subtype) of the ``wav:`` sink.
FILE_FORMATS = {".wav": ("WAV", "FLOAT"), ".w64": ("W64", "FLOAT"),
                ".rf64": ("RF64", "FLOAT"), ".flac": ("FLAC", "PCM_24")}


class SoundFileWriter:
    """Writes sample blocks to a sound file (``soundfile``, libsndfile),
    counting the peak and the samples beyond full scale.

    Integer subtypes (``PCM_*``) are clipped at full scale here, since
    libsndfile would wrap them around; float subtypes keep the values beyond
    it.  Both count them in ``clipped``.

    Parameters
    ----------
    path : str or Path
        The file to create (replaced if it exists).
    sample_rate : float
        Samples per second per channel (Hz); rounded to a whole number, the
        only rates sound files hold.
    channels : int
        Channels of every block (>= 1).
    format : str
        soundfile format: ``"WAV"``, ``"W64"``, ``"RF64"``, ``"FLAC"``.
    subtype : str
        soundfile subtype: ``"FLOAT"``, ``"DOUBLE"``, ``"PCM_16"``,
        ``"PCM_24"``, ``"PCM_32"``.
    gain : float
        Linear factor applied to every sample before it is measured and
        written (default 1.0).

    Attributes: ``file`` (the ``soundfile.SoundFile``), ``frames`` (samples
    per channel written), ``peak`` (largest absolute sample after the gain,
    before clipping; full scale 1.0), ``clipped`` (samples, all channels,
    beyond full scale), ``integer`` (the subtype is integer PCM).

    Raises :class:`SinkError` when the file cannot be created.
    """

    def __init__(self, path, sample_rate: float, channels: int, format: str, subtype: str,
                 gain: float = 1.0):
        import soundfile as sf
        if not sf.check_format(format, subtype):
            raise SinkError(f"{path}: a {format} file cannot hold {subtype} samples")
        try:
            self.file = sf.SoundFile(str(path), "w", samplerate=int(round(sample_rate)),
                                     channels=channels, format=format, subtype=subtype)
        except (sf.SoundFileError, RuntimeError, ValueError, OSError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise SinkError(f"cannot write {path}: cannot create the file ({reason}); check "
                            "that its directory exists and is writable") from None
        self.integer = subtype.startswith("PCM")
        self.gain = float(gain)
        self.peak = 0.0
        self.clipped = 0
        self.frames = 0

    def write(self, block: np.ndarray) -> None:
        """Write one block: ``(n_samples,)`` for one channel or
        ``(channels, n_samples)``, float, full scale 1.0."""
        if block.shape[-1] == 0:
            return
        if self.gain != 1.0:
            block = block * np.float32(self.gain)
        a = np.abs(block)
        self.peak = max(self.peak, float(a.max()))
        over = int(np.count_nonzero(a > 1.0))
        if over:
            self.clipped += over
            if self.integer:
                block = np.clip(block, -1.0, 1.0)
        self.file.write(block.T if block.ndim == 2 else block)
        self.frames += block.shape[-1]

    def flush(self) -> None:
        """Push what libsndfile buffers out to the file."""
        self.file.flush()

    def close(self) -> None:
        """Finish the file (its header too).  Closing twice is harmless."""
        self.file.close()


class FileSink(Sink):
    """A sound file through :class:`SoundFileWriter`: float WAV, or 24-bit FLAC.

    Parameters
    ----------
    path : str or Path
        ``.wav``, ``.w64``, ``.rf64`` (32-bit float) or ``.flac`` (24-bit).

    ``stats`` adds ``path``, ``format``, ``subtype``, ``peak`` (full scale
    1.0) and ``clipped`` (samples clipped at full scale; 0 for float files,
    which keep them).
    """

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in FILE_FORMATS:
            raise SinkError(f"wav:{path}: unknown extension {ext or '(none)'!r}; use one of "
                            f"{', '.join(FILE_FORMATS)} (or raw:PATH for headerless float32)")
        self.format, self.subtype = FILE_FORMATS[ext]
        self.uri = f"wav:{path}"
        self.writer: SoundFileWriter | None = None

    def _prepare(self):
        _check_writable(self.path, self.uri)

    def _open(self):
        if int(round(self.sample_rate)) != self.sample_rate:
            raise SinkError(f"{self.uri}: sound files hold whole-number rates; "
                            f"got {hz(self.sample_rate)}")
        self.writer = SoundFileWriter(self.path, self.sample_rate, self.channels, self.format,
                                      self.subtype)

    def _write(self, frames):
        self.writer.write(frames.T)        # back to channels first: a view

    def _flush(self):
        self.writer.flush()

    def _close(self, drain):
        if self.writer is not None:
            self.writer.close()

    @property
    def stats(self):
        w = self.writer
        peak, clipped = (0.0, 0) if w is None else (w.peak, w.clipped if w.integer else 0)
        return {**super().stats, "path": str(self.path), "format": self.format,
                "subtype": self.subtype, "peak": peak, "clipped": clipped}


class RawSink(Sink):
    """Headerless float32 little-endian interleaved samples.

    Parameters
    ----------
    target : str
        ``"-"`` for standard output, else a file path (truncated).
    """

    def __init__(self, target: str):
        super().__init__()
        self.target = target
        self.uri = f"raw:{target}"
        self._fh = None
        self._own = target != "-"

    def _prepare(self):
        if self._own:
            _check_writable(Path(self.target), self.uri)

    def _open(self):
        if self._own:
            try:
                self._fh = open(self.target, "wb")
            except OSError as e:
                raise SinkError(f"{self.uri}: cannot open ({e.strerror})") from None
        else:
            self._fh = sys.stdout.buffer

    def _write(self, frames):
        try:
            self._fh.write(np.ascontiguousarray(frames, dtype="<f4").data)
        except BrokenPipeError:
            raise SinkError(f"{self.uri}: the reader closed the pipe") from None

    def _flush(self):
        try:
            self._fh.flush()
        except BrokenPipeError:
            raise SinkError(f"{self.uri}: the reader closed the pipe") from None

    def _close(self, drain):
        if self._fh is None:
            return
        try:
            self._fh.flush()
        except BrokenPipeError:
            pass
        if self._own:
            self._fh.close()



def _check_writable(path: Path, uri: str):
    """A file that can be created there, or a one-line SinkError now, before a
    player listens (not when the first audio arrives)."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SinkError(f"{uri}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SinkError(f"{uri}: cannot write there (permission denied)")
    if path.exists() and not path.is_file():
        raise SinkError(f"{uri}: {path} exists and is not a regular file")
