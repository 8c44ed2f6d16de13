"""The ``sounddevice`` sink: the audio output, through PortAudio.

``sounddevice`` or ``sounddevice:DEVICE``
    The audio output (:class:`SoundDeviceSink`).  ``DEVICE`` is an index or
    a substring of a name, as ``specstream devices`` (:func:`list_devices`)
    lists them.

:class:`SoundDeviceSink` plays through a callback-mode
``sounddevice.OutputStream``.  :meth:`~stream.sinks.Sink.write` copies
samples into a preallocated ring buffer (:class:`~stream.sinks.ring.Ring`);
the PortAudio callback copies them out, and never blocks, takes a lock or
allocates a sample buffer.
``write`` waits only when the ring is full: backpressure to the producer.

- *Start*: :meth:`~stream.sinks.Sink.open` opens *and starts* the device
  stream, which plays silence until the ring holds its target
  (``latency_ms`` less the device's own buffer, see :class:`SoundDeviceSink`)
  (or the producer flushes or closes a stream shorter than that); then it plays.
  The device's clock runs before the first sample arrives, so the queue
  starts at the target and not at the target plus the time the device took
  to open (``stats['open_ms']``).
- *Latency target and catch-up*: the target is one the sink holds
  to, not only a start-up buffer.  A producer paced at real time can never
  drain audio that queued up beyond it (frames that arrived while the
  device opened, a burst after a network stall, a producer clock faster
  than the device's): that excess would stay for good.  So the callback
  watches the *standing queue*, the lowest fill after a callback, over
  windows of 0.5 s of normal playback.  When in a whole window it stayed
  above the target + 5 ms + one write or callback (whichever is larger;
  ``stats['catch_up_threshold']``), and the producer wrote at least 3 times
  and never found the ring full, the oldest audio is dropped down to the
  target: the ``fade_ms`` before and after the dropped span are crossfaded
  in the ring (no click), ``stats['latency_trimmed_samples']`` and
  ``stats['catch_ups']`` count it, and the first catch-up is logged
  (warning, once).  It never acts during normal playback (the standing
  queue is then at most the target plus a write), during a prebuffer or
  underrun, while the producer flushes or closes, or when the producer is
  faster than real time (``write`` meets a full ring: backpressure; a file
  sent with ``--rate max`` plays whole).  Consequence: a backlog larger than
  the ring (the target + 500 ms by default) waits upstream and is not
  caught up.  ``catch_up=False`` (``specstream play --no-catch-up``) keeps
  every sample, at the price of the extra latency.
- *Clock drift*: a producer never runs at exactly the device's rate.  At
  every write the sink measures the queue ahead of the block (what it
  holds, to PortAudio's ``outputBufferDacTime``: :class:`_QueueMeter`); a
  second-order loop (:class:`~stream.sinks.drift.DriftController`, every
  5 ms of audio, settling for 2.5 s first) estimates the producer/device
  rate ratio from it, and ``write`` resamples the block by it
  (:class:`~stream.sinks.resample.Resampler`, libsamplerate), so that the
  queue stays at its target: range +-0.5 %, steady-state noise of the
  estimate about 0.1 ppm.  Nothing of it runs in the callback, which only
  stores the read position and the DAC time of its buffer.  Catch-up is
  then the last resort for a standing backlog (a burst after a stall), and
  its log line says so.  ``drift=False`` plays without.
- *Latency target*: ``latency_ms="auto"`` (``specstream play``'s default;
  the class's is a pinned 50 ms) starts at 30 ms and
  lets a :class:`~stream.sinks.latency.LatencyTuner` move the ring's target:
  raised after an underrun, raised from the arrivals' measured jitter,
  lowered slowly when they are steady; and, when the device itself
  underruns (PortAudio's flags: a busy machine, the callback late) 3 times
  in 10 s, the device's own buffer is doubled (the stream is reopened, the
  ring plays on), up to ``AUTO_DEVICE_MAX_MS``.  A number pins the target.
  ``stats``: ``target_ms`` (the ring's target plus the device's part, what
  ``output_latency_ms`` is held to), ``target_start_ms``, ``target_max_ms``,
  ``target_changes`` and ``target_history`` ((stream s, old ms, new ms,
  why)), ``output_latency_ms`` (the mean, over the last second, of the
  time from a write to its first sample at the DAC), ``ratio_ppm`` (the
  estimate; > 0: the producer is fast), ``factor_ppm`` (what it resamples
  by now), ``drift_locked``, ``drift_holds`` (jumps of the queue the
  controller restarted from) and ``drift_excursions`` (departures it waited
  out), ``jitter_peak_ms`` / ``jitter_mean_ms``,
  ``device_clock_ppm`` / ``producer_clock_ppm`` (each clock against the
  system's, once 30 s are fitted), ``device_resizes``.
- *Underrun*: when the ring runs dry the callback fades the last samples it
  has out over ``fade_ms``, plays silence, counts the event, and waits for
  the target again before it resumes, fading back in.  No
  sample is dropped by an underrun: it inserts silence.  PortAudio's own
  ``output_underflow`` flags are counted too.  The stream never aborts.
- *End*: ``close(drain=True)`` appends ``pad_s`` (0.25 s) of silence, since
  PortAudio 19.6 drops the last buffer of an ALSA stream when it stops, lets
  the ring play out, and stops the stream.

``sounddevice`` (and the PortAudio library) are imported only when a
``sounddevice`` sink opens or :func:`list_devices` is called; ``samplerate``
when the resampler first converts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import numpy as np

from .base import Sink, SinkError, hz
from .drift import DriftController, LineFit
from .latency import LatencyTuner
from .resample import Resampler, import_samplerate
from .ring import Ring

log = logging.getLogger("specstream")

__all__ = ["SoundDeviceSink", "list_devices", "AUTO_START_MS", "AUTO_CEILING_MS",
           "AUTO_DEVICE_MAX_MS"]

#: ``latency_ms="auto"``: the latency the sink starts at (ms), and the most
#: the tuner raises it to (ms).
AUTO_START_MS = 30.0
AUTO_CEILING_MS = 250.0
#: ``latency="auto"``: this many device underflows within DEVICE_WINDOW_S seconds
#: of audio double the device's buffer, up to AUTO_DEVICE_MAX_MS.
DEVICE_FLAGS = 3
DEVICE_WINDOW_S = 10.0
AUTO_DEVICE_MAX_MS = 120.0


def _import_sounddevice():
    """``sounddevice``, imported on first use, or a :class:`SinkError` that
    says what to install."""
    try:
        import sounddevice
    except OSError as e:      # raised by sounddevice when libportaudio is missing
        raise SinkError(f"the PortAudio library is missing ({e}); install it with "
                        f"`apt-get install libportaudio2` (Debian/Ubuntu), or choose another "
                        f"sink: --sink wav:out.wav") from None
    except ImportError:
        raise SinkError("the Python package sounddevice is missing: pip install sounddevice "
                        "(or choose another sink: --sink wav:out.wav)") from None
    return sounddevice


def list_devices() -> list[dict]:
    """The audio outputs PortAudio sees.

    Returns a list of dicts: ``index``, ``name``, ``hostapi`` (name),
    ``channels`` (max output channels), ``default_samplerate`` (Hz),
    ``low_latency`` / ``high_latency`` (the device's default output latencies,
    seconds) and ``default`` (True for the default output).
    Raises :class:`SinkError` when PortAudio is missing.
    """
    sd = _import_sounddevice()
    try:
        default_out = sd.default.device[1]
        if default_out is None or default_out < 0:
            default_out = sd.query_devices(kind="output")["index"]
    except (sd.PortAudioError, ValueError):
        default_out = -1
    apis = sd.query_hostapis()
    out = []
    for d in sd.query_devices():
        if d["max_output_channels"] <= 0:
            continue
        out.append({"index": d["index"], "name": d["name"],
                    "hostapi": apis[d["hostapi"]]["name"],
                    "channels": d["max_output_channels"],
                    "default_samplerate": d["default_samplerate"],
                    "low_latency": d["default_low_output_latency"],
                    "high_latency": d["default_high_output_latency"],
                    "default": d["index"] == default_out})
    return out



def _clock_ppm(fit: LineFit, t: float, count: float, rate: float, last):
    """Add (time, frames) to ``fit``; its rate against ``rate`` in ppm once
    it spans 30 s, else ``last``."""
    fit.add(t, count)
    if fit.span < 30.0:
        return last
    line = fit.line()
    return last if line is None else (line[0] / rate - 1.0) * 1e6


class _QueueMeter:
    """The queue as the producer sees it, from the callback's clock.

    At a write, the queue ahead of the block's first sample is what was
    written (and is held in the resampler) less the position at the DAC
    now: the read position of the last callback plus the time since its
    first sample reached the DAC (PortAudio's ``outputBufferDacTime``,
    extrapolated at the sample rate; smoother than the ring's fill, which
    moves in callback-sized steps).  The device's part of it (the DAC delay
    plus half a callback: the device's buffer, constant while the stream
    runs) is the median of the largest values of the last three half-seconds
    (a late callback finds the device emptier); when it moves by more than
    2 ms (PulseAudio resizes a stream's buffer after an underrun) it is
    taken anew and the controller told (``jumped``).

    The lateness of a write is how much later it came than it could have:
    from the producer's timestamps, the transit time (producer's timestamp
    to this write) less the shortest of the last ``floor_s`` (5 s); without
    them, the queue's shortfall from its average (1 s).  With timestamps the
    queue handed to the drift controller is taken where the block would
    have been had it come with the shortest transit, so network and
    receiver jitter stay out of the ratio estimate.  Samples and seconds.

    Beside the controller, two clocks against the system's are fitted, for
    the figures (and the tests' truth): the device's, its read position
    against PortAudio's DAC times (per segment, shown once one spans 30 s),
    and the producer's, the frames it sent against its timestamps.
    """

    def __init__(self, rate: float, skip_s: float = 0.25, floor_s: int = 5):
        self.rate = rate
        self.skip_s = skip_s
        self.events = (-1, -1, -1, -1, -1)
        self.device = None         # samples between the ring and the DAC
        self.latency_ms = float("nan")      # mean queue over the last second of audio
        self.last = None                    # the queue at the last write (samples)
        self._sum = self._n = self._win = 0.0
        self._floors: deque = deque(maxlen=floor_s)   # shortest transit of each second
        self._block_min = float("inf")
        self._block_s = 0.0
        self.device_ppm = self.producer_ppm = None     # clocks against the system's
        self._producer = LineFit()
        self._device = LineFit()
        self._dev_blocks: deque = deque(maxlen=3)
        self.device_changed()
        self.restart()

    def new_stream(self):
        """Another producer may follow: its clock is fitted afresh."""
        self._producer = LineFit()
        self.producer_ppm = None
        self.restart()

    def restart(self):
        """The queue jumped (start, underrun, catch-up, backpressure, a
        device underflow): skip ``skip_s`` of audio, take the device's part
        anew, forget the queue's average."""
        self._skip = self.skip_s
        self._q_lp = None
        self.last = None
        self._device = LineFit()           # the read position jumped, or stood still
        self.jumped = False                # the device's part moved (see measure)

    def measure(self, now, clock, written, timestamp, seconds, frames, sent):
        """(queue for the controller, lateness s, device part), or None while
        skipping.  ``sent``: the producer's frames before this block.  Sets
        ``jumped`` when the device's part moved by more than 2 ms."""
        rate = self.rate
        read, dac, _, delay = clock
        if timestamp == timestamp:
            self.producer_ppm = _clock_ppm(self._producer, timestamp, sent, rate,
                                           self.producer_ppm)
        if not self._device.n or read != self._last_read:
            self._last_read = read
            self.device_ppm = _clock_ppm(self._device, dac, read, rate, self.device_ppm)
        q = written - (read + (now - dac) * rate)
        self.last = q
        self._sum += q
        self._n += 1
        self._win += seconds
        if self._win >= 1.0:
            self.latency_ms = 1000.0 * self._sum / self._n / rate
            self._sum = self._n = self._win = 0.0
        if self._skip > 0:
            self._skip -= seconds
            return None
        self._device_part(delay * rate + frames / 2, seconds)
        if timestamp == timestamp:
            late = self._lateness(time.time() - timestamp, seconds)
            return q + late * rate, late, self.device
        a = min(1.0, seconds / 1.0)
        self._q_lp = q if self._q_lp is None else self._q_lp + a * (q - self._q_lp)
        return q, (self._q_lp - q) / rate, self.device

    def _device_part(self, dev, seconds):
        # A late callback finds the device emptier (its DAC delay smaller), so
        # the device's part is the median of the largest values of the last
        # three half-seconds; a move of it by more than 2 ms is a jump.
        self._dev_max = max(self._dev_max, dev)
        self._dev_s += seconds
        if self.device is None:
            self.device = dev
        if self._dev_s < 0.5:
            return
        self._dev_blocks.append(self._dev_max)
        self._dev_max, self._dev_s = 0.0, 0.0
        part = sorted(self._dev_blocks)[len(self._dev_blocks) // 2]   # (np.median's first
        # call takes 15 ms: a stall of the writer)
        if len(self._dev_blocks) < 3:
            self.device = max(self.device, part) if self._dev_fresh else self.device
        elif abs(part - self.device) > 0.002 * self.rate:
            self.device, self.jumped = part, True
            self._device = LineFit()
        self._dev_fresh = False

    def device_changed(self):
        """The device's buffer was resized: take its part anew."""
        self._dev_blocks.clear()
        self._dev_max = self._dev_s = 0.0
        self.device, self._dev_fresh = None, True

    def _lateness(self, transit, seconds):
        self._block_min = min(self._block_min, transit)
        self._block_s += seconds
        if self._block_s >= 1.0:
            self._floors.append(self._block_min)
            self._block_min, self._block_s = float("inf"), 0.0
        floor = min(self._block_min, min(self._floors, default=float("inf")))
        return transit - floor


class SoundDeviceSink(Sink):
    """Plays through PortAudio (``sounddevice``), callback mode, ring-buffered.

    Parameters
    ----------
    device : int or str, optional
        PortAudio output device index or name substring; default: the
        system's default output.
    latency_ms : float or "auto"
        ``"auto"`` (``specstream play``'s default): start at
        ``AUTO_START_MS`` (30) and adapt (see the module docstring).  A
        number (default 50) pins it: the whole queue the sink adds (ms): the
        device's own
        buffer (``latency_ms / 2`` requested, see ``device_latency_ms``; the
        granted figure is ``stats['device_latency_ms']``) plus the ring's
        target, the rest.  The target is what is buffered before playback
        starts and after an underrun, and the standing queue that catch-up
        brings an excess back to; it is at least half the device buffer (a
        callback's request) plus the fades, so a very small ``latency_ms``
        is rounded up (``stats['target']`` says to what).
    blocksize : int, optional
        Samples per channel per callback; default 0: PortAudio chooses
        (lowest latency).
    fade_ms : float
        Fade-out before and fade-in after the silence of an underrun, and
        the crossfade of a catch-up (ms).
    pad_s : float
        Silence appended at ``close(drain=True)`` (s): PortAudio 19.6 drops
        the last buffer of an ALSA stream on stop, so this keeps the tail.
    headroom_ms : float, optional
        Ring space beyond ``latency_ms`` (ms) before ``write`` blocks;
        default ``max(latency_ms, 500)``: room for a start-up backlog (or a
        burst after a network stall) to enter the ring, where catch-up can
        drop it, instead of waiting in the transport's queue.
    device_latency_ms : float, optional
        Output latency asked of PortAudio (ms); default ``latency_ms / 2``.
        PortAudio may round it up; the figure it grants is in the stats.
    catch_up : bool
        Hold the queue to ``latency_ms`` (default True): when, over a
        ``catch_up_window_s`` of normal playback, the queue never fell below
        ``latency_ms`` + ``catch_up_tolerance_ms`` + one write or callback
        (whichever is larger), while the producer was never held back by a
        full ring, drop the oldest excess with a ``fade_ms`` crossfade (see
        the module docstring).  False keeps every sample.
    catch_up_window_s : float
        Observation window of catch-up (s, default 0.5).
    catch_up_tolerance_ms : float
        Standing queue beyond the target (and the granularity) left alone
        (ms, default 5).
    drift : bool
        Compensate clock drift by resampling (default True; needs the
        ``samplerate`` package, else a warning and none).
    converter : str
        libsamplerate converter for it (default ``sinc_medium``).

    ``stats``: ``underruns`` (= ``shortages`` + ``output_underflows``):
    ``shortages`` are the times the ring ran dry (the producer was late),
    ``output_underflows`` the callbacks PortAudio flagged late once audio
    had started (flags during the silence before the first sample are not
    counted); ``silence_samples`` inserted by underruns; ``fill`` /
    ``max_queue`` / ``capacity`` / ``target`` in samples per channel;
    ``queue_min``: the standing queue (lowest fill after a callback) of the
    last complete window of normal playback, samples, -1 before one (also
    observed with ``catch_up=False``);
    ``latency_trimmed_samples`` (``_ms``) and ``catch_ups``: audio dropped
    by catch-up and how often, ``first_trim_at`` the stream position
    (samples) of the first; ``catch_up_threshold``: the standing queue above
    which it acts, as of the last window (samples, -1 before one);
    ``played``: samples played (trimmed ones not counted); ``latency_ms``
    (the target) and ``device_latency_ms`` (``stream.latency``);
    ``dac_delay_ms`` (PortAudio's estimate, at the last callback, of the
    time until its first sample reaches the DAC); ``open_ms`` (:meth:`open`:
    loading PortAudio unless :meth:`prepare` did, opening and starting the
    device); ``waits`` (times ``write`` blocked on a full ring).
    """

    def __init__(self, device=None, latency_ms: float | str | None = None,
                 blocksize: int | None = None, fade_ms: float = 5.0, pad_s: float = 0.25,
                 headroom_ms: float | None = None, device_latency_ms: float | None = None,
                 catch_up: bool = True, catch_up_window_s: float = 0.5,
                 catch_up_tolerance_ms: float = 5.0, drift: bool = True,
                 converter: str = "sinc_medium"):
        super().__init__()
        if isinstance(device, str) and device.strip().lstrip("-").isdigit():
            device = int(device)
        self.device = device
        self.auto = isinstance(latency_ms, str) and latency_ms.strip().lower() == "auto"
        try:
            self.latency_ms = AUTO_START_MS if self.auto else \
                50.0 if latency_ms is None else float(latency_ms)
        except ValueError:
            raise SinkError(f"latency must be 'auto' or a number of ms, got {latency_ms!r}") \
                from None
        if not self.latency_ms > 0:
            raise SinkError(f"latency must be > 0 ms, got {latency_ms}")
        self.blocksize = 0 if blocksize is None else int(blocksize)
        if self.blocksize < 0:
            raise SinkError(f"blocksize must be >= 0 samples, got {blocksize}")
        self.fade_ms, self.pad_s = float(fade_ms), float(pad_s)
        self.headroom_ms = headroom_ms
        self.device_latency_ms = (self.latency_ms / 2 if device_latency_ms is None
                                  else float(device_latency_ms))
        self.catch_up = bool(catch_up)
        self.catch_up_window_s = float(catch_up_window_s)
        self.catch_up_tolerance_ms = float(catch_up_tolerance_ms)
        if not (self.catch_up_window_s > 0 and self.catch_up_tolerance_ms >= 0):
            raise SinkError(f"catch-up needs a window > 0 s and a tolerance >= 0 ms, got "
                            f"{catch_up_window_s} s and {catch_up_tolerance_ms} ms")
        self.drift = bool(drift)
        self.converter = converter
        self.uri = "sounddevice" + ("" if device is None else f":{device}")
        self.stream = None
        self.ring: Ring | None = None
        self.device_name = None
        self.device_latency = None
        self.open_s = None
        self.padding = 0
        self.waits = 0
        self.drain_timeout = False
        self._finished = threading.Event()
        self._stop_exc = None
        self._trims_logged = 0
        self._dac_delay = float("nan")   # s from a callback to its first sample at the DAC
        # The callback's clock, written by it, read by write() (a sequence
        # lock: [0] is odd while the callback writes): the ring's read
        # position before the callback, PortAudio's outputBufferDacTime for
        # its first sample, the frames it took, outputBufferDacTime - currentTime.
        self._clock = np.zeros(5)
        self.tuner: LatencyTuner | None = None
        self.controller: DriftController | None = None
        self.resampler: Resampler | None = None
        self._timestamp = float("nan")
        self._device_flags: deque = deque()   # audio times of recent device underflows
        self._start_total = None              # the whole latency target at first (samples)
        self.device_resizes = 0

    # ------------------------------------------------------------- opening
    def _device_name(self, sd):
        try:
            return sd.query_devices(self.device, "output")["name"]
        except (ValueError, sd.PortAudioError) as e:
            names = ", ".join(f"{d['index']}: {d['name']}" for d in list_devices())
            what = "no default audio output" if self.device is None \
                else f"no audio output {self.device!r}"
            raise SinkError(f"{what} ({e}); outputs: {names or 'none'}"
                            + ("" if names else "; write a file instead: --sink wav:out.wav")) \
                from None

    def _prepare(self):
        if self.device_name is None:
            self.device_name = self._device_name(_import_sounddevice())

    def _open(self):
        t0 = time.monotonic()
        self._prepare()
        sd = _import_sounddevice()
        rate, ch = self.sample_rate, self.channels
        name = self.device_name
        try:
            sd.check_output_settings(device=self.device, channels=ch, dtype="float32",
                                     samplerate=rate)
        except (sd.PortAudioError, ValueError) as e:
            msg = str(e)
            info = sd.query_devices(self.device, "output")
            if "sample rate" in msg.lower():
                raise SinkError(f"audio output {name!r} refuses {hz(rate)} ({msg}); its default "
                                f"rate is {hz(info['default_samplerate'])}: resample the "
                                f"stream, or choose another --device") from None
            if "channel" in msg.lower():
                raise SinkError(f"audio output {name!r} cannot play {ch} channels ({msg}); it "
                                f"has {info['max_output_channels']}") from None
            raise SinkError(f"audio output {name!r}: {hz(rate)}, {ch} channels, float32 "
                            f"refused ({msg})") from None
        self._stop_exc = sd.CallbackStop
        self.stream = self._new_stream(sd)
        fade = max(1, int(round(self.fade_ms * rate / 1000.0)))
        device_frames = int(np.ceil(self.device_latency * rate))
        # The queue the sink adds is latency_ms in all: the ring's target plus
        # the device's own buffer; the target is at least the floor (_floor).
        floor = self._floor(fade)
        target = max(int(round(self.latency_ms * rate / 1000.0)) - device_frames, floor)
        ceiling = int(round(AUTO_CEILING_MS * rate / 1000.0)) if self.auto else target
        head_ms = max(self.latency_ms, 500.0) if self.headroom_ms is None else self.headroom_ms
        capacity = max(target, ceiling) + max(int(round(head_ms * rate / 1000.0)),
                                              self.blocksize, 1)
        self.ring = Ring(ch, capacity, target, fade,
                         catch_up_window=max(1, int(round(self.catch_up_window_s * rate))),
                         catch_up_tolerance=int(round(self.catch_up_tolerance_ms * rate / 1000)),
                         catch_up=self.catch_up)
        self.tuner = LatencyTuner(rate, target, floor, ceiling, auto=self.auto)
        self.controller = DriftController(rate)
        if self.drift:
            try:
                import_samplerate()
            except SinkError as e:
                log.warning("audio output %r: no clock-drift compensation (%s); the latency "
                            "target is held by catch-up alone", name, e)
                self.drift = False
        self.resampler = Resampler(ch, self.converter) if self.drift else None
        self._meter = _QueueMeter(rate)
        # Start now, playing silence until the ring reaches the target: the
        # device's clock runs from here, so the audio that queues up while
        # the first frames arrive is the target, not the target plus however
        # long the device took to open and start.  What queued before (frames
        # that arrived while the device opened) catch-up drops.
        try:
            self.stream.start()
        except sd.PortAudioError as e:
            self.stream.close()
            self.stream = None
            raise SinkError(f"audio output {name!r}: cannot start the stream ({e})") from None
        self.open_s = time.monotonic() - t0

    def _new_stream(self, sd, latency_ms: float | None = None):
        """A callback stream on the device at ``latency_ms`` (default
        ``device_latency_ms``), not started; ``device_latency`` and the
        finished event are its own once it is made."""
        finished = threading.Event()
        try:
            stream = sd.OutputStream(
                samplerate=self.sample_rate, channels=self.channels, dtype="float32",
                device=self.device, blocksize=self.blocksize,
                latency=(latency_ms or self.device_latency_ms) / 1000.0,
                callback=self._callback, finished_callback=finished.set)
        except sd.PortAudioError as e:
            raise SinkError(f"audio output {self.device_name!r}: cannot open a "
                            f"{hz(self.sample_rate)}, {self.channels}-channel stream "
                            f"({e})") from None
        self._finished = finished
        self.device_latency = float(stream.latency)
        return stream

    def _floor(self, fade: int) -> int:
        # The ring holds at least half the device buffer (a callback's request
        # is at most that with PortAudio's ALSA and PulseAudio hosts) and the fades.
        device_frames = int(np.ceil(self.device_latency * self.sample_rate))
        return max(2 * self.blocksize, device_frames // 2 + 2 * fade)

    def _grow_device_buffer(self):
        """``latency="auto"``: the device itself underran (PortAudio's flags:
        the callback came late, a busy machine), which no ring target cures.
        Reopen the stream with twice the buffer; the ring plays on.  Where
        the device will not open at that size, the old one is kept and the
        buffer is not grown again."""
        ring, old_ms, asked = self.ring, 1000.0 * self.device_latency, self.device_latency_ms
        sd = _import_sounddevice()
        self.stream.stop()               # the callback reads the ring: one stream at a time
        self.stream.close()
        try:
            self.stream = self._new_stream(sd, min(AUTO_DEVICE_MAX_MS, 2.0 * asked))
        except SinkError as e:
            log.warning("%s; keeping the %.0f ms buffer", e, old_ms)
            self.stream = self._new_stream(sd, asked)
            self.device_latency_ms = AUTO_DEVICE_MAX_MS      # no more tries
        else:
            self.device_latency_ms = min(AUTO_DEVICE_MAX_MS, 2.0 * asked)
            self.tuner.record(old_ms, 1000.0 * self.device_latency, "device")
            self.tuner.raise_floor(self._floor(ring.fade), "device")
            self._meter.device_changed()
            ring.target = min(ring.capacity, max(1, int(round(self.tuner.target))))
            self.device_resizes += 1
            log.warning("audio output %r: the device underran %d times in %.0f s (a busy "
                        "machine: the callback came late); its buffer goes from %.0f to "
                        "%.0f ms", self.device_name, len(self._device_flags), DEVICE_WINDOW_S,
                        old_ms, 1000.0 * self.device_latency)
        self.stream.start()
        self._device_flags.clear()

    # ----------------------------------------------------------- the callback
    def _callback(self, outdata, frames, time_info, status):
        # PortAudio's thread: no locks, no waits, no sample buffers allocated.
        ring, clock = self.ring, self._clock
        read = ring.read
        dac = time_info.outputBufferDacTime
        self._dac_delay = dac - time_info.currentTime
        stop = ring.fill_output(outdata, status.output_underflow and ring.started,
                                status.output_overflow)
        clock[0] += 1.0                  # odd: being written (see _read_clock)
        clock[1] = read
        clock[2] = dac
        clock[3] = ring.read - read
        clock[4] = self._dac_delay
        clock[0] += 1.0
        if stop:
            raise self._stop_exc

    def _read_clock(self):
        """The latest callback's (read position, DAC time, frames taken, DAC
        delay), consistent, or None."""
        c = self._clock
        for _ in range(4):
            seq = c[0]
            if seq % 2 == 0:
                values = (c[1], c[2], c[3], c[4])
                if c[0] == seq and seq > 0:
                    return values
        return None

    # ------------------------------------------------------------ producing
    def write(self, block, timestamp: float | None = None) -> None:
        # The producer's timestamp, where there is one, takes the network's and
        # the receiver's jitter out of the drift estimate (see _QueueMeter).
        self._timestamp = float("nan") if timestamp is None else float(timestamp)
        super().write(block)

    write.__doc__ = Sink.write.__doc__

    def _write(self, frames):
        factor = self._measure(len(frames))
        if self.resampler is not None:
            frames = self.resampler.process(frames, 1.0 / factor)
        self._put(frames)

    def _put(self, frames):
        ring = self.ring
        off, n = 0, len(frames)
        while off < n:
            off += ring.put(frames[off:])
            if off >= n:
                break
            self._wait_for_space(min(n - off, ring.capacity // 2))
        if ring.trims != self._trims_logged:
            self._log_trims()

    def _measure(self, n: int) -> float:
        """Measure the queue as a block of ``n`` frames comes; run the
        latency tuner and the drift controller on it.  Returns the
        resampling factor (input frames per output frame)."""
        ring, meter, ctl, tuner = self.ring, self._meter, self.controller, self.tuner
        seconds = n / self.sample_rate
        clock = self._read_clock()
        events = (ring.shortages, ring.trims, ring.starts, ring.full, ring.device_underflows)
        if events != meter.events:
            if ring.shortages != meter.events[0] and meter.events[0] >= 0:
                tuner.underrun()
                ring.target = int(round(tuner.target))
            if ring.device_underflows != meter.events[4] and meter.events[4] >= 0:
                self._device_underflow()
            meter.events = events
            meter.restart()
            ctl.hold()
        playing = ring.playing and not ring.idle and not ring.eos_pending
        if clock is None or not playing or clock[2] <= 0:     # clock[2]: frames it took
            return ctl.factor
        held = self.resampler.held if self.resampler is not None else 0
        m = meter.measure(self.stream.time, clock, ring.written + held, self._timestamp,
                          seconds, ring.max_frames, self.samples)
        if m is None:
            return ctl.factor
        queue, late, device = m
        if meter.jumped:
            meter.jumped = False
            ctl.hold()
        if self._start_total is None:
            self._start_total = tuner.start + device     # the target as first measured
        tuner.lateness(late, seconds)
        tuner.advance(seconds)
        ring.target = min(ring.capacity, max(1, int(round(tuner.target))))
        return ctl.observe(queue, tuner.target + device, seconds)

    def _device_underflow(self):
        flags, now = self._device_flags, self.tuner.clock
        flags.append(now)
        while flags and flags[0] < now - DEVICE_WINDOW_S:
            flags.popleft()
        if (self.auto and len(flags) >= DEVICE_FLAGS
                and self.device_latency_ms < AUTO_DEVICE_MAX_MS):
            self._grow_device_buffer()

    def _log_trims(self):
        ring, rate = self.ring, self.sample_rate
        if not self._trims_logged:
            log.warning("audio output %r: %.0f ms of queued audio dropped (the oldest, "
                        "crossfaded) to hold the %.0f ms latency target; the queue had stayed "
                        "above it for %.1f s: a standing backlog (a start-up backlog, a burst "
                        "after a stall) that resampling would take too long to play off.  "
                        "Dropping is the last resort: clock drift is resampled away.  Later "
                        "catch-ups are counted, not logged; --no-catch-up keeps every sample",
                        self.device_name, 1000.0 * ring.trimmed / rate,
                        1000.0 * ring.target / rate, self.catch_up_window_s)
        self._trims_logged = ring.trims

    def _flush(self):
        self._drain_resampler()
        self.ring.idle = True
        # The next stream may come from another clock: estimate afresh.
        self.controller.reset()
        self._meter.new_stream()

    def _drain_resampler(self):
        if self.resampler is not None:
            self._put(self.resampler.drain())

    def queued_seconds(self) -> float | None:
        ring = self.ring
        if ring is None:
            return None
        q = self._meter.last
        if q is not None:                # measured at the last write (outputBufferDacTime)
            return q / self.sample_rate
        dac = self._dac_delay
        return ring.fill / self.sample_rate + (dac if dac == dac else self.device_latency or 0.0)

    def _wait_for_space(self, need: int):
        """Sleep until ``need`` frames are free.  Raises SinkError when the
        device stops taking samples."""
        ring, rate = self.ring, self.sample_rate
        self.waits += 1
        last_read, last_change = ring.read, time.monotonic()
        stall_s = 2.0 + 4 * ring.capacity / rate
        while ring.capacity - ring.fill < need:
            short = need - (ring.capacity - ring.fill)
            time.sleep(min(max(short / rate, 0.0005), 0.02))
            if ring.read != last_read:
                last_read, last_change = ring.read, time.monotonic()
            elif time.monotonic() - last_change > stall_s:
                raise SinkError(f"audio output {self.device_name!r} stopped taking samples "
                                f"(stream {'active' if self.stream.active else 'inactive'}, "
                                f"no progress for {stall_s:.1f} s)")

    def _close(self, drain):
        stream, ring = self.stream, self.ring
        if stream is None:
            return
        try:
            if drain and ring.written > 0:
                self._drain_resampler()
                pad = int(round(self.pad_s * self.sample_rate))
                ring.eos_pending = True
                if pad:
                    zeros = np.zeros((min(pad, 4096), self.channels), np.float32)
                    left = pad
                    while left:
                        k = min(left, len(zeros))
                        self._put(zeros[:k])
                        left -= k
                    self.padding = pad
                ring.eos = True          # after the last put: the callback reads eos first
                timeout = ring.fill / self.sample_rate + self.device_latency + 2.0
                if not self._finished.wait(timeout):
                    self.drain_timeout = True
                    stream.abort()
                else:
                    stream.stop()
            else:
                stream.abort()
        finally:
            stream.close()

    @property
    def stats(self):
        s = super().stats
        ring = self.ring
        if ring is None:
            return {**s, "device": self.device_name, "latency_ms": self.latency_ms,
                    "catch_up": self.catch_up, "auto_latency": self.auto, "drift": self.drift}
        rate = self.sample_rate
        s.update({
            "device": self.device_name,
            "underruns": ring.shortages + ring.device_underflows,
            "shortages": ring.shortages,
            "output_underflows": ring.device_underflows,
            "overflows": ring.device_overflows,
            "silence_samples": ring.silence,
            "played": ring.read - ring.trimmed,
            "padding": self.padding,
            "fill": ring.fill,
            "max_queue": ring.max_fill,
            "queue_min": ring.queue_min,
            "capacity": ring.capacity,
            "target": ring.target,
            "start_target": int(round(self.tuner.start)),
            "catch_up": self.catch_up,
            "catch_up_threshold": ring.threshold,
            "latency_trimmed_samples": ring.trimmed,
            "latency_trimmed_ms": 1000.0 * ring.trimmed / rate,
            "catch_ups": ring.trims,
            "first_trim_at": ring.first_trim_at,
            "prebuffers": ring.starts,
            "callbacks": ring.callbacks,
            "max_callback_samples": ring.max_frames,
            "max_write_samples": ring.max_put,
            "waits": self.waits,
            "latency_ms": self.latency_ms,
            "buffer_ms": 1000.0 * ring.fill / rate,
            "device_latency_ms": None if self.device_latency is None
            else 1000.0 * self.device_latency,
            "dac_delay_ms": None if self._dac_delay != self._dac_delay
            else 1000.0 * self._dac_delay,
            "open_ms": None if self.open_s is None else 1000.0 * self.open_s,
            "blocksize": self.blocksize,
            "drain_timeout": self.drain_timeout,
        })
        s.update(self._drift_stats())
        return s

    def _drift_stats(self) -> dict:
        """The latency target, the measured latency and the drift estimate."""
        rate, tuner, ctl, meter = self.sample_rate, self.tuner, self.controller, self._meter
        device = meter.device if meter.device is not None else \
            (self.device_latency or 0.0) * rate
        ms = 1000.0 / rate
        lat = meter.latency_ms
        return {
            "auto_latency": self.auto,
            "target_ms": ms * (tuner.target + device),
            "target_start_ms": ms * (tuner.start + device if self._start_total is None
                                     else self._start_total),
            "target_max_ms": ms * (tuner.highest + device),
            "ring_target_ms": ms * tuner.target,
            "target_changes": len(tuner.changes),
            "target_history": tuner.changes[-50:],
            "jitter_peak_ms": 1000.0 * tuner.jitter_peak,
            "jitter_mean_ms": 1000.0 * tuner.jitter_mean,
            "output_latency_ms": None if lat != lat else lat,
            "drift": self.drift,
            "drift_locked": ctl.locked,
            "ratio_ppm": ctl.ppm,
            "factor_ppm": (ctl.factor - 1.0) * 1e6,
            "drift_holds": ctl.holds,
            "drift_excursions": ctl.excursions,
            "resampling": self.resampler is not None and self.resampler.used,
            "device_resizes": self.device_resizes,
            "device_clock_ppm": meter.device_ppm,
            "producer_clock_ppm": meter.producer_ppm,
        }

