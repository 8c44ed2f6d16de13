"""The wire format (stream.protocol): round trips and strict rejection of bad input."""

import json
import math
import struct

import numpy as np
import pytest

from stream.decode import Encoding
from stream.protocol import (ENVELOPE, MAGIC, MAX_HEADER_BYTES, VERSION, MsgType,
                             ProtocolError, StreamHeader, end_message, frame_arrays,
                             frames_message, header_message, pack_envelope, unpack_envelope)
from stream.errors import SpecstreamError
from stream.spec import STFTSpec


def _header(**kw):
    spec = kw.pop("spec", STFTSpec(sample_rate=48000, n_fft=64, hop_length=16, channels=2))
    return StreamHeader(kw.pop("stream_id", 7), spec, kw.pop("encoding", Encoding()),
                        kw.pop("frame_kind", "magphase"), kw.pop("length", 1234))


def _bytes(parts):
    return [bytes(p) for p in parts]


def test_envelope_layout_is_the_documented_one():
    assert ENVELOPE.size == 32
    env = pack_envelope(MsgType.FRAMES, 0xDEADBEEF, 2**40 + 3, 5, 1.5)
    assert env[:4] == b"SPST" and env[4] == 1 and env[5] == 2
    assert struct.unpack_from("<I", env, 8)[0] == 0xDEADBEEF
    assert struct.unpack_from("<Q", env, 12)[0] == 2**40 + 3
    assert struct.unpack_from("<d", env, 20)[0] == 1.5
    assert struct.unpack_from("<I", env, 28)[0] == 5
    e = unpack_envelope(env)
    assert (e.type, e.stream_id, e.seq, e.timestamp, e.n_frames) == \
        (MsgType.FRAMES, 0xDEADBEEF, 2**40 + 3, 1.5, 5)


def test_envelope_without_timestamp_is_nan():
    e = unpack_envelope(pack_envelope(MsgType.END, 1, 0, 0, math.nan))
    assert math.isnan(e.timestamp)


@pytest.mark.parametrize("data, kind", [
    (b"", "envelope"),
    (b"\x00" * 31, "envelope"),
    (b"\x00" * 33, "envelope"),
    (b"XXXX" + b"\x00" * 28, "magic"),
    (ENVELOPE.pack(MAGIC, 2, 2, 0, 1, 0, 0.0, 1), "version"),
    (ENVELOPE.pack(MAGIC, 0, 2, 0, 1, 0, 0.0, 1), "version"),
    (ENVELOPE.pack(MAGIC, VERSION, 9, 0, 1, 0, 0.0, 1), "type"),
])
def test_bad_envelopes_are_rejected_with_a_reason(data, kind):
    with pytest.raises(ProtocolError) as info:
        unpack_envelope(data)
    assert info.value.kind == kind
    assert isinstance(info.value, SpecstreamError)


@pytest.mark.parametrize("window", ["hann", "blackman", list(np.hanning(64)[:64])])
def test_header_round_trip(window):
    spec = STFTSpec(sample_rate=22050.5, n_fft=64, hop_length=16, win_length=64, window=window,
                    center=False, channels=3, scaling="window-sum", phase_origin="window-center",
                    window_align="left")
    h = StreamHeader(42, spec, Encoding("db", 2.0, "deg"), "magphase", None)
    parts = header_message(h, next_seq=99)
    env = unpack_envelope(parts[0])
    assert env.type == MsgType.HEADER and env.seq == 99 and env.n_frames == 0
    back = StreamHeader.from_json(parts[1], stream_id=env.stream_id)
    assert back == h
    assert back.spec.window_values.tolist() == spec.window_values.tolist()


def _json(**changes):
    d = _header().to_dict()
    for k, v in changes.items():
        if v is KeyError:
            d.pop(k)
        else:
            d[k] = v
    return json.dumps(d).encode()


@pytest.mark.parametrize("data, words", [
    (b"\xff\xfe", "UTF-8 JSON"),
    (b"[1, 2]", "object"),
    (b"{", "JSON"),
    (_json(version=2), "version 2"),
    (_json(stream_id=8), "differs"),
    (_json(n_fft=KeyError), "n_fft"),
    (_json(n_fft="64"), "whole number"),
    (_json(center=1), "true or false"),
    (_json(n_fft=1 << 30), "n_fft"),
    (_json(channels=0), "channels"),
    (_json(sample_rate=-1), "sample_rate"),
    (_json(frame_kind="float16"), "frame_kind"),
    (_json(magnitude="furlongs"), "magnitude unit"),
    (_json(hop_length=1000), "hop_length"),
    (_json(window=["a"]), "numbers"),
    (_json(window={"x": 1}), "window"),
    (_json(window=[1.0, 2.0]), "win_length"),
    (_json(length=-5), "length"),
    (_json().replace(b'"db_ref": 1.0', b'"db_ref": NaN'), "NaN"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_headers_are_rejected_with_a_reason(data, words):
    with pytest.raises(ProtocolError) as info:
        StreamHeader.from_json(data, stream_id=7)
    assert words in str(info.value)


def test_header_size_is_capped():
    big = _json(padding="x" * (MAX_HEADER_BYTES + 1))
    with pytest.raises(ProtocolError) as info:
        StreamHeader.from_json(big, stream_id=7)
    assert info.value.kind == "oversized"
    assert StreamHeader.from_json(_json(padding="x" * 100), stream_id=7) == _header()


@pytest.mark.parametrize("kind, dtype", [("complex64", np.complex64), ("magphase", np.float32),
                                         ("magnitude", np.float32)])
def test_frames_round_trip_zero_copy(kind, dtype):
    h = _header(frame_kind=kind)
    rng = np.random.default_rng(0)
    shape = (2, 5, 33)
    a = rng.standard_normal(shape).astype(dtype)
    if kind == "complex64":
        a = a + 1j * rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape).astype(np.float32) if kind == "magphase" else None
    parts = frames_message(h, 10, a, b, timestamp=3.0)
    assert isinstance(parts[1], memoryview)           # the array's own buffer, not a copy
    wire = _bytes(parts)
    env = unpack_envelope(wire[0])
    assert (env.seq, env.n_frames, env.timestamp) == (10, 5, 3.0)
    first, second = frame_arrays(h, env, wire)
    np.testing.assert_array_equal(first, a)
    assert first.dtype == np.dtype("<c8" if kind == "complex64" else "<f4")
    assert not first.flags.writeable                  # a view onto the message
    if b is not None:
        np.testing.assert_array_equal(second, b)
    else:
        assert second is None


def test_frame_payload_is_little_endian_channels_frames_bins():
    h = _header(frame_kind="magnitude")
    a = np.arange(2 * 3 * 33, dtype=np.float32).reshape(2, 3, 33)
    payload = bytes(frames_message(h, 0, a)[1])
    assert payload == a.astype("<f4").tobytes(order="C")
    assert struct.unpack_from("<f", payload, 4 * 34)[0] == 34.0   # channel 0, frame 1, bin 1


@pytest.mark.parametrize("mutate, words", [
    (lambda p: p[:2], "has 3 parts"),                  # truncated: phase part missing
    (lambda p: p + [b"x"], "has 3 parts"),
    (lambda p: [p[0], p[1][:-4], p[2]], "bytes"),      # one float short
    (lambda p: [p[0], p[1] + b"\0\0\0\0", p[2]], "bytes"),
])
def test_frames_that_do_not_fit_the_header_are_rejected(mutate, words):
    h = _header(frame_kind="magphase")
    a = np.ones((2, 4, 33), np.float32)
    parts = mutate(_bytes(frames_message(h, 0, a, a)))
    env = unpack_envelope(parts[0])
    with pytest.raises(ProtocolError) as info:
        frame_arrays(h, env, parts)
    assert words in str(info.value)


def test_frames_with_zero_frames_are_rejected():
    h = _header(frame_kind="magnitude")
    env = unpack_envelope(pack_envelope(MsgType.FRAMES, 7, 0, 0))
    with pytest.raises(ProtocolError):
        frame_arrays(h, env, [b"", b""])


def test_end_message_carries_the_frame_count():
    parts = end_message(7, 321, timestamp=1.0)
    assert len(parts) == 1
    env = unpack_envelope(parts[0])
    assert (env.type, env.stream_id, env.seq) == (MsgType.END, 7, 321)


def test_header_rejects_bad_stream_id_and_kind():
    with pytest.raises(ProtocolError):
        _header(stream_id=1 << 32)
    with pytest.raises(ProtocolError):
        _header(frame_kind="int8")
