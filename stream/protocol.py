"""The specstream wire format, version 1: STFT frames as ZeroMQ multipart messages.

Every message starts with a fixed 32-byte little-endian envelope (part 0)::

    offset size type    field
    0      4    char[4] magic       b"SPST"
    4      1    u8      version     1
    5      1    u8      type        1 header, 2 frames, 3 end
    6      2    u16     flags       reserved: senders write 0, receivers ignore
    8      4    u32     stream_id   chosen by the producer, new for each stream
    12     8    u64     seq         sequence number of the first frame (see below)
    20     8    f64     timestamp   producer's clock, Unix seconds; NaN if none
    28     4    u32     n_frames    frames carried in this message

* HEADER (type 1): part 1 is UTF-8 JSON describing the stream (:class:`StreamHeader`);
  ``seq`` is the sequence number of the next frame the producer will send and
  ``n_frames`` is 0.  Producers repeat it periodically so that late joiners can start.
* FRAMES (type 2): part 1 is the payload, ``(channels, n_frames, bins)`` in C
  order, little-endian complex64 (``frame_kind`` "complex64") or float32
  (magnitudes, for "magphase" and "magnitude"; mel values for "mel"); for
  "magphase" part 2 holds the phases, float32, same shape.  ``bins = n_fft // 2 + 1``,
  or the header's ``mel.n_mels`` for "mel" frames.
* END (type 3): no payload; ``seq`` is the number of frames the stream holds
  (one past the last frame's sequence number).

The full description, with an example sender in C, is ``docs/protocol.md``.
Nothing here ever unpickles or evaluates what arrives: parsing is
``struct.unpack``, ``json.loads`` (size-capped, no NaN) and ``np.frombuffer``.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from .decode import Encoding
from .errors import ProtocolError
from .mel import MelSpec
from .spec import SpecError, STFTSpec, is_finite_number

__all__ = ["ProtocolError", "MAGIC", "VERSION", "ENVELOPE", "MsgType", "FRAME_KINDS",
           "MAX_HEADER_BYTES", "Envelope", "StreamHeader", "pack_envelope",
           "unpack_envelope", "header_message", "frames_message", "end_message",
           "frame_arrays", "payload_dtype"]

#: Where a player listens and a sender sends unless told otherwise: loopback only.
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"

MAGIC = b"SPST"
VERSION = 1
#: magic, version, type, flags, stream_id, seq, timestamp, n_frames
ENVELOPE = struct.Struct("<4sBBHIQdI")
#: The largest header JSON accepted (bytes); a custom window of 16384 floats fits.
MAX_HEADER_BYTES = 1 << 20
#: Frame kinds and the parts of a FRAMES message that carry them.
FRAME_KINDS = {"complex64": 1, "magphase": 2, "magnitude": 1, "mel": 1}

# Limits on what a header may ask for, from real use, so that a hostile or
# broken one cannot make a receiver allocate gigabytes or stall (docs/protocol.md).
#: Highest sample rate (Hz): the highest rate audio interfaces offer.
MAX_SAMPLE_RATE = 768_000.0
#: FFT sizes: 16 .. 65536 samples (finer than 16 is no audio STFT; 65536 is 1.4 s at 48 kHz).
MIN_N_FFT, MAX_N_FFT = 16, 1 << 16
#: Audio channels per frame.
MAX_CHANNELS = 64
#: ``n_fft * ceil(n_fft / hop_length)``: the work of setting up a stream and of
#: each sample (hop 1 at n_fft 1024 is allowed; at n_fft 65536 the hop must be >= 256).
MAX_OVERLAP_WORK = 1 << 24
#: Frames in one FRAMES message.
MAX_FRAMES_PER_MESSAGE = 1 << 16
#: Largest ``length`` (samples): about 6 hours at 768 kHz.
MAX_LENGTH = 1 << 34
#: Mel bands per frame ("mel" frames): 8x the most any recipe uses.
MAX_N_MELS = 1024




class MsgType(IntEnum):
    HEADER = 1
    FRAMES = 2
    END = 3


@dataclass(frozen=True)
class Envelope:
    """Part 0 of every message, unpacked."""

    version: int
    type: MsgType
    flags: int
    stream_id: int
    seq: int
    timestamp: float      # Unix seconds, NaN when the producer gave none
    n_frames: int


def pack_envelope(kind: MsgType, stream_id: int, seq: int, n_frames: int = 0,
                  timestamp: float | None = None, flags: int = 0) -> bytes:
    """The 32-byte envelope.  ``timestamp`` in Unix seconds; None -> now."""
    ts = time.time() if timestamp is None else float(timestamp)
    return ENVELOPE.pack(MAGIC, VERSION, int(kind), flags, stream_id, seq, ts, n_frames)


def unpack_envelope(part) -> Envelope:
    """Validate and unpack part 0; raises :class:`ProtocolError` with the reason."""
    buf = memoryview(part)
    if buf.nbytes != ENVELOPE.size:
        raise ProtocolError(f"envelope is {buf.nbytes} bytes, not {ENVELOPE.size}",
                            "envelope")
    magic, version, kind, flags, sid, seq, ts, n = ENVELOPE.unpack(buf)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {bytes(magic)!r}, not {MAGIC!r}: "
                            "not a specstream message", "magic")
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version}; this receiver "
                            f"speaks version {VERSION}", "version")
    try:
        kind = MsgType(kind)
    except ValueError:
        raise ProtocolError(f"unknown message type {kind}", "type") from None
    if n > MAX_FRAMES_PER_MESSAGE:
        raise ProtocolError(f"n_frames={n} is over {MAX_FRAMES_PER_MESSAGE} per message",
                            "size")
    return Envelope(version, kind, flags, sid, seq, ts, n)


def payload_dtype(frame_kind: str) -> np.dtype:
    """Wire dtype of part 1 (and part 2) of a FRAMES message."""
    return np.dtype("<c8") if frame_kind == "complex64" else np.dtype("<f4")


# ------------------------------------------------------------------ header
@dataclass(frozen=True)
class StreamHeader:
    """What a receiver needs to turn a stream's frames into samples.

    Parameters
    ----------
    stream_id : int
        u32, chosen by the producer; a new id means a new stream.
    spec : STFTSpec
        How the frames were made (sample rate in Hz, sizes in samples).
    encoding : Encoding
        Units of magnitudes and phases ("magphase", "magnitude" frames).
    frame_kind : str
        "complex64", "magphase", "magnitude" or "mel".
    length : int, optional
        Samples the stream decodes to (after the centre trim), when known.
    mel : MelSpec, optional
        For "mel" frames (required): their bands, power and unit -- the
        header's ``mel`` object (:meth:`stream.mel.MelSpec.to_dict`).
    """

    stream_id: int
    spec: STFTSpec
    encoding: Encoding = Encoding()
    frame_kind: str = "complex64"
    length: int | None = None
    mel: MelSpec | None = None

    def __post_init__(self):
        if self.frame_kind not in FRAME_KINDS:
            raise ProtocolError(f"frame_kind {self.frame_kind!r} is not one of "
                                f"{', '.join(FRAME_KINDS)}")
        if not 0 <= int(self.stream_id) < 1 << 32:
            raise ProtocolError(f"stream_id {self.stream_id} does not fit in 32 bits")
        if (self.frame_kind == "mel") != (self.mel is not None):
            raise ProtocolError("a 'mel' object goes with mel frames, and only with them")

    @property
    def frame_values(self) -> int:
        """Values per channel of one frame: bins, or mel bands."""
        return self.spec.n_bins if self.mel is None else self.mel.n_mels

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame in part 1 (all channels)."""
        return self.spec.channels * self.frame_values * payload_dtype(self.frame_kind).itemsize

    def to_dict(self) -> dict:
        """The header JSON as a dict: the STFT's fields (:meth:`STFTSpec.to_dict`),
        the encoding, the frame kind, the length (and the ``mel`` object)."""
        e = self.encoding
        d = {"version": VERSION, "stream_id": int(self.stream_id), **self.spec.to_dict(),
             "frame_kind": self.frame_kind, "magnitude": e.magnitude,
             "db_ref": float(e.db_ref), "phase_unit": e.phase_unit, "length": self.length}
        if self.mel is not None:
            d["mel"] = self.mel.to_dict()
        return d

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_json(cls, data, stream_id: int | None = None,
                  max_bytes: int = MAX_HEADER_BYTES) -> "StreamHeader":
        """Parse and validate header JSON (bytes-like); ``stream_id`` from the envelope."""
        raw = memoryview(data)
        if raw.nbytes > max_bytes:
            raise ProtocolError(f"header JSON is {raw.nbytes} bytes, over the "
                                f"{max_bytes}-byte cap", "oversized")
        try:
            d = json.loads(bytes(raw).decode("utf-8"), parse_constant=_no_constants)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ProtocolError(f"header is not valid UTF-8 JSON ({e})") from None
        if not isinstance(d, dict):
            raise ProtocolError("header JSON must be an object")
        return cls.from_dict(d, stream_id)

    @classmethod
    def from_dict(cls, d: dict, stream_id: int | None = None) -> "StreamHeader":
        g = _Getter(d)
        version = g.int("version")
        if version != VERSION:
            raise ProtocolError(f"header says protocol version {version}; this receiver "
                                f"speaks version {VERSION}", "version")
        sid = g.int("stream_id")
        if stream_id is not None and sid != stream_id:
            raise ProtocolError(f"header stream_id {sid} differs from its envelope's {stream_id}")
        # The bounds first: a hostile header must not make us allocate a huge
        # window before its STFT is checked.
        _check_bounds(g, d)
        length = d.get("length")
        if length is not None and (not isinstance(length, int) or isinstance(length, bool)
                                   or not 0 <= length <= MAX_LENGTH):
            raise ProtocolError(f"header length must be a whole number in 0..{MAX_LENGTH} "
                                f"or null, got {_short(length)}")
        try:
            spec = STFTSpec.from_dict(d, strict=True)
            enc = Encoding(magnitude=g.str("magnitude", "linear"),
                           db_ref=g.num("db_ref", 1.0), phase_unit=g.str("phase_unit", "rad"))
        except ProtocolError:
            raise
        except (SpecError, OverflowError, ValueError, TypeError) as e:
            raise ProtocolError(f"header describes an invalid STFT: {e}") from None
        kind = g.str("frame_kind")
        return cls(sid, spec, enc, kind, length, _mel_of(d, spec) if kind == "mel" else None)


def _mel_of(d: dict, spec: STFTSpec) -> MelSpec:
    """The header's ``mel`` object, checked (types, band count, fmax under Nyquist)."""
    m = d.get("mel")
    if not isinstance(m, dict):
        raise ProtocolError("a mel stream's header needs a 'mel' object (n_mels, fmin, fmax, "
                            "scale, norm, power, unit...)")
    n = m.get("n_mels")
    if not (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_N_MELS):
        raise ProtocolError(f"mel n_mels must be a whole number in 1..{MAX_N_MELS}, "
                            f"got {_short(n)}")
    try:
        mel = MelSpec.from_dict(m, strict=True)
        mel.check(spec)
    except (SpecError, OverflowError, ValueError, TypeError) as e:
        raise ProtocolError(f"header describes invalid mel bands: {e}") from None
    return mel


def _check_bounds(g: "_Getter", d: dict):
    """The sizes a header asks for, within the limits above (before anything is made)."""
    n_fft = g.int("n_fft")
    hop = g.int("hop_length")                   # required here; STFTSpec has a default
    channels = g.int("channels", 1)
    sr = g.num("sample_rate")
    first = g.int("first_frame", 0)
    if not MIN_N_FFT <= n_fft <= MAX_N_FFT:
        raise ProtocolError(f"n_fft={n_fft} is outside {MIN_N_FFT}..{MAX_N_FFT}")
    if not 1 <= hop <= n_fft:
        raise ProtocolError(f"hop_length={hop} is outside 1..n_fft={n_fft}")
    if n_fft * -(-n_fft // hop) > MAX_OVERLAP_WORK:
        raise ProtocolError(f"n_fft={n_fft} with hop_length={hop} overlaps "
                            f"{-(-n_fft // hop)} frames per sample: over the limit of "
                            f"n_fft * overlap <= {MAX_OVERLAP_WORK}; use a larger hop_length")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ProtocolError(f"channels={channels} is outside 1..{MAX_CHANNELS}")
    if not 1.0 <= sr <= MAX_SAMPLE_RATE:
        raise ProtocolError(f"sample_rate={sr:g} is outside 1..{MAX_SAMPLE_RATE:g} Hz")
    if abs(first) * hop > n_fft:
        raise ProtocolError(f"first_frame={first} starts more than n_fft={n_fft} samples "
                            "away from sample 0")


def _short(value, limit: int = 40) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[:limit] + "..."


def _no_constants(name):
    raise ValueError(f"{name} is not allowed in a header")


class _Getter:
    """Typed access to header fields with one-line errors."""

    def __init__(self, d):
        self.d = d

    def _get(self, key, default, types, what):
        if key not in self.d:
            if default is None:
                raise ProtocolError(f"header lacks the field {key!r}")
            return default
        v = self.d[key]
        if isinstance(v, bool) and bool not in types or not isinstance(v, types):
            raise ProtocolError(f"header field {key!r} must be {what}, got {_short(v)}")
        if types != (str,) and not is_finite_number(v):
            raise ProtocolError(f"header field {key!r} must be a finite number of "
                                f"sensible size, got {_short(v)}")
        return v

    def int(self, key, default=None):
        return self._get(key, default, (int,), "a whole number")

    def num(self, key, default=None):
        return float(self._get(key, default, (int, float), "a number"))

    def str(self, key, default=None):
        return self._get(key, default, (str,), "a string")


# ---------------------------------------------------------------- messages
def header_message(header: StreamHeader, next_seq: int, timestamp: float | None = None) -> list:
    """Parts of a HEADER message; ``next_seq`` is the next frame's sequence number."""
    return [pack_envelope(MsgType.HEADER, header.stream_id, next_seq, 0, timestamp),
            header.to_json()]


def frames_message(header: StreamHeader, seq: int, first: np.ndarray,
                   second: np.ndarray | None = None, timestamp: float | None = None) -> list:
    """Parts of a FRAMES message.

    ``first`` (and ``second`` for magphase) must already be C-contiguous
    ``(channels, n_frames, bins)`` arrays of :func:`payload_dtype`; they are
    passed as buffers, not copied (send with ``copy=False``).
    """
    n = first.shape[1]
    parts = [pack_envelope(MsgType.FRAMES, header.stream_id, seq, n, timestamp), first.data]
    if header.frame_kind == "magphase":
        parts.append(second.data)
    return parts


def end_message(stream_id: int, n_frames_total: int, timestamp: float | None = None) -> list:
    """Parts of an END message; ``seq`` is the count of frames the stream held."""
    return [pack_envelope(MsgType.END, stream_id, n_frames_total, 0, timestamp)]


def frame_arrays(header: StreamHeader, env: Envelope, parts) -> tuple:
    """Views ``(first, second_or_None)`` of shape ``(channels, n_frames, bins)``
    onto the payload parts of a FRAMES message (no copy), after checking that
    their sizes fit the header."""
    want_parts = 1 + FRAME_KINDS[header.frame_kind]
    if len(parts) != want_parts:
        raise ProtocolError(f"a {header.frame_kind} FRAMES message has {want_parts} parts, "
                            f"got {len(parts)}", "parts")
    if not 0 < env.n_frames <= MAX_FRAMES_PER_MESSAGE:
        raise ProtocolError(f"FRAMES message with n_frames={env.n_frames}, outside "
                            f"1..{MAX_FRAMES_PER_MESSAGE}", "size")
    dt = payload_dtype(header.frame_kind)
    s = header.spec
    want = header.frame_bytes * env.n_frames
    shape = (s.channels, env.n_frames, header.frame_values)
    what = "bins" if header.mel is None else "mel bands"
    out = []
    for p in parts[1:]:
        buf = memoryview(p)
        if buf.nbytes != want:
            raise ProtocolError(
                f"payload is {buf.nbytes} bytes; {env.n_frames} frame(s) of {s.channels} ch x "
                f"{header.frame_values} {what} of {dt.name} make {want}", "size")
        out.append(np.frombuffer(buf, dtype=dt).reshape(shape))
    return out[0], (out[1] if len(out) > 1 else None)
