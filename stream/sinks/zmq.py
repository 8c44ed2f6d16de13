"""The ``zmq:`` sink: audio blocks PUSHed over ZeroMQ, and their wire format.

``zmq:ENDPOINT``, ``zmq:connect:ENDPOINT`` or ``zmq:bind:ENDPOINT``
    PUSHes audio blocks over ZeroMQ (connects unless ``bind:`` is given);
    ENDPOINT is ``tcp://HOST:PORT``, ``ipc://PATH`` or ``inproc://NAME``.

``zmq`` (pyzmq) is imported when a sink opens, not with this module.

Security is :mod:`stream.security`'s, as for the frame sockets: an endpoint
other machines can reach needs CURVE (``curve_secret`` with ``allow`` when
the sink is the CURVE server, usually when it binds, or with ``curve_server``
when it is a client) or ``insecure=True``.  A program that takes the audio
sets its socket up the same way, for example as the client of a sink that binds::

    from stream.security import SocketSecurity, open_socket
    keys = SocketSecurity(curve_secret="me.key_secret", curve_server="player.key")
    pull = open_socket(zmq.Context.instance(), zmq.PULL, "tcp://player:5557", False,
                       security=keys)

Audio block messages
--------------------
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
payload.  :func:`unpack_block` decodes a message, :func:`pack_block` makes
one.  The sink's PUSH socket blocks when the receiver's queue is full
(backpressure); a send that cannot go anywhere for ``send_timeout_ms``
(10 s) raises :class:`SinkError`.
"""

from __future__ import annotations

import struct
from collections import namedtuple

import numpy as np

from ..errors import SpecstreamError
from ..security import SocketSecurity, open_socket
from .base import Sink, SinkError, forms

__all__ = ["ZmqSink", "pack_block", "unpack_block", "BlockHeader", "BLOCK_HEADER", "BLOCK_MAGIC",
           "BLOCK_VERSION", "FLAG_END"]

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
    curve_secret, curve_server, allow, insecure
        CURVE keys and the loopback rule, as :class:`stream.security.SocketSecurity`
        takes them (checked here, before anything opens).
    context : zmq.Context, optional
        Default: a private context, terminated at close.
    """

    def __init__(self, endpoint: str, bind: bool = False, hwm: int = 256,
                 send_timeout_ms: int = 10_000, linger_ms: int = 5_000, *, curve_secret=None,
                 curve_server=None, allow=None, insecure: bool = False, context=None):
        super().__init__()
        if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
            raise SinkError(f"zmq endpoint {endpoint!r}: expected tcp://HOST:PORT, ipc://PATH "
                            f"or inproc://NAME; {forms()}")
        self.endpoint, self.bind = endpoint, bind
        self.uri = f"zmq:{'bind:' if bind else ''}{endpoint}"
        try:
            self.security = SocketSecurity(curve_secret=curve_secret, curve_server=curve_server,
                                           allow=allow, insecure=insecure)
            self.security.check(endpoint, bind)
        except SpecstreamError as e:
            raise SinkError(f"{self.uri}: {e}") from None
        self.hwm, self.send_timeout_ms, self.linger_ms = hwm, send_timeout_ms, linger_ms
        self._ctx_given = context
        self._ctx = self._sock = None
        self.seq = 0
        self.bytes = 0

    def _open(self):
        import zmq
        self._zmq = zmq
        self._ctx = self._ctx_given or zmq.Context()
        options = [(zmq.SNDHWM, self.hwm), (zmq.SNDTIMEO, self.send_timeout_ms),
                   (zmq.LINGER, 0)]
        try:
            self._sock = open_socket(self._ctx, zmq.PUSH, self.endpoint, self.bind,
                                     options=options, security=self.security)
        except SpecstreamError as e:
            self._close_context()
            raise SinkError(f"{self.uri}: {e}") from None

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
            self.security.release()
            self._close_context()

    def _close_context(self):
        if self._ctx is not None and self._ctx_given is None:
            self._ctx.term()
        self._ctx = None

    @property
    def stats(self):
        return {**super().stats, "endpoint": self.endpoint, "bind": self.bind,
                "messages": self.seq, "bytes": self.bytes}

