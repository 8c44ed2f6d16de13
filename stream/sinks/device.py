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
- *Underrun*: when the ring runs dry the callback fades the last samples it
  has out over ``fade_ms``, plays silence, counts the event, and waits for
  the target again before it resumes, fading back in.  No
  sample is dropped by an underrun: it inserts silence.  PortAudio's own
  ``output_underflow`` flags are counted too.  The stream never aborts.
- *End*: ``close(drain=True)`` appends ``pad_s`` (0.25 s) of silence, since
  PortAudio 19.6 drops the last buffer of an ALSA stream when it stops, lets
  the ring play out, and stops the stream.

``sounddevice`` (and the PortAudio library) are imported only when a
``sounddevice`` sink opens or :func:`list_devices` is called.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from .base import Sink, SinkError, hz
from .ring import Ring

log = logging.getLogger("specstream")

__all__ = ["SoundDeviceSink", "list_devices"]


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



class SoundDeviceSink(Sink):
    """Plays through PortAudio (``sounddevice``), callback mode, ring-buffered.

    Parameters
    ----------
    device : int or str, optional
        PortAudio output device index or name substring; default: the
        system's default output.
    latency_ms : float
        The whole queue the sink adds (ms, default 50): the device's own
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

    def __init__(self, device=None, latency_ms: float | None = None,
                 blocksize: int | None = None, fade_ms: float = 5.0, pad_s: float = 0.25,
                 headroom_ms: float | None = None, device_latency_ms: float | None = None,
                 catch_up: bool = True, catch_up_window_s: float = 0.5,
                 catch_up_tolerance_ms: float = 5.0):
        super().__init__()
        if isinstance(device, str) and device.strip().lstrip("-").isdigit():
            device = int(device)
        self.device = device
        self.latency_ms = 50.0 if latency_ms is None else float(latency_ms)
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
        try:
            self.stream = sd.OutputStream(
                samplerate=rate, channels=ch, dtype="float32", device=self.device,
                blocksize=self.blocksize, latency=self.device_latency_ms / 1000.0,
                callback=self._callback, finished_callback=self._finished.set)
        except sd.PortAudioError as e:
            raise SinkError(f"audio output {name!r}: cannot open a {hz(rate)}, {ch}-channel "
                            f"stream ({e})") from None
        self.device_latency = float(self.stream.latency)
        fade = max(1, int(round(self.fade_ms * rate / 1000.0)))
        device_frames = int(np.ceil(self.device_latency * rate))
        # The queue the sink adds is latency_ms in all: the ring's target plus
        # the device's own buffer.  The ring holds at least half the device
        # buffer (a callback's request is at most that with PortAudio's ALSA
        # and PulseAudio hosts) and the fades.
        target = max(int(round(self.latency_ms * rate / 1000.0)) - device_frames,
                     2 * self.blocksize, device_frames // 2 + 2 * fade)
        head_ms = max(self.latency_ms, 500.0) if self.headroom_ms is None else self.headroom_ms
        capacity = target + max(int(round(head_ms * rate / 1000.0)), self.blocksize, 1)
        self.ring = Ring(ch, capacity, target, fade,
                          catch_up_window=max(1, int(round(self.catch_up_window_s * rate))),
                          catch_up_tolerance=int(round(self.catch_up_tolerance_ms * rate / 1000)),
                          catch_up=self.catch_up)
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

    # ----------------------------------------------------------- the callback
    def _callback(self, outdata, frames, time_info, status):
        # PortAudio's thread: no locks, no waits, no sample buffers allocated.
        ring = self.ring
        self._dac_delay = time_info.outputBufferDacTime - time_info.currentTime
        if ring.fill_output(outdata, status.output_underflow and ring.started,
                            status.output_overflow):
            raise self._stop_exc

    # ------------------------------------------------------------ producing
    def _write(self, frames):
        ring = self.ring
        off, n = 0, len(frames)
        while True:
            off += ring.put(frames[off:])
            if off >= n:
                break
            self._wait_for_space(min(n - off, ring.capacity // 2))
        if ring.trims != self._trims_logged:
            self._log_trims()

    def _log_trims(self):
        ring, rate = self.ring, self.sample_rate
        if not self._trims_logged:
            log.warning("audio output %r: %.0f ms of queued audio dropped (the oldest, "
                        "crossfaded) to hold the %.0f ms latency target; the queue had stayed "
                        "above it for %.1f s (a start-up backlog, a burst, or a producer clock "
                        "faster than the device's).  Later catch-ups are counted, not logged; "
                        "--no-catch-up keeps every sample",
                        self.device_name, 1000.0 * ring.trimmed / rate, self.latency_ms,
                        self.catch_up_window_s)
        self._trims_logged = ring.trims

    def _flush(self):
        self.ring.idle = True

    def queued_seconds(self) -> float | None:
        ring = self.ring
        if ring is None:
            return None
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
                pad = int(round(self.pad_s * self.sample_rate))
                ring.eos_pending = True
                if pad:
                    zeros = np.zeros((min(pad, 4096), self.channels), np.float32)
                    left = pad
                    while left:
                        k = min(left, len(zeros))
                        self._write(zeros[:k])
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
                    "catch_up": self.catch_up}
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
            "start_target": ring.target,
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
        return s

