"""Clock drift: the producer-to-device rate ratio, estimated from the queue.

A producer never runs at exactly the device's rate (wall-clock pacing,
another sound card, another machine: 10-100 ppm, up to 360 ms an hour).
:class:`DriftController` estimates the ratio of the two rates from the
queue the audio sink holds, and says by how much to resample the
producer's audio so that the queue stays at its target.

It is a phase-locked loop of the second order (a PI controller on the
queue, as roc-toolkit's and PipeWire's are), run every ``interval`` (5 ms)
of audio on the mean of the queue measurements in it:

- the error ``e`` is the queue less the *reference*, in seconds; the
  reference moves to the setpoint (the latency target) at ``slew`` (1.5 ms
  a second) at most, and restarts from the queue measured after a jump (an
  underrun, a catch-up, a device underflow, the end of the settling);
- the *ratio estimate* ``ratio`` (producer rate / device rate) is the
  loop's integrator: ``ratio += ki * e * dt``; it converges on the true
  ratio, and its noise falls with the loop's bandwidth;
- the resampling *factor* (input frames per output frame) is
  ``ratio + kp * e_lp + feedforward``: the proportional term, on the error
  low-passed over ``smooth_s`` (1 s) and clamped to ``max_correction_ppm``
  (2000 ppm), holds the queue at the reference; the feedforward (the
  reference's own slope) makes the queue follow the reference as it moves.
  The integrator takes the error clipped to ``linear_s`` (5 ms), only while
  the reference stands still.  An error beyond 2 x ``linear_s`` that no
  event explains (a producer's stall and the burst after it, a late block)
  is waited out for up to ``excursion_s`` (1 s) with the factor at the
  estimate alone: a queue that comes back was no jump, and nothing is
  corrected; one that stays away restarts the reference.  So a jump of the
  queue (what a step of a second-order loop's input would turn into an
  excursion of the estimate of ``wn`` x the step) is glided back at a
  bounded rate and leaves the estimate alone.

The loop has a natural frequency ``wn`` and damping 1 (no overshoot):
``kp = 2 * wn`` (at least ``kp_min``, 0.1/s), ``ki = wn ** 2``.  It opens wide (``wn`` = 0.3 rad/s: an
error of the first estimate falls 20-fold in 15 s) for 20 s, then narrows
to 0.02 rad/s over a minute, so that the steady-state estimate is precise:
with 1 ms of white jitter on every measurement the integrator's standard
deviation is then about 0.1 ppm (``tests/test_drift.py``).

Before it acts it *settles*: for ``settle_s`` (2.5 s) of playback it leaves
the factor at exactly 1 and fits a line to the queue; the line's slope is
the first estimate of the ratio.  (A producer on the device's own clock
thus plays bit for bit until the estimate means something, and a short
stream is never resampled on noise.)  A slope above ``early_ppm`` (3000 ppm)
known to 2.5 % (its standard error; after 1 s at least) engages at once: so
large a drift would otherwise fill the catch-up's tolerance during the
settling.

Ratios are clamped to ``1 +- max_ppm`` (5000 ppm: +-0.5 %).  Everything here
is plain arithmetic on floats, run in the producer's thread, never in the
audio callback.
"""

from __future__ import annotations

import math

__all__ = ["DriftController", "LineFit"]


class DriftController:
    """Estimate the producer/device rate ratio from the queue; say how to resample.

    Parameters
    ----------
    rate : float
        The device's sample rate (Hz).
    interval : float
        Audio time between loop updates (s, default 0.005).
    settle_s : float
        Playback observed before the loop acts (s, default 2.5).
    early_ppm : float
        A drift larger than this (ppm) may engage the loop before ``settle_s``.
    bandwidth : (float, float)
        Natural frequency of the loop at first and in the end (rad/s,
        default (0.3, 0.02)); it stays wide for ``wide_s`` (20 s) after the
        loop engages, then narrows over ``narrow_s`` (60 s).
    max_ppm : float
        Clamp of the ratio estimate around 1 (ppm, default 5000).
    max_correction_ppm : float
        Clamp of the proportional correction and the feedforward together
        (ppm, default 2000): the factor stays within ``max_ppm`` +
        ``max_correction_ppm`` of 1.
    slew : float
        The fastest the reference moves toward the setpoint (s per s,
        default 0.0015: 1.5 ms a second, a 0.15 % rate change, leaving the
        proportional term room within its clamp).
    smooth_s : float
        Low-pass time constant of the error in the proportional term (s).
    linear_s : float
        The integrator takes the error clipped to +-``linear_s`` (s, default
        0.005); an error beyond 2 x ``linear_s`` is taken for a jump.
    kp_min : float
        The least proportional gain (1/s, default 0.1: the loop is
        overdamped once narrow, and a small jump of the queue decays in 10 s).
    gather_s : float
        After a jump, and when the loop engages, the queue is averaged over
        this long (s, default 0.25) for the reference to start from.
    excursion_s : float
        How long a departure of the queue beyond 2 x ``linear_s`` that no
        :meth:`hold` announced may last and still be waited out (s, default 1).

    Call :meth:`observe` with every queue measurement; it returns the
    resampling factor (input frames per output frame; resample by its
    inverse).  :meth:`hold` after a jump of the queue the loop should not
    take for drift (an underrun, a catch-up, a device underflow); :meth:`reset`
    for a new producer.
    """

    def __init__(self, rate: float, interval: float = 0.005, settle_s: float = 2.5,
                 early_ppm: float = 3000.0, bandwidth: tuple[float, float] = (0.3, 0.02),
                 wide_s: float = 20.0, narrow_s: float = 60.0, max_ppm: float = 5000.0,
                 max_correction_ppm: float = 2000.0, slew: float = 0.0015,
                 smooth_s: float = 1.0, linear_s: float = 0.005, gather_s: float = 0.25,
                 kp_min: float = 0.1, excursion_s: float = 1.0):
        self.rate = float(rate)
        self.interval = float(interval)
        self.settle_s = float(settle_s)
        self.early = early_ppm * 1e-6
        self.wn_start, self.wn_end = (float(w) for w in bandwidth)
        self.wide_s, self.narrow_s = float(wide_s), float(narrow_s)
        self.max = max_ppm * 1e-6
        self.max_correction = max_correction_ppm * 1e-6
        self.slew = float(slew)
        self.smooth_s = float(smooth_s)
        self.linear = float(linear_s)
        self.jump = 2.0 * self.linear
        self.gather_s = float(gather_s)
        self.kp_min = float(kp_min)
        self.excursion_s = float(excursion_s)
        self.holds = 0            # jumps of the queue the loop restarted from (a counter)
        self.excursions = 0       # departures waited out (a counter)
        self.reset()

    def reset(self):
        """A new producer: settle again from a ratio of 1."""
        self.ratio = 1.0          # the estimate: producer rate / device rate
        self.factor = 1.0         # what to resample by (input / output frames)
        self.locked = False       # the loop acts (settling over)
        self.locked_s = 0.0       # audio time since it engaged (s)
        self.observed_s = 0.0     # audio time observed since the reset (s)
        self.updates = 0
        self.error = 0.0          # the last update's error against the reference (s)
        self.ref = None           # the queue the loop holds now (s); moves to the setpoint
        self._e_lp = 0.0
        self._away_s = 0.0        # how long the queue has been beyond a jump of the reference
        self._gather = self._gather_n = self._gather_s = 0.0
        self._acc = self._acc_n = self._acc_dt = 0.0
        self._fit_restart()

    def hold(self):
        """The queue jumped (an underrun, a catch-up, a device underflow):
        forget the measurements in progress; the reference restarts from the
        next measured queue and glides back to the setpoint (at ``slew``),
        with the integrator still, so that the jump is no drift."""
        self._acc = self._acc_n = self._acc_dt = 0.0
        if not self.locked:
            self._fit_restart()
        self.holds += 1
        self.ref = None
        self._e_lp = 0.0
        self._away_s = 0.0
        self._gather = self._gather_n = self._gather_s = 0.0

    @property
    def ppm(self) -> float:
        """The ratio estimate as parts per million off 1 (> 0: producer fast)."""
        return (self.ratio - 1.0) * 1e6

    def observe(self, queue: float, setpoint: float, seconds: float) -> float:
        """One queue measurement.

        Parameters
        ----------
        queue, setpoint : float
            The queue measured and the queue wanted (samples).
        seconds : float
            Audio written since the previous measurement (s of input).

        Returns the resampling factor (input frames per output frame).
        """
        self._acc += queue / self.rate
        self._acc_n += 1
        self._acc_dt += seconds
        if self._acc_dt < self.interval:
            return self.factor
        q, dt = self._acc / self._acc_n, self._acc_dt
        self._acc = self._acc_n = self._acc_dt = 0.0
        self.updates += 1
        self.observed_s += dt
        if not self.locked:
            self._settle(q)
            return self.factor
        self.locked_s += dt
        sp = setpoint / self.rate
        if self.ref is not None and abs(q - self.ref) > self.jump:
            if self._away_s == 0.0:
                self.excursions += 1
            self._away_s += dt
            if self._away_s <= self.excursion_s:
                self.factor = self.ratio        # wait: a queue that comes back was no jump
                return self.factor
            self.excursions -= 1
            self.hold()                         # it stayed: a jump, glide back from it
        self._away_s = 0.0
        if self.ref is None:
            # Where the queue stands now: the mean over gather_s, measured
            # with the estimate alone at work.
            self._gather += q
            self._gather_n += 1
            self._gather_s += dt
            if self._gather_s < self.gather_s:
                self.factor = self.ratio
                return self.factor
            self.ref = self._gather / self._gather_n
        step = min(max(sp - self.ref, -self.slew * dt), self.slew * dt)
        self.ref += step
        moving = step / dt                      # s per s: the feedforward
        e = self.error = q - self.ref
        wn = self._bandwidth()
        # Damping 1, and at least kp_min: a jump of the queue too small to be
        # taken for one decays within 1 / kp_min, before the integrator makes much of it.
        kp, ki = max(2.0 * wn, self.kp_min), wn * wn
        self._e_lp += (e - self._e_lp) * min(1.0, dt / self.smooth_s)
        # The integrator takes the error clipped (a stall's dip or a burst
        # moves the estimate by a bounded amount, never by the size of the
        # dip), and only while the reference stands: while it moves, the
        # queue may lag it, which is no drift.
        if step == 0.0:
            ec = min(max(e, -self.linear), self.linear)
            self.ratio = min(max(self.ratio + ki * ec * dt, 1.0 - self.max), 1.0 + self.max)
        p = min(max(kp * self._e_lp - moving, -self.max_correction), self.max_correction)
        self.factor = self.ratio + p
        return self.factor

    # ------------------------------------------------------------ internals
    def _bandwidth(self) -> float:
        # wn_start for wide_s, then an exponential narrowing to wn_end over narrow_s.
        t = self.locked_s - self.wide_s
        if t <= 0:
            return self.wn_start
        x = min(1.0, t / self.narrow_s) if self.narrow_s > 0 else 1.0
        return self.wn_start * (self.wn_end / self.wn_start) ** x

    def _fit_restart(self):
        self._fit = LineFit()
        self._fit_t0 = self.observed_s

    def _settle(self, q):
        f = self._fit
        t = self.observed_s - self._fit_t0
        f.add(t, q)
        if f.n < 8 or f.span < 0.5:
            return
        line = f.line()
        if line is None:
            return
        slope, at = line
        # The residuals are not white (the queue's sawtooth, a producer's
        # habits): their variance is taken as at least that of 1 ms of jitter.
        stderr = f.slope_stderr(min_var=1e-6)
        early = abs(slope) > self.early and f.span >= 1.0 and stderr < 0.025 * abs(slope)
        if early or (self.observed_s >= self.settle_s and f.span >= 1.0):
            self.locked = True
            self.ratio = min(max(1.0 + slope, 1.0 - self.max), 1.0 + self.max)
            self.factor = self.ratio
            self.ref = at(t)                       # the fitted line, now


class LineFit:
    """A least-squares line through points added one at a time (running sums,
    relative to the first point, so that large times and counts keep their
    precision)."""

    def __init__(self):
        self.n = 0
        self._x0 = self._y0 = 0.0
        self._s = [0.0] * 5       # sum x, sum x^2, sum y, sum x y, sum y^2
        self.span = 0.0           # x of the last point less x of the first

    def add(self, x: float, y: float):
        if not self.n:
            self._x0, self._y0 = x, y
        x, y = x - self._x0, y - self._y0
        s = self._s
        s[0] += x
        s[1] += x * x
        s[2] += y
        s[3] += x * y
        s[4] += y * y
        self.n += 1
        self.span = x

    def line(self):
        """(slope, f) with f(x) the fitted line's value at x; None with fewer
        than 2 distinct x."""
        n, (sx, sxx, sy, sxy, _) = self.n, self._s
        d = n * sxx - sx * sx
        if n < 2 or d <= 0:
            return None
        slope = (n * sxy - sx * sy) / d
        icpt = (sy - slope * sx) / n
        x0, y0 = self._x0, self._y0
        return slope, lambda x: y0 + icpt + slope * (x - x0)

    def slope_stderr(self, min_var: float = 0.0) -> float:
        """The slope's standard error, the residuals' variance taken as at least ``min_var``."""
        n, (sx, sxx, sy, sxy, syy) = self.n, self._s
        d = n * sxx - sx * sx
        slope = (n * sxy - sx * sy) / d
        icpt = (sy - slope * sx) / n
        var = max(min_var, (syy - icpt * sy - slope * sxy) / max(1.0, n - 2))
        return math.sqrt(var * n / d)
