"""Frames over ZeroMQ: :class:`FrameSender` for producers, :class:`FrameReceiver` for players.

The wire format is :mod:`stream.protocol`.  A producer needs three lines::

    from stream import FrameSender
    with FrameSender("tcp://127.0.0.1:5556", sample_rate=48000, n_fft=1024, hop_length=256) as tx:
        for mag, phase in frames:
            tx.send(mag, phase)      # or tx.send(complex_bins), or tx.send(mag)

and a consumer iterates a receiver::

    with FrameReceiver("tcp://127.0.0.1:5556") as rx:
        for event in rx:
            if isinstance(event, AudioBlock):
                use(event.samples)

Patterns: PUSH/PULL (default: nothing is lost, a slow receiver slows the
sender through the high-water mark) and PUB/SUB (many listeners, late joiners,
frames may drop).  Either side may bind or connect, over tcp:// or ipc://.
By default the receiver binds and the sender connects, on 127.0.0.1 only.
An endpoint that other machines can reach needs CURVE keys on both sides
(``curve_secret`` and ``allow`` or ``curve_server``; :mod:`stream.security`),
or ``insecure=True``.

The receiver decodes with the same :class:`~stream.decode.Decoder` and
inverts with the same :class:`~stream.engine.Reconstructor` as the offline
path, so a stream plays exactly what ``specstream reconstruct`` writes.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np
import zmq

from .decode import Encoding
from .engine import as_block, overlap_hops
from .errors import SendError, SpecstreamError
from .mel import MelSpec
from .monitor import PeerMonitor
from .pipeline import CONCEAL_MODES, FramePipeline
from .protocol import (DEFAULT_ENDPOINT, MsgType, ProtocolError, StreamHeader, end_message,
                       frame_arrays, frames_message, pack_envelope, payload_dtype,
                       unpack_envelope)
from .security import SocketSecurity, open_socket
from .spec import SpecError, STFTSpec

__all__ = ["DEFAULT_ENDPOINT", "FrameSender", "SenderStats", "FrameReceiver", "ReceiverStats",
           "StreamStarted", "AudioBlock", "FramesBlock", "StreamEnded"]

log = logging.getLogger("specstream")

_SENDER_PATTERNS = {"push": zmq.PUSH, "pub": zmq.PUB}
_RECEIVER_PATTERNS = {"pull": zmq.PULL, "sub": zmq.SUB}


def _endpoint_of(sock, endpoint: str, bind: bool) -> str:
    if bind:
        last = sock.getsockopt(zmq.LAST_ENDPOINT)
        if last:
            return last.decode()
    return endpoint


# =================================================================== sender
class FrameSender:
    """Send STFT frames to a player.  A context manager; ``end()`` on exit.

    Parameters
    ----------
    endpoint : str
        ``tcp://HOST:PORT`` or ``ipc://PATH``; with ``bind=True`` a port of
        ``*`` picks a free one (read :attr:`endpoint`).  An endpoint other
        machines can reach needs CURVE (or ``insecure=True``).
    spec : STFTSpec, optional
        How the frames were made.  Or give its fields as keywords instead
        (``**stft_params``: ``sample_rate`` in Hz and ``n_fft`` at least, then
        ``hop_length``, ``win_length``, ``window``... as in
        :class:`~stream.spec.STFTSpec`, librosa names, sizes in samples).
    encoding : Encoding
        Units of magnitudes/phases for ``send(mag, phase)`` and ``send(mag)``
        (default linear magnitude, radians).
    mel : MelSpec, optional
        The frames are mel bands (``stream.mel``): ``send(mel_frame)`` takes
        ``(n_mels,)`` / ``(n_frames, n_mels)`` values in ``mel.unit``; the
        player rebuilds magnitudes and a phase (RTPGHI).
    length : int, optional
        Samples the stream decodes to, when known: the receiver trims/pads to it.
    pattern : str
        'push' (default; waits for the receiver when its queue is full) or 'pub'.
    bind : bool
        Bind the endpoint instead of connecting to it.
    stream_id : int, optional
        u32 naming this stream; random by default.
    header_every : int
        Re-send the header after this many frames ...
    header_interval : float
        ... or after this many seconds, whichever is first, so that late
        joiners and restarted receivers can start.
    sndhwm : int, optional
        High-water mark in messages (ZeroMQ default 1000).
    linger : float
        Seconds :meth:`close` waits for queued frames to leave (None: forever).
    pace : bool or float
        Send in real time: ``send`` sleeps until its first frame is due.
        ``True`` for real time, a factor for faster (2.0) or slower (0.5)
        than real time, ``False`` (default) or ``math.inf`` to send as fast as
        the receiver takes them.  Frame ``k`` is due ``k * hop_length /
        sample_rate / factor`` seconds after the first send, on the monotonic
        clock: late sends do not shift the schedule (no drift).
    send_timeout : float, optional
        Seconds one ``send`` (or ``end``) may wait for room in the queue (as
        ZeroMQ's ``SNDTIMEO``) before it raises :class:`~stream.errors.SendError`;
        None (default) waits for ever.
    curve_secret : str or Path, optional
        This side's CURVE key pair (a ``NAME.key_secret`` file from
        ``specstream keygen``), with ``curve_server`` or ``allow``.
    curve_server : str, Path or bytes, optional
        The receiver's public key (its ``NAME.key`` file, or the z85 key):
        the stream is encrypted, and only that receiver can take it.
    allow : path, key or list of them, optional
        With ``bind=True``: be the CURVE server and admit only these receivers
        (certificate files, directories of ``*.key`` files, z85 keys).
    insecure : bool
        Allow a plain endpoint that other machines can reach.

    ``send`` takes one frame or a block: ``(bins,)`` / ``(n_frames, bins)``
    for one channel, ``(channels, bins)`` / ``(channels, n_frames, bins)`` for
    more.  The frame kind (complex bins, magnitude + phase, magnitude only) is
    fixed by the first call.

    No frame is lost silently.  While no receiver is connected, frames queue
    (up to ``sndhwm`` messages), then ``send`` blocks; after ``send_timeout``
    it raises :class:`~stream.errors.SendError` and counts the frames as
    dropped.  :meth:`close` waits ``linger`` seconds for queued frames to
    leave and counts (and logs) those that did not.  :attr:`stats` has the
    counts, :attr:`peers` says who is connected, :meth:`wait_for_receiver`
    waits for a receiver, and a receiver that goes away and comes back is
    logged ("receiver at ENDPOINT went away; waiting", "... reconnected").
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, spec: STFTSpec | None = None,
                 encoding: Encoding | None = None, length: int | None = None,
                 pattern: str = "push", bind: bool = False, stream_id: int | None = None,
                 header_every: int = 256, header_interval: float = 1.0,
                 sndhwm: int | None = None, linger: float | None = 10.0,
                 pace: bool | float = False, send_timeout: float | None = None,
                 curve_secret=None, curve_server=None, allow=None, insecure: bool = False,
                 context: zmq.Context | None = None, mel: MelSpec | None = None,
                 **stft_params):
        if spec is None:
            if "sample_rate" not in stft_params or "n_fft" not in stft_params:
                raise SpecError("FrameSender needs sample_rate and n_fft (or spec=)")
            spec = STFTSpec(**stft_params)
        elif stft_params:
            raise SpecError(f"FrameSender takes spec= or STFT parameters, not both "
                            f"(got spec= and {', '.join(stft_params)})")
        if pattern not in _SENDER_PATTERNS:
            raise SpecError(f"pattern {pattern!r} is not one of {', '.join(_SENDER_PATTERNS)}")
        if send_timeout is not None and not send_timeout > 0:
            raise SpecError(f"send_timeout={send_timeout!r}: use a number of seconds > 0, "
                            "or None to wait for ever")
        self.spec = spec
        self.encoding = encoding or Encoding()
        self.mel = mel
        if mel is not None:
            mel.check(spec)
        self.length = length
        self.pattern = pattern
        self.stream_id = random.getrandbits(32) if stream_id is None else int(stream_id)
        self.header_every = max(1, int(header_every))
        self.header_interval = float(header_interval)
        self.send_timeout = send_timeout
        self.header: StreamHeader | None = None     # made by the first send
        self.seq = 0               # next frame's sequence number
        self.messages = 0
        self._since_header = 0
        self._header_at = -math.inf
        self._ended = False
        self._header_json = None
        self._linger = linger
        self._bound = bind
        self._stats = SenderStats()
        self._in_flight = deque()  # (tracker, frames) of messages ZeroMQ may still hold
        self._pacer = _Pacer(spec, pace)
        self.security = SocketSecurity(curve_secret=curve_secret, curve_server=curve_server,
                                       allow=allow, insecure=insecure)
        self._ctx = context or zmq.Context.instance()
        opts = [(zmq.LINGER, -1 if linger is None else int(linger * 1000))]
        if sndhwm is not None:
            opts.append((zmq.SNDHWM, int(sndhwm)))
        self.monitor: PeerMonitor | None = None
        try:
            self._frames_out = open_socket(self._ctx, _SENDER_PATTERNS[pattern], endpoint,
                                           bind, options=opts, security=self.security,
                                           before=self._watch)
        except BaseException:
            if self.monitor is not None:
                self.monitor.stop()
            raise
        self.endpoint = _endpoint_of(self._frames_out, endpoint, bind)
        # Frames leave without a copy and with a tracker, however small, so
        # that ZeroMQ says when it is done with each: that is what counts as sent.
        self._frames_out.copy_threshold = 0
        self._next_look = 0.0      # when send() next reads the monitor's events

    def _watch(self, sock):
        # Before bind/connect, so that the first connection is seen too.
        self.monitor = PeerMonitor(sock, peer="receiver")

    # ----------------------------------------------------------------- api
    def send(self, first, second=None, *, timestamp: float | None = None) -> int:
        """Send one frame or a block; returns the frames sent.

        ``first``: complex bins, or magnitudes in the encoding's unit;
        ``second``: phases in the encoding's unit (magnitude + phase frames).
        ``timestamp``: producer time in Unix seconds (default now).
        Raises :class:`~stream.errors.SendError` when the frames waited
        ``send_timeout`` seconds for room in the queue (they are dropped).
        """
        if self._ended:
            raise SpecError("send after end(): make a new FrameSender for a new stream")
        kind = self._kind_of(first, second)
        a = self._as_wire(first, kind)
        b = self._as_wire(second, kind) if kind == "magphase" else None
        if b is not None and b.shape != a.shape:
            raise SpecError(f"magnitude shape {np.shape(first)} and phase shape "
                            f"{np.shape(second)} differ")
        n = a.shape[1]
        if n == 0:
            return 0
        self._pacer.wait(self.seq)
        self._stats.frames_queued += n
        try:
            self._maybe_header()
            # Zero copy: ZeroMQ reads our array after send() returns; its
            # tracker says when it is done with it, and close() waits for it.
            tracker = self._send(frames_message(self.header, self.seq, a, b, timestamp),
                                 track=True)
        except SendError as e:
            self._stats.frames_dropped += n
            raise SendError(f"{e}; {n} frame(s) dropped") from None
        now = time.monotonic()
        if now >= self._next_look:           # comings and goings, a few times a second
            self._next_look = now + 0.05
            self.monitor.poll()
        if self.pattern == "pub" and self.monitor.peers == 0:
            self._stats.frames_dropped += n     # nobody subscribed: PUB drops them
        else:
            self._in_flight.append((tracker, n))
            self._reap()
        self.seq += n
        self.messages += 1
        self._since_header += n
        return n

    def send_header(self):
        """Send the stream header now (done automatically; needs the frame kind)."""
        if self.header is None:
            raise SpecError("the header is sent with the first frames: its frame kind "
                            "comes from them")
        if self._header_json is None:       # made once: it never changes
            self._header_json = self.header.to_json()
        self._send([pack_envelope(MsgType.HEADER, self.stream_id, self.seq), self._header_json])
        self._since_header = 0
        self._header_at = time.monotonic()

    def end(self):
        """Send end-of-stream (once).  The receiver flushes the stream's tail."""
        if self._ended:
            return
        self._ended = True
        if self.header is not None:
            self._send(end_message(self.stream_id, self.seq))

    @property
    def peers(self) -> int:
        """Receivers connected now (their handshake done)."""
        return self.monitor.poll()

    @property
    def connected(self) -> bool:
        """Is any receiver connected?"""
        return self.peers > 0

    def wait_for_receiver(self, timeout: float | None = None):
        """Wait up to ``timeout`` seconds (None: forever) for a receiver to connect.

        Raises :class:`~stream.errors.SendError` when none did, saying why if
        the receiver refused us (CURVE keys) or the handshake failed.
        """
        if not self.monitor.wait(timeout):
            raise SendError(self._why_nothing_left("ever" if timeout is None
                                                   else f"{timeout:g} s"))

    @property
    def stats(self) -> SenderStats:
        """Frames queued, sent and dropped so far (see :class:`SenderStats`)."""
        self._reap()
        return self._stats

    def close(self):
        """Close the socket; waits up to ``linger`` seconds for queued frames to leave.

        Frames still queued then are dropped, counted in ``stats.frames_dropped``
        and logged.  Always close a sender (or use it as a context manager):
        frames go out without a copy, and at interpreter exit pyzmq lets go of
        buffers that are still queued, so that the receiver could get freed memory.
        """
        if self._frames_out.closed:
            return
        t0 = time.monotonic()
        left = self._wait_in_flight(self._linger)
        if left:
            self._drop_in_flight()
            log.warning("stream %d: %d of %d frames never left: no receiver at %s took them "
                        "within %g s; dropped", self.stream_id, left,
                        self._stats.frames_queued, self.endpoint, self._linger)
            self._shut(0)
        elif self._linger is None:
            self._shut(None)
        else:           # the frames are out: what is left of linger, for END
            self._shut(max(0, int(1000 * (self._linger - (time.monotonic() - t0)))))

    def __enter__(self):
        return self

    def abort(self):
        """Stop now: send end-of-stream if that does not block, drop what is
        queued (counted in ``stats.frames_dropped``), close."""
        if not self._ended and self.header is not None and not self._frames_out.closed:
            self._ended = True
            try:
                self._frames_out.send_multipart(end_message(self.stream_id, self.seq),
                                                flags=zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
        self._ended = True
        if not self._frames_out.closed:
            self._reap()
            self._drop_in_flight()
            self._shut(0)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.end()
            finally:
                self.close()
        else:
            self.abort()

    # ----------------------------------------------------------- internals
    def _send(self, parts, track: bool = False):
        """Send a message, waiting up to ``send_timeout`` for room (and reading
        the monitor's events meanwhile, so that comings and goings are logged)."""
        deadline = None if self.send_timeout is None else time.monotonic() + self.send_timeout
        while True:
            try:
                return self._send_parts(parts, track)
            except zmq.Again:
                pass
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.monitor.wait_writable(left):
                break
        raise SendError(self._why_nothing_left(f"{self.send_timeout:g} s"))

    def _send_parts(self, parts, track: bool):
        """One message, without blocking.  With ``track``, the payload arrays
        (all parts after the envelope) go without a copy, and the tracker of
        the last says when ZeroMQ is done with them: the message has left."""
        sock, last = self._frames_out, len(parts) - 1
        for i in range(last):            # only the first part can meet a full queue
            sock.send(parts[i], zmq.NOBLOCK | zmq.SNDMORE, copy=not (track and i > 0))
        return sock.send(parts[last], zmq.NOBLOCK, copy=not (track and last > 0), track=track)

    def _why_nothing_left(self, waited: str) -> str:
        """What the monitor saw, for a SendError after waiting ``waited``."""
        where = f"{'bound to' if self._bound else 'at'} {self.endpoint}"
        m = self.monitor
        if m.poll():
            return f"the receiver {where} took nothing for {waited} (connected, but not reading)"
        if m.refused:
            return (f"the receiver {where} refused our CURVE key: add our public key to the "
                    "keys it allows (play --allow)")
        if m.failed:
            return (f"the handshake with the receiver {where} failed: do both sides use "
                    "CURVE, with the receiver's own public key as curve_server?")
        return f"no receiver {where}: is `specstream play` running? (waited {waited})"

    def _reap(self):
        """Count the frames of messages ZeroMQ is done with, oldest first."""
        q = self._in_flight
        while q and q[0][0].done:
            self._stats.frames_sent += q.popleft()[1]

    def _wait_in_flight(self, timeout: float | None) -> int:
        """Wait up to ``timeout`` seconds for every queued message; the frames still queued."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for tracker, _ in self._in_flight:
            left = -1 if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                tracker.wait(left)
            except zmq.NotDone:
                break
        done = [(t, n) for t, n in self._in_flight if t.done]
        self._stats.frames_sent += sum(n for _, n in done)
        self._in_flight = deque((t, n) for t, n in self._in_flight if not t.done)
        return sum(n for _, n in self._in_flight)

    def _drop_in_flight(self):
        self._stats.frames_dropped += sum(n for _, n in self._in_flight)
        self._in_flight.clear()

    def _shut(self, linger_ms: int | None):
        """Close the socket (``linger_ms`` more for END, None: forever), its monitor, its keys."""
        self.monitor.stop()
        self._frames_out.close(linger=linger_ms)
        self.security.release()

    def _kind_of(self, first, second) -> str:
        if second is not None:
            if np.iscomplexobj(first):
                raise SpecError("send(mag, phase) takes real magnitudes; complex bins go "
                                "alone: send(bins)")
            kind = "magphase"
        elif self.mel is not None:
            if np.iscomplexobj(first):
                raise SpecError("mel frames are real bands: send(mel_values)")
            kind = "mel"
        else:
            kind = "complex64" if np.iscomplexobj(first) else "magnitude"
        if self.header is None:
            self.header = StreamHeader(self.stream_id, self.spec, self.encoding, kind,
                                       self.length, self.mel)
        elif kind != self.header.frame_kind:
            raise SpecError(f"this stream sends {self.header.frame_kind} frames; a stream "
                            f"has one frame kind (start a new FrameSender for {kind})")
        return kind

    def _as_wire(self, x, kind) -> np.ndarray:
        """``(channels, n_frames, bins)`` C-contiguous in the wire dtype, safe to
        hand to ZeroMQ without copying (it is ours, or read-only)."""
        # Mel frames are n_mels long: shaped as a spec of that many "bins" would be.
        arr = as_block(x, self.spec if kind != "mel" else _MelShape(self.spec, self.mel))
        wire = np.ascontiguousarray(arr, dtype=payload_dtype(kind))
        # ZeroMQ reads the buffer after send() returns: never lend it the
        # caller's writeable array, which the caller may refill at once.
        if wire.flags.writeable and np.may_share_memory(wire, np.asarray(x)):
            wire = wire.copy()
        return wire

    def _maybe_header(self):
        if (self._since_header >= self.header_every or self._header_at == -math.inf
                or time.monotonic() - self._header_at >= self.header_interval):
            self.send_header()


class _MelShape:
    """What :func:`stream.engine.as_block` reads of a spec, for frames of mel bands."""

    def __init__(self, spec: STFTSpec, mel: MelSpec):
        self.channels, self.n_bins, self.n_fft = spec.channels, mel.n_mels, spec.n_fft


class _Pacer:
    """Real-time pacing of a sender: :meth:`wait` sleeps until frame ``k`` is
    due, ``k * hop_length / sample_rate / factor`` seconds after the first wait.

    Every due time is counted from that one start on the monotonic clock, so
    the time a send takes, and sleeping a little long, do not add up; a sender
    that fell behind sends at once until it has caught up.
    """

    def __init__(self, spec: STFTSpec, pace: bool | float):
        factor = 1.0 if pace is True else float(pace or math.inf)
        if not factor > 0:
            raise SpecError(f"pace={pace!r}: use True (real time), a factor > 0 or False")
        self.period = spec.hop_seconds / factor      # seconds per frame; 0 unpaced
        self.start = None

    def wait(self, k: int):
        if not self.period:
            return
        now = time.monotonic()
        if self.start is None:
            self.start = now - k * self.period
        delay = self.start + k * self.period - now
        if delay > 0:
            time.sleep(delay)


@dataclass
class SenderStats:
    """Counters of a :class:`FrameSender`, in whole STFT frames.

    Every frame given to ``send`` is counted in ``frames_queued``; once the
    sender has closed, each of them is in ``frames_sent`` or ``frames_dropped``.
    """

    frames_queued: int = 0     # frames given to send()
    frames_sent: int = 0       # frames ZeroMQ has written out to a receiver's connection
    frames_dropped: int = 0    # frames that never left: a send that timed out, pub with no
    #                            subscriber, or still queued when close() stopped waiting

    @property
    def frames_in_flight(self) -> int:
        """Frames ZeroMQ still holds (queued, not yet written out)."""
        return self.frames_queued - self.frames_sent - self.frames_dropped


# ================================================================== events
@dataclass
class StreamStarted:
    """A new stream's header arrived; ``header.spec`` says how to play it.
    ``first_seq`` is the first frame it will play (> 0 when joined late)."""
    stream_id: int
    header: StreamHeader
    first_seq: int = 0


@dataclass
class AudioBlock:
    """Samples that became final: ``(n,)`` mono or ``(channels, n)``, float32."""
    stream_id: int
    samples: np.ndarray
    seq: int                 # first frame of the message that completed them
    n_frames: int
    latency: float = math.nan    # seconds from the producer's timestamp to engine output
    timestamp: float = math.nan  # the producer's timestamp (Unix seconds)


@dataclass
class FramesBlock:
    """Decoded complex frames ``(channels, n, bins)`` (receiver ``output='frames'``)."""
    stream_id: int
    frames: np.ndarray
    seq: int
    latency: float = math.nan
    timestamp: float = math.nan


@dataclass
class StreamEnded:
    """A stream is over: 'end' (END message), 'replaced' (a new stream id
    arrived), 'timeout' (silent for ``stream_timeout``) or 'closed'."""
    stream_id: int
    reason: str
    frames: int
    samples: int


# =================================================================== stats
@dataclass
class ReceiverStats:
    """Counters of a :class:`FrameReceiver` (frames are whole STFT frames)."""

    messages: int = 0            # messages received, good or bad
    frames_in: int = 0           # frames in well-formed FRAMES messages
    frames_played: int = 0       # frames decoded and pushed through the engine
    dropped_late: int = 0        # duplicate or out-of-order frames (seq already past)
    dropped_no_header: int = 0   # frames of a stream whose header we have not seen
    dropped_stale: int = 0       # frames of a stream that has ended or was replaced
    dropped_unplayable: int = 0  # magnitude-only frames with no phase reconstruction
    concealed: int = 0           # zero frames inserted for gaps in seq
    lost: int = 0                # frames of a gap beyond the concealment cap
    malformed: int = 0           # messages rejected by the parser
    refused_headers: int = 0     # headers of other streams while one played (takeover)
    dropped_queued: int = 0      # frames of a waiting stream beyond its queue
    rejects: Counter = field(default_factory=Counter)   # malformed, by reason
    nonfinite: int = 0           # NaN/Inf values zeroed
    streams: int = 0             # streams started
    streams_ended: Counter = field(default_factory=Counter)   # by reason
    samples_out: int = 0         # samples per channel that left the engine
    latencies: deque = field(default_factory=lambda: deque(maxlen=50_000), repr=False)

    @property
    def dropped(self) -> int:
        return (self.dropped_late + self.dropped_no_header + self.dropped_stale
                + self.dropped_unplayable + self.dropped_queued)

    def latency_ms(self) -> dict:
        """p50, p99 and max of producer-timestamp-to-engine-output latency, in ms."""
        if not self.latencies:
            return {"p50": math.nan, "p99": math.nan, "max": math.nan}
        a = np.fromiter(self.latencies, float) * 1e3
        return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
                "max": float(a.max())}

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in (
            "messages", "frames_in", "frames_played", "dropped", "dropped_late",
            "dropped_no_header", "dropped_stale", "dropped_unplayable", "dropped_queued",
            "concealed", "lost", "malformed", "refused_headers", "nonfinite", "streams",
            "samples_out")}
        d["rejects"] = dict(self.rejects)
        d["streams_ended"] = dict(self.streams_ended)
        d["latency_ms"] = self.latency_ms()
        return d

    def line(self) -> str:
        lat = self.latency_ms()
        s = (f"frames {self.frames_in} in, {self.frames_played} played, {self.dropped} dropped, "
             f"{self.concealed} concealed, {self.malformed} malformed, "
             f"{self.nonfinite} NaN/Inf; streams {self.streams}")
        if not math.isnan(lat["p50"]):
            s += f"; latency p50 {lat['p50']:.2f} ms p99 {lat['p99']:.2f} ms"
        return s


class _RateLimitedLog:
    """One log line per kind per second; the rest are counted and mentioned."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self._last = {}
        self._hidden = Counter()

    def __call__(self, level, kind, msg, *args):
        now = time.monotonic()
        if now - self._last.get(kind, -math.inf) < self.interval:
            self._hidden[kind] += 1
            return
        self._last[kind] = now
        hidden = self._hidden.pop(kind, 0)
        if hidden:
            msg += f" (and {hidden} more like it)"
        log.log(level, msg, *args)


# ================================================================ receiver
class _Stream:
    """What the receiver keeps for the stream it is playing: its header, where
    it is in the sequence, and the :class:`~stream.pipeline.FramePipeline`
    that turns its frames into audio (the one ``specstream reconstruct`` uses)."""

    def __init__(self, header: StreamHeader, first_seq: int, output: str,
                 block_frames: int, threads: int, conceal: str = "extrapolate"):
        self.header = header
        self.id = header.stream_id
        spec = header.spec
        kind = _PIPELINE_KINDS[header.frame_kind]
        stage = None
        if kind in ("magnitude", "mel"):
            from .phase import RTPGHI
            stage = RTPGHI(spec)
        # A stream joined late (first_seq > 0) has lost its beginning: the
        # header's length no longer applies.
        length = header.length if first_seq == 0 else None
        # The remote chose these sizes: no FFTW measuring (a second or more per
        # new size) and no wisdom file rewritten for them; and one thread (a
        # message of many frames takes no threads, nor their batches' memory).
        self.pipeline = FramePipeline(spec, header.encoding, kind=kind, phase=stage,
                                      length=length, output=output,
                                      block_frames=block_frames, threads=threads,
                                      planning="wisdom", conceal=conceal, mel=header.mel,
                                      workers=1)
        self.next_seq = first_seq
        self.frames = 0
        self.last_seen = time.monotonic()


@dataclass
class _Waiting:
    """A stream whose header came while another played: its messages, in order."""
    id: int
    messages: list
    bytes: int = 0
    last_seen: float = field(default_factory=time.monotonic)


#: What a header of another stream may do while one plays (FrameReceiver's takeover).
TAKEOVER_POLICIES = ("idle", "never", "always")
#: Headers of other streams remembered while one plays (the newest).
_FOREIGN_HEADERS = 16
#: The most audio one gap is concealed with, in bytes (float32 samples).
MAX_CONCEAL_BYTES = 64 << 20


def _block_frames_within(header: StreamHeader, block_frames: int, max_bytes: int):
    """The largest FFT batch (<= ``block_frames``) whose stream fits ``max_bytes``,
    or None when even one frame per batch does not."""
    s = header.spec
    # Per frame in a batch: complex input and real output of the FFT, and a
    # hop of accumulator; fixed: the overlap (n_fft) of accumulator, the
    # one-frame plan, the window tables.  Batches of 4(R-1) frames or more
    # (R: hops a frame spans) take the einsum path, which needs at most
    # 3*n_fft + 2*bins + 5*hop bytes more per frame of the batch (float32:
    # the rows around its frames, the frames carried from the block before
    # and their input, numerators), within what `einsum` counts; a batch of
    # fewer needs none of it.
    per_frame = s.channels * (8 * s.n_bins + 4 * s.n_fft + 4 * s.hop_length)
    einsum = s.channels * (2 * s.n_fft + 8 * s.n_bins + 4 * s.hop_length)
    fixed = s.channels * 4 * 4 * s.n_fft + 64 * s.n_fft
    if header.frame_kind in ("magnitude", "mel"):
        fixed += s.channels * 6 * 8 * 16 * s.n_bins      # RTPGHI's frame buffers
    views_from = 4 * (overlap_hops(s) - 1)
    room = (max_bytes - fixed) // (per_frame + einsum)
    if room < views_from:
        room = min((max_bytes - fixed) // per_frame, max(views_from - 1, 1))
    return None if room < 1 else int(min(block_frames, room))


#: The wire's frame kinds -> the pipeline's.
_PIPELINE_KINDS = {"complex64": "complex", "magphase": "magphase", "magnitude": "magnitude",
                   "mel": "mel"}


class FrameReceiver:
    """Receive frames, decode them and rebuild audio, robust to bad input.

    Parameters
    ----------
    endpoint : str
        ``tcp://HOST:PORT`` or ``ipc://PATH``; binding ``tcp://127.0.0.1:*``
        picks a free port (read :attr:`endpoint`).
    pattern : str
        'pull' (default; pairs with a PUSH sender) or 'sub' (a PUB sender).
    bind : bool
        Bind (default) or connect.
    max_message_bytes : int
        Largest message accepted, in bytes.  ZeroMQ drops the connection of a
        peer that sends a larger part (``ZMQ_MAXMSGSIZE``); the total of all
        parts is checked here too.
    max_conceal : float
        Longest gap in seconds that is concealed; the rest of a longer gap is
        skipped (counted as ``lost``) and timing restarts after it.
    conceal : str
        How a gap is filled (:class:`~stream.pipeline.Concealer`):
        'extrapolate' (default: the last frames continued, fading out after
        20 ms) or 'zeros' (silence).
    stream_timeout : float, optional
        Seconds without a message after which the current stream is flushed
        and ended ('timeout'); None waits forever.
    output : str
        'audio' (AudioBlock events) or 'frames' (FramesBlock: decoded complex
        frames, no inverse STFT).
    block_frames : int
        Frames per batched FFT in the engine (as ``specstream reconstruct``).
    threads : int
        FFTW threads for batched FFTs.  Default 1: a live receiver shares the
        machine with its producer and the audio callback, and on a busy
        2-core machine a 2-thread plan measured 8x slower than one thread.
    rcvhwm : int, optional
        Receive high-water mark in messages.
    max_stream_bytes : int
        Memory one stream may take in the engine (its FFT batches and
        overlap-add buffer), in bytes.  A stream whose header asks for more
        even with one frame per FFT batch is refused (counted as
        ``rejects['stream-size']``); below that the batch shrinks to fit.
    takeover : str
        What another stream may do while one plays.  'idle' (default): its
        header alone takes nothing (headers are remembered, counted in
        ``stats.refused_headers``); once it sends frames it waits, its
        messages queued, and starts from them when the playing stream ends,
        has sent no frame at all, or has been silent for ``takeover_after``
        seconds.  'never': it waits until the playing stream ends or times
        out.  'always': its header ends the playing stream at once (anyone
        who can reach the endpoint can cut in).  One stream waits at a time,
        in at most ``max_queue_bytes`` of messages (beyond: dropped, counted
        in ``stats.dropped_queued``).
    takeover_after : float
        Seconds of silence after which a playing stream counts as gone ('idle').
    curve_secret : str or Path, optional
        This side's CURVE key pair (a ``NAME.key_secret`` file from
        ``specstream keygen``), with ``allow`` or ``curve_server``.
    allow : path, key or list of them, optional
        Be the CURVE server and admit only senders with these public keys
        (certificate files, directories of ``*.key`` files, z85 keys).  Others
        never get a frame in: the ZAP check turns them away, counts them in
        ``security.refused`` and logs them.
    curve_server : str, Path or bytes, optional
        With ``bind=False``, when the sender binds as the CURVE server: its public key.
    insecure : bool
        Allow a plain endpoint that other machines can reach (``tcp://0.0.0.0``...).

    Events, from :meth:`poll` or iteration: :class:`StreamStarted`,
    :class:`AudioBlock` (or :class:`FramesBlock`), :class:`StreamEnded`.
    Counters are in :attr:`stats`.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, pattern: str = "pull",
                 bind: bool = True, max_message_bytes: int = 64 << 20,
                 max_conceal: float = 2.0, stream_timeout: float | None = None,
                 output: str = "audio", block_frames: int = 256, threads: int = 1,
                 rcvhwm: int | None = None, max_stream_bytes: int = 256 << 20,
                 takeover: str = "idle", takeover_after: float = 1.0,
                 max_queue_bytes: int = 32 << 20, conceal: str = "extrapolate",
                 curve_secret=None, allow=None,
                 curve_server=None, insecure: bool = False,
                 context: zmq.Context | None = None):
        if pattern not in _RECEIVER_PATTERNS:
            raise SpecError(f"pattern {pattern!r} is not one of {', '.join(_RECEIVER_PATTERNS)}")
        if output not in ("audio", "frames"):
            raise SpecError(f"output {output!r} is not 'audio' or 'frames'")
        if takeover not in TAKEOVER_POLICIES:
            raise SpecError(f"takeover={takeover!r} is not one of {', '.join(TAKEOVER_POLICIES)}")
        self.max_message_bytes = int(max_message_bytes)
        self.max_stream_bytes = int(max_stream_bytes)
        self.takeover = takeover
        self.takeover_after = float(takeover_after)
        self.max_queue_bytes = int(max_queue_bytes)
        self._waiting: _Waiting | None = None    # a stream queued behind the playing one
        self._foreign = OrderedDict()     # stream id -> header parts, while another plays
        self.max_conceal = float(max_conceal)
        if conceal not in CONCEAL_MODES:
            raise SpecError(f"conceal={conceal!r} is not one of {', '.join(CONCEAL_MODES)}")
        self.conceal = conceal
        self.stream_timeout = stream_timeout
        self.output = output
        self.block_frames = block_frames
        self.threads = max(1, int(threads))
        self.stats = ReceiverStats()
        self.stream: _Stream | None = None
        self._ended_ids = deque(maxlen=64)    # ids ended by END or replaced: stale
        self._say = _RateLimitedLog()
        self._closed = False
        self.security = SocketSecurity(curve_secret=curve_secret, curve_server=curve_server,
                                       allow=allow, insecure=insecure)
        self._ctx = context or zmq.Context.instance()
        # A part over MAXMSGSIZE makes ZeroMQ close that peer's connection.
        opts = [(zmq.MAXMSGSIZE, self.max_message_bytes), (zmq.LINGER, 0)]
        if rcvhwm is not None:
            opts.append((zmq.RCVHWM, int(rcvhwm)))
        if pattern == "sub":
            opts.append((zmq.SUBSCRIBE, b""))
        self._frames_in = open_socket(self._ctx, _RECEIVER_PATTERNS[pattern], endpoint, bind,
                                      options=opts, security=self.security)
        self.endpoint = _endpoint_of(self._frames_in, endpoint, bind)
        self._poller = zmq.Poller()
        self._poller.register(self._frames_in, zmq.POLLIN)

    # ----------------------------------------------------------------- api
    def poll(self, timeout: float | None = 0.1, max_messages: int = 64) -> list:
        """Wait up to ``timeout`` seconds (None: forever) for messages and
        return the events they make (possibly none)."""
        events = []
        ms = None if timeout is None else max(0, int(timeout * 1000))
        if self._poller.poll(ms):
            for _ in range(max_messages):
                try:
                    parts = self._frames_in.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self.handle(parts, events)
        self._check_timeout(events)
        return events

    def __iter__(self):
        while not self._closed:
            yield from self.poll(0.1)

    def handle(self, parts, events: list | None = None) -> list:
        """Process one multipart message (a list of bytes-like parts); returns
        ``events`` with what it made appended.  Never raises for what a
        message holds: a bad one is counted by kind, logged (rate-limited)
        and dropped, and the stream goes on."""
        events = [] if events is None else events
        self.stats.messages += 1
        self._dispatch(parts, events)
        return events

    def _dispatch(self, parts, events):
        try:
            total = sum(memoryview(p).nbytes for p in parts)
            if total > self.max_message_bytes:
                raise ProtocolError(f"message of {total} bytes is over the "
                                    f"{self.max_message_bytes}-byte cap", "oversized")
            if not parts:
                raise ProtocolError("empty message", "envelope")
            env = unpack_envelope(parts[0])
            if self._queued(env, parts, total):
                return
            if env.type == MsgType.HEADER:
                self._on_header(env, parts, events)
            elif env.type == MsgType.FRAMES:
                self._on_frames(env, parts, events)
            else:
                self._on_end(env, events)
        except SpecstreamError as e:   # ProtocolError, or frames the decoder refused
            self._reject(getattr(e, "kind", "invalid"), e)
        except (MemoryError, ArithmeticError, ValueError, TypeError, IndexError) as e:
            # A message that got past the checks and still broke something is
            # a bug to fix, never the end of the player.
            self._reject("internal", f"{type(e).__name__}: {e}")
            log.debug("message that failed", exc_info=True)

    def _reject(self, kind: str, why):
        self.stats.malformed += 1
        self.stats.rejects[kind] += 1
        self._say(logging.WARNING, "malformed:" + kind,
                  "rejected a malformed message (%s): %s", kind, why)

    def finish(self, reason: str = "closed") -> list:
        """Flush the current stream (its last samples) and end it."""
        events = []
        if self.stream is not None:
            self._end_stream(reason, events)
        return events

    def close(self):
        self._closed = True
        if not self._frames_in.closed:
            self._frames_in.close(linger=0)
            self.security.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------ messages
    def _on_header(self, env, parts, events):
        if len(parts) != 2:
            raise ProtocolError(f"a HEADER message has 2 parts, got {len(parts)}", "parts")
        header = StreamHeader.from_json(parts[1], stream_id=env.stream_id)
        st = self.stream
        if st is not None and st.id == header.stream_id:
            st.last_seen = time.monotonic()
            if header != st.header:
                raise ProtocolError(f"stream {st.id}: header changed mid-stream; a new "
                                    "STFT needs a new stream id", "header")
            return
        if header.stream_id in self._ended_ids:
            if env.seq != 0:
                return      # a repeat of a stream that is over
            # Starting again from frame 0: a producer that reuses its id.
            self._ended_ids.remove(header.stream_id)
        if st is not None:
            if self.takeover != "always":
                self._wait(header, env, parts)
                return
            log.warning("stream %d replaced by stream %d (producer restarted?): "
                        "flushing the old one", st.id, header.stream_id)
            self._end_stream("replaced", events)
        self._start_stream(header, env.seq, events)

    def _start_stream(self, header, first_seq, events):
        block = _block_frames_within(header, self.block_frames, self.max_stream_bytes)
        if block is None:
            raise ProtocolError(
                f"stream {header.stream_id} would take over {self.max_stream_bytes >> 20} "
                f"MB ({header.spec.channels} ch x n_fft {header.spec.n_fft}); refused "
                "(see max_stream_bytes, --max-stream-mb)", "stream-size")
        st = _Stream(header, first_seq, self.output, block, self.threads, self.conceal)
        self.stream = st
        self.stats.streams += 1
        s = header.spec
        log.info("stream %d: %s frames, %s, %d ch%s", header.stream_id, header.frame_kind,
                 s.describe(), s.channels, f", from frame {first_seq}" if first_seq else "")
        events.append(StreamStarted(header.stream_id, header, first_seq))

    def _on_frames(self, env, parts, events):
        st = self.stream
        if st is None or env.stream_id != st.id:
            if env.stream_id in self._ended_ids:
                self.stats.dropped_stale += env.n_frames
            else:
                self.stats.dropped_no_header += env.n_frames
                self._say(logging.WARNING, "noheader",
                          "dropped %d frame(s) of stream %d: no header seen yet "
                          "(it is re-sent about once a second)", env.n_frames, env.stream_id)
            return
        first, second = frame_arrays(st.header, env, parts)
        self.stats.frames_in += env.n_frames
        st.last_seen = time.monotonic()
        seq, n = env.seq, env.n_frames
        if seq < st.next_seq:
            late = min(st.next_seq - seq, n)
            self.stats.dropped_late += late
            self._say(logging.WARNING, "late", "stream %d: dropped %d duplicate or "
                      "out-of-order frame(s) at seq %d (expected %d)", st.id, late, seq,
                      st.next_seq)
            if late == n:
                return
            first = first[:, late:]
            second = None if second is None else second[:, late:]
            seq += late
        if seq > st.next_seq:
            self._conceal(st, seq - st.next_seq, events, seq)
        self._play(st, env, first, second, events)

    def _on_end(self, env, events):
        st = self.stream
        if st is None or env.stream_id != st.id:
            return      # the end of a stream we never started or already ended
        if env.seq > st.next_seq:   # the last frames never came (PUB/SUB): keep time
            self._conceal(st, env.seq - st.next_seq, events, env.seq)
        self._end_stream("end", events)

    # --------------------------------------------------------------- audio
    def _play(self, st, env, first, second, events):
        pipe = st.pipeline
        before = pipe.nonfinite
        out = pipe.push(first, second)
        bad = pipe.nonfinite - before
        if bad:
            self.stats.nonfinite += bad
            self._say(logging.WARNING, "nonfinite", "stream %d: %d NaN/Inf value(s) in "
                      "frames at seq %d replaced by 0", st.id, bad, env.seq)
        n = first.shape[1]
        st.next_seq += n
        st.frames += n
        self.stats.frames_played += n
        self._emit(st, out, st.next_seq - n, n, events, env.timestamp)

    def _conceal(self, st, gap, events, resume_seq):
        """Fill a gap of ``gap`` frames with silence (up to the cap) so timing holds."""
        spec = st.header.spec
        cap = max(1, int(math.ceil(self.max_conceal * spec.sample_rate / spec.hop_length)))
        # ... and at most MAX_CONCEAL_BYTES of audio, whatever the rate and channels.
        cap = min(cap, max(1, MAX_CONCEAL_BYTES // (4 * spec.channels * spec.hop_length)))
        fill = min(gap, cap)
        if gap > cap:
            self.stats.lost += gap - cap
            self._say(logging.WARNING, "lost", "stream %d: gap of %d frames at seq %d; "
                      "concealed %d, skipped %d", st.id, gap, st.next_seq, fill, gap - cap)
        else:
            self._say(logging.WARNING, "gap", "stream %d: %d frame(s) missing at seq %d; "
                      "concealed (%s)", st.id, gap, st.next_seq, self.conceal)
        self.stats.concealed += fill
        out = st.pipeline.conceal(fill)
        self._emit(st, out, st.next_seq, fill, events, math.nan)
        st.next_seq = resume_seq
        st.frames += fill

    def _emit(self, st, out, seq, n, events, timestamp):
        """An event for what the pipeline gave back for ``n`` frames from ``seq``."""
        if st.pipeline.engine is None:
            if out.shape[-2] == 0:
                return
            ev = FramesBlock(st.id, out, seq)
        else:
            if n == 0 and out.shape[-1] == 0:
                return
            self.stats.samples_out += out.shape[-1]
            ev = AudioBlock(st.id, out, seq, n)
        if not math.isnan(timestamp):
            lat = time.time() - timestamp
            ev.latency, ev.timestamp = lat, timestamp
            if lat >= 0:
                self.stats.latencies.append(lat)
        events.append(ev)

    def _end_stream(self, reason, events):
        st = self.stream
        self.stream = None
        if reason in ("end", "replaced"):
            self._ended_ids.append(st.id)
        # Cut short ('replaced', 'timeout', 'closed'): the header's length would
        # pad the missing rest with silence; end at the frames we have instead.
        # Complete, the length may trim the analysis' padding but not pad
        # beyond what the frames can hold (a remote's length of 10**8 after
        # one frame is not 400 MB of zeros).
        engine = st.pipeline.engine
        if engine is not None and engine.length is not None:
            cover = st.header.spec.max_samples_for(st.frames)
            if engine.length > cover:
                self._say(logging.WARNING, "length", "stream %d: its length %d is more "
                          "than its %d frames hold; ending at %d", st.id, engine.length,
                          st.frames, cover)
                engine.length = cover
        self._emit(st, st.pipeline.flush(complete=reason == "end"), st.next_seq, 0, events,
                   math.nan)
        self.stats.streams_ended[reason] += 1
        samples = st.pipeline.samples_out
        log.info("stream %d ended (%s): %d frames, %d samples", st.id, reason, st.frames,
                 samples)
        events.append(StreamEnded(st.id, reason, st.frames, samples))

    # ------------------------------------------------------------ takeover
    # While one stream plays, other streams' headers are remembered (a few, the
    # newest) but take nothing: a header alone costs a hijacker nothing to send.
    # A stream that then sends frames becomes the one waiting, its messages
    # queued; it starts when the playing stream ends, has sent no frame at all,
    # or (takeover 'idle') has been silent for takeover_after seconds.
    def _queued(self, env, parts, nbytes: int) -> bool:
        """Keep a message of a waiting stream for when it starts; True if kept."""
        if env.type == MsgType.HEADER:
            return False
        w = self._waiting
        if w is None or w.id != env.stream_id:
            header = self._foreign.get(env.stream_id)
            if header is None or env.type != MsgType.FRAMES:
                self._foreign.pop(env.stream_id, None)     # its END: forget it
                return header is not None
            if w is not None and time.monotonic() - w.last_seen <= self.takeover_after:
                self.stats.dropped_queued += env.n_frames  # one waits at a time
                return True
            w = self._waiting = _Waiting(env.stream_id, [header], memoryview(header[1]).nbytes)
        if w.bytes + nbytes > self.max_queue_bytes:
            self.stats.dropped_queued += env.n_frames
        else:
            w.messages.append(parts)
            w.bytes += nbytes
        w.last_seen = time.monotonic()
        return True

    def _wait(self, header, env, parts):
        """A header of another stream while one plays: counted, remembered, no takeover."""
        self.stats.refused_headers += 1
        w = self._waiting
        if w is not None and w.id == header.stream_id:
            w.last_seen = time.monotonic()
            return
        self._foreign[header.stream_id] = parts
        self._foreign.move_to_end(header.stream_id)
        while len(self._foreign) > _FOREIGN_HEADERS:
            self._foreign.popitem(last=False)
        self._say(logging.WARNING, "takeover", "stream %d is playing: stream %d waits "
                  "(takeover=%s)", self.stream.id, header.stream_id, self.takeover)

    def _start_waiting(self, events):
        """Start the waiting stream, replaying what it sent while it waited."""
        w, self._waiting = self._waiting, None
        self._foreign.clear()
        log.info("stream %d starts after waiting (%d message(s) queued)", w.id,
                 len(w.messages))
        for parts in w.messages:
            self._dispatch(parts, events)

    def _check_timeout(self, events):
        w, st = self._waiting, self.stream
        if w is not None:
            now = time.monotonic()
            if st is None:
                self._start_waiting(events)
            elif st.frames == 0 and self.takeover == "idle" or (
                    self.takeover == "idle" and now - st.last_seen > self.takeover_after):
                log.warning("stream %d %s: stream %d takes over", st.id,
                            "has sent no frame" if st.frames == 0 else
                            f"silent for {now - st.last_seen:.1f} s", w.id)
                self._end_stream("replaced", events)
                self._start_waiting(events)
        st = self.stream
        if (st is not None and self.stream_timeout is not None
                and time.monotonic() - st.last_seen > self.stream_timeout):
            log.warning("stream %d: nothing for %.1f s; flushing it", st.id,
                        self.stream_timeout)
            self._end_stream("timeout", events)

