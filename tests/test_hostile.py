"""Hostile and careless peers against a real receiver (issue 9): hand-made messages on a raw
ZeroMQ PUSH socket over loopback, per docs/protocol.md.  One test per class of fault: the
player never ends, never allocates or writes what a remote chose, never lets a second
stream take over, and the good stream after the fault plays exactly."""

import json

import numpy as np
import pytest
import zmq

from receiving import drain
from stream.engine import Reconstructor, stft
from stream.protocol import MsgType, StreamHeader, end_message, frames_message, pack_envelope
from stream.spec import STFTSpec
from stream.transport import AudioBlock, FrameReceiver, FrameSender, StreamEnded

SPEC = STFTSpec(sample_rate=16000, n_fft=256, hop_length=64)


@pytest.fixture(autouse=True)
def _estimate_plans(monkeypatch):
    monkeypatch.setenv("SPECSTREAM_FFTW_PLANNER", "estimate")   # deterministic rounding


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


@pytest.fixture
def rx(ctx):
    with FrameReceiver("tcp://127.0.0.1:*", context=ctx) as r:
        yield r


@pytest.fixture
def raw(ctx, rx):
    """A raw PUSH socket connected to the receiver: whatever bytes we like."""
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(rx.endpoint)
    yield s
    s.close(linger=0)


def frames_of(n_frames, seed=0, spec=SPEC):
    rng = np.random.default_rng(seed)
    n = (n_frames - 1) * spec.hop_length
    x = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / spec.sample_rate)
    x = (x + 0.05 * rng.standard_normal(n)).astype(np.float32)
    return stft(x, spec)[:n_frames]


def header_dict(stream_id, **changes):
    d = StreamHeader(stream_id, SPEC).to_dict()
    d.update(changes)
    return d


def send_header(raw, d, seq=0, envelope_id=None):
    sid = d["stream_id"] if envelope_id is None else envelope_id
    raw.send_multipart([pack_envelope(MsgType.HEADER, sid, seq), json.dumps(d).encode()])


def send_frames(raw, stream_id, seq, frames):
    header = StreamHeader(stream_id, SPEC)
    z = np.ascontiguousarray(frames[None], dtype="<c8")
    raw.send_multipart(frames_message(header, seq, z))


def ended(stream_id):
    return lambda evs: any(isinstance(e, StreamEnded) and e.stream_id == stream_id for e in evs)


def audio(events, stream_id):
    parts = [e.samples for e in events if isinstance(e, AudioBlock) and e.stream_id == stream_id]
    return np.concatenate(parts, axis=-1) if parts else np.zeros(0, np.float32)


def reference(frames, length=None):
    r = Reconstructor(SPEC, length=length)
    return np.concatenate([r.push(frames), r.flush()])


def same_audio(got, want):
    """The offline engine's samples to float32 precision: FFTW may pick another
    algorithm (another rounding) for the receiver's batch shapes than for one
    block of all the frames."""
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def good_stream_plays(rx, ctx, stream_id=99, seed=5):
    """After whatever came before: a good stream through FrameSender, exact."""
    X = frames_of(40, seed)
    with FrameSender(rx.endpoint, spec=SPEC, stream_id=stream_id, context=ctx) as tx:
        tx.send(X)
    events = drain(rx, ended(stream_id))
    same_audio(audio(events, stream_id), reference(X))


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ------------------------------------------------------------------ crashes
HUGE = 10 ** 400


@pytest.mark.parametrize("field, value", [
    ("sample_rate", HUGE), ("db_ref", HUGE), ("hop_length", HUGE), ("n_fft", -HUGE),
    ("window", [HUGE] * 256), ("window", [1e308] * 255 + [float("1e308")]),
    ("first_frame", HUGE), ("length", HUGE), ("channels", HUGE), ("stream_id", HUGE),
    ("sample_rate", 4e6), ("n_fft", 1 << 18), ("channels", 256), ("first_frame", 10 ** 8),
    ("length", 1 << 62), ("sample_rate", 1e-300), ("center", "yes"), ("window", {"a": 1}),
])
def test_one_absurd_header_field_is_counted_not_fatal(rx, raw, ctx, field, value):
    send_header(raw, {**header_dict(7), field: value}, envelope_id=7)
    drain(rx, lambda evs: rx.stats.malformed >= 1)
    assert rx.stats.streams == 0 and sum(rx.stats.rejects.values()) == 1
    good_stream_plays(rx, ctx)


def test_a_deeply_nested_header_is_counted_not_fatal(rx, raw, ctx):
    deep = "[" * 100_000 + "]" * 100_000
    raw.send_multipart([pack_envelope(MsgType.HEADER, 7, 0),
                        ('{"version": 1, "x": ' + deep + "}").encode()])
    drain(rx, lambda evs: rx.stats.malformed >= 1)
    good_stream_plays(rx, ctx)


def test_a_huge_sequence_gap_at_the_end_is_concealed_within_a_cap(rx, raw, ctx):
    # The largest stream the limits allow, whose END claims 2**64 - 1 frames:
    # the gap is concealed up to the cap (bytes and seconds), never 7 TiB.
    d = header_dict(8, sample_rate=768000.0, n_fft=1024, hop_length=16, win_length=1024,
                    channels=64)
    send_header(raw, d)
    before = rss_bytes()
    raw.send_multipart(end_message(8, (1 << 64) - 1))
    events = drain(rx, ended(8))
    made = sum(e.samples.nbytes for e in events if isinstance(e, AudioBlock))
    assert made <= 64 << 20
    assert rx.stats.lost > 0
    assert rss_bytes() - before < 512 << 20
    good_stream_plays(rx, ctx)


# ----------------------------------------------------------- allocation, disk
def test_an_announced_length_never_pads_past_the_frames(rx, raw, ctx):
    send_header(raw, header_dict(9, length=10 ** 8))
    X = frames_of(1)
    send_frames(raw, 9, 0, X)
    raw.send_multipart(end_message(9, 1))
    events = drain(rx, ended(9))
    y = audio(events, 9)
    assert len(y) == SPEC.max_samples_for(1)          # what one frame can hold, not 10**8
    good_stream_plays(rx, ctx)


def test_first_frame_far_away_is_refused(rx, raw, ctx):
    send_header(raw, header_dict(10, first_frame=10 ** 8))
    send_frames(raw, 10, 0, frames_of(1))
    drain(rx, lambda evs: rx.stats.malformed >= 1)
    assert rx.stats.rejects["header"] == 1 and rx.stats.frames_played == 0
    good_stream_plays(rx, ctx)


def test_a_stream_over_the_memory_cap_is_refused_and_a_big_one_fits(ctx):
    # 64 channels x n_fft 65536: the engine's batch shrinks to fit the cap.
    with FrameReceiver("tcp://127.0.0.1:*", context=ctx, max_stream_bytes=128 << 20,
                       max_message_bytes=128 << 20) as rx:
        raw = ctx.socket(zmq.PUSH)
        raw.connect(rx.endpoint)
        d = header_dict(11, n_fft=65536, hop_length=16384, win_length=65536, channels=64,
                        sample_rate=48000.0)
        send_header(raw, d)
        before = rss_bytes()
        spec = STFTSpec.from_dict(d)
        header = StreamHeader(11, spec)
        z = np.zeros((64, 3, spec.n_bins), "<c8")
        raw.send_multipart(frames_message(header, 0, z))
        raw.send_multipart(end_message(11, 3))
        events = drain(rx, ended(11))
        assert audio(events, 11).shape[0] == 64
        assert rss_bytes() - before < (128 << 20) + 3 * z.nbytes + (64 << 20)
        # One that would need more than the cap even one frame at a time:
        with FrameReceiver("tcp://127.0.0.1:*", context=ctx, max_stream_bytes=8 << 20) as small:
            small.handle([pack_envelope(MsgType.HEADER, 12, 0), json.dumps(
                header_dict(12, n_fft=65536, hop_length=16384, win_length=65536, channels=64,
                            sample_rate=48000.0)).encode()])
            assert small.stats.rejects["stream-size"] == 1 and small.stream is None
        raw.close(linger=0)


# -------------------------------------------------------------------- hijack
def test_a_foreign_header_never_takes_over_a_playing_stream(rx, raw, ctx):
    X = frames_of(200, seed=3)
    tx = FrameSender(rx.endpoint, spec=SPEC, stream_id=1, context=ctx)
    events = []
    for i in range(0, 200, 10):
        tx.send(X[i:i + 10])
        send_header(raw, header_dict(666))        # a valid header of another stream
        events += rx.poll(0.01)
    tx.end()
    tx.close()
    events += drain(rx, ended(1))
    same_audio(audio(events, 1), reference(X))
    assert rx.stats.refused_headers >= 1 and rx.stats.dropped == 0
    assert [e.reason for e in events if isinstance(e, StreamEnded) and e.stream_id == 1] == ["end"]


def test_takeover_always_lets_a_header_cut_in(ctx):
    with FrameReceiver("tcp://127.0.0.1:*", context=ctx, takeover="always") as rx:
        raw = ctx.socket(zmq.PUSH)
        raw.connect(rx.endpoint)
        send_header(raw, header_dict(1))
        send_frames(raw, 1, 0, frames_of(5))
        send_header(raw, header_dict(2))
        events = drain(rx, ended(1))
        assert [e.reason for e in events if isinstance(e, StreamEnded)] == ["replaced"]
        raw.close(linger=0)


# --------------------------------------------------------------------- stress
def test_every_message_kind_mutated_then_a_good_stream_is_exact(rx, raw, ctx):
    """10,000+ mutated messages (bit flips, truncations, extra and missing parts,
    every header field set to absurd values of every JSON type), over a real
    socket; then a good stream, which must equal the offline inverse."""
    rng = np.random.default_rng(1234)
    absurd = [None, True, False, -1, 0, 1 << 64, HUGE, -HUGE, 1e308, -1e308, 0.5, "",
              "x" * 5000, [], [1, 2], {}, {"a": [1]}, [[[[]]]], [HUGE] * 3]
    base_header = header_dict(5)
    good = [pack_envelope(MsgType.HEADER, 5, 0), json.dumps(base_header).encode()]
    frames = frames_message(StreamHeader(5, SPEC), 0,
                            np.ascontiguousarray(frames_of(4)[None], dtype="<c8"))
    frames = [bytes(p) for p in frames]
    end = end_message(5, 4)
    kinds = [good, frames, end]
    before = rss_bytes()
    sent = 0
    for field in list(base_header):
        for value in absurd:
            send_header(raw, {**base_header, field: value}, envelope_id=5)
            sent += 1
    drain(rx, lambda evs: rx.stats.messages >= sent)
    while sent < 10_500:
        parts = [bytearray(p) for p in kinds[sent % 3]]
        how = rng.integers(6)
        i = rng.integers(len(parts))
        if how == 0 and len(parts[i]):                       # flip bits
            for _ in range(rng.integers(1, 8)):
                j = rng.integers(len(parts[i]))
                parts[i][j] ^= 1 << rng.integers(8)
        elif how == 1:                                       # truncate
            parts[i] = parts[i][:rng.integers(len(parts[i]) + 1)]
        elif how == 2:                                       # extra part
            parts.append(bytearray(rng.bytes(rng.integers(64))))
        elif how == 3 and len(parts) > 1:                    # missing part
            del parts[i]
        elif how == 4:                                       # garbage
            parts = [bytearray(rng.bytes(rng.integers(1, 256)))
                     for _ in range(rng.integers(1, 4))]
        else:                                                # a random stream id
            if len(parts[0]) >= 12:
                parts[0][8:12] = rng.integers(0, 1 << 32, dtype=np.uint32).tobytes()
        raw.send_multipart([bytes(p) for p in parts])
        sent += 1
        if sent % 200 == 0:       # below ZeroMQ's queues (1000 each way): no deadlock
            drain(rx, lambda evs: rx.stats.messages >= sent)
    drain(rx, lambda evs: rx.stats.messages >= sent)
    assert rx.stats.messages == sent and rx.stats.malformed > 0
    # Let any stream the fuzz started go quiet, then the good one plays alone.
    rx.finish("closed")
    good_stream_plays(rx, ctx, stream_id=4242)
    grown = rss_bytes() - before
    print(f"fuzz: {sent} messages, {rx.stats.malformed} malformed "
          f"{dict(rx.stats.rejects)}, RSS grew {grown / 2**20:.1f} MB")
    assert grown < 256 << 20


# --------------------------------------------------------------------- stalls
def test_headers_with_new_fft_sizes_neither_measure_nor_rewrite_wisdom(ctx, monkeypatch, tmp_path):
    """Each new n_fft a remote names would cost FFTW a measured plan (0.6 s
    each here) and a rewrite of the wisdom file: the receiver plans them by
    estimate and leaves the file alone; a size measured before (by the user's
    own reconstruct) is used from the wisdom."""
    import pyfftw
    from stream import fft
    # Start from no wisdom at all: earlier tests in this process may have
    # measured some of these sizes, which would rightly be used from wisdom.
    pyfftw.forget_wisdom()
    monkeypatch.setattr(fft, "_wisdom_loaded", True)
    monkeypatch.setattr(fft, "_saved_wisdom", None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("SPECSTREAM_FFTW_PLANNER", "measure")
    Reconstructor(STFTSpec(n_fft=300, hop_length=75))         # the user measured this one
    wisdom = fft.wisdom_path().read_bytes()
    flags = {}
    with FrameReceiver("tcp://127.0.0.1:*", context=ctx) as rx:
        for i, n_fft in enumerate([300] + list(range(320, 320 + 2 * 30, 2))):
            d = {**header_dict(100 + i), "n_fft": n_fft, "hop_length": n_fft // 4,
                 "win_length": n_fft}
            rx.handle([pack_envelope(MsgType.HEADER, 100 + i, 0), json.dumps(d).encode()])
            flags[n_fft] = rx.stream.pipeline.engine._plan1.flags
            rx.handle(end_message(100 + i, 0))
    assert fft.wisdom_path().read_bytes() == wisdom
    assert "FFTW_WISDOM_ONLY" in flags.pop(300)
    assert all(f == ("FFTW_ESTIMATE", "FFTW_DESTROY_INPUT") for f in flags.values())
