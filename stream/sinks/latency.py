"""The latency target of the audio sink: pinned, or adapted to the arrivals.

:class:`LatencyTuner` holds the target of the sink's ring (the queue it
keeps ahead of the device, in samples) and, with ``auto``, moves it:

- *raised after an underrun* at once, by half (at least ``step_ms``, 5 ms):
  the ring prebuffers to the new target before it plays again, so the
  raise costs nothing beyond the underrun's own silence;
- *raised from the measured jitter* of the arrivals: each write's lateness
  (how much later than its smoothed schedule it came, seconds) is
  collected; over the last ``window_s`` (10 s) the target wanted is the
  floor plus ``max(1.2 x peak, 3 x mean)`` of the lateness (roc-toolkit's
  rule); above the target it is approached at ``slew_up`` (1.5 ms/s, which
  the drift controller follows by resampling);
- *lowered slowly* when the arrivals are steady: only after the wanted
  target stayed below the current one for ``stable_s`` (5 s) and no
  underrun came for ``calm_s`` (30 s); then by at most a fifth, at
  ``slew_down`` (0.5 ms/s).

The target never goes below ``floor`` (what one callback and one write
need, plus the fades) nor above ``ceiling``.  Every decision is recorded in
``changes``: (stream time s, old ms, new ms, reason).  Plain arithmetic, in
the producer's thread.
"""

from __future__ import annotations

from collections import deque

__all__ = ["LatencyTuner"]


class LatencyTuner:
    """The ring's latency target (samples), fixed or adaptive.

    Parameters
    ----------
    rate : float
        Sample rate (Hz).
    start : int
        The target at first (samples).
    floor, ceiling : int
        Bounds of the target (samples).
    auto : bool
        Adapt the target (True) or keep ``start`` (False).
    step_ms, window_s, stable_s, calm_s, slew_up, slew_down :
        See the module docstring (ms, s, s, s, s/s, s/s).
    """

    def __init__(self, rate: float, start: int, floor: int, ceiling: int, auto: bool = True,
                 step_ms: float = 5.0, window_s: float = 10.0, stable_s: float = 5.0,
                 calm_s: float = 30.0, slew_up: float = 0.0015, slew_down: float = 0.0005):
        self.rate = float(rate)
        self.floor, self.ceiling = int(floor), max(int(floor), int(ceiling))
        self.auto = bool(auto)
        self.target = float(min(max(start, self.floor), self.ceiling))   # now (moving)
        self.goal = self.target                                          # where it moves to
        self.start = self.target
        self.highest = self.target
        self.step = step_ms * rate / 1000.0
        self.window_s, self.stable_s, self.calm_s = window_s, stable_s, calm_s
        self.slew_up, self.slew_down = slew_up, slew_down
        self.changes: list[tuple[float, float, float, str]] = []
        self.clock = 0.0                    # audio time seen (s)
        self._blocks: deque = deque(maxlen=max(1, int(round(window_s))))
        self._peak = 0.0                    # the current 1 s block: max lateness
        self._sum = 0.0                     # ... sum of |lateness|
        self._n = 0
        self._block_s = 0.0
        self._below_s = 0.0                 # time the wanted target stayed below
        self._last_underrun = -1e9
        self.wanted = self.target           # from the jitter, as of the last block (samples)
        self.jitter_peak = 0.0              # s, over the window
        self.jitter_mean = 0.0

    def ms(self, samples: float) -> float:
        return 1000.0 * samples / self.rate

    # ---------------------------------------------------------------- events
    def lateness(self, late: float, seconds: float):
        """One write's lateness (s; < 0 early) and the audio it held (s)."""
        if late > self._peak:
            self._peak = late
        self._sum += abs(late)
        self._n += 1
        self._block_s += seconds

    def underrun(self):
        """The ring ran dry: raise the target at once (auto)."""
        self._last_underrun = self.clock
        if not self.auto:
            return
        new = min(self.ceiling, max(self.target * 1.5, self.target + self.step))
        if new > self.target:
            self._record(new, "underrun")
            self.target = self.goal = new
            self.highest = max(self.highest, new)

    def raise_floor(self, floor: int, why: str):
        """The floor rose (a larger device buffer asks for larger callbacks):
        the target goes with it, at once."""
        self.floor = max(self.floor, int(floor))
        self.ceiling = max(self.ceiling, self.floor)
        if self.floor > self.target:
            self._record(self.floor, why)
            self.target = self.goal = float(self.floor)
            self.highest = max(self.highest, self.target)
        self.goal = max(self.goal, self.target)

    def advance(self, seconds: float) -> float:
        """``seconds`` of audio went by: close a jitter block when one is
        full, move the target toward the goal.  Returns the slope at which
        the target moves (s per s; > 0 rising)."""
        self.clock += seconds
        if self._block_s >= 1.0:
            self._close_block()
        if self.goal == self.target:
            return 0.0
        slew = self.slew_up if self.goal > self.target else -self.slew_down
        step = slew * seconds * self.rate
        if abs(step) >= abs(self.goal - self.target):
            self.target = self.goal
        else:
            self.target += step
        self.highest = max(self.highest, self.target)
        return slew

    # ------------------------------------------------------------ internals
    def _close_block(self):
        self._blocks.append((self._peak, self._sum / max(1, self._n), self._block_s))
        self._peak = self._sum = self._block_s = 0.0
        self._n = 0
        self.jitter_peak = max(b[0] for b in self._blocks)
        self.jitter_mean = sum(b[1] for b in self._blocks) / len(self._blocks)
        jitter = max(1.2 * self.jitter_peak, 3.0 * self.jitter_mean, 0.0)
        self.wanted = min(self.ceiling, self.floor + jitter * self.rate)
        if not self.auto:
            return
        dt = self._blocks[-1][2]
        if self.wanted > self.goal + 0.001 * self.rate:
            self._record(self.wanted, "jitter")
            self.goal = self.wanted
            self._below_s = 0.0
        elif self.wanted < self.target - 0.001 * self.rate:
            self._below_s += dt
            calm = self.clock - self._last_underrun >= self.calm_s
            if self._below_s >= self.stable_s and calm and self.goal >= self.target:
                new = max(self.wanted, self.target * 0.8)
                self._record(new, "steady")
                self.goal = new
                self._below_s = 0.0
        else:
            self._below_s = 0.0

    def _record(self, new: float, why: str):
        self.record(self.ms(self.target), self.ms(new), why)

    def record(self, old_ms: float, new_ms: float, why: str):
        """Note a change in ``changes`` (the device's buffer is noted here too)."""
        self.changes.append((round(self.clock, 3), round(old_ms, 2), round(new_ms, 2), why))
