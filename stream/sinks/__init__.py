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
    The audio output, through PortAudio (:mod:`stream.sinks.device`).
    ``DEVICE`` is an index or a substring of a name, as ``specstream
    devices`` lists them.
``wav:PATH``
    A sound file: 32-bit float WAV for ``.wav`` (``.w64`` and ``.rf64`` too),
    24-bit FLAC for ``.flac`` (:mod:`stream.sinks.file`).
``raw:-`` or ``raw:PATH``
    Headerless float32 little-endian samples, interleaved, to stdout or a file.
``null``
    Discards the samples, counts them.
``zmq:ENDPOINT``, ``zmq:connect:ENDPOINT`` or ``zmq:bind:ENDPOINT``
    PUSHes audio blocks over ZeroMQ (connects unless ``bind:`` is given);
    the message format is in :mod:`stream.sinks.zmq`.

Modules
-------
``base``: :class:`Sink`, :class:`SinkError`, :class:`NullSink`;
``file``: :class:`FileSink`, :class:`RawSink` and :class:`SoundFileWriter`,
the one sound-file writer; ``zmq``: :class:`ZmqSink`, :func:`pack_block`,
:func:`unpack_block`; ``ring``: :class:`Ring`, the lock-free ring of the
audio sink; ``device``: :class:`SoundDeviceSink`, :func:`list_devices`;
``drift``: :class:`~stream.sinks.drift.DriftController` (the producer/device
rate ratio from the queue); ``resample``:
:class:`~stream.sinks.resample.Resampler` (libsamplerate, a changing
ratio); ``latency``: :class:`~stream.sinks.latency.LatencyTuner` (the
adaptive latency target).
Importing this package loads neither ``zmq`` nor ``sounddevice``: each is
imported when its sink opens (``sounddevice`` also by :func:`list_devices`).
"""

from __future__ import annotations

from .base import URI_FORMS, NullSink, Sink, SinkError, forms
from .device import SoundDeviceSink, list_devices
from .file import FileSink, RawSink, SoundFileWriter
from .ring import Ring
from .zmq import (BLOCK_HEADER, BLOCK_MAGIC, BLOCK_VERSION, FLAG_END, BlockHeader, ZmqSink,
                  pack_block, unpack_block)

__all__ = ["SinkError", "Sink", "NullSink", "FileSink", "RawSink", "ZmqSink",
           "SoundDeviceSink", "open_sink", "list_devices", "unpack_block", "pack_block",
           "BlockHeader", "BLOCK_HEADER", "BLOCK_MAGIC", "BLOCK_VERSION", "FLAG_END",
           "URI_FORMS", "Ring", "SoundFileWriter"]


def open_sink(uri: str, *, device=None, latency_ms: float | None = None,
              blocksize: int | None = None, catch_up: bool | None = None,
              curve_secret=None, curve_server=None, allow=None, insecure: bool = False) -> Sink:
    """Make a sink from a URI (see the package docstring); call ``.open()`` next.

    Parameters
    ----------
    uri : str
        ``sounddevice[:DEVICE]``, ``wav:PATH``, ``raw:-``, ``raw:PATH``,
        ``null``, ``zmq:[bind:|connect:]ENDPOINT``.
    device : int or str, optional
        Output device for ``sounddevice`` (index or name substring); the same
        as ``sounddevice:DEVICE``.
    latency_ms : float or "auto", optional
        ``sounddevice`` only: the latency the sink adds (ms, default 50), or
        ``"auto"`` (start at 30 ms and adapt; see :mod:`stream.sinks.device`).
    blocksize : int, optional
        ``sounddevice`` only: samples per channel per callback (default: PortAudio's choice).
    catch_up : bool, optional
        ``sounddevice`` only: hold the queue to ``latency_ms`` by dropping a
        standing excess (default True; False keeps every sample).
    curve_secret, curve_server, allow, insecure
        ``zmq`` only: CURVE keys and the loopback rule, as
        :class:`stream.security.SocketSecurity` takes them (``insecure`` is
        ignored by sinks that open no socket).

    Raises :class:`SinkError` for a URI of no known form, listing the forms.
    """
    if not isinstance(uri, str) or not uri:
        raise SinkError(f"empty sink; {forms()}")
    kind, sep, rest = uri.partition(":")
    kind = kind.lower()
    if kind != "sounddevice" and (device is not None or latency_ms is not None
                                  or blocksize is not None or catch_up is not None):
        raise SinkError(f"device, latency, blocksize and catch-up apply to the sounddevice "
                        f"sink, not to {uri!r}")
    keys = dict(curve_secret=curve_secret, curve_server=curve_server, allow=allow)
    if kind != "zmq" and any(v is not None for v in keys.values()):
        raise SinkError(f"CURVE keys apply to zmq: sinks, not to {uri!r}")
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
            return ZmqSink(endpoint, bind=mode == "bind", insecure=insecure, **keys)
        return ZmqSink(rest, insecure=insecure, **keys)
    raise SinkError(f"unknown sink {uri!r}; {forms()}")
