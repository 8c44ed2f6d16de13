"""Live subcommands: ``play``, ``send``, ``devices``, ``demo``.

``send`` puts frames on the wire as they are stored: complex files go as
complex64 bins, magnitude + phase files as float32 magnitude and phase *in
their stored units* (the header names the units, ``--magnitude``/
``--phase-unit``/``--db-ref``), magnitude-only files as magnitudes.  The
player decodes them with the same :class:`~stream.decode.Decoder` as
``reconstruct``, so both give the same samples.  ``send --analyze`` sends
complex64 bins computed on the fly.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SpecstreamError
from ..protocol import DEFAULT_ENDPOINT
from .common import (UsageError, add_file_args, add_mel_args, add_stft_args, encoding_from_args,
                     spec_from_args)

if TYPE_CHECKING:
    from ..transport import AudioBlock, StreamStarted

log = logging.getLogger("specstream")

__all__ = ["register"]


def register(sub):
    """Add play, send, devices and demo to the ``specstream`` subparsers."""
    _add_play(sub)
    _add_send(sub)
    p = sub.add_parser("devices", help="list audio output devices",
                       description="List the audio outputs PortAudio sees (for --device).")
    p.set_defaults(func=run_devices)
    _add_demo(sub)


def _endpoint_args(p, default_bind: bool, patterns):
    g = p.add_argument_group("transport")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--bind", metavar="ENDPOINT",
                   help="bind this endpoint (tcp://HOST:PORT, tcp://127.0.0.1:* for a free "
                        "port, or ipc://PATH)" + (f"; default {DEFAULT_ENDPOINT}"
                                                  if default_bind else ""))
    m.add_argument("--connect", metavar="ENDPOINT",
                   help="connect to this endpoint" + ("" if default_bind
                                                       else f"; default {DEFAULT_ENDPOINT}"))
    g.add_argument("--pattern", choices=patterns, default=patterns[0],
                   help=f"ZeroMQ pattern (default {patterns[0]}: no frame lost, backpressure; "
                        f"{patterns[1]}: broadcast, late joiners, frames may drop)")
    return g


def _security_args(p, sink: bool = False):
    g = p.add_argument_group("security (CURVE keys from 'specstream keygen'; docs/protocol.md)")
    g.add_argument("--curve-secret", metavar="FILE",
                   help="this side's key pair (NAME.key_secret): the stream is encrypted and "
                        "authenticated; give --allow or --curve-server with it")
    g.add_argument("--allow", metavar="DIR|FILE", nargs="+", action="extend",
                   help="be the CURVE server: admit only peers whose public keys (NAME.key "
                        "files, or directories of them) are listed; others never get a frame in")
    g.add_argument("--curve-server", metavar="FILE",
                   help="be a CURVE client of the peer with this public key (its NAME.key)")
    g.add_argument("--insecure", action="store_true",
                   help="allow a plain endpoint that other machines can reach (without it, "
                        "only 127.0.0.1, ::1, localhost, lo, ipc:// may go unencrypted)")
    if sink:
        g.add_argument("--sink-allow", metavar="DIR|FILE", nargs="+", action="extend",
                       help="zmq: sink as CURVE server (with --curve-secret): the public keys "
                            "of the programs that may take the audio")
        g.add_argument("--sink-curve-server", metavar="FILE",
                       help="zmq: sink as CURVE client (with --curve-secret): the public key "
                            "of the program it sends the audio to")
    return g


def _security(args) -> dict:
    """The frame socket's CURVE keywords, from the flags."""
    return dict(curve_secret=args.curve_secret, curve_server=args.curve_server,
                allow=args.allow, insecure=args.insecure)


def _endpoint(args, default_bind: bool) -> tuple[str, bool]:
    if args.bind:
        return args.bind, True
    if args.connect:
        return args.connect, False
    return DEFAULT_ENDPOINT, default_bind


class _Interrupted(KeyboardInterrupt):
    """A signal that stops a command at once; ``signum`` makes its exit status."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Stop:
    """SIGINT/SIGTERM set a flag; the loops look at it between messages, so
    that files are finalised and the sink is closed properly.  With
    ``raise_now`` (and at a second signal) they raise :class:`_Interrupted`."""

    def __init__(self, raise_now: bool = False):
        self.signal = None
        self.signum = None
        self.raise_now = raise_now      # senders: leave a blocking send at once
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.signal is not None or self.raise_now:   # a second Ctrl-C: stop at once
            self.signal = signal.Signals(signum).name
            raise _Interrupted(signum)
        self.signal = signal.Signals(signum).name
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def __bool__(self):
        return self.signal is not None


# ===================================================================== play
def _add_play(sub):
    p = sub.add_parser("play", help="receive frames over ZeroMQ and play (or write) them",
                       description="Receive STFT frames, reconstruct and play them live. "
                                   "Runs until end of stream (or forever with --keep-alive). "
                                   "Exit status 0; 130 on Ctrl-C (0 with --keep-alive, which "
                                   "only a signal ends).")
    _endpoint_args(p, True, ("pull", "sub"))
    o = p.add_argument_group("output")
    o.add_argument("--sink", default="sounddevice", metavar="URI",
                   help="sounddevice (default), wav:PATH, raw:- (stdout) or raw:PATH, null, "
                        "zmq:ENDPOINT")
    o.add_argument("--device", metavar="ID", help="audio device index or name (sounddevice)")
    o.add_argument("--latency", type=_latency, default="auto", metavar="auto|MS",
                   help="output latency the sink adds (sounddevice). auto (default): start "
                        "low (30 ms) and raise the target after underruns or from the "
                        "measured arrival jitter, lower it slowly while arrivals are steady; "
                        "MS pins it (half the device's buffer, half our queue). Clock drift "
                        "is resampled away; audio that queued up beyond the target for good "
                        "(a burst after a stall) is dropped, crossfaded, and counted")
    o.add_argument("--no-catch-up", dest="catch_up", action="store_false",
                   help="never drop queued audio to hold --latency (sounddevice): every "
                        "sample plays, even if the queue stays longer than asked")
    o.add_argument("--blocksize", type=int, metavar="N", help="audio callback size in samples")
    r = p.add_argument_group("receiving")
    r.add_argument("--keep-alive", action="store_true",
                   help="after end of stream wait for the next one (stop with Ctrl-C)")
    r.add_argument("--max-message-bytes", type=int, default=64 << 20, metavar="N",
                   help="reject larger messages (default 64 MiB)")
    r.add_argument("--rcvhwm", type=int, metavar="MESSAGES",
                   help="receive queue length before the sender is held back (ZeroMQ "
                        "default 1000; 0 = unlimited, see docs/protocol.md about ipc://)")
    r.add_argument("--max-conceal", type=float, default=2.0, metavar="SECONDS",
                   help="longest gap concealed (default 2 s); the rest is skipped")
    r.add_argument("--conceal", choices=("extrapolate", "zeros"), default="extrapolate",
                   help="fill lost frames by continuing the last ones (default: each bin's "
                        "magnitude held and its phase advanced, fading out after 20 ms) or "
                        "with silence")
    r.add_argument("--stream-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="flush a stream after this long without messages (default 10 s; "
                        "0 waits forever)")
    r.add_argument("--takeover", choices=("idle", "never", "always"), default="idle",
                   help="a header of another stream while one plays: idle (default) = it "
                        "waits until the playing stream ends or is silent for "
                        "--takeover-after; never = until it ends or times out; always = it "
                        "cuts in at once (anyone who reaches the endpoint can)")
    r.add_argument("--takeover-after", type=float, default=1.0, metavar="SECONDS",
                   help="silence after which a playing stream counts as gone (default 1 s)")
    r.add_argument("--max-stream-mb", type=float, default=256.0, metavar="MB",
                   help="memory one stream may take in the engine; a header asking for more "
                        "is refused (default 256)")
    r.add_argument("--stats", action="store_true", help="live statistics on stderr, every second")
    r.add_argument("--stats-file", metavar="F.jsonl",
                   help="write the statistics as one JSON line per second (time, queue_ms, "
                        "target_ms, latency_ms, ratio_ppm, underruns, concealed...: the "
                        "sink's queue, latency target, drift estimate); tools/plot_latency.py "
                        "draws them")
    r.add_argument("-q", "--quiet", action="store_true", help="no summary on exit")
    _security_args(p, sink=True)
    p.set_defaults(func=run_play)


def _latency(text: str):
    """``--latency``: 'auto' or a positive number of ms."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: use auto or a positive number of ms")
    return v


def _numbered(uri: str, n: int) -> str:
    """``wav:out.wav`` -> ``wav:out-N.wav``: the file of the player's Nth stream."""
    path = Path(uri.split(":", 1)[1])
    return f"wav:{path.with_name(f'{path.stem}-{n}{path.suffix}')}"


def _open_sink(args, uri: str | None = None):
    from ..sinks import open_sink
    device = args.device
    if device is not None and device.isdigit():
        device = int(device)
    # The sink's socket uses CURVE when its peer is named; its key pair is the player's.
    curve = args.sink_allow is not None or args.sink_curve_server is not None
    # "auto" is the audio device's; other sinks take no latency at all.
    target = uri or args.sink
    auto_elsewhere = args.latency == "auto" and not target.lower().startswith("sounddevice")
    return open_sink(target, device=device, latency_ms=None if auto_elsewhere else args.latency,
                     blocksize=args.blocksize,
                     catch_up=None if getattr(args, "catch_up", True) else False,
                     curve_secret=args.curve_secret if curve else None,
                     curve_server=args.sink_curve_server, allow=args.sink_allow,
                     insecure=args.insecure)


#: The sink counters the player sums over the sinks it opened.
_COUNTS = ("underruns", "shortages", "output_underflows", "latency_trimmed_samples")


class _Player:
    """Sends a receiver's audio to a sink, reopening it when a stream's format changes."""

    def __init__(self, args):
        self.args = args
        # Made now, opened at the first stream (its rate and channels): a bad
        # --sink fails at start, not when the first frames arrive.
        # The audio sink loads PortAudio and finds its device now, not when
        # the first frames are already queueing up behind the stream header.
        self._spare = _open_sink(args).prepare()
        self.sink = None
        self.format = None            # (sample_rate, channels) the sink was opened with
        self.skip = None              # stream id whose audio cannot go to this sink
        self.streams = 0
        self.sink_latency = deque(maxlen=50_000)
        self.output_latency = deque(maxlen=50_000)   # + what the sink still holds, estimated
        self.closed_counts = {}       # the _COUNTS of the sinks already closed
        self.samples = 0
        self.sample_rate = None
        self.skipped = 0              # streams no sink could hold
        self.last_stats = {}          # the stats of the last sink closed

    def start(self, ev: StreamStarted):
        """A stream starts: the sink it plays to, opened for its rate and channels.

        A sink cannot change its format while open: a stream of another format
        reopens the device, or goes to a file of its own beside the first
        (``out.wav`` -> ``out-2.wav``, numbered by stream).  A stream no sink
        can hold (a rate a sound file cannot store, more channels than the
        device has) is skipped with one log line; the player goes on."""
        spec = ev.header.spec
        fmt = (spec.sample_rate, spec.channels)
        self.streams += 1
        self.skip = None
        if self.sink is not None and fmt == self.format:
            return
        target = self.args.sink
        if self.sink is not None:
            if self.args.sink.startswith("wav:"):
                target = _numbered(self.args.sink, self.streams)
                log.warning("stream %d is %g Hz x %d ch, not %g Hz x %d ch: writing it to %s",
                            ev.stream_id, *fmt, *self.format, target)
            else:
                log.warning("stream %d changes the format to %g Hz x %d ch: reopening the "
                            "sink", ev.stream_id, *fmt)
            self.close(drain=True)
        try:
            sink = self._spare if self._spare is not None and target == self.args.sink \
                else _open_sink(self.args, target)
            self._spare = None
            sink.open(spec.sample_rate, spec.channels)
        except SpecstreamError as e:
            log.error("stream %d (%g Hz x %d ch) cannot play to %s: %s; its audio is skipped",
                      ev.stream_id, *fmt, target, e)
            self.skip = ev.stream_id
            self.skipped += 1
            return
        self.sink, self.format, self.sample_rate = sink, fmt, spec.sample_rate

    def write(self, ev: AudioBlock):
        if self.sink is None or ev.stream_id == self.skip or ev.samples.shape[-1] == 0:
            return
        self.sink.write(ev.samples, timestamp=None if math.isnan(ev.timestamp)
                        else ev.timestamp)
        self.samples += ev.samples.shape[-1]
        if not math.isnan(ev.timestamp):
            lat = time.time() - ev.timestamp
            self.sink_latency.append(lat)
            queued = self.sink.queued_seconds()
            if queued is not None:
                self.output_latency.append(lat + queued)

    def stream_ended(self):
        # The sink stays open for the next stream: let it play out what it
        # holds, so the silence until the next stream is a gap, not an underrun.
        if self.sink is not None:
            self.sink.flush()

    def total(self, key: str) -> int:
        """A sink counter summed over the sinks closed and the one open."""
        live = self.sink.stats.get(key, 0) if self.sink is not None else 0
        return self.closed_counts.get(key, 0) + int(live or 0)

    def underruns(self) -> int:
        return self.total("underruns")

    def trimmed(self) -> int:
        return self.total("latency_trimmed_samples")

    def close(self, drain: bool):
        if self.sink is not None:
            sink, self.sink = self.sink, None
            try:
                sink.close(drain=drain)
            finally:
                st = sink.stats
                for key in _COUNTS:
                    self.closed_counts[key] = self.closed_counts.get(key, 0) + int(st.get(key, 0))
                self.last_stats = st

    def sink_stats(self) -> dict:
        """The stats of the sink playing now, or of the last one closed."""
        return self.sink.stats if self.sink is not None else self.last_stats


def _percentiles_ms(values) -> str:
    if not values:
        return "n/a"
    a = np.fromiter(values, float) * 1e3
    return (f"p50 {np.percentile(a, 50):.2f} ms, p99 {np.percentile(a, 99):.2f} ms, "
            f"max {a.max():.2f} ms")


def run_play(args) -> int:
    endpoint, bind = _endpoint(args, default_bind=True)
    try:
        stats_file = open(args.stats_file, "w") if args.stats_file else None
    except OSError as e:
        raise UsageError(f"--stats-file {args.stats_file}: {e.strerror or e}") from None
    player = _Player(args)
    from ..transport import AudioBlock, FrameReceiver
    rx = FrameReceiver(endpoint, pattern=args.pattern, bind=bind,
                       max_message_bytes=args.max_message_bytes, max_conceal=args.max_conceal,
                       stream_timeout=args.stream_timeout or None, rcvhwm=args.rcvhwm,
                       takeover=args.takeover, takeover_after=args.takeover_after,
                       conceal=args.conceal,
                       max_stream_bytes=int(args.max_stream_mb * (1 << 20)),
                       **_security(args))
    t0 = time.monotonic()
    print(f"specstream play: {'listening on' if bind else 'connected to'} {rx.endpoint} "
          f"({args.pattern}), sink {args.sink}", file=sys.stderr, flush=True)
    interrupted = False
    stop = _Stop()
    try:
        with stop:
            _play_loop(rx, player, args, stop, stats_file, t0)
            interrupted = bool(stop)
            if interrupted:
                log.warning("%s: stopping", stop.signal)
    except KeyboardInterrupt as e:
        interrupted = True
        stop.signum = getattr(e, "signum", signal.SIGINT)
    finally:
        try:
            for ev in rx.finish("closed"):     # the samples still in the engine
                if isinstance(ev, AudioBlock):
                    player.write(ev)
            player.close(drain=not interrupted)
        finally:
            rx.close()
            if stats_file is not None:
                _stats_record(stats_file, rx, player, t0)
                stats_file.close()
    if not args.quiet:
        _play_summary(rx, player, time.monotonic() - t0, interrupted)
    # A signal is how --keep-alive ends (0); any other play it cuts short.
    return 128 + stop.signum if interrupted and not args.keep_alive else 0


def _play_loop(rx, player, args, stop, stats_file=None, t0=0.0):
    from ..transport import AudioBlock, StreamEnded, StreamStarted
    next_stats = time.monotonic() + 1.0
    while not stop:
        for ev in rx.poll(0.1):
            if isinstance(ev, AudioBlock):
                player.write(ev)
            elif isinstance(ev, StreamStarted):
                player.start(ev)
            elif isinstance(ev, StreamEnded):
                if ev.reason == "end" and not args.keep_alive:
                    return
                player.stream_ended()
        if (args.stats or stats_file is not None) and time.monotonic() >= next_stats:
            next_stats += 1.0
            if args.stats:
                _stats_line(rx, player)
            if stats_file is not None:
                _stats_record(stats_file, rx, player, t0)


def _stats_line(rx, player):
    extra = ""
    if player.sink is not None:
        st = player.sink.stats
        queued = st.get("buffer_ms")
        extra = f"; underruns {player.underruns()}"
        if queued is not None:
            rate = player.sample_rate
            low = st.get("queue_min", -1)
            lat = st.get("output_latency_ms")
            extra += (f", queue {queued:.0f} ms (standing "
                      + (f"{1e3 * low / rate:.0f}" if low >= 0 else "-")
                      + "), latency " + ("-" if lat is None else f"{lat:.0f}")
                      + f" ms (target {st['target_ms']:.0f}"
                      + (" auto" if st["auto_latency"] else "") + "), device "
                      + (f"{st['dac_delay_ms']:.0f} ms" if st.get("dac_delay_ms") is not None
                         else "-")
                      + ", drift " + (f"{st['ratio_ppm']:+.1f} ppm" if st["drift_locked"]
                                      else "settling" if st["drift"] else "off")
                      + f", trimmed {1e3 * player.trimmed() / rate:.0f} ms")
    print(f"[stats] {rx.stats.line()}{extra}", file=sys.stderr, flush=True)


#: The sink's figures a --stats-file line holds, beside time, underruns and concealed.
_RECORD_KEYS = {"queue_ms": "buffer_ms", "target_ms": "target_ms",
                "latency_ms": "output_latency_ms", "ratio_ppm": "ratio_ppm",
                "factor_ppm": "factor_ppm", "jitter_peak_ms": "jitter_peak_ms",
                "jitter_mean_ms": "jitter_mean_ms", "dac_delay_ms": "dac_delay_ms",
                "drift_locked": "drift_locked", "catch_ups": "catch_ups",
                "drift_holds": "drift_holds", "drift_excursions": "drift_excursions",
                "device_clock_ppm": "device_clock_ppm",
                "producer_clock_ppm": "producer_clock_ppm"}


def _stats_record(f, rx, player, t0):
    """One --stats-file line: the receiver's counters and the sink's figures now."""
    s = rx.stats
    st = player.sink.stats if player.sink is not None else {}
    rec = {"time": round(time.monotonic() - t0, 3), "frames_in": s.frames_in,
           "concealed": s.concealed, "dropped": s.dropped, "underruns": player.underruns(),
           "shortages": st.get("shortages"), "device_underflows": st.get("output_underflows"),
           "trimmed_samples": player.trimmed()}
    for key, name in _RECORD_KEYS.items():
        v = st.get(name)
        rec[key] = round(v, 3) if isinstance(v, float) else v
    f.write(json.dumps(rec) + "\n")
    f.flush()


def _play_summary(rx, player, seconds, interrupted):
    s = rx.stats
    sr = player.sample_rate
    dur = f"{player.samples / sr:.2f} s of audio" if sr else "no audio"
    lines = [
        f"specstream play: {'interrupted; ' if interrupted else ''}{player.streams} stream(s), "
        f"{dur} to {player.args.sink} in {seconds:.1f} s",
        f"  frames: {s.frames_in} in, {s.frames_played} played, {s.dropped} dropped "
        f"({s.dropped_late} late, {s.dropped_no_header} before a header, {s.dropped_stale} "
        f"stale, {s.dropped_queued} beyond a waiting stream's queue), {s.concealed} "
        f"concealed, {s.lost} lost",
        f"  messages: {s.messages}, {s.malformed} malformed"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(s.rejects.items()))})"
           if s.rejects else "") + f"; {s.nonfinite} NaN/Inf values zeroed",
        f"  streams: {s.refused_headers} header(s) of other streams kept waiting "
        f"(takeover {rx.takeover}), {player.skipped} stream(s) no sink could hold",
        f"  underruns: {player.underruns()}" + (
            f" ({player.total('shortages')} the queue ran dry, "
            f"{player.total('output_underflows')} flagged late by the device)"
            if player.underruns() else ""),
        *([f"  peers refused (CURVE key not allowed): {rx.security.refused}"]
          if rx.security.role == "server" else []),
        f"  latency producer->engine: {_percentiles_ms(s.latencies)}",
        f"  latency producer->sink buffer: {_percentiles_ms(player.sink_latency)}",
    ]
    if player.output_latency:
        lines.append(f"  latency producer->output (estimated: + the sink's queue and the "
                     f"device's): {_percentiles_ms(player.output_latency)}")
        trimmed = player.trimmed()
        if trimmed and sr:
            lines.append(f"  latency catch-up: {1e3 * trimmed / sr:.0f} ms of queued audio "
                         f"dropped ({trimmed} samples)")
    lines += _drift_summary(player.sink_stats())
    print("\n".join(lines), file=sys.stderr, flush=True)


_REASONS = {"underrun": "raised after underruns", "jitter": "raised from jitter",
            "steady": "lowered, arrivals steady", "device": "device buffer doubled"}


def _drift_summary(st: dict) -> list[str]:
    """The summary's lines on the latency target and the clock drift (audio device)."""
    if "target_ms" not in st:
        return []
    changes = st["target_history"]
    why = {}
    for *_, reason in changes:
        why[reason] = why.get(reason, 0) + 1
    how = ", ".join(f"{n} {_REASONS.get(k, k)}" for k, n in sorted(why.items()))
    lines = [f"  latency target: {'auto' if st['auto_latency'] else 'pinned'}, "
             f"{st['target_start_ms']:.0f} ms at start, settled at {st['target_ms']:.0f} ms "
             f"(highest {st['target_max_ms']:.0f} ms; {st['target_changes']} change(s)"
             + (f": {how}" if how else "") + ")"]
    lat = st.get("output_latency_ms")
    if lat is not None:
        lines.append(f"  output latency (to the DAC, last second): {lat:.1f} ms; arrival "
                     f"jitter peak {st['jitter_peak_ms']:.1f} ms, mean "
                     f"{st['jitter_mean_ms']:.2f} ms")
    if not st["drift"]:
        lines.append("  clock drift: not compensated (pip install samplerate)")
    elif st["drift_locked"]:
        clocks = [f"{who} {st[key]:+.1f} ppm" for who, key in
                  (("producer", "producer_clock_ppm"), ("device", "device_clock_ppm"))
                  if st.get(key) is not None]
        lines.append(f"  clock drift: producer {st['ratio_ppm']:+.1f} ppm against the device, "
                     f"resampled" + ("" if st["resampling"] else " (not needed)")
                     + (f" (against the system clock: {', '.join(clocks)})" if clocks else ""))
    else:
        lines.append("  clock drift: still settling (streams shorter than a few seconds are "
                     "not resampled)")
    return lines


# ===================================================================== send
def _add_send(sub):
    p = sub.add_parser("send", help="send spectrogram files (or audio analysed live) over ZeroMQ",
                       description="Send frames to 'specstream play', paced at real time "
                                   "or as fast as the player takes them. Frames go in their "
                                   "stored units; the header names them. Exit status 1 when "
                                   "frames did not reach a player (none there, a send that "
                                   "waited longer than --send-timeout, frames still queued "
                                   "after --linger), 130 on Ctrl-C.")
    add_file_args(p)
    for a in p._actions:          # MAG is optional with --analyze
        if a.dest == "mag":
            a.nargs, a.required, a.default = "?", False, None
    p.add_argument("--analyze", metavar="AUDIO",
                   help="analyse this audio file into frames on the fly and send them "
                        "(complex64; --n-fft/--hop-length/--window... set the STFT)")
    _endpoint_args(p, False, ("push", "pub"))
    s = p.add_argument_group("sending")
    s.add_argument("--rate", default="realtime", metavar="realtime|max|FACTOR",
                   help="pace at real time (default), as fast as possible, or FACTOR x real time")
    s.add_argument("--frames-per-message", type=int, metavar="N",
                   help="frames per message (default 1 when paced, 256 with --rate max)")
    s.add_argument("--stream-id", type=int, metavar="ID", help="u32 stream id (default random)")
    s.add_argument("--header-every", type=int, default=256, metavar="FRAMES",
                   help="re-send the header after this many frames (and every second)")
    for flag, default, what in (   # how long send waits for the player, in seconds
            ("--wait", 10, "wait this long for a player to connect before sending, else exit "
                           "1 (0 sends at once and lets frames queue)"),
            ("--send-timeout", 30, "exit 1 when the player takes nothing for this long"),
            ("--linger", 30, "at the end, wait this long for queued frames to leave; frames "
                             "still queued then are counted, and the exit status is 1")):
        s.add_argument(flag, type=float, default=float(default), metavar="SECONDS",
                       help=f"{what} (default {default})")
    s.add_argument("-q", "--quiet", action="store_true", help="no summary")
    _security_args(p)
    s.add_argument("--auto", action="store_true",
                   help="infer the STFT parameters with 'specstream probe' and refuse when it "
                        "cannot tell (without --hop-length this is the default); flags given win")
    add_stft_args(p)
    add_mel_args(p, inverse=False)
    p.set_defaults(func=run_send)


def _parse_rate(text: str) -> float:
    """Speed relative to real time: 1.0, inf for 'max', or a factor."""
    if text == "realtime":
        return 1.0
    if text == "max":
        return math.inf
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0:
        raise UsageError(f"--rate {text!r}: use realtime, max or a positive factor")
    return v


def run_send(args) -> int:
    factor = _parse_rate(args.rate)
    fpm = args.frames_per_message or (256 if math.isinf(factor) else 1)
    if fpm < 1:
        raise UsageError("--frames-per-message must be at least 1")
    if args.wait < 0 or not args.send_timeout > 0:
        raise UsageError("--wait must be >= 0 and --send-timeout > 0 seconds")
    if args.analyze:
        if args.mag is not None:
            raise UsageError("give either spectrogram files or --analyze AUDIO, not both")
        if args.mel:
            # Whisper's and librosa's dB floors are relative to the whole file's peak
            raise UsageError("--analyze sends the audio's STFT frames, not mel bands: make "
                             "the mel file first (its recipe's own code) and send it with --mel")
        return _send_analyzed(args, factor, fpm)
    if args.mag is None:
        raise UsageError("give a spectrogram file MAG [PHASE], or --analyze AUDIO")
    # The parameters not given are inferred, the ones given checked, and the
    # length is the signal's, as reconstruct finds them (both say the same).
    from .infer import frames_from_args, say_notes
    from .reconstruct import file_end
    source, spec, enc, notes, mel, length = frames_from_args(args, "send")
    if enc.eps or enc.nyquist != "stored":
        # the stream header names the units, not these (protocol version 1)
        raise UsageError("frames stored as log(|S| + eps) or without their Nyquist bin cannot "
                         "be sent as they are; reconstruct the file instead")
    if length is None:
        length = (args.length if args.length is not None else
                  file_end(source, spec, enc, bool(args.preset))[0])
    say_notes(args, notes)
    if args.sample_rate is None and not args.preset and mel is None:
        log.warning("sample rate not given: assuming %g Hz (set --sample-rate)", spec.sample_rate)
    return _send(args, spec, enc, length, fpm, factor, _file_blocks(source, fpm), mel)


def _file_blocks(source, fpm):
    """``(first, second)`` blocks of ``fpm`` frames from the (memory-mapped) files,
    read a few messages' worth at a time."""
    for first, second in source.blocks(max(fpm, 256)):
        for i in range(0, first.shape[-2], fpm):
            yield (_readonly(first[..., i:i + fpm, :]),
                   None if second is None else _readonly(second[..., i:i + fpm, :]))


def _readonly(a: np.ndarray) -> np.ndarray:
    # Blocks from FrameSource are fresh copies nobody else holds: marking them
    # read-only lets FrameSender hand them to ZeroMQ without another copy.
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def _sender(args, spec, enc, length, fpm, factor, mel=None):
    endpoint, bind = _endpoint(args, default_bind=False)
    # ZeroMQ's high-water mark counts messages, not bytes: with 256-frame
    # messages (1 MB at n_fft 1024) its default of 1000 would queue a gigabyte
    # before holding the sender back.  Keep about 8 MB in flight.
    msg_bytes = fpm * spec.channels * (spec.n_bins if mel is None else mel.n_mels) * 8
    sndhwm = int(min(1000, max(2, (8 << 20) // msg_bytes)))
    from ..transport import FrameSender
    tx = FrameSender(endpoint, spec=spec, encoding=enc, length=length, pattern=args.pattern,
                     bind=bind, stream_id=args.stream_id, header_every=args.header_every,
                     linger=args.linger, sndhwm=sndhwm, pace=factor,
                     send_timeout=args.send_timeout, mel=mel, **_security(args))
    if not args.quiet:
        print(f"specstream send: {'bound to' if bind else 'sending to'} {tx.endpoint} "
              f"({args.pattern}), stream {tx.stream_id}", file=sys.stderr, flush=True)
    return tx


def _send(args, spec, enc, length, fpm, factor, blocks, mel=None) -> int:
    """Send ``blocks`` ((first, second) pairs) as one stream (of mel bands
    by ``mel``'s recipe, where given); the exit status.

    Raises :class:`~stream.errors.SendError` (exit status 1) when no player
    came within ``--wait``, a send waited ``--send-timeout``, or frames were
    still queued after ``--linger``.
    """
    from ..errors import SendError
    tx = _sender(args, spec, enc, length, fpm, factor, mel)
    t0 = time.monotonic()
    try:
        with _Stop(raise_now=True):
            if args.wait:
                tx.wait_for_receiver(args.wait)
            for first, second in blocks:
                tx.send(first, second)
            tx.end()
            tx.close()
    finally:
        tx.abort()            # interrupted or failed: drop what is queued (counted); else a no-op
    _send_summary(args, tx, spec, time.monotonic() - t0)
    st = tx.stats
    if st.frames_dropped:
        raise SendError(f"{st.frames_dropped} of {st.frames_queued} frames never left: no "
                        f"receiver at {tx.endpoint} took them within --linger {args.linger:g} s")
    return 0


def _send_analyzed(args, factor, fpm) -> int:
    import soundfile as sf
    from ..engine import Analyzer

    try:
        f = sf.SoundFile(args.analyze)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise UsageError(f"{args.analyze}: cannot read it as audio ({e})") from None
    with f:
        if args.sample_rate is not None and args.sample_rate != f.samplerate:
            raise UsageError(f"{args.analyze} is {f.samplerate} Hz; drop --sample-rate or "
                             "resample the file")
        if args.channels is not None and args.channels != f.channels:
            raise UsageError(f"{args.analyze} has {f.channels} channel(s), not {args.channels}")
        args.sample_rate, args.channels = float(f.samplerate), f.channels
        spec = spec_from_args(args)
        length = args.length if args.length is not None else f.frames
        return _send(args, spec, encoding_from_args(args), length, fpm, factor,
                     _analyzed_blocks(f, Analyzer(spec), spec, fpm))


def _analyzed_blocks(f, analyzer, spec, fpm):
    """``(frames, None)`` blocks of ``fpm`` frames, analysed from the audio file ``f``."""
    step = spec.hop_length * max(fpm, 16)
    while True:
        x = f.read(step, dtype="float32", always_2d=True)
        frames = analyzer.push(x.T) if len(x) else analyzer.flush()
        for i in range(0, frames.shape[-2], fpm):
            yield _readonly(frames[..., i:i + fpm, :]), None
        if not len(x):
            return


def _send_summary(args, tx, spec, seconds):
    if args.quiet:
        return
    st = tx.stats
    sent = st.frames_sent
    audio = sent * spec.hop_length / spec.sample_rate
    dropped = f", {st.frames_dropped} dropped" if st.frames_dropped else ""
    print(f"specstream send: {sent} frames ({audio:.2f} s of audio) sent{dropped} in "
          f"{tx.messages} messages, {seconds:.2f} s, {sent / max(seconds, 1e-9):.0f} frames/s",
          file=sys.stderr, flush=True)


# ================================================================== devices
def _list_outputs() -> list[dict]:
    """The audio outputs (stream.sinks.list_devices), or a SinkError that says why not."""
    from ..sinks import list_devices
    return list_devices()


def run_devices(args) -> int:
    outs = _list_outputs()
    if not outs:
        print("no audio output devices; use --sink wav:PATH (or null) with play",
              file=sys.stderr)
        return 0
    print(f"{'':2}{'ID':>3}  {'NAME':40} {'API':12} {'CH':>3} {'RATE':>7} {'LATENCY':>9}")
    for d in outs:
        mark = "*" if d["default"] else " "
        print(f"{mark:2}{d['index']:>3}  {d['name'][:40]:40} {d['hostapi'][:12]:12} "
              f"{d['channels']:>3} {d['default_samplerate']:>7.0f} "
              f"{1000 * d['low_latency']:>6.1f} ms")
    print("(* default output; play --device ID picks another)")
    return 0


def _output_device_problem() -> str | None:
    """None when a default output device exists, else why there is none."""
    try:
        outs = _list_outputs()
    except SpecstreamError as e:
        return str(e)
    if not any(d["default"] for d in outs):
        return "PortAudio sees no default output device"
    return None


# ===================================================================== demo
def _add_demo(sub):
    p = sub.add_parser("demo", help="live demo: a synthesised clip analysed, sent over ZeroMQ "
                                    "and played by a second process",
                       description="Synthesise a few seconds of music, analyse it into STFT "
                                   "frames in one process ('send --analyze'), send them over "
                                   "ZeroMQ, and reconstruct and play them in another "
                                   "('play'). With no audio device, writes a WAV instead.")
    p.add_argument("--sink", metavar="URI",
                   help="where the player sends audio (default sounddevice, or "
                        "wav:specstream-demo.wav when there is no audio device)")
    p.add_argument("-o", "--output", default="specstream-demo.wav", metavar="WAV",
                   help="the WAV written when there is no audio device")
    p.add_argument("--seconds", type=float, default=6.0, help="clip length (default 6)")
    p.add_argument("--endpoint", metavar="ENDPOINT",
                   help="where the two processes meet (default a private ipc:// socket)")
    p.add_argument("--n-fft", type=int, default=1024)
    p.add_argument("--hop-length", type=int, default=256)
    p.add_argument("--rate", default="realtime", metavar="realtime|max|FACTOR")
    p.add_argument("--stats", action="store_true", help="the player's live statistics")
    p.set_defaults(func=run_demo)


def synth_clip(seconds: float = 6.0, sample_rate: int = 48000) -> np.ndarray:
    """A few seconds of music: plucked arpeggios over I-V-vi-IV in C, with a bass.

    Returns mono float32 in [-1, 1], ending in 0.25 s of silence (PortAudio
    drops the last buffer of an ALSA stream; the pad keeps the tail audible).
    """
    sr = sample_rate
    n = int(seconds * sr)
    out = np.zeros(n + sr // 4, np.float64)
    chords = [(60, 64, 67), (55, 59, 62), (57, 60, 64), (53, 57, 60)]   # C G Am F
    beat = 0.25                       # seconds per arpeggio note
    t_note = np.arange(int(1.2 * sr)) / sr
    for k in range(int(seconds / beat)):
        chord = chords[(k // 8) % 4]
        pitch = chord[k % 3] + (12 if (k // 3) % 2 else 0)
        _pluck(out, int(k * beat * sr), pitch, t_note, 0.22)
        if k % 8 == 0:                               # bass on each chord change
            _pluck(out, int(k * beat * sr), chord[0] - 24, np.arange(int(2 * beat * 8 * sr))
                   / sr, 0.3, decay=1.2)
    out[n:] = 0.0
    fade = int(0.02 * sr)
    out[n - fade:n] *= np.linspace(1, 0, fade)
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


def _pluck(out, start, midi, t, amp, decay=3.0):
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    tone = np.zeros_like(t)
    for h in range(1, 7):                        # bright attack, mellow body
        if f0 * h < 18000:
            tone += np.sin(2 * np.pi * f0 * h * t) * np.exp(-t * decay * h ** 0.7) / h ** 1.3
    tone *= np.minimum(t / 0.004, 1.0)          # 4 ms attack: no click
    end = min(len(out), start + len(t))
    out[start:end] += amp * tone[:end - start]


def run_demo(args) -> int:
    sink = args.sink
    if sink is None:
        problem = _output_device_problem()
        if problem:
            print(f"specstream demo: no audio output ({problem}); writing {args.output} "
                  "instead", file=sys.stderr, flush=True)
            sink = f"wav:{args.output}"
        else:
            sink = "sounddevice"
    with tempfile.TemporaryDirectory(prefix="specstream-demo-") as tmp:
        import soundfile as sf
        clip = os.path.join(tmp, "clip.wav")
        sf.write(clip, synth_clip(args.seconds), 48000, subtype="FLOAT")
        endpoint = args.endpoint or (f"ipc://{tmp}/demo.sock" if os.name == "posix"
                                     else "tcp://127.0.0.1:5556")
        py = [sys.executable, "-m", "stream"]
        play_cmd = py + ["play", "--bind", endpoint, "--sink", sink] + \
            (["--stats"] if args.stats else [])
        send_cmd = py + ["send", "--analyze", clip, "--connect", endpoint, "--n-fft",
                         str(args.n_fft), "--hop-length", str(args.hop_length),
                         "--rate", args.rate]
        print(f"specstream demo: {args.seconds:g} s clip at 48 kHz, n_fft {args.n_fft}, hop "
              f"{args.hop_length}, over {endpoint}", file=sys.stderr, flush=True)
        return _run_pair(play_cmd, send_cmd, timeout=args.seconds * 3 + 60)


def _run_pair(play_cmd, send_cmd, timeout: float) -> int:
    """Start the player, wait until it listens, run the sender, wait for both."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[2])]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    player = subprocess.Popen(play_cmd, stderr=subprocess.PIPE, text=True, env=env)
    ready = threading.Event()

    def relay():
        for line in player.stderr:
            sys.stderr.write(line)
            if "listening on" in line:
                ready.set()
        ready.set()

    threading.Thread(target=relay, daemon=True).start()
    sender = None
    try:
        if not ready.wait(30) or player.poll() is not None:
            print("specstream demo: the player did not start", file=sys.stderr)
            return 2
        sender = subprocess.Popen(send_cmd, env=env)
        rc_send = sender.wait(timeout=timeout)
        rc_play = player.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print("specstream demo: timed out", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        for proc in (sender, player):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return rc_send or rc_play
