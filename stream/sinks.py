"""Where reconstructed samples go: the audio device, a file, a pipe, a socket.

:func:`open_sink` makes a sink from a URI; every sink has the same life::

    sink = open_sink("sounddevice")          # or "wav:out.wav", "raw:-", "null", "zmq:tcp://..."
    sink.open(sample_rate=48000, channels=2)
    for block in blocks:                       # (n,) mono or (channels, n) float32
        sink.write(block)
    sink.close(drain=True)                     # play / flush what is buffered, then stop
    print(sink.stats)

or ``with open_sink(uri).open(48000, 2) as sink: ...`` (closes with drain
unless the block raised).

URIs
----
``sounddevice`` or ``sounddevice:DEVICE``
    The audio output, through PortAudio (:class:`SoundDeviceSink`).  ``DEVICE``
    is an index or a substring of a name, as ``specstream devices`` lists them.
``wav:PATH``
    A sound file: 32-bit float WAV for ``.wav`` (``.w64`` and ``.rf64`` too),
    24-bit FLAC for ``.flac`` (FLAC holds no floats; samples beyond full scale
    are clipped and counted in ``stats['clipped']``).
``raw:-`` or ``raw:PATH``
    Headerless float32 little-endian samples, interleaved, to stdout or a file.
``null``
    Discards the samples, counts them.
``zmq:ENDPOINT``, ``zmq:connect:ENDPOINT`` or ``zmq:bind:ENDPOINT``
    PUSHes audio blocks over ZeroMQ (connects unless ``bind:`` is given);
    ENDPOINT is ``tcp://HOST:PORT``, ``ipc://PATH`` or ``inproc://NAME``.

Audio block messages (``zmq:``)
-------------------------------
Each block is one ZeroMQ message of two parts:

1. a 32-byte header, little endian, no padding (``struct`` format ``<4sHHdIIQ``):

   ======  =======  ======  ==========================================
   offset  type     name    meaning
   ======  =======  ======  ==========================================
   0       char[4]  magic   ``b"SSAU"``
   4       uint16   version 1
   6       uint16   flags   bit 0: end of stream (no samples follow)
   8       float64  rate    sample rate, Hz
   16      uint32   ch      channels
   20      uint32   n       samples per channel in this block
   24      uint64   seq     block number, 0 for the first of a stream
   ======  =======  ======  ==========================================

2. the payload: ``n * ch`` float32 little-endian values, interleaved
   (sample 0 of every channel, then sample 1, ...), ``4 * n * ch`` bytes.

The last message of a stream has flags bit 0 set, ``n = 0`` and an empty
payload.  :func:`unpack_block` decodes a message.  The sink's PUSH socket
blocks when the receiver's queue is full (backpressure); a send that cannot
go anywhere for ``send_timeout_ms`` (10 s) raises :class:`SinkError`.

The audio device sink
---------------------
:class:`SoundDeviceSink` plays through a callback-mode
``sounddevice.OutputStream``.  :meth:`~Sink.write` copies samples into a
preallocated ring buffer; the PortAudio callback copies them out.  The
callback never blocks, takes no lock and allocates no sample buffers (it
copies between preallocated arrays and multiplies fades and crossfades in
place).
``write`` waits only when the ring is full: backpressure to the producer.

- *Start*: :meth:`~Sink.open` opens *and starts* the device stream, which
  plays silence until the ring holds its target (``latency_ms`` less the
  device's own buffer, see :class:`SoundDeviceSink`) (or the
  producer flushes or closes a stream shorter than that); then it plays.
  The device's clock runs before the first sample arrives, so the queue
  starts at the target and not at the target plus the time the device took
  to open (``stats['open_ms']``).
- *Latency target and catch-up*: the target is one the sink holds
  to, not only a start-up buffer.  A producer paced at real time can never
  drain audio that queued up beyond it (frames that arrived while the
  device opened, a burst after a network stall, a producer clock faster
  than the device's): that excess would stay for good.  So the callback
  watches the *standing queue*, the lowest fill after a callback, over
  windows of 0.5 s of normal playback.  When in a whole window it stayed
  above the target + 5 ms + one write or callback (whichever is larger;
  ``stats['catch_up_threshold']``), and the producer wrote at least 3 times
  and never found the ring full, the oldest audio is dropped down to the
  target: the ``fade_ms`` before and after the dropped span are crossfaded
  in the ring (no click), ``stats['latency_trimmed_samples']`` and
  ``stats['catch_ups']`` count it, and the first catch-up is logged
  (warning, once).  It never acts during normal playback (the standing
  queue is then at most the target plus a write), during a prebuffer or
  underrun, while the producer flushes or closes, or when the producer is
  faster than real time (``write`` meets a full ring: backpressure; a file
  sent with ``--rate max`` plays whole).  Consequence: a backlog larger than
  the ring (the target + 500 ms by default) waits upstream and is not
  caught up.  ``catch_up=False`` (``specstream play --no-catch-up``) keeps
  every sample, at the price of the extra latency.
- *Underrun*: when the ring runs dry the callback fades the last samples it
  has out over ``fade_ms``, plays silence, counts the event, and waits for
  the target again before it resumes, fading back in.  No
  sample is dropped by an underrun: it inserts silence.  PortAudio's own
  ``output_underflow`` flags are counted too.  The stream never aborts.
- *End*: ``close(drain=True)`` appends ``pad_s`` (0.25 s) of silence, since
  PortAudio 19.6 drops the last buffer of an ALSA stream when it stops, lets
  the ring play out, and stops the stream.

``sounddevice`` (and the PortAudio library) are imported only when a
``sounddevice`` sink opens or :func:`list_devices` is called.
"""

from __future__ import annotations

import logging
import struct
import sys
import threading
import time
from collections import namedtuple
from pathlib import Path

import numpy as np

from .errors import DeviceError

log = logging.getLogger("specstream")

__all__ = ["SinkError", "Sink", "NullSink", "FileSink", "RawSink", "ZmqSink",
           "SoundDeviceSink", "open_sink", "list_devices", "unpack_block", "pack_block",
           "BlockHeader", "BLOCK_HEADER", "BLOCK_MAGIC", "BLOCK_VERSION", "FLAG_END",
           "URI_FORMS"]

URI_FORMS = ("sounddevice", "sounddevice:DEVICE", "wav:PATH (.wav/.w64/.rf64 float, .flac 24-bit)",
             "raw:- (stdout)", "raw:PATH", "null", "zmq:ENDPOINT", "zmq:bind:ENDPOINT",
             "zmq:connect:ENDPOINT")

_FILE_FORMATS = {".wav": ("WAV", "FLOAT"), ".w64": ("W64", "FLOAT"),
                 ".rf64": ("RF64", "FLOAT"), ".flac": ("FLAC", "PCM_24")}


class SinkError(DeviceError):
    """A sink that cannot be made, opened or written; the message says what to do."""


def _forms() -> str:
    return "valid sinks: " + ", ".join(URI_FORMS)


def _hz(rate: float) -> str:
    return f"{rate:.10g} Hz"


# ===================================================================== base
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

    def write(self, block) -> None:
        """Take one block of samples.

        Parameters
        ----------
        block : array_like, float
            ``(n_samples,)`` for one channel or ``(channels, n_samples)``:
            the layout :class:`stream.engine.Reconstructor` returns.  Values
            are linear amplitude, full scale = 1.0; converted to float32.
            NaN and Inf are replaced by 0 and counted (``stats['nonfinite']``).
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


# ==================================================================== files
class FileSink(Sink):
    """A sound file through ``soundfile``: float WAV, or 24-bit FLAC.

    Parameters
    ----------
    path : str or Path
        ``.wav``, ``.w64``, ``.rf64`` (32-bit float) or ``.flac`` (24-bit).
    """

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in _FILE_FORMATS:
            raise SinkError(f"wav:{path}: unknown extension {ext or '(none)'!r}; use one of "
                            f"{', '.join(_FILE_FORMATS)} (or raw:PATH for headerless float32)")
        self.format, self.subtype = _FILE_FORMATS[ext]
        self.uri = f"wav:{path}"
        self.file = None
        self.clipped = 0
        self.peak = 0.0

    def _open(self):
        import soundfile as sf
        rate = int(round(self.sample_rate))
        if rate != self.sample_rate:
            raise SinkError(f"{self.uri}: sound files hold whole-number rates; "
                            f"got {_hz(self.sample_rate)}")
        try:
            self.file = sf.SoundFile(str(self.path), "w", samplerate=rate, channels=self.channels,
                                     format=self.format, subtype=self.subtype)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise SinkError(f"{self.uri}: cannot create the file ({e})") from None

    def _write(self, frames):
        peak = float(np.max(np.abs(frames)))
        self.peak = max(self.peak, peak)
        if self.subtype.startswith("PCM") and peak > 1.0:
            self.clipped += int(np.count_nonzero(np.abs(frames) > 1.0))
            frames = np.clip(frames, -1.0, 1.0)
        self.file.write(np.ascontiguousarray(frames))

    def _flush(self):
        self.file.flush()

    def _close(self, drain):
        if self.file is not None:
            self.file.close()

    @property
    def stats(self):
        return {**super().stats, "path": str(self.path), "format": self.format,
                "subtype": self.subtype, "peak": self.peak, "clipped": self.clipped}


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


# ===================================================================== zmq
BLOCK_MAGIC = b"SSAU"
BLOCK_VERSION = 1
FLAG_END = 1
BLOCK_HEADER = struct.Struct("<4sHHdIIQ")     # 32 bytes
BlockHeader = namedtuple("BlockHeader", "version flags sample_rate channels n_samples seq")


def pack_block(frames: np.ndarray | None, sample_rate: float, channels: int, seq: int,
               flags: int = 0) -> list:
    """The two parts of an audio block message (see the module docstring).

    ``frames``: ``(n, channels)`` samples, or None for an end-of-stream message."""
    if frames is None:
        return [BLOCK_HEADER.pack(BLOCK_MAGIC, BLOCK_VERSION, flags | FLAG_END, sample_rate,
                                  channels, 0, seq), b""]
    payload = np.ascontiguousarray(frames, dtype="<f4")
    return [BLOCK_HEADER.pack(BLOCK_MAGIC, BLOCK_VERSION, flags, sample_rate, channels,
                              payload.shape[0], seq), payload]


def unpack_block(parts) -> tuple[BlockHeader, np.ndarray]:
    """Decode a message of two parts (bytes or ``zmq.Frame``).

    Returns ``(header, samples)`` with ``samples`` an ``(n_samples, channels)``
    float32 array (read-only view of the payload).  Raises :class:`SinkError`
    for a message that is not an audio block of a known version.
    """
    if len(parts) != 2:
        raise SinkError(f"audio block message has {len(parts)} parts, expected 2")
    head, body = (memoryview(getattr(p, "buffer", p)) for p in parts)
    if head.nbytes != BLOCK_HEADER.size:
        raise SinkError(f"audio block header is {head.nbytes} bytes, expected {BLOCK_HEADER.size}")
    magic, version, flags, rate, ch, n, seq = BLOCK_HEADER.unpack(head)
    if magic != BLOCK_MAGIC:
        raise SinkError(f"not an audio block (magic {magic!r}, expected {BLOCK_MAGIC!r})")
    if version != BLOCK_VERSION:
        raise SinkError(f"audio block version {version}; this reader knows {BLOCK_VERSION}")
    if ch < 1 or body.nbytes != 4 * n * ch:
        raise SinkError(f"audio block payload is {body.nbytes} bytes; the header says "
                        f"{n} samples x {ch} channels ({4 * n * ch} bytes)")
    samples = np.frombuffer(body, dtype="<f4").reshape(n, ch)
    return BlockHeader(version, flags, rate, ch, n, seq), samples


class ZmqSink(Sink):
    """PUSHes audio blocks over ZeroMQ (format in the module docstring).

    Parameters
    ----------
    endpoint : str
        ``tcp://HOST:PORT``, ``ipc://PATH`` or ``inproc://NAME``.
    bind : bool
        Bind the PUSH socket (else connect, the default).
    hwm : int
        Messages queued per peer before ``write`` blocks (ZeroMQ high-water mark).
    send_timeout_ms : int
        How long one send may block (no receiver, or a full queue) before
        :class:`SinkError`; -1 waits for ever.
    linger_ms : int
        At ``close(drain=True)``, how long queued messages may take to leave.
    context : zmq.Context, optional
        Default: a private context, terminated at close.
    """

    def __init__(self, endpoint: str, bind: bool = False, hwm: int = 256,
                 send_timeout_ms: int = 10_000, linger_ms: int = 5_000, context=None):
        super().__init__()
        if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
            raise SinkError(f"zmq endpoint {endpoint!r}: expected tcp://HOST:PORT, ipc://PATH "
                            f"or inproc://NAME; {_forms()}")
        self.endpoint, self.bind = endpoint, bind
        self.uri = f"zmq:{'bind:' if bind else ''}{endpoint}"
        self.hwm, self.send_timeout_ms, self.linger_ms = hwm, send_timeout_ms, linger_ms
        self._ctx_given = context
        self._ctx = self._sock = None
        self.seq = 0
        self.bytes = 0

    def _open(self):
        import zmq
        self._zmq = zmq
        self._ctx = self._ctx_given or zmq.Context()
        s = self._ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.SNDHWM, self.hwm)
        s.setsockopt(zmq.SNDTIMEO, self.send_timeout_ms)
        s.setsockopt(zmq.LINGER, 0)
        try:
            (s.bind if self.bind else s.connect)(self.endpoint)
        except zmq.ZMQError as e:
            s.close()
            self._close_context()
            raise SinkError(f"{self.uri}: cannot {'bind' if self.bind else 'connect'} ({e})") \
                from None
        self._sock = s

    def _send(self, parts):
        try:
            self._sock.send_multipart(parts)      # copied: the caller may reuse its block
        except self._zmq.Again:
            raise SinkError(f"{self.uri}: no receiver took an audio block for "
                            f"{self.send_timeout_ms} ms") from None

    def _write(self, frames):
        parts = pack_block(frames, self.sample_rate, self.channels, self.seq)
        self._send(parts)
        self.seq += 1
        self.bytes += parts[1].nbytes

    def _close(self, drain):
        if self._sock is None:
            return
        try:
            if drain:
                try:
                    self._send(pack_block(None, self.sample_rate, self.channels, self.seq))
                except SinkError:
                    pass
                self._sock.setsockopt(self._zmq.LINGER, self.linger_ms)
            self._sock.close()
        finally:
            self._close_context()

    def _close_context(self):
        if self._ctx is not None and self._ctx_given is None:
            self._ctx.term()
        self._ctx = None

    @property
    def stats(self):
        return {**super().stats, "endpoint": self.endpoint, "bind": self.bind,
                "messages": self.seq, "bytes": self.bytes}


# ============================================================ audio device
def _import_sounddevice():
    """``sounddevice``, imported on first use, or a :class:`SinkError` that
    says what to install."""
    try:
        import sounddevice
    except OSError as e:      # raised by sounddevice when libportaudio is missing
        raise SinkError(f"the PortAudio library is missing ({e}); install it with "
                        f"`apt-get install libportaudio2` (Debian/Ubuntu), or choose another "
                        f"sink: --sink wav:out.wav") from None
    except ImportError:
        raise SinkError("the Python package sounddevice is missing: pip install sounddevice "
                        "(or choose another sink: --sink wav:out.wav)") from None
    return sounddevice


def list_devices() -> list[dict]:
    """The audio outputs PortAudio sees.

    Returns a list of dicts: ``index``, ``name``, ``hostapi`` (name),
    ``channels`` (max output channels), ``default_samplerate`` (Hz),
    ``low_latency`` / ``high_latency`` (the device's default output latencies,
    seconds) and ``default`` (True for the default output).
    Raises :class:`SinkError` when PortAudio is missing.
    """
    sd = _import_sounddevice()
    try:
        default_out = sd.default.device[1]
        if default_out is None or default_out < 0:
            default_out = sd.query_devices(kind="output")["index"]
    except (sd.PortAudioError, ValueError):
        default_out = -1
    apis = sd.query_hostapis()
    out = []
    for d in sd.query_devices():
        if d["max_output_channels"] <= 0:
            continue
        out.append({"index": d["index"], "name": d["name"],
                    "hostapi": apis[d["hostapi"]]["name"],
                    "channels": d["max_output_channels"],
                    "default_samplerate": d["default_samplerate"],
                    "low_latency": d["default_low_output_latency"],
                    "high_latency": d["default_high_output_latency"],
                    "default": d["index"] == default_out})
    return out


class _Ring:
    """Single-producer, single-consumer ring of interleaved float32 frames, and
    the playback state machine the audio callback runs.

    The producer (``put``) owns ``written``; the consumer (``fill_output``, called
    from the audio callback) owns ``read``, ``playing`` and the callback
    counters.  Each side only reads the other's integers, so no lock is
    needed (Python int stores are atomic) and the consumer never waits.

    Parameters
    ----------
    channels : int
    capacity : int
        Frames (samples per channel) the ring holds.
    target : int
        Frames buffered before playback starts, and restarts after an underrun.
    fade : int
        Frames of the fade-out before an underrun's silence and the fade-in
        after it, and of the crossfade of a catch-up.
    catch_up_window : int
        Frames played per observation window of the standing queue (0: not
        observed; ``queue_min`` stays -1).  With ``catch_up``, at the end
        of a window in which playback ran normally (no underrun, no end, no
        idle), the producer put at least 3 times and never found the ring
        full (``full``: a producer faster than real time is backpressure, not
        backlog), and the lowest fill seen after a callback (``win_min``, the
        standing queue) exceeded ``target + catch_up_tolerance + granularity``
        (granularity: the largest put seen at a callback in the window, or the
        largest callback, whichever is larger; ``threshold``),
        the oldest ``win_min - target`` frames are skipped with a ``fade``-long
        crossfade; ``trimmed`` and ``trims`` count them.
    catch_up_tolerance : int
        Frames of standing queue beyond the target (and the granularity)
        that are left alone.
    catch_up : bool
        Drop a standing excess (default True; needs ``catch_up_window``).
    """

    def __init__(self, channels: int, capacity: int, target: int, fade: int,
                 catch_up_window: int = 0, catch_up_tolerance: int = 0,
                 catch_up: bool = True):
        if not 0 < target <= capacity:
            raise SinkError(f"ring target {target} must be in 1..capacity ({capacity})")
        self.buf = np.zeros((capacity, channels), np.float32)
        self.capacity, self.target, self.fade = capacity, target, max(1, int(fade))
        ramp = np.linspace(0.0, 1.0, self.fade + 2, dtype=np.float32)[1:-1]
        # One column per channel: a broadcast product would make numpy
        # allocate its ufunc buffer in the callback.
        self._up = np.ascontiguousarray(np.repeat(ramp[:, None], channels, axis=1))
        self._down = np.ascontiguousarray(self._up[::-1])
        self.written = 0          # producer: frames put, ever
        self.read = 0             # consumer: frames taken, ever
        self.eos = False          # producer: no more frames will come; play out and stop
        self.idle = False         # producer: no more frames for now; play out, then wait
        self.playing = False      # consumer: False while (pre)buffering
        self.started = False      # consumer: playing began at least once
        self.fade_left = 0        # consumer: fade-in frames still to apply
        self.callbacks = 0
        self.shortages = 0        # times the ring ran dry while playing (our underruns)
        self.device_underflows = 0  # PortAudio output_underflow flags
        self.device_overflows = 0
        self.silence = 0          # frames of silence inserted by underruns
        self.max_frames = 0       # largest callback request seen
        self.starts = 0           # prebuffer completions (1 + re-prebuffers)
        self.max_fill = 0         # producer: largest fill seen (not counting the end padding)
        self.eos_pending = False  # producer: writing the end padding
        self.done = False         # consumer: everything played after eos
        self.was_idle = False     # consumer: stopped after running out while idle
        # Catch-up (see the class docstring).
        self.window = max(0, int(catch_up_window))
        self.tolerance = max(0, int(catch_up_tolerance))
        self.catch_up = bool(catch_up)
        self._mix = np.zeros((self.fade, channels), np.float32)   # the crossfade's old side
        self.puts = 0             # producer: puts that stored frames
        self.full = 0             # producer: puts that found the ring full (backpressure)
        self.max_put = 0          # producer: largest number of frames stored by one put
        self.last_put = 0         # producer: frames stored by the latest put
        self.trimmed = 0          # consumer: frames skipped by catch-up
        self.trims = 0            # consumer: catch-ups
        self.first_trim_at = -1   # consumer: read position (frames) of the first catch-up
        self.queue_min = -1       # consumer: standing queue of the last complete window
        self.win_played = 0       # consumer: the current window
        self.win_min = 0
        self.win_puts = 0
        self.win_full = 0
        self.win_put = 0          # consumer: largest put seen at a callback in the window
        self.threshold = -1       # consumer: the last window's catch-up threshold

    @property
    def fill(self) -> int:
        return self.written - self.read

    # ---------------------------------------------------------- producer
    def put(self, data: np.ndarray) -> int:
        """Copy as many leading frames of ``data`` ((n, channels)) as fit;
        return how many.  Clears ``idle`` once frames are in."""
        cap = self.capacity
        n = min(len(data), cap - (self.written - self.read))
        if n < len(data):
            self.full += 1         # backpressure: the consumer is the bottleneck
        if n <= 0:
            return 0
        start = self.written % cap
        first = min(n, cap - start)
        self.buf[start:start + first] = data[:first]
        if n > first:
            self.buf[:n - first] = data[first:n]
        self.written += n          # publish after the copy
        self.puts += 1
        self.last_put = n
        if n > self.max_put:
            self.max_put = n
        fill = self.written - self.read
        if fill > self.max_fill and not self.eos_pending:
            self.max_fill = fill
        self.idle = False          # after the frames are published: see fill_output()
        return n

    # ---------------------------------------------------------- consumer
    def fill_output(self, out: np.ndarray, underflow: bool = False,
                    overflow: bool = False) -> bool:
        """The audio callback's work: fill ``out`` ((frames, channels) float32).

        Returns True when the stream should stop: end of stream and every
        frame played.  Never blocks, never allocates a sample buffer.
        """
        frames = out.shape[0]
        self.callbacks += 1
        if underflow:
            self.device_underflows += 1
        if overflow:
            self.device_overflows += 1
        if frames > self.max_frames:
            self.max_frames = frames
        eos = self.eos                       # read before written: see put()/close()
        idle = self.idle                     # (the producer clears it after a put)
        avail = self.written - self.read
        fade = self.fade
        if not self.playing:
            need = max(self.target, min(self.capacity, self.max_frames + 2 * fade))
            if avail >= need or ((eos or idle) and avail > 0):
                self.playing = True
                self.fade_left = fade if self.started and not self.was_idle else 0
                self.was_idle = False
                self.started = True
                self.starts += 1
            else:
                out.fill(0.0)
                if self.started and not (eos or idle or self.was_idle):
                    self.silence += frames
                if eos and avail == 0:
                    self.done = True
                self._window_restart()
                return self.done
        short = False
        if eos or idle:
            n = min(avail, frames)            # the end (for now): play all there is
            if idle and not eos and n < frames:
                self.playing = False          # ran out while idle: a gap, not an underrun
                self.was_idle = True
            self._window_restart()
        elif avail < frames + fade:           # would run dry: fade out what there is
            n = min(avail, frames)
            short = True
            self._window_restart()
        else:
            n = frames
            if self.window:
                avail -= self._catch_up(avail - frames, frames)
        if n:
            cap = self.capacity
            start = self.read % cap
            first = min(n, cap - start)
            out[:first] = self.buf[start:start + first]
            if n > first:
                out[first:n] = self.buf[:n - first]
        if n < frames:
            out[n:].fill(0.0)
        if self.fade_left and n:
            m = min(self.fade_left, n)
            k = fade - self.fade_left
            out[:m] *= self._up[k:k + m]
            self.fade_left -= m
        if short:
            k = min(n, fade)
            if k:
                out[n - k:n] *= self._down[fade - k:]
            self.shortages += 1
            self.silence += frames - n
            self.playing = False
        self.read += n
        if eos and n == avail:
            self.done = True
        return self.done

    def _window_restart(self):
        # Consumer: a catch-up window starts at the next normal callback.
        self.win_played = 0
        self.win_min = self.capacity
        self.win_puts = self.puts
        self.win_full = self.full
        self.win_put = 0

    def _catch_up(self, slack: int, frames: int) -> int:
        """Consumer, in a normal callback: ``slack`` frames stay queued after
        it.  Returns the frames skipped (0 almost always)."""
        if slack < self.win_min:
            self.win_min = slack
        put = self.last_put
        if put > self.win_put:
            self.win_put = put
        self.win_played += frames
        if self.win_played < self.window:
            return 0
        lowest = self.win_min
        self.queue_min = lowest
        # Granularity: in steady state the lowest fill after a callback is
        # below target + one write (playback starts at target, and the
        # producer tops the ring up a write at a time).
        self.threshold = self.target + self.tolerance + max(self.win_put, self.max_frames)
        k = 0
        if (self.catch_up and self.puts - self.win_puts >= 3 and self.full == self.win_full
                and not self.eos_pending and not self.fade_left
                and lowest > self.threshold):
            k = min(lowest - self.target, slack - self.fade)
            if k > 0:
                self._skip(k)
            else:
                k = 0
        self._window_restart()
        return k

    def _skip(self, k: int):
        """Consumer: drop the oldest ``k`` queued frames, crossfading the
        ``fade`` frames at the read position into the ``fade`` frames after
        the skipped span, in place in the ring (that span is the consumer's:
        the producer writes only past ``written``).  Needs ``k + fade`` queued."""
        f, cap, buf, mix = self.fade, self.capacity, self.buf, self._mix
        a = self.read % cap
        first = min(f, cap - a)
        mix[:first] = buf[a:a + first]
        if f > first:
            mix[first:] = buf[:f - first]
        mix *= self._down
        b = (self.read + k) % cap
        first = min(f, cap - b)
        seg = buf[b:b + first]
        seg *= self._up[:first]
        seg += mix[:first]
        if f > first:
            seg = buf[:f - first]
            seg *= self._up[first:]
            seg += mix[first:]
        if self.first_trim_at < 0:
            self.first_trim_at = self.read
        self.read += k
        self.trimmed += k
        self.trims += 1


class SoundDeviceSink(Sink):
    """Plays through PortAudio (``sounddevice``), callback mode, ring-buffered.

    Parameters
    ----------
    device : int or str, optional
        PortAudio output device index or name substring; default: the
        system's default output.
    latency_ms : float
        The whole queue the sink adds (ms, default 50): the device's own
        buffer (``latency_ms / 2`` requested, see ``device_latency_ms``; the
        granted figure is ``stats['device_latency_ms']``) plus the ring's
        target, the rest.  The target is what is buffered before playback
        starts and after an underrun, and the standing queue that catch-up
        brings an excess back to; it is at least half the device buffer (a
        callback's request) plus the fades, so a very small ``latency_ms``
        is rounded up (``stats['target']`` says to what).
    blocksize : int, optional
        Samples per channel per callback; default 0: PortAudio chooses
        (lowest latency).
    fade_ms : float
        Fade-out before and fade-in after the silence of an underrun, and
        the crossfade of a catch-up (ms).
    pad_s : float
        Silence appended at ``close(drain=True)`` (s): PortAudio 19.6 drops
        the last buffer of an ALSA stream on stop, so this keeps the tail.
    headroom_ms : float, optional
        Ring space beyond ``latency_ms`` (ms) before ``write`` blocks;
        default ``max(latency_ms, 500)``: room for a start-up backlog (or a
        burst after a network stall) to enter the ring, where catch-up can
        drop it, instead of waiting in the transport's queue.
    device_latency_ms : float, optional
        Output latency asked of PortAudio (ms); default ``latency_ms / 2``.
        PortAudio may round it up; the figure it grants is in the stats.
    catch_up : bool
        Hold the queue to ``latency_ms`` (default True): when, over a
        ``catch_up_window_s`` of normal playback, the queue never fell below
        ``latency_ms`` + ``catch_up_tolerance_ms`` + one write or callback
        (whichever is larger), while the producer was never held back by a
        full ring, drop the oldest excess with a ``fade_ms`` crossfade (see
        the module docstring).  False keeps every sample.
    catch_up_window_s : float
        Observation window of catch-up (s, default 0.5).
    catch_up_tolerance_ms : float
        Standing queue beyond the target (and the granularity) left alone
        (ms, default 5).

    ``stats``: ``underruns`` (= ``shortages`` + ``output_underflows``):
    ``shortages`` are the times the ring ran dry (the producer was late),
    ``output_underflows`` the callbacks PortAudio flagged late once audio
    had started (flags during the silence before the first sample are not
    counted); ``silence_samples`` inserted by underruns; ``fill`` /
    ``max_queue`` / ``capacity`` / ``target`` in samples per channel;
    ``queue_min``: the standing queue (lowest fill after a callback) of the
    last complete window of normal playback, samples, -1 before one (also
    observed with ``catch_up=False``);
    ``latency_trimmed_samples`` (``_ms``) and ``catch_ups``: audio dropped
    by catch-up and how often, ``first_trim_at`` the stream position
    (samples) of the first; ``catch_up_threshold``: the standing queue above
    which it acts, as of the last window (samples, -1 before one);
    ``played``: samples played (trimmed ones not counted); ``latency_ms``
    (the target) and ``device_latency_ms`` (``stream.latency``);
    ``dac_delay_ms`` (PortAudio's estimate, at the last callback, of the
    time until its first sample reaches the DAC); ``open_ms`` (:meth:`open`:
    loading PortAudio unless :meth:`prepare` did, opening and starting the
    device); ``waits`` (times ``write`` blocked on a full ring).
    """

    def __init__(self, device=None, latency_ms: float | None = None,
                 blocksize: int | None = None, fade_ms: float = 5.0, pad_s: float = 0.25,
                 headroom_ms: float | None = None, device_latency_ms: float | None = None,
                 catch_up: bool = True, catch_up_window_s: float = 0.5,
                 catch_up_tolerance_ms: float = 5.0):
        super().__init__()
        if isinstance(device, str) and device.strip().lstrip("-").isdigit():
            device = int(device)
        self.device = device
        self.latency_ms = 50.0 if latency_ms is None else float(latency_ms)
        if not self.latency_ms > 0:
            raise SinkError(f"latency must be > 0 ms, got {latency_ms}")
        self.blocksize = 0 if blocksize is None else int(blocksize)
        if self.blocksize < 0:
            raise SinkError(f"blocksize must be >= 0 samples, got {blocksize}")
        self.fade_ms, self.pad_s = float(fade_ms), float(pad_s)
        self.headroom_ms = headroom_ms
        self.device_latency_ms = (self.latency_ms / 2 if device_latency_ms is None
                                  else float(device_latency_ms))
        self.catch_up = bool(catch_up)
        self.catch_up_window_s = float(catch_up_window_s)
        self.catch_up_tolerance_ms = float(catch_up_tolerance_ms)
        if not (self.catch_up_window_s > 0 and self.catch_up_tolerance_ms >= 0):
            raise SinkError(f"catch-up needs a window > 0 s and a tolerance >= 0 ms, got "
                            f"{catch_up_window_s} s and {catch_up_tolerance_ms} ms")
        self.uri = "sounddevice" + ("" if device is None else f":{device}")
        self.stream = None
        self.ring: _Ring | None = None
        self.device_name = None
        self.device_latency = None
        self.open_s = None
        self.padding = 0
        self.waits = 0
        self.drain_timeout = False
        self._finished = threading.Event()
        self._stop_exc = None
        self._trims_logged = 0
        self._dac_delay = float("nan")   # s from a callback to its first sample at the DAC

    # ------------------------------------------------------------- opening
    def _device_name(self, sd):
        try:
            return sd.query_devices(self.device, "output")["name"]
        except (ValueError, sd.PortAudioError) as e:
            names = ", ".join(f"{d['index']}: {d['name']}" for d in list_devices())
            what = "no default audio output" if self.device is None \
                else f"no audio output {self.device!r}"
            raise SinkError(f"{what} ({e}); outputs: {names or 'none'}"
                            + ("" if names else "; write a file instead: --sink wav:out.wav")) \
                from None

    def _prepare(self):
        if self.device_name is None:
            self.device_name = self._device_name(_import_sounddevice())

    def _open(self):
        t0 = time.monotonic()
        self._prepare()
        sd = _import_sounddevice()
        rate, ch = self.sample_rate, self.channels
        name = self.device_name
        try:
            sd.check_output_settings(device=self.device, channels=ch, dtype="float32",
                                     samplerate=rate)
        except (sd.PortAudioError, ValueError) as e:
            msg = str(e)
            info = sd.query_devices(self.device, "output")
            if "sample rate" in msg.lower():
                raise SinkError(f"audio output {name!r} refuses {_hz(rate)} ({msg}); its default "
                                f"rate is {_hz(info['default_samplerate'])}: resample the "
                                f"stream, or choose another --device") from None
            if "channel" in msg.lower():
                raise SinkError(f"audio output {name!r} cannot play {ch} channels ({msg}); it "
                                f"has {info['max_output_channels']}") from None
            raise SinkError(f"audio output {name!r}: {_hz(rate)}, {ch} channels, float32 "
                            f"refused ({msg})") from None
        self._stop_exc = sd.CallbackStop
        try:
            self.stream = sd.OutputStream(
                samplerate=rate, channels=ch, dtype="float32", device=self.device,
                blocksize=self.blocksize, latency=self.device_latency_ms / 1000.0,
                callback=self._callback, finished_callback=self._finished.set)
        except sd.PortAudioError as e:
            raise SinkError(f"audio output {name!r}: cannot open a {_hz(rate)}, {ch}-channel "
                            f"stream ({e})") from None
        self.device_latency = float(self.stream.latency)
        fade = max(1, int(round(self.fade_ms * rate / 1000.0)))
        device_frames = int(np.ceil(self.device_latency * rate))
        # The queue the sink adds is latency_ms in all: the ring's target plus
        # the device's own buffer.  The ring holds at least half the device
        # buffer (a callback's request is at most that with PortAudio's ALSA
        # and PulseAudio hosts) and the fades.
        target = max(int(round(self.latency_ms * rate / 1000.0)) - device_frames,
                     2 * self.blocksize, device_frames // 2 + 2 * fade)
        head_ms = max(self.latency_ms, 500.0) if self.headroom_ms is None else self.headroom_ms
        capacity = target + max(int(round(head_ms * rate / 1000.0)), self.blocksize, 1)
        self.ring = _Ring(ch, capacity, target, fade,
                          catch_up_window=max(1, int(round(self.catch_up_window_s * rate))),
                          catch_up_tolerance=int(round(self.catch_up_tolerance_ms * rate / 1000)),
                          catch_up=self.catch_up)
        # Start now, playing silence until the ring reaches the target: the
        # device's clock runs from here, so the audio that queues up while
        # the first frames arrive is the target, not the target plus however
        # long the device took to open and start.  What queued before (frames
        # that arrived while the device opened) catch-up drops.
        try:
            self.stream.start()
        except sd.PortAudioError as e:
            self.stream.close()
            self.stream = None
            raise SinkError(f"audio output {name!r}: cannot start the stream ({e})") from None
        self.open_s = time.monotonic() - t0

    # ----------------------------------------------------------- the callback
    def _callback(self, outdata, frames, time_info, status):
        # PortAudio's thread: no locks, no waits, no sample buffers allocated.
        ring = self.ring
        self._dac_delay = time_info.outputBufferDacTime - time_info.currentTime
        if ring.fill_output(outdata, status.output_underflow and ring.started,
                            status.output_overflow):
            raise self._stop_exc

    # ------------------------------------------------------------ producing
    def _write(self, frames):
        ring = self.ring
        off, n = 0, len(frames)
        while True:
            off += ring.put(frames[off:])
            if off >= n:
                break
            self._wait_for_space(min(n - off, ring.capacity // 2))
        if ring.trims != self._trims_logged:
            self._log_trims()

    def _log_trims(self):
        ring, rate = self.ring, self.sample_rate
        if not self._trims_logged:
            log.warning("audio output %r: %.0f ms of queued audio dropped (the oldest, "
                        "crossfaded) to hold the %.0f ms latency target; the queue had stayed "
                        "above it for %.1f s (a start-up backlog, a burst, or a producer clock "
                        "faster than the device's).  Later catch-ups are counted, not logged; "
                        "--no-catch-up keeps every sample",
                        self.device_name, 1000.0 * ring.trimmed / rate, self.latency_ms,
                        self.catch_up_window_s)
        self._trims_logged = ring.trims

    def _flush(self):
        self.ring.idle = True

    def queued_seconds(self) -> float | None:
        ring = self.ring
        if ring is None:
            return None
        dac = self._dac_delay
        return ring.fill / self.sample_rate + (dac if dac == dac else self.device_latency or 0.0)

    def _wait_for_space(self, need: int):
        """Sleep until ``need`` frames are free.  Raises SinkError when the
        device stops taking samples."""
        ring, rate = self.ring, self.sample_rate
        self.waits += 1
        last_read, last_change = ring.read, time.monotonic()
        stall_s = 2.0 + 4 * ring.capacity / rate
        while ring.capacity - ring.fill < need:
            short = need - (ring.capacity - ring.fill)
            time.sleep(min(max(short / rate, 0.0005), 0.02))
            if ring.read != last_read:
                last_read, last_change = ring.read, time.monotonic()
            elif time.monotonic() - last_change > stall_s:
                raise SinkError(f"audio output {self.device_name!r} stopped taking samples "
                                f"(stream {'active' if self.stream.active else 'inactive'}, "
                                f"no progress for {stall_s:.1f} s)")

    def _close(self, drain):
        stream, ring = self.stream, self.ring
        if stream is None:
            return
        try:
            if drain and ring.written > 0:
                pad = int(round(self.pad_s * self.sample_rate))
                ring.eos_pending = True
                if pad:
                    zeros = np.zeros((min(pad, 4096), self.channels), np.float32)
                    left = pad
                    while left:
                        k = min(left, len(zeros))
                        self._write(zeros[:k])
                        left -= k
                    self.padding = pad
                ring.eos = True          # after the last put: the callback reads eos first
                timeout = ring.fill / self.sample_rate + self.device_latency + 2.0
                if not self._finished.wait(timeout):
                    self.drain_timeout = True
                    stream.abort()
                else:
                    stream.stop()
            else:
                stream.abort()
        finally:
            stream.close()

    @property
    def stats(self):
        s = super().stats
        ring = self.ring
        if ring is None:
            return {**s, "device": self.device_name, "latency_ms": self.latency_ms,
                    "catch_up": self.catch_up}
        rate = self.sample_rate
        s.update({
            "device": self.device_name,
            "underruns": ring.shortages + ring.device_underflows,
            "shortages": ring.shortages,
            "output_underflows": ring.device_underflows,
            "overflows": ring.device_overflows,
            "silence_samples": ring.silence,
            "played": ring.read - ring.trimmed,
            "padding": self.padding,
            "fill": ring.fill,
            "max_queue": ring.max_fill,
            "queue_min": ring.queue_min,
            "capacity": ring.capacity,
            "target": ring.target,
            "start_target": ring.target,
            "catch_up": self.catch_up,
            "catch_up_threshold": ring.threshold,
            "latency_trimmed_samples": ring.trimmed,
            "latency_trimmed_ms": 1000.0 * ring.trimmed / rate,
            "catch_ups": ring.trims,
            "first_trim_at": ring.first_trim_at,
            "prebuffers": ring.starts,
            "callbacks": ring.callbacks,
            "max_callback_samples": ring.max_frames,
            "max_write_samples": ring.max_put,
            "waits": self.waits,
            "latency_ms": self.latency_ms,
            "buffer_ms": 1000.0 * ring.fill / rate,
            "device_latency_ms": None if self.device_latency is None
            else 1000.0 * self.device_latency,
            "dac_delay_ms": None if self._dac_delay != self._dac_delay
            else 1000.0 * self._dac_delay,
            "open_ms": None if self.open_s is None else 1000.0 * self.open_s,
            "blocksize": self.blocksize,
            "drain_timeout": self.drain_timeout,
        })
        return s


# ==================================================================== URIs
def open_sink(uri: str, *, device=None, latency_ms: float | None = None,
              blocksize: int | None = None, catch_up: bool | None = None) -> Sink:
    """Make a sink from a URI (see the module docstring); call ``.open()`` next.

    Parameters
    ----------
    uri : str
        ``sounddevice[:DEVICE]``, ``wav:PATH``, ``raw:-``, ``raw:PATH``,
        ``null``, ``zmq:[bind:|connect:]ENDPOINT``.
    device : int or str, optional
        Output device for ``sounddevice`` (index or name substring); the same
        as ``sounddevice:DEVICE``.
    latency_ms : float, optional
        ``sounddevice`` only: audio buffered before playback starts (ms, default 50).
    blocksize : int, optional
        ``sounddevice`` only: samples per channel per callback (default: PortAudio's choice).
    catch_up : bool, optional
        ``sounddevice`` only: hold the queue to ``latency_ms`` by dropping a
        standing excess (default True; False keeps every sample).

    Raises :class:`SinkError` for a URI of no known form, listing the forms.
    """
    if not isinstance(uri, str) or not uri:
        raise SinkError(f"empty sink; {_forms()}")
    kind, sep, rest = uri.partition(":")
    kind = kind.lower()
    if kind != "sounddevice" and (device is not None or latency_ms is not None
                                  or blocksize is not None or catch_up is not None):
        raise SinkError(f"device, latency, blocksize and catch-up apply to the sounddevice "
                        f"sink, not to {uri!r}")
    if kind == "sounddevice":
        dev = rest if sep and rest else None
        if dev is not None and device is not None and str(device) != dev:
            raise SinkError(f"two devices given: {uri!r} and device={device!r}")
        return SoundDeviceSink(device if device is not None else dev, latency_ms=latency_ms,
                               blocksize=blocksize, catch_up=True if catch_up is None
                               else bool(catch_up))
    if kind == "null" and not sep:
        return NullSink()
    if kind == "wav" and rest:
        return FileSink(rest)
    if kind == "raw" and rest:
        return RawSink(rest)
    if kind == "zmq" and rest:
        mode, sep2, endpoint = rest.partition(":")
        if mode in ("bind", "connect") and sep2:
            return ZmqSink(endpoint, bind=mode == "bind")
        return ZmqSink(rest)
    raise SinkError(f"unknown sink {uri!r}; {_forms()}")
