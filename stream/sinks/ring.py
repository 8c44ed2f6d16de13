"""The lock-free ring buffer of the audio device sink, and its playback state machine.

:class:`Ring` holds interleaved float32 frames between one producer (the
thread that calls :meth:`Sink.write <stream.sinks.Sink.write>`) and one
consumer (the PortAudio callback).  :meth:`Ring.put` copies frames in;
:meth:`Ring.fill_output` fills the callback's output array: prebuffering to
the target, the fades around an underrun's silence, the end of a stream,
and catch-up (dropping a standing excess over the latency target with a
crossfade).  The consumer side never blocks, takes no lock and allocates no
sample buffer: it copies between preallocated arrays and multiplies fades
and crossfades in place.  What these mean for playback, in milliseconds and
``stats``, is told in :mod:`stream.sinks.device`.
"""

from __future__ import annotations

import numpy as np

from .base import SinkError

__all__ = ["Ring"]


class Ring:
    """Single-producer, single-consumer ring of interleaved float32 frames, and
    the playback state machine the audio callback runs.

    The producer (``put``) owns ``written``; the consumer (``fill_output``, called
    from the audio callback) owns ``read``, ``playing`` and the callback
    counters.  Each side only reads the other's integers, so no lock is
    needed (Python int stores are atomic) and the consumer never waits.

    Parameters
    ----------
    channels : int
        Samples per frame.
    capacity : int
        Frames (samples per channel) the ring holds.
    target : int
        Frames buffered before playback starts, and restarts after an underrun.
    fade : int
        Frames of the fade-out before an underrun's silence and the fade-in
        after it, and of the crossfade of a catch-up.
    catch_up_window : int
        Frames played per observation window of the standing queue (0: not
        observed; ``queue_min`` stays -1).  With ``catch_up``, at the end
        of a window in which playback ran normally (no underrun, no end, no
        idle), the producer put at least 3 times and never found the ring
        full (``full``: a producer faster than real time is backpressure, not
        backlog), and the lowest fill seen after a callback (``win_min``, the
        standing queue) exceeded ``target + catch_up_tolerance + granularity``
        (granularity: the largest put seen at a callback in the window, or the
        largest callback, whichever is larger; ``threshold``),
        the oldest ``late_min - target`` frames are skipped with a ``fade``-long
        crossfade (``late_min``: the lowest fill after a callback in the
        window's second half, what stood there: a backlog that came in
        several puts, the first while playback had begun, goes in one
        catch-up, not one a window); ``trimmed`` and ``trims`` count them.
    catch_up_tolerance : int
        Frames of standing queue beyond the target (and the granularity)
        that are left alone.
    catch_up : bool
        Drop a standing excess (default True; needs ``catch_up_window``).
    """

    def __init__(self, channels: int, capacity: int, target: int, fade: int,
                 catch_up_window: int = 0, catch_up_tolerance: int = 0,
                 catch_up: bool = True):
        if not 0 < target <= capacity:
            raise SinkError(f"ring target {target} must be in 1..capacity ({capacity})")
        self.buf = np.zeros((capacity, channels), np.float32)
        self.capacity, self.target, self.fade = capacity, target, max(1, int(fade))
        ramp = np.linspace(0.0, 1.0, self.fade + 2, dtype=np.float32)[1:-1]
        # One column per channel: a broadcast product would make numpy
        # allocate its ufunc buffer in the callback.
        self._up = np.ascontiguousarray(np.repeat(ramp[:, None], channels, axis=1))
        self._down = np.ascontiguousarray(self._up[::-1])
        self.written = 0          # producer: frames put, ever
        self.read = 0             # consumer: frames taken, ever
        self.eos = False          # producer: no more frames will come; play out and stop
        self.idle = False         # producer: no more frames for now; play out, then wait
        self.playing = False      # consumer: False while (pre)buffering
        self.started = False      # consumer: playing began at least once
        self.fade_left = 0        # consumer: fade-in frames still to apply
        self.callbacks = 0
        self.shortages = 0        # times the ring ran dry while playing (our underruns)
        self.device_underflows = 0  # PortAudio output_underflow flags
        self.device_overflows = 0
        self.silence = 0          # frames of silence inserted by underruns
        self.max_frames = 0       # largest callback request seen
        self.starts = 0           # prebuffer completions (1 + re-prebuffers)
        self.max_fill = 0         # producer: largest fill seen (not counting the end padding)
        self.eos_pending = False  # producer: writing the end padding
        self.done = False         # consumer: everything played after eos
        self.was_idle = False     # consumer: stopped after running out while idle
        # Catch-up (see the class docstring).
        self.window = max(0, int(catch_up_window))
        self.tolerance = max(0, int(catch_up_tolerance))
        self.catch_up = bool(catch_up)
        self._mix = np.zeros((self.fade, channels), np.float32)   # the crossfade's old side
        self.puts = 0             # producer: puts that stored frames
        self.full = 0             # producer: puts that found the ring full (backpressure)
        self.max_put = 0          # producer: largest number of frames stored by one put
        self.last_put = 0         # producer: frames stored by the latest put
        self.trimmed = 0          # consumer: frames skipped by catch-up
        self.trims = 0            # consumer: catch-ups
        self.first_trim_at = -1   # consumer: read position (frames) of the first catch-up
        self.queue_min = -1       # consumer: standing queue of the last complete window
        self.threshold = -1       # consumer: the last window's catch-up threshold
        self._window_restart()    # the current window: win_played, win_min, late_min...

    @property
    def fill(self) -> int:
        return self.written - self.read

    # ---------------------------------------------------------- producer
    def put(self, data: np.ndarray) -> int:
        """Copy as many leading frames of ``data`` ((n, channels)) as fit;
        return how many.  Clears ``idle`` once frames are in."""
        cap = self.capacity
        n = min(len(data), cap - (self.written - self.read))
        if n < len(data):
            self.full += 1         # backpressure: the consumer is the bottleneck
        if n <= 0:
            return 0
        start = self.written % cap
        first = min(n, cap - start)
        self.buf[start:start + first] = data[:first]
        if n > first:
            self.buf[:n - first] = data[first:n]
        self.written += n          # publish after the copy
        self.puts += 1
        self.last_put = n
        if n > self.max_put:
            self.max_put = n
        fill = self.written - self.read
        if fill > self.max_fill and not self.eos_pending:
            self.max_fill = fill
        self.idle = False          # after the frames are published: see fill_output()
        return n

    # ---------------------------------------------------------- consumer
    def fill_output(self, out: np.ndarray, underflow: bool = False,
                    overflow: bool = False) -> bool:
        """The audio callback's work: fill ``out`` ((frames, channels) float32).

        Returns True when the stream should stop: end of stream and every
        frame played.  Never blocks, never allocates a sample buffer.
        """
        frames = out.shape[0]
        self.callbacks += 1
        if underflow:
            self.device_underflows += 1
        if overflow:
            self.device_overflows += 1
        if frames > self.max_frames:
            self.max_frames = frames
        eos = self.eos                       # read before written: see put()/close()
        idle = self.idle                     # (the producer clears it after a put)
        avail = self.written - self.read
        fade = self.fade
        if not self.playing:
            need = max(self.target, min(self.capacity, self.max_frames + 2 * fade))
            if avail >= need or ((eos or idle) and avail > 0):
                self.playing = True
                self.fade_left = fade if self.started and not self.was_idle else 0
                self.was_idle = False
                self.started = True
                self.starts += 1
            else:
                out.fill(0.0)
                if self.started and not (eos or idle or self.was_idle):
                    self.silence += frames
                if eos and avail == 0:
                    self.done = True
                self._window_restart()
                return self.done
        short = False
        if eos or idle:
            n = min(avail, frames)            # the end (for now): play all there is
            if idle and not eos and n < frames:
                self.playing = False          # ran out while idle: a gap, not an underrun
                self.was_idle = True
            self._window_restart()
        elif avail < frames + fade:           # would run dry: fade out what there is
            n = min(avail, frames)
            short = True
            self._window_restart()
        else:
            n = frames
            if self.window:
                avail -= self._catch_up(avail - frames, frames)
        if n:
            cap = self.capacity
            start = self.read % cap
            first = min(n, cap - start)
            out[:first] = self.buf[start:start + first]
            if n > first:
                out[first:n] = self.buf[:n - first]
        if n < frames:
            out[n:].fill(0.0)
        if self.fade_left and n:
            m = min(self.fade_left, n)
            k = fade - self.fade_left
            out[:m] *= self._up[k:k + m]
            self.fade_left -= m
        if short:
            k = min(n, fade)
            if k:
                out[n - k:n] *= self._down[fade - k:]
            self.shortages += 1
            self.silence += frames - n
            self.playing = False
        self.read += n
        if eos and n == avail:
            self.done = True
        return self.done

    def _window_restart(self):
        # Consumer: a catch-up window starts at the next normal callback.
        self.win_played = 0
        self.win_min = self.capacity      # lowest fill after a callback in the window
        self.late_min = self.capacity     # the same in its second half
        self.win_puts = self.puts
        self.win_full = self.full
        self.win_put = 0                  # largest put seen at a callback in it

    def _catch_up(self, slack: int, frames: int) -> int:
        """Consumer, in a normal callback: ``slack`` frames stay queued after
        it.  Returns the frames skipped (0 almost always)."""
        if slack < self.win_min:
            self.win_min = slack
        self.win_played += frames
        # (The window's last callback is always in its second half.)
        if 2 * self.win_played > self.window and slack < self.late_min:
            self.late_min = slack
        put = self.last_put
        if put > self.win_put:
            self.win_put = put
        if self.win_played < self.window:
            return 0
        lowest = self.win_min
        self.queue_min = lowest
        # Granularity: in steady state the lowest fill after a callback is
        # below target + one write (playback starts at target, and the
        # producer tops the ring up a write at a time).
        self.threshold = self.target + self.tolerance + max(self.win_put, self.max_frames)
        k = 0
        if (self.catch_up and self.puts - self.win_puts >= 3 and self.full == self.win_full
                and not self.eos_pending and not self.fade_left
                and lowest > self.threshold):
            k = min(self.late_min - self.target, slack - self.fade)
            if k > 0:
                self._skip(k)
            else:
                k = 0
        self._window_restart()
        return k

    def _skip(self, k: int):
        """Consumer: drop the oldest ``k`` queued frames, crossfading the
        ``fade`` frames at the read position into the ``fade`` frames after
        the skipped span, in place in the ring (that span is the consumer's:
        the producer writes only past ``written``).  Needs ``k + fade`` queued."""
        f, cap, buf, mix = self.fade, self.capacity, self.buf, self._mix
        a = self.read % cap
        first = min(f, cap - a)
        mix[:first] = buf[a:a + first]
        if f > first:
            mix[first:] = buf[:f - first]
        mix *= self._down
        b = (self.read + k) % cap
        first = min(f, cap - b)
        seg = buf[b:b + first]
        seg *= self._up[:first]
        seg += mix[:first]
        if f > first:
            seg = buf[:f - first]
            seg *= self._up[first:]
            seg += mix[first:]
        if self.first_trim_at < 0:
            self.first_trim_at = self.read
        self.read += k
        self.trimmed += k
        self.trims += 1

