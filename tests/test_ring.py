"""The ring buffer and playback state machine of the sounddevice sink
(:class:`stream.sinks.Ring`): its real code, fed with output arrays the way
PortAudio's callback is, with no audio device."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from stream.sinks import Ring, SinkError


def signal(channels: int, n: int, seed: int = 0) -> np.ndarray:
    """(channels, n) float32 noise in [-0.9, 0.9]; (n,) when channels == 1."""
    x = np.random.default_rng(seed).uniform(-0.9, 0.9, (channels, n)).astype(np.float32)
    return x[0] if channels == 1 else x


def interleaved(x: np.ndarray) -> np.ndarray:
    return x[:, None] if x.ndim == 1 else x.T


# ------------------------------------------------------- playing, underruns, the end
def run_callbacks(ring: Ring, total: int, size: int, channels: int):
    """Call the real callback code like PortAudio would, ``size`` frames at
    a time, into a preallocated output array; return what it played."""
    out = np.full((size, channels), np.nan, np.float32)
    played = []
    stopped = False
    while sum(len(p) for p in played) < total and not stopped:
        stopped = ring.fill_output(out)
        played.append(out.copy())
    return np.concatenate(played), stopped


def test_ring_prebuffers_then_plays_exactly():
    x = interleaved(signal(2, 10000))
    ring = Ring(2, capacity=3000, target=1000, fade=48)
    out = np.full((256, 2), np.nan, np.float32)
    assert ring.put(x[:999]) == 999
    ring.fill_output(out)                  # below target: silence, nothing consumed
    assert not out.any() and ring.read == 0 and ring.shortages == 0
    assert ring.put(x[999:5000]) == 2001   # full: takes what fits
    assert ring.fill == 3000 == ring.max_fill
    got, pos = [], 3000
    while pos < len(x) or ring.fill >= 256 + 48:
        ring.fill_output(out)
        got.append(out.copy())
        pos += ring.put(x[pos:pos + 200])
        if ring.fill < 256 + 48 and pos >= len(x):
            break
    got = np.concatenate(got)
    np.testing.assert_array_equal(got, x[:len(got)])   # bit for bit, in order
    assert ring.shortages == 0 and ring.silence == 0 and ring.starts == 1


@pytest.mark.parametrize("channels", [1, 2])
def test_ring_underrun_fades_counts_and_recovers(channels):
    fade, size = 48, 128
    x = np.ones((3000, channels), np.float32)         # DC: the envelope is the output
    ring = Ring(channels, capacity=4000, target=1000, fade=fade)
    ring.put(x[:1000])
    played, _ = run_callbacks(ring, 2000, size, channels)   # starves after ~1000
    assert ring.shortages == 1 and not ring.playing
    env = played[:, 0]
    starve = np.flatnonzero(env < 1)[0]
    # Fade-out: monotone, from below 1 to above 0, over ``fade`` samples, then zeros.
    ramp = env[starve:starve + fade]
    assert np.all(np.diff(ramp) < 0) and 0 < ramp[-1] < ramp[0] < 1
    assert np.all(env[starve + fade:] == 0)
    assert np.max(np.abs(np.diff(env))) <= 1.0 / fade + 1e-6      # no step: no click
    assert ring.silence > 0
    assert ring.read == starve + fade                               # consumed exactly that
    # Still silent below the target; then it re-prebuffers and fades in.
    ring.put(x[1000:1500])
    out = np.full((size, channels), np.nan, np.float32)
    ring.fill_output(out)
    assert not out.any() and ring.starts == 1
    ring.put(x[1500:3000])
    played2, _ = run_callbacks(ring, 1500, size, channels)
    assert ring.starts == 2
    env2 = played2[:, 0]
    assert np.all(np.diff(env2[:fade]) > 0) and 0 < env2[0] < env2[fade - 1] < 1
    assert np.all(env2[fade:1500] == 1)
    # No sample lost: everything put is read (the shortage inserted silence only).
    assert ring.read == starve + fade + len(played2)


def test_ring_underrun_keeps_the_signal_in_order():
    # A ramp signal: after the underrun the samples continue where they
    # stopped (the fades scale them, nothing is skipped or repeated).
    x = np.arange(1, 5001, dtype=np.float32)[:, None]
    fade = 32
    ring = Ring(1, capacity=5000, target=800, fade=fade)
    ring.put(x[:800])
    first, _ = run_callbacks(ring, 1024, 100, 1)
    ring.put(x[800:])
    second, _ = run_callbacks(ring, 3000, 100, 1)
    played = np.concatenate([first, second])[:, 0]
    nz = played[played != 0]
    ratio = nz / np.arange(1, len(nz) + 1)
    assert np.all((ratio > 0) & (ratio <= 1 + 1e-6))           # the k-th sound is sample k
    unfaded = np.abs(ratio - 1) < 1e-6
    assert np.count_nonzero(~unfaded) <= 2 * fade                 # only the fades scale


def test_ring_end_of_stream_plays_out_short_streams():
    x = interleaved(signal(2, 300))
    ring = Ring(2, capacity=4000, target=2000, fade=48)
    ring.put(x)
    ring.eos = True                        # shorter than the target: plays anyway
    played, stopped = run_callbacks(ring, 10_000, 256, 2)
    assert stopped and ring.done
    np.testing.assert_array_equal(played[:300], x)
    assert not played[300:].any()
    assert ring.shortages == 0 and ring.silence == 0     # the end is not an underrun


def test_ring_end_of_stream_after_playing():
    x = interleaved(signal(1, 5000))
    ring = Ring(1, capacity=6000, target=1000, fade=48)
    ring.put(x)
    ring.eos = True
    played, stopped = run_callbacks(ring, 10_000, 512, 1)
    assert stopped
    np.testing.assert_array_equal(played[:5000], x)       # no fade-out at the real end
    assert ring.shortages == 0


def test_ring_idle_plays_out_whole_and_is_no_underrun():
    # flush() between two streams: the first plays to its last sample with
    # no fade, the silence after it is not an underrun, and the next stream
    # is prebuffered again and starts with no fade either.
    a, b = interleaved(signal(2, 3000, seed=1)), interleaved(signal(2, 2500, seed=2))
    ring = Ring(2, capacity=6000, target=1000, fade=48)
    ring.put(a)
    ring.idle = True                     # what SoundDeviceSink.flush() does
    played, _ = run_callbacks(ring, 5000, 256, 2)
    np.testing.assert_array_equal(played[:3000], a)
    assert not played[3000:].any()
    assert ring.shortages == 0 and ring.silence == 0 and not ring.playing
    ring.put(b[:500])                    # below the target: still waiting
    assert not ring.idle
    out = np.full((256, 2), np.nan, np.float32)
    ring.fill_output(out)
    assert not out.any() and ring.silence == 0
    ring.put(b[500:])
    played, _ = run_callbacks(ring, 2048, 256, 2)
    np.testing.assert_array_equal(played, b[:2048])
    assert ring.shortages == 0 and ring.starts == 2


def test_callback_allocates_no_sample_buffers():
    # numpy reports its data buffers to tracemalloc: a callback that made a
    # temporary (a copy, a concatenate, a fade product) of a 4096 x 2 block
    # would show 32 KiB at least.  Normal play, underrun fade-out, silence,
    # fade-in and the end are all run.
    import tracemalloc
    frames, ch = 4096, 2
    ring = Ring(ch, capacity=40_000, target=12_000, fade=frames)   # fades as long as a block
    x = interleaved(signal(ch, 30_000))
    out = np.zeros((frames, ch), np.float32)
    ring.put(x[:20_000])
    ring.fill_output(out)                          # warm up
    tracemalloc.start()
    try:
        for _ in range(4):                         # plays, then runs dry and fades out
            ring.fill_output(out)
        ring.fill_output(out)                      # silence
        ring.put(x[20_000:])
        ring.eos = True
        while not ring.fill_output(out):           # fade-in, the end
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ring.shortages == 1 and ring.starts == 2 and ring.done
    assert peak < frames * ch * 4 // 2, f"{peak} bytes allocated in the callback"


def test_ring_counts_device_flags():
    ring = Ring(1, capacity=100, target=10, fade=4)
    out = np.zeros((8, 1), np.float32)
    ring.fill_output(out, underflow=True)
    ring.fill_output(out, underflow=True, overflow=True)
    assert ring.device_underflows == 2 and ring.device_overflows == 1


def test_ring_with_a_producer_thread():
    # Producer and consumer threads, as in the sink: the producer waits on a
    # full ring (backpressure), the consumer takes fixed blocks.  This checks
    # the lock-free hand-over, not timing: the consumer waits for data here,
    # so any shortage or any sample out of place is a bug.
    x = interleaved(signal(2, 200_000, seed=3))
    ring = Ring(2, capacity=4096, target=2048, fade=48)
    size = 300
    done = threading.Event()
    nap = threading.Event().wait

    def produce():
        pos = 0
        while pos < len(x):
            k = ring.put(x[pos:pos + 777])
            pos += k
            if not k:
                nap(0.0002)
        ring.eos = True
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    out = np.empty((size, 2), np.float32)
    got = []
    while True:
        need = ring.target if not ring.started else size + ring.fade
        if not done.is_set() and ring.fill < need:
            nap(0.0002)
            continue
        stopped = ring.fill_output(out)
        got.append(out.copy())
        if stopped:
            break
    t.join()
    got = np.concatenate(got)
    assert ring.shortages == 0 and ring.read == len(x)
    np.testing.assert_array_equal(got[:len(x)], x)
    assert not got[len(x):].any()
    assert ring.max_fill <= ring.capacity


# ------------------------------------- catch-up: holding the latency target
def paced(ring: Ring, x: np.ndarray, ahead: int, callbacks: int, size: int, put: int,
          late=None, start: int = 0):
    """A producer paced at real time against callbacks of ``size`` frames:
    before callback ``i`` it has put every whole block of ``put`` frames up
    to ``ahead + (start + i + 1) * size`` (``ahead``: a backlog it is ahead
    by), except while ``late(i)`` is true (jitter: it catches up after).
    Returns what played."""
    out = np.full((size, x.shape[1]), np.nan, np.float32)
    played = []
    for i in range(callbacks):
        due = ahead + (start + i + 1) * size
        while not (late and late(i)) and ring.written + put <= min(due, len(x)):
            assert ring.put(x[ring.written:ring.written + put]) == put
        ring.fill_output(out)
        played.append(out.copy())
    return np.concatenate(played)


def catch_up_ring(channels=1, catch_up=True, target=1000, tolerance=100):
    return Ring(channels, capacity=20_000, target=target, fade=32, catch_up_window=4800,
                 catch_up_tolerance=tolerance, catch_up=catch_up)


@pytest.mark.parametrize("channels, put", [(1, 128), (2, 256), (2, 96)])
def test_ring_catch_up_drops_a_standing_backlog_once_with_a_crossfade(channels, put):
    # 2000 frames of backlog on top of the 1000 target (frames that queued
    # while the device opened), then a producer paced at real time: the
    # backlog can never drain.  Catch-up drops it after one window, with a
    # crossfade, and the queue then stays at the target.
    x = interleaved(signal(channels, 100_000, seed=4))
    size, fade = 128, 32
    ring = catch_up_ring(channels)
    played = paced(ring, x, 3000, 300, size, put)
    assert ring.trims == 1 and ring.shortages == 0 and ring.silence == 0
    r, k = ring.first_trim_at, ring.trimmed
    assert 2000 - size - put <= k <= 2000 + put      # the backlog, to within the granularity
    up, down = ring._up, ring._down
    expected = np.concatenate([x[:r], x[r + k:r + k + fade] * up + x[r:r + fade] * down,
                               x[r + k + fade:]])
    np.testing.assert_allclose(played, expected[:len(played)], rtol=0, atol=1e-6)
    # Afterwards the standing queue is the target (to within a callback),
    # below the threshold: nothing more is dropped, however long it runs.
    more = paced(ring, x, 3000, 400, size, put, start=300)
    assert ring.trims == 1 and ring.trimmed == k and ring.shortages == 0
    assert ring.target - size <= ring.queue_min <= ring.target + put
    assert ring.queue_min <= ring.threshold
    assert ring.read - ring.trimmed == len(played) + len(more)


def test_ring_catch_up_drops_a_backlog_that_came_in_pieces_at_once():
    # A start-up backlog written in several puts while playback has begun
    # (the engine decodes the frames that queued while the device opened as
    # the callbacks already run): half of it stood from the start, the rest
    # came 10 callbacks later, in the window's first half.  The whole window
    # stood above the threshold and its second half held all of it: one
    # catch-up drops all of it, not half now and half a window later.
    x = interleaved(signal(2, 100_000, seed=6))
    size, put = 128, 128
    ring = catch_up_ring(2)
    paced(ring, x, 2000, 10, size, put)                 # 1000 over the target
    played = paced(ring, x, 3000, 290, size, put, start=10)   # 2000 over it
    assert ring.trims == 1 and ring.shortages == 0
    assert 2000 - size - put <= ring.trimmed <= 2000 + put
    paced(ring, x, 3000, 300, size, put, start=300)
    assert ring.trims == 1 and ring.target - size <= ring.queue_min <= ring.target + put
    assert len(played) == 290 * size


def test_ring_without_catch_up_keeps_the_backlog_and_every_sample():
    x = interleaved(signal(2, 100_000, seed=5))
    ring = catch_up_ring(2, catch_up=False)
    played = paced(ring, x, 2000, 400, 128, 128)
    assert ring.trims == 0 and ring.trimmed == 0
    np.testing.assert_array_equal(played, x[:len(played)])
    assert ring.queue_min > ring.threshold             # observed, left alone


@pytest.mark.parametrize("size, put, target", [(128, 128, 1000), (128, 256, 1000),
                                               (120, 256, 1000), (256, 96, 1000),
                                               (128, 4096, 6000)])
@pytest.mark.parametrize("jitter", [False, True])
def test_ring_catch_up_never_acts_in_normal_playback(size, put, target, jitter):
    # No backlog: writes of any size, paced at real time (the queue swings
    # by a whole write), late now and then by less than the target (the
    # queue dips, then refills), never trigger a catch-up: every sample
    # plays, in order.  (The target must exceed a write: a producer that
    # writes 4096 frames at a time needs more than 4096 queued.)
    x = interleaved(signal(1, 600_000, seed=6))
    ring = catch_up_ring(target=target, tolerance=0)
    lateness = max(1, (target - size - 2 * ring.fade) // size // 2)   # callbacks
    late = (lambda i: i % 97 < lateness) if jitter else None
    played = paced(ring, x, 0, 2000, size, put, late=late)
    assert ring.trims == 0 and ring.trimmed == 0 and ring.shortages == 0
    assert ring.queue_min >= 0
    got = played[np.flatnonzero(played[:, 0] != 0)[0]:]
    np.testing.assert_array_equal(got, x[:len(got)])


def test_ring_catch_up_spares_a_producer_held_back_by_backpressure():
    # A producer faster than real time (a file sent with --rate max) keeps
    # the ring full: that is backpressure, not a backlog; every sample plays.
    x = interleaved(signal(2, 100_000, seed=7))
    ring = catch_up_ring(2, tolerance=0)
    out = np.empty((128, 2), np.float32)
    played, pos = [], 0
    while pos < len(x):
        pos += ring.put(x[pos:pos + 700])
        ring.fill_output(out)
        played.append(out.copy())
    played = np.concatenate(played)
    assert ring.full > 0 and ring.queue_min > ring.threshold
    assert ring.trims == 0
    played = played[np.flatnonzero(played[:, 0] != 0)[0]:]         # after the prebuffer
    np.testing.assert_array_equal(played, x[:len(played)])


def test_ring_catch_up_waits_for_the_end_and_for_idle():
    # A backlog that is being played out (end of stream, or idle between
    # streams) is not trimmed: the producer will not top it up.
    x = interleaved(signal(1, 15_000, seed=8))
    for flag in ("eos", "idle"):
        ring = catch_up_ring()
        ring.put(x)
        setattr(ring, flag, True)
        played, _ = run_callbacks(ring, len(x), 128, 1)
        assert ring.trims == 0
        np.testing.assert_array_equal(played[:len(x)], x)


def test_catch_up_in_the_callback_allocates_no_sample_buffers():
    import tracemalloc
    frames, ch = 4096, 2
    ring = Ring(ch, capacity=200_000, target=12_000, fade=frames, catch_up_window=3 * frames,
                 catch_up_tolerance=0)
    x = interleaved(signal(ch, 150_000, seed=9))
    out = np.zeros((frames, ch), np.float32)
    pos = ring.put(x[:60_000])
    ring.fill_output(out)                          # starts playing (warm up)
    tracemalloc.start()
    try:
        for _ in range(6):
            pos += ring.put(x[pos:pos + frames])
            ring.fill_output(out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ring.trims == 1 and ring.trimmed > 0 and ring.shortages == 0
    assert peak < frames * ch * 4 // 2, f"{peak} bytes allocated in the callback"


def test_ring_rejects_bad_sizes():
    with pytest.raises(SinkError):
        Ring(1, capacity=10, target=20, fade=4)



# ------------------------------------------- put and read: wraparound, capacity
def test_put_and_fill_output_wrap_around_the_end():
    # A ring of 7 frames read 3 at a time and topped up in pieces of every
    # size: both sides cross the end of the buffer at every offset, and the
    # frames come out bit for bit, in order.
    x = interleaved(signal(2, 3000, seed=10))
    ring = Ring(2, capacity=7, target=5, fade=1)
    out = np.full((3, 2), np.nan, np.float32)
    got, pos, sizes = [], 0, (1, 2, 3, 5, 7)
    pos += ring.put(x[:7])
    for i in range(900):
        ring.fill_output(out)
        got.append(out.copy())
        pos += ring.put(x[pos:pos + sizes[i % len(sizes)]])
        pos += ring.put(x[pos:pos + 7])               # top up to full: takes what fits
        assert ring.fill == 7
    got = np.concatenate(got)
    assert ring.read == len(got) == 2700 and ring.read % 7 != 0
    np.testing.assert_array_equal(got, x[:len(got)])
    assert ring.shortages == 0 and ring.starts == 1


def test_put_stops_at_capacity_and_counts_backpressure():
    x = interleaved(signal(1, 500, seed=11))
    ring = Ring(1, capacity=100, target=50, fade=4)
    assert ring.put(x[:300]) == 100                   # takes what fits
    assert (ring.written, ring.fill, ring.max_fill, ring.full) == (100, 100, 100, 1)
    assert ring.put(x[100:110]) == 0                  # full: nothing stored, counted
    assert ring.written == 100 and ring.full == 2 and ring.puts == 1
    out = np.empty((30, 1), np.float32)
    ring.fill_output(out)                             # the consumer frees 30 frames
    np.testing.assert_array_equal(out, x[:30])
    assert ring.put(x[100:140]) == 30 and ring.fill == 100 and ring.full == 3
    assert ring.put(x[130:140]) == 0
    assert ring.max_fill == ring.capacity and ring.max_put == 100


@pytest.mark.parametrize("target, capacity", [(0, 10), (11, 10), (-1, 10)])
def test_target_must_fit_the_capacity(target, capacity):
    with pytest.raises(SinkError, match="target"):
        Ring(1, capacity=capacity, target=target, fade=2)


def test_target_may_be_the_whole_ring():
    x = interleaved(signal(1, 64, seed=12))
    ring = Ring(1, capacity=64, target=64, fade=2)
    out = np.empty((16, 1), np.float32)
    ring.put(x[:63])
    ring.fill_output(out)
    assert not out.any() and not ring.playing         # one frame short of the target
    ring.put(x[63:])
    ring.fill_output(out)
    np.testing.assert_array_equal(out, x[:16])


# ------------------------------------------------- underrun: the fades, the counts
def test_underruns_fade_with_the_ramps_and_count_the_silence():
    # DC, so the output is the envelope.  When the ring runs dry the last
    # ``fade`` frames it has are scaled by the fade-out ramp, the callbacks
    # until the target is back are silence (counted in ``silence``), and
    # playback resumes with the fade-in ramp.  Frames left in the ring when
    # it ran dry are played after the fade-in: an underrun drops nothing.
    fade, size, target = 10, 64, 200
    ring = Ring(1, capacity=1000, target=target, fade=fade)
    ones = np.ones((target, 1), np.float32)
    out = np.full((size, 1), np.nan, np.float32)
    ring.put(ones)
    for _ in range(3):                   # 200 frames: the 3rd callback leaves 8 < size + fade
        ring.fill_output(out)
    assert ring.shortages == 1 and not ring.playing and ring.fill == 8
    np.testing.assert_array_equal(out[-fade:, 0], ring._down[:, 0])
    assert np.all(out[:-fade] == 1) and ring.silence == 0    # a whole callback, faded
    for i in range(4):                   # below the target: silence, counted
        ring.fill_output(out)
        assert not out.any() and ring.silence == (i + 1) * size and ring.fill == 8
    ring.put(ones)                       # 208 queued: plays again, faded in
    ring.fill_output(out)
    assert ring.starts == 2 and ring.playing
    np.testing.assert_array_equal(out[:fade, 0], ring._up[:, 0])
    assert np.all(out[fade:] == 1)
    ring.fill_output(out)
    ring.fill_output(out)                # 16 frames left: the next callback runs dry
    assert np.all(out == 1) and ring.fill == 16
    ring.fill_output(out)                # a short callback: 16 frames, faded, then silence
    assert ring.shortages == 2 and ring.silence == 4 * size + size - 16
    np.testing.assert_array_equal(out[16 - fade:16, 0], ring._down[:, 0])
    assert np.all(out[:16 - fade] == 1) and not out[16:].any()
    assert ring.read == ring.written == 2 * target        # every frame put was played
    assert ring.device_underflows == 0   # these are the ring's shortages, not PortAudio's


# ---------------------------------------- catch-up: the threshold, the trimming
# The trim comes at frame 1920 (the last callback of the first 2048-frame window) and
# skips 129 frames: with 1940 the crossfade's old side crosses the end of the
# ring, with 2059 its new side does.
@pytest.mark.parametrize("capacity", [20_000, 1940, 2059])
def test_catch_up_trims_a_standing_queue_just_over_the_threshold_to_the_target(capacity):
    # A producer paced at real time, writing a frame at a time, ``backlog``
    # frames ahead: the queue after every callback is exactly ``backlog``.
    # The threshold is the target + tolerance (0) + the granularity (the
    # 128-frame callback, larger than a write): a standing queue at the
    # threshold is left alone, one frame over it is trimmed, once, straight
    # down to the target, and stays there.
    size, target, fade = 128, 1000, 32
    threshold = target + size
    x = interleaved(np.arange(1, 60_001, dtype=np.float32))     # every frame distinct
    for backlog in (threshold, threshold + 1):
        ring = Ring(1, capacity=capacity, target=target, fade=fade, catch_up_window=16 * size)
        played = paced(ring, x, backlog, 40, size, 1)
        assert ring.threshold == threshold and ring.queue_min in (backlog, target)
        if backlog == threshold:
            assert ring.trims == 0 and ring.fill == backlog
            np.testing.assert_array_equal(played, x[:len(played)])
            continue
        assert ring.trims == 1 and ring.trimmed == backlog - target
        assert ring.fill == target and ring.queue_min == target     # held after the trim
        r, k = ring.first_trim_at, ring.trimmed
        assert r == 1920 and (capacity > 10_000
                              or any(p % capacity + fade > capacity for p in (r, r + k)))
        np.testing.assert_array_equal(played[:r], x[:r])
        np.testing.assert_allclose(played[r:r + fade],
                                   x[r + k:r + k + fade] * ring._up + x[r:r + fade] * ring._down,
                                   rtol=1e-6)
        np.testing.assert_array_equal(played[r + fade:], x[r + k + fade:len(played) + k])
        assert ring.read - ring.trimmed == len(played) and ring.shortages == 0
