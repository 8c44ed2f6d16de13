"""FrameSender on its own: how its STFT is given, and its real-time pacing.

The sender binds a PUB socket that nobody subscribes to, so that ``send``
never waits for a receiver: what these tests time is the pacing alone.
"""

import logging
import math
import re
import time

import numpy as np
import pytest
import zmq

from stream import transport
from stream.spec import SpecError, STFTSpec
from stream.transport import FrameSender

SPEC = STFTSpec(sample_rate=8000, n_fft=256, hop_length=100, win_length=200)


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def _sender(ctx, **kw):
    kw.setdefault("spec", SPEC)
    return FrameSender("tcp://127.0.0.1:*", pattern="pub", bind=True, linger=0, context=ctx,
                       **kw)


def _frames(n, spec=SPEC):
    return np.zeros((n, spec.n_bins), np.complex64)


# ------------------------------------------------------------ the STFT given
def test_stft_keywords_make_the_spec(ctx):
    params = dict(sample_rate=8000, n_fft=256, hop_length=100, win_length=200,
                  window="hamming", center=False, channels=2, scaling="window-sum",
                  phase_origin="window-center", window_align="left")
    with _sender(ctx, spec=None, **params) as tx:
        assert tx.spec == STFTSpec(**params)
        tx.send(np.zeros((2, 3, tx.spec.n_bins), np.complex64))
        assert tx.header.spec == STFTSpec(**params)


def test_spec_or_keywords_not_both(ctx):
    with pytest.raises(SpecError, match="sample_rate and n_fft"):
        FrameSender(n_fft=256, context=ctx)
    with pytest.raises(SpecError, match="not both"):
        FrameSender(spec=SPEC, hop_length=64, context=ctx)
    with pytest.raises(SpecError, match="hop_length=300"):   # STFTSpec checks the keywords
        FrameSender(sample_rate=8000, n_fft=256, hop_length=300, context=ctx)


@pytest.mark.parametrize("pace", [-1.0, -2, math.nan])
def test_bad_pace_is_refused(ctx, pace):
    with pytest.raises(SpecError, match="pace"):
        _sender(ctx, pace=pace)


# ------------------------------------------------------------------ pacing
class _FakeTime:
    """A monotonic clock that moves only when slept on (or when told to)."""

    def __init__(self):
        self.now = 5.0
        self.sleeps = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_pacing_sleeps_until_each_frame_is_due(ctx, monkeypatch):
    clock = _FakeTime()
    monkeypatch.setattr(transport, "time", clock)
    period = SPEC.hop_seconds / 2.0                # pace=2: twice real time
    with _sender(ctx, pace=2.0) as tx:
        start = clock.now
        tx.send(_frames(1))                         # frame 0: at once
        assert clock.sleeps == []
        tx.send(_frames(3))                         # frames 1..3: frame 1 is due
        assert clock.now == pytest.approx(start + 1 * period, abs=1e-9)
        clock.now += 0.3 * period                   # the producer takes its time...
        tx.send(_frames(1))                         # ...frame 4 is still due on schedule
        assert clock.now == pytest.approx(start + 4 * period, abs=1e-9)
        clock.now += 10 * period                    # far behind, at frame 14's time:
        n_sleeps = len(clock.sleeps)
        for _ in range(10):
            tx.send(_frames(1))                     # frames 5..14 go at once
        assert len(clock.sleeps) == n_sleeps
        assert clock.now == pytest.approx(start + 14 * period, abs=1e-9)
        tx.send(_frames(1))                         # frame 15: on the first schedule
        assert clock.now == pytest.approx(start + 15 * period, abs=1e-9)
        assert tx.seq == 16


@pytest.mark.parametrize("pace", [True, 1.0])
def test_real_time_is_factor_one(ctx, monkeypatch, pace):
    clock = _FakeTime()
    monkeypatch.setattr(transport, "time", clock)
    with _sender(ctx, pace=pace) as tx:
        start = clock.now
        for _ in range(9):
            tx.send(_frames(1))
        assert clock.now == pytest.approx(start + 8 * SPEC.hop_seconds, abs=1e-9)


@pytest.mark.parametrize("pace", [False, None, math.inf])
def test_unpaced_never_sleeps(ctx, monkeypatch, pace):
    clock = _FakeTime()
    monkeypatch.setattr(transport, "time", clock)
    with _sender(ctx, pace=pace) as tx:
        for _ in range(50):
            tx.send(_frames(2))
    assert clock.sleeps == []


def test_pacing_a_half_second_stream_at_4x_takes_an_eighth(ctx):
    n = round(0.5 / SPEC.hop_seconds)               # 40 frames: 0.5 s of audio
    with _sender(ctx, pace=4.0) as tx:
        t0 = time.monotonic()
        for _ in range(n + 1):                      # frame n is due 0.5 s / 4 after frame 0
            tx.send(_frames(1))
        elapsed = time.monotonic() - t0
    # A lower bound only: a loaded machine may take longer, never shorter.
    assert elapsed >= 0.125 - 1e-3


# ------------------------------------------------------------ an honest sender
# These connect PUSH senders to real receivers (or to nobody) on 127.0.0.1.
def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_receiver_raises_and_counts_every_frame(ctx, caplog):
    from stream.errors import SendError
    endpoint = f"tcp://127.0.0.1:{_free_port()}"             # nobody listens there
    tx = FrameSender(endpoint, spec=SPEC, sndhwm=2, send_timeout=0.2, linger=0.3, context=ctx)
    t0 = time.monotonic()
    with pytest.raises(SendError, match=r"no receiver at tcp://127\.0\.0\.1:\d+: is "
                                        r"`specstream play` running\?"):
        tx.wait_for_receiver(0.3)
    assert not tx.connected and tx.peers == 0
    with pytest.raises(SendError, match=r"no receiver at .* \(waited 0\.2 s\); 3 frame\(s\) "
                                        r"dropped"):
        for _ in range(100):          # ZeroMQ queues a few (the high-water mark), then blocks
            tx.send(_frames(3))
    assert time.monotonic() - t0 < 10
    st = tx.stats
    assert st.frames_dropped == 3 and st.frames_sent == 0
    assert st.frames_in_flight == st.frames_queued - 3 > 0   # held in ZeroMQ's queue
    caplog.set_level(logging.WARNING, logger="specstream")
    tx.close()                                               # linger passes: counted, logged
    assert tx.stats.frames_dropped == tx.stats.frames_queued and tx.stats.frames_sent == 0
    assert tx.stats.frames_in_flight == 0
    assert re.search(r"\d+ of \d+ frames never left", caplog.text)


def test_every_frame_a_receiver_took_counts_as_sent(ctx):
    from stream.transport import FrameReceiver, StreamEnded
    with FrameReceiver("tcp://127.0.0.1:*", context=ctx) as rx:
        with FrameSender(rx.endpoint, spec=SPEC, context=ctx) as tx:
            tx.wait_for_receiver(10)
            assert tx.connected and tx.peers == 1
            for _ in range(20):
                tx.send(_frames(5))
        events = []
        deadline = time.monotonic() + 20
        while not any(isinstance(e, StreamEnded) for e in events):
            assert time.monotonic() < deadline
            events += rx.poll(0.05)
    assert (tx.stats.frames_queued, tx.stats.frames_sent, tx.stats.frames_dropped) == (100, 100, 0)
    assert rx.stats.frames_played == 100


def test_a_receiver_restart_is_logged_and_frames_resume(ctx, caplog):
    from stream.transport import FrameReceiver, StreamStarted
    caplog.set_level(logging.INFO, logger="specstream")
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    rx1 = FrameReceiver(endpoint, context=ctx)
    tx = FrameSender(endpoint, spec=SPEC, header_every=10, context=ctx)
    tx.wait_for_receiver(10)
    assert f"receiver at {endpoint} connected" in caplog.text

    def pump(rx, until, timeout=20.0):
        """Send a frame every 5 ms, reading ``rx`` (if any), until ``until(events)``."""
        events = []
        deadline = time.monotonic() + timeout
        while not until(events):
            assert time.monotonic() < deadline, caplog.text
            tx.send(_frames(1))
            time.sleep(0.005)
            events += rx.poll(0) if rx is not None else []
        return events

    pump(rx1, lambda ev: rx1.stats.frames_played >= 20)
    rx1.close()                                           # the player goes away...
    pump(None, lambda ev: "went away; waiting" in caplog.text)
    assert tx.peers == 0
    rx2 = FrameReceiver(endpoint, context=ctx)            # ...and a new one comes
    events = pump(rx2, lambda ev: rx2.stats.frames_played >= 30)
    assert f"receiver at {endpoint} reconnected" in caplog.text
    assert tx.peers == 1
    start = [e for e in events if isinstance(e, StreamStarted)][0]
    assert start.first_seq >= 20 and start.stream_id == tx.stream_id
    tx.close()
    rx2.close()
    assert tx.stats.frames_dropped == 0
