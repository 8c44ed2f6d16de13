"""FrameSender on its own: how its STFT is given, and its real-time pacing.

The sender binds a PUB socket that nobody subscribes to, so that ``send``
never waits for a receiver: what these tests time is the pacing alone.
"""

import math
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
