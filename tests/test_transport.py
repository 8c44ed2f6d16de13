"""FrameSender -> FrameReceiver over real ZeroMQ sockets (tcp on 127.0.0.1, ipc in tmp dirs).

Every bad input of issue 3 is sent on a real socket; the receiver must stay
up, count it, and play the next good stream exactly as the offline path does.
"""

import socket
import threading

import numpy as np
import pytest
import zmq

from receiving import drain
from stream.decode import Decoder, Encoding
from stream.engine import Reconstructor, stft
from stream.protocol import (ENVELOPE, MAGIC, MsgType, StreamHeader, end_message,
                             frames_message, header_message, pack_envelope)
from stream.spec import STFTSpec
from stream.transport import (AudioBlock, FrameReceiver, FrameSender, FramesBlock,
                              StreamEnded, StreamStarted)

SPEC = STFTSpec(sample_rate=16000, n_fft=256, hop_length=64)


@pytest.fixture(autouse=True)
def _estimate_plans(monkeypatch):
    # FFTW_ESTIMATE plans are deterministic: the receiver and the reference
    # below then round identically and can be compared sample for sample.
    monkeypatch.setenv("SPECSTREAM_FFTW_PLANNER", "estimate")


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def _signal(n, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SPEC.sample_rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal((channels, n))
    return x.astype(np.float32)[0] if channels == 1 else x.astype(np.float32)


def _frames(n_frames, spec=SPEC, seed=0):
    """Complex frames ``(n, bins)`` (or ``(channels, n, bins)``) of a real signal."""
    n = (n_frames - 1) * spec.hop_length
    return stft(_signal(n, spec.channels, seed), spec)[..., :n_frames, :]


_drain = drain   # the name these tests have always used


def _ended(events, reason="end"):
    return any(isinstance(e, StreamEnded) and e.reason == reason for e in events)


def _audio(events, stream_id=None):
    blocks = [e.samples for e in events if isinstance(e, AudioBlock)
              and (stream_id is None or e.stream_id == stream_id)]
    return np.concatenate(blocks, axis=-1)


def _reference(spec, pushes, length):
    """What the offline engine makes of the same sequence of pushes."""
    r = Reconstructor(spec, length=length)
    out = [r.push(b) for b in pushes if b.shape[-2]]
    return np.concatenate(out + [r.flush()], axis=-1)


# --------------------------------------------------------------- round trips
@pytest.mark.parametrize("transport", ["tcp", "ipc"])
@pytest.mark.parametrize("kind", ["complex64", "magphase-db-deg"])
def test_round_trip_equals_offline_engine(tmp_path, ctx, transport, kind):
    endpoint = "tcp://127.0.0.1:*" if transport == "tcp" else f"ipc://{tmp_path}/s"
    X = _frames(150)
    length = SPEC.samples_for(150)
    enc = Encoding("db", 1.0, "deg") if kind != "complex64" else Encoding()
    dec = Decoder(SPEC, enc)
    with FrameReceiver(endpoint, context=ctx) as rx:
        pushes = []
        with FrameSender(rx.endpoint, spec=SPEC, encoding=enc, length=length,
                         context=ctx) as tx:
            for i in range(0, 150, 40):
                blk = X[i:i + 40]
                if kind == "complex64":
                    tx.send(blk)
                    pushes.append(dec.decode(blk))
                else:
                    mag = (20 * np.log10(np.abs(blk) + 1e-9)).astype(np.float32)
                    ph = np.degrees(np.angle(blk)).astype(np.float32)
                    tx.send(mag, ph)
                    pushes.append(dec.decode(mag, ph))
        events = _drain(rx, _ended)
        starts = [e for e in events if isinstance(e, StreamStarted)]
        assert len(starts) == 1 and starts[0].stream_id == tx.stream_id
        assert starts[0].header.frame_kind == ("complex64" if kind == "complex64" else "magphase")
        y = _audio(events)
        assert y.shape == (length,)
        np.testing.assert_array_equal(y, _reference(SPEC, pushes, length))
        s = rx.stats
        assert (s.frames_in, s.frames_played, s.dropped, s.concealed, s.malformed) == \
            (150, 150, 0, 0, 0)
        assert len(s.latencies) > 0


def test_stereo_frame_by_frame(ctx):
    spec = SPEC.replace(channels=2)
    X = _frames(30, spec)                           # (2, 30, bins)
    with FrameReceiver("tcp://127.0.0.1:*", context=ctx) as rx:
        with FrameSender(rx.endpoint, spec=spec, context=ctx) as tx:
            for t in range(30):
                tx.send(X[:, t, :])                 # one frame: (channels, bins)
        events = _drain(rx, _ended)
    y = _audio(events)
    assert y.shape == (2, spec.samples_for(30))
    ref = _reference(spec, [X[:, t:t + 1, :] for t in range(30)], None)
    np.testing.assert_array_equal(y, ref)


def test_frames_output_gives_decoded_bins(ctx):
    X = _frames(20)
    with FrameReceiver("tcp://127.0.0.1:*", output="frames", context=ctx) as rx:
        with FrameSender(rx.endpoint, spec=SPEC, context=ctx) as tx:
            tx.send(np.abs(X), np.angle(X))
        events = _drain(rx, _ended)
    got = np.concatenate([e.frames for e in events if isinstance(e, FramesBlock)], axis=-2)
    np.testing.assert_array_equal(got[0], Decoder(SPEC).decode(np.abs(X), np.angle(X)))


# ------------------------------------------------------------------ bad input
def _quiet_decode(dec, mag, ph):
    with np.errstate(invalid="ignore"):
        return dec.decode(mag, ph)


def _msg_frames(header, seq, X, drop_phase=False, trim=0):
    mag, ph = np.abs(X).astype(np.float32), np.angle(X).astype(np.float32)
    parts = [bytes(p) for p in frames_message(header, seq, mag[None], ph[None])]
    if drop_phase:
        parts = parts[:2]
    if trim:
        parts[1] = parts[1][:-trim]
    return parts


def test_bad_input_is_counted_and_the_next_stream_plays(ctx):
    X = _frames(50)
    header = StreamHeader(5, SPEC, Encoding(), "magphase", SPEC.samples_for(50))
    dec = Decoder(SPEC)
    bad_json = header.to_dict() | {"version": 2}
    other = StreamHeader(5, SPEC.replace(hop_length=32), Encoding(), "magphase")
    nan_block = X[30:40].copy()
    nan_block[2, 5] = np.nan
    nan_block[3, 7] = np.inf
    nan_block[4, 9] = complex(np.nan, 1.0)   # one NaN magnitude (abs of it is NaN)

    # Silence for the gap, so that the reference below can say what it holds.
    with FrameReceiver("tcp://127.0.0.1:*", conceal="zeros", context=ctx) as rx:
        raw = ctx.socket(zmq.PUSH)
        raw.connect(rx.endpoint)
        msgs = [
            [b"hello world"],                                             # garbage
            [bytes(np.random.default_rng(1).integers(0, 256, 32, dtype=np.uint8))],
            [ENVELOPE.pack(MAGIC, 2, 1, 0, 5, 0, 0.0, 0), header.to_json()],   # version 2
            [pack_envelope(MsgType.HEADER, 5, 0)],                        # truncated header
            [pack_envelope(MsgType.HEADER, 5, 0), str(bad_json).encode()],     # not JSON
            _msg_frames(header, 0, X[0:3]),                               # before the header
            [bytes(p) for p in header_message(header, 0)],
            _msg_frames(header, 0, X[0:10]),
            [bytes(p) for p in header_message(other, 10)],               # changed mid-stream
            _msg_frames(header, 10, X[10:15], drop_phase=True),          # truncated multipart
            _msg_frames(header, 15, X[15:20], trim=4),                   # wrong size
            _msg_frames(header, 20, X[20:30]),                           # gap 10..19
            _msg_frames(header, 25, X[25:30]),                           # duplicate
            _msg_frames(header, 30, nan_block),                          # NaN / Inf
            _msg_frames(header, 35, X[35:45]),                           # half duplicate
            _msg_frames(header, 45, X[45:50]),
            _msg_frames(header, 44, X[44:45]),                           # out of order
            [ENVELOPE.pack(MAGIC, 1, 9, 0, 5, 0, 0.0, 0)],                # unknown type
            end_message(5, 50),
        ]
        for m in msgs:
            raw.send_multipart(m)
        events = _drain(rx, _ended)
        raw.close(linger=1000)

        s = rx.stats
        assert s.messages == len(msgs)
        assert dict(s.rejects) == {"envelope": 1, "magic": 1, "version": 1, "parts": 2,
                                   "header": 2, "size": 1, "type": 1}
        assert s.malformed == 9
        assert s.dropped_no_header == 3
        assert s.dropped_late == 5 + 5 + 1
        assert s.concealed == 10 and s.lost == 0
        assert s.nonfinite == 3
        assert s.frames_played == 10 + 10 + 10 + 5 + 5
        assert s.streams == 1
        clean = nan_block.copy()
        mag, ph = np.abs(clean).astype(np.float32), np.angle(clean).astype(np.float32)
        pushes = [dec.decode(np.abs(X[0:10]), np.angle(X[0:10])),
                  np.zeros((10, SPEC.n_bins), np.complex64),
                  dec.decode(np.abs(X[20:30]), np.angle(X[20:30])),
                  _quiet_decode(dec, mag, ph),
                  dec.decode(np.abs(X[40:45]), np.angle(X[40:45])),
                  dec.decode(np.abs(X[45:50]), np.angle(X[45:50]))]
        y = _audio(events, 5)
        assert np.isfinite(y).all()
        np.testing.assert_array_equal(y, _reference(SPEC, pushes, SPEC.samples_for(50)))

        # Bytes that are not even ZeroMQ on the port, then a good stream: it plays exactly.
        port = int(rx.endpoint.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as raw_tcp:
            raw_tcp.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(range(256)))
        Y = _frames(60, seed=3)
        with FrameSender(rx.endpoint, spec=SPEC, length=SPEC.samples_for(60), stream_id=6,
                         context=ctx) as tx:
            for i in range(0, 60, 20):
                tx.send(Y[i:i + 20])
        events = _drain(rx, _ended)
        np.testing.assert_array_equal(
            _audio(events, 6),
            _reference(SPEC, [Y[i:i + 20] for i in range(0, 60, 20)], SPEC.samples_for(60)))
        assert rx.stats.streams == 2 and rx.stats.dropped == 3 + 11


def test_long_gap_is_concealed_up_to_the_cap(ctx):
    X = _frames(120)
    with FrameReceiver("tcp://127.0.0.1:*", max_conceal=0.1, conceal="zeros",
                       context=ctx) as rx:
        header = StreamHeader(9, SPEC, Encoding(), "complex64", None)
        raw = ctx.socket(zmq.PUSH)
        raw.connect(rx.endpoint)
        raw.send_multipart(header_message(header, 0))
        raw.send_multipart([bytes(p) for p in frames_message(header, 0, X[None, 0:10])])
        raw.send_multipart([bytes(p) for p in frames_message(header, 100, X[None, 100:110])])
        raw.send_multipart(end_message(9, 110))
        events = _drain(rx, _ended)
        raw.close(linger=1000)
        cap = int(np.ceil(0.1 * SPEC.sample_rate / SPEC.hop_length))       # 25 frames
        assert (rx.stats.concealed, rx.stats.lost) == (cap, 90 - cap)
        ref = _reference(SPEC, [X[0:10], np.zeros((cap, SPEC.n_bins), np.complex64),
                                X[100:110]], None)
        np.testing.assert_array_equal(_audio(events), ref)


def test_oversized_messages_are_rejected_and_the_receiver_stays_up(ctx):
    with FrameReceiver("tcp://127.0.0.1:*", max_message_bytes=50_000, context=ctx) as rx:
        # Parts under the cap, total over it: rejected by the receiver's own check.
        raw = ctx.socket(zmq.PUSH)
        raw.connect(rx.endpoint)
        raw.send_multipart([pack_envelope(MsgType.FRAMES, 1, 0, 1), b"\0" * 30_000,
                            b"\0" * 30_000])
        _drain(rx, lambda ev: rx.stats.malformed == 1)
        assert rx.stats.rejects["oversized"] == 1
        # One part over the cap: ZeroMQ (MAXMSGSIZE) drops that peer; we never see it.
        big = ctx.socket(zmq.PUSH)
        big.connect(rx.endpoint)
        big.send_multipart([pack_envelope(MsgType.FRAMES, 1, 0, 1), b"\0" * 200_000])
        X = _frames(40)
        with FrameSender(rx.endpoint, spec=SPEC, length=SPEC.samples_for(40), context=ctx) as tx:
            tx.send(X[:20])
            tx.send(X[20:])
        events = _drain(rx, _ended)
        np.testing.assert_array_equal(_audio(events),
                                      _reference(SPEC, [X[:20], X[20:]], SPEC.samples_for(40)))
        assert rx.stats.messages == 1 + 4          # never the 200 kB one
        assert rx.stats.frames_in == 40
        raw.close(linger=0)
        big.close(linger=0)


# ------------------------------------------------------------ producer faults
def test_producer_restarting_with_a_new_stream_flushes_the_old(ctx):
    A, B = _frames(100, seed=1), _frames(40, seed=2)
    with FrameReceiver("tcp://127.0.0.1:*", context=ctx) as rx:
        tx_a = FrameSender(rx.endpoint, spec=SPEC, length=SPEC.samples_for(100), stream_id=1,
                           context=ctx)
        for i in range(0, 30, 10):
            tx_a.send(A[i:i + 10])
        events = _drain(rx, lambda ev: rx.stats.frames_played == 30)
        tx_a.close()                     # "killed": no end of stream
        with FrameSender(rx.endpoint, spec=SPEC, length=SPEC.samples_for(40), stream_id=2,
                         context=ctx) as tx_b:
            tx_b.send(B)
        events += _drain(rx, _ended)
    ends = [e for e in events if isinstance(e, StreamEnded)]
    assert [(e.stream_id, e.reason) for e in ends] == [(1, "replaced"), (2, "end")]
    # The old stream ends at its last frame, not padded to its announced length.
    ref_a = _reference(SPEC, [A[i:i + 10] for i in range(0, 30, 10)], None)
    np.testing.assert_array_equal(_audio(events, 1), ref_a)
    np.testing.assert_array_equal(_audio(events, 2), _reference(SPEC, [B], SPEC.samples_for(40)))
    assert rx.stats.streams == 2 and rx.stats.streams_ended == {"replaced": 1, "end": 1}


def test_a_stream_id_can_be_reused_for_a_new_stream(ctx):
    A, B = _frames(30, seed=1), _frames(20, seed=2)
    with FrameReceiver("tcp://127.0.0.1:*", context=ctx) as rx:
        for X in (A, B):
            with FrameSender(rx.endpoint, spec=SPEC, stream_id=77, context=ctx) as tx:
                tx.send(X)
            events = _drain(rx, _ended)
            np.testing.assert_array_equal(_audio(events), _reference(SPEC, [X], None))
        assert rx.stats.streams == 2 and rx.stats.dropped == 0


def test_silent_stream_times_out(ctx):
    X = _frames(20)
    with FrameReceiver("tcp://127.0.0.1:*", stream_timeout=0.2, context=ctx) as rx:
        tx = FrameSender(rx.endpoint, spec=SPEC, context=ctx)
        tx.send(X)
        events = _drain(rx, lambda ev: _ended(ev, "timeout"))
        tx.abort()
    np.testing.assert_array_equal(_audio(events), _reference(SPEC, [X], None))


def test_sender_started_before_the_receiver(tmp_path, ctx):
    X = _frames(50)
    endpoint = f"ipc://{tmp_path}/late-receiver"
    tx = FrameSender(endpoint, spec=SPEC, length=SPEC.samples_for(50), context=ctx)
    for i in range(0, 50, 10):
        tx.send(X[i:i + 10])             # queued: nobody is listening yet
    tx.end()
    with FrameReceiver(endpoint, context=ctx) as rx:
        events = _drain(rx, _ended)
    tx.close()
    np.testing.assert_array_equal(
        _audio(events), _reference(SPEC, [X[i:i + 10] for i in range(0, 50, 10)],
                                   SPEC.samples_for(50)))


def test_restarted_receiver_starts_from_a_repeated_header(tmp_path, ctx):
    X = _frames(400)
    endpoint = f"ipc://{tmp_path}/restart"
    rx1 = FrameReceiver(endpoint, context=ctx)
    tx = FrameSender(endpoint, spec=SPEC, header_every=20, context=ctx)
    for i in range(0, 50, 5):
        tx.send(X[i:i + 5])
    _drain(rx1, lambda ev: rx1.stats.frames_played == 50)
    rx1.close()
    rx2 = FrameReceiver(endpoint, context=ctx)
    done = threading.Event()

    def produce():
        for i in range(50, 400, 5):
            tx.send(X[i:i + 5])
        tx.end()
        done.set()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    events = _drain(rx2, _ended)
    t.join(30)
    tx.close()
    rx2.close()
    start = [e for e in events if isinstance(e, StreamStarted)][0]
    assert start.first_seq >= 50 and start.first_seq % 5 == 0
    assert rx2.stats.frames_played == 400 - start.first_seq
    ref = _reference(SPEC, [X[i:i + 5] for i in range(start.first_seq, 400, 5)], None)
    np.testing.assert_array_equal(_audio(events), ref)


# --------------------------------------------------------------------- volume
def test_200k_frames_push_pull_lose_none(ctx):
    spec = STFTSpec(sample_rate=16000, n_fft=64, hop_length=16)
    base = stft(_signal(16 * 1000), spec)[:1000]            # 1000 frames, cycled
    total, per = 200_000, 500
    blocks = [base[(i % 1000):(i % 1000) + per] for i in range(0, total, per)]
    length = spec.samples_for(total)
    errors = []
    with FrameReceiver("tcp://127.0.0.1:*", rcvhwm=16, context=ctx) as rx:
        def produce():
            try:
                with FrameSender(rx.endpoint, spec=spec, length=length, sndhwm=16,
                                 context=ctx) as tx:
                    for b in blocks:
                        tx.send(b)
            except Exception as e:      # reported below
                errors.append(e)

        t = threading.Thread(target=produce, daemon=True)
        t.start()
        events = _drain(rx, _ended, timeout=60)
        t.join(30)
    assert not errors
    s = rx.stats
    assert (s.frames_in, s.frames_played, s.dropped, s.concealed, s.lost, s.malformed) == \
        (total, total, 0, 0, 0, 0)
    y = _audio(events)
    assert y.shape == (length,)
    np.testing.assert_array_equal(y, _reference(spec, blocks, length))


# -------------------------------------------------------------------- pub/sub
def test_pub_sub_late_joiner_gets_the_header_and_plays(ctx):
    X = _frames(2000)
    tx = FrameSender("tcp://127.0.0.1:*", spec=SPEC, pattern="pub", bind=True,
                     header_every=20, length=SPEC.samples_for(2000), context=ctx)
    for i in range(0, 100, 10):
        tx.send(X[i:i + 10])             # nobody subscribed: these are gone
    rx = FrameReceiver(tx.endpoint, pattern="sub", bind=False, context=ctx)
    events = []
    i = 100
    while i < 2000 and rx.stats.frames_played < 200:
        tx.send(X[i:i + 10])
        i += 10
        events += rx.poll(0.002)
    tx.end()
    events += _drain(rx, _ended)
    tx.close()
    rx.close()
    start = [e for e in events if isinstance(e, StreamStarted)]
    assert len(start) == 1 and start[0].first_seq >= 100
    k = start[0].first_seq
    assert rx.stats.frames_played == i - k and rx.stats.concealed == 0
    # joined late: no announced length, the output ends at the frames played
    ref = _reference(SPEC, [X[j:j + 10] for j in range(k, i, 10)], None)
    np.testing.assert_array_equal(_audio(events), ref)


# ------------------------------------------------------------ magnitude only
def test_magnitude_only_stream_plays_through_rtpghi(ctx):
    X = _frames(80)
    with FrameReceiver("tcp://127.0.0.1:*", context=ctx) as rx:
        with FrameSender(rx.endpoint, spec=SPEC, length=SPEC.samples_for(80), context=ctx) as tx:
            for i in range(0, 80, 8):
                tx.send(np.abs(X[i:i + 8]))
        events = _drain(rx, _ended)
    assert rx.stats.frames_played == 80 and rx.stats.dropped_unplayable == 0
    y = _audio(events)
    assert y.shape == (SPEC.samples_for(80),) and np.isfinite(y).all()
    # Same magnitudes, whatever the phase: the energy is close to the original's.
    x = _reference(SPEC, [X], SPEC.samples_for(80))
    assert 0.5 < np.sum(y ** 2) / np.sum(x ** 2) < 2.0
