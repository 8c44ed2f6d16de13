#!/usr/bin/env python
"""Latency and throughput of frames -> ZeroMQ -> decode -> engine -> sink.

Usage::

    python tools/bench_latency.py [--seconds 5] [--frames 100000] [--sink null]
    python tools/bench_latency.py --pulse [--latency 20]   # the audio device sink, no sound card

A producer process (spawned, so that it does not share our GIL) sends STFT
frames with ``FrameSender``; this process receives them with
``FrameReceiver`` (the decoder and engine ``specstream play`` uses) and writes
the samples to a sink.  Both sides stamp ``time.time()`` on the same machine,
so the latencies are:

* send -> engine: from ``FrameSender.send`` of a frame to its hop of samples
  leaving the engine (wire + parse + decode + inverse FFT + overlap-add);
* send -> sink: the same plus ``sink.write`` (into the sink's buffer).

* send -> output (``--sink sounddevice``): send -> sink plus what the sink
  still holds and the device's own delay at that moment (its queue over the
  sample rate plus PortAudio's DAC delay): when the sample is heard,
  estimated.  The device's figures follow: the latency target, the standing
  queue (lowest fill in the last 0.5 s window), what catch-up dropped, the
  time ``open()`` took.

Real-time runs pace one frame per message at ``hop / sample_rate``;
throughput runs send as fast as the receiver takes them (``--rate max``).
With an audio device sink the throughput runs and the processing cost use
the null sink instead (a device plays at real time).

``--pulse`` starts a private PulseAudio daemon with a null sink (the test
fixture's, ``tests/audio_server.py``: needs ``pulseaudio``, ``pactl`` and
``parec``), records its monitor (which keeps its latency low) and plays into
it with ``--sink sounddevice``: the device sink's latency on a machine with
no sound card.  Or point it at a running server yourself:
``PULSE_SERVER=unix:/path/native ALSA_CONFIG_PATH=/usr/share/alsa/alsa.conf:tests/audio/asound.conf
python tools/bench_latency.py --sink sounddevice``.
The algorithmic latency (``n_fft - hop`` samples, plus the hop it takes to
collect a frame) comes on top and is printed separately.  The tool never
fails: a section that cannot run prints why.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SR, N_FFT, HOP = 48000, 1024, 256
WARMUP = 20      # frames left out of the latency figures (first plans, TCP set-up)


def _frames(n_frames: int, spec) -> np.ndarray:
    """``n_frames`` complex64 frames of a chord (cycled from 2 s of analysis)."""
    from stream.engine import stft
    n = min(n_frames, int(2 * SR / HOP)) * HOP
    t = np.arange(n) / SR
    x = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0))
    base = stft(x.astype(np.float32), spec).astype(np.complex64)
    reps = -(-n_frames // len(base))
    return np.concatenate([base] * reps)[:n_frames]


def _produce(endpoint, n_frames, per_msg, paced):
    """The producer process: send ``n_frames`` frames, ``per_msg`` per message."""
    from stream.spec import STFTSpec
    from stream.transport import FrameSender
    spec = STFTSpec(sample_rate=SR, n_fft=N_FFT, hop_length=HOP)
    X = _frames(n_frames, spec)
    period = HOP / SR
    with FrameSender(endpoint, spec=spec, sndhwm=1000) as tx:
        t0 = time.monotonic() + 0.2          # let the connection come up
        for i in range(0, n_frames, per_msg):
            if paced:
                delay = t0 + i * period - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            tx.send(X[i:i + per_msg])


def _receive(endpoint, n_frames, per_msg, paced, sink_uri, latency_ms=None):
    """Run one producer against a receiver here; return the measurements."""
    from stream.sinks import open_sink
    from stream.transport import AudioBlock, FrameReceiver, StreamEnded, StreamStarted
    rx = FrameReceiver(endpoint, bind=True, stream_timeout=10.0)
    # As `specstream play` does: the sink is made (and an audio device
    # found) before the stream comes, and opened at its header.
    def make():
        return open_sink(sink_uri, **({"latency_ms": latency_ms} if latency_ms else {}))

    spare = make().prepare()
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_produce, args=(rx.endpoint, n_frames, per_msg, paced))
    proc.start()
    sink = None
    eng, snk, out = [], [], []
    t_first = t_last = None
    try:
        done = False
        deadline = time.monotonic() + 60 + (n_frames * HOP / SR if paced else 0)
        while not done and time.monotonic() < deadline:
            for ev in rx.poll(0.2):
                if isinstance(ev, StreamStarted):
                    sink, spare = spare or make(), None
                    sink.open(SR, 1)
                elif isinstance(ev, AudioBlock):
                    sink.write(ev.samples)
                    now = time.time()
                    if t_first is None:
                        t_first = time.perf_counter()
                    t_last = time.perf_counter()
                    if not math.isnan(ev.timestamp) and ev.seq >= WARMUP:
                        eng.append(ev.latency)
                        snk.append(now - ev.timestamp)
                        queued = sink.queued_seconds()
                        if queued is not None:
                            out.append(now - ev.timestamp + queued)
                elif isinstance(ev, StreamEnded):
                    done = True
                    if sink is not None:
                        sink.flush()       # as `specstream play` does: the end, no underrun
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.terminate()
        if sink is not None:
            sink.close(drain=True)
        rx.close()
    s = rx.stats
    return {"frames": s.frames_played, "lost": n_frames - s.frames_played + s.concealed,
            "engine": np.array(eng), "sink": np.array(snk), "output": np.array(out),
            "seconds": (t_last - t_first) if t_first is not None else math.nan,
            "sink_stats": sink.stats if sink is not None else {}}


def _processing(n_msgs: int, sink_uri: str) -> np.ndarray:
    """Seconds per message spent in FrameReceiver.handle + sink.write, in
    process, no wire: the receiver's own cost, whatever the machine's load
    does to scheduling."""
    from stream.decode import Encoding
    from stream.protocol import StreamHeader, frames_message, header_message
    from stream.sinks import open_sink
    from stream.spec import STFTSpec
    from stream.transport import AudioBlock, FrameReceiver
    spec = STFTSpec(sample_rate=SR, n_fft=N_FFT, hop_length=HOP)
    X = _frames(n_msgs, spec)
    head = StreamHeader(1, spec, Encoding(), "complex64", None)
    msgs = [[bytes(p) for p in frames_message(head, i, X[None, i:i + 1])]
            for i in range(n_msgs)]
    rx = FrameReceiver("inproc://bench-processing", stream_timeout=None)
    sink = open_sink(sink_uri)
    sink.open(SR, 1)
    rx.handle(header_message(head, 0))
    out = np.empty(n_msgs)
    try:
        for i, m in enumerate(msgs):
            t = time.perf_counter()
            for ev in rx.handle(m):
                if isinstance(ev, AudioBlock):
                    sink.write(ev.samples)
            out[i] = time.perf_counter() - t
    finally:
        sink.close()
        rx.close()
    return out[WARMUP:]


def _pct(a: np.ndarray) -> str:
    if not len(a):
        return "n/a"
    a = a * 1e3
    return f"{np.percentile(a, 50):6.3f} {np.percentile(a, 99):6.3f} {a.max():7.3f}"


def _endpoints(tmp):
    return [("tcp", "tcp://127.0.0.1:*"), ("ipc", f"ipc://{tmp}/bench.sock")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="real-time run length (s)")
    p.add_argument("--frames", type=int, default=100_000, help="frames per throughput run")
    p.add_argument("--sink", default=None,
                   help="sink URI for the samples (default null; sounddevice with --pulse)")
    p.add_argument("--latency", type=float, metavar="MS",
                   help="the sounddevice sink's latency target (default 50 ms)")
    p.add_argument("--pulse", action="store_true",
                   help="play into a private PulseAudio null sink (tests/audio_server.py), "
                        "to measure the sounddevice sink with no sound card")
    args = p.parse_args(argv)
    if not args.pulse:
        return _main(args)
    try:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))), "tests"))
        from audio_server import PulseServer, _missing_tools
    except ImportError as e:
        print(f"--pulse: cannot load tests/audio_server.py ({e})")
        return 0
    missing = _missing_tools()
    if missing:
        print(f"--pulse: {', '.join(missing)} not found (apt-get install pulseaudio "
              f"pulseaudio-utils libasound2-plugins libportaudio2)")
        return 0
    import shutil
    from pathlib import Path
    root = Path(tempfile.mkdtemp(prefix="specstream-bench-pulse-"))   # short: unix socket
    server = PulseServer(root)
    try:
        server.start()
        # PortAudio reads these when sounddevice is imported (not yet: it is
        # imported when the first sink is prepared).
        os.environ.update(server.env)
        args.sink = args.sink or "sounddevice"
        print(f"private PulseAudio null sink at {server.env['PULSE_SERVER']} "
              f"({server.rate} Hz, {server.channels} ch), monitor recorded")
        with server.record():
            return _main(args)
    except RuntimeError as e:
        print(f"--pulse: {e}")
        return 0
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _device(sink_uri: str) -> bool:
    return sink_uri.split(":", 1)[0].lower() == "sounddevice"


def _main(args) -> int:
    args.sink = args.sink or "null"
    device = _device(args.sink)
    if args.latency and not device:
        print("--latency applies to the sounddevice sink only: ignored")
        args.latency = None

    from stream.engine import Reconstructor
    from stream.spec import STFTSpec
    spec = STFTSpec(sample_rate=SR, n_fft=N_FFT, hop_length=HOP)
    # Plan the FFTs once (FFTW wisdom is cached) so the runs measure steady state.
    r = Reconstructor(spec)
    r.push(np.zeros((1, spec.n_bins), np.complex64))
    r.push(np.zeros((256, spec.n_bins), np.complex64))

    print(f"specstream latency benchmark: n_fft {N_FFT}, hop {HOP}, {SR} Hz, mono, "
          f"complex64 frames ({spec.n_bins * 8} B), sink {args.sink}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.2f} at start "
          "(other processes inflate the tails)")
    alg = spec.latency
    print(f"algorithmic latency: n_fft - hop = {alg} samples = {1e3 * alg / SR:.2f} ms, "
          f"+ one hop to fill a frame = {HOP} samples = {1e3 * HOP / SR:.2f} ms")
    print()
    bulk_sink = "null" if device else args.sink
    try:
        cost = _processing(5000, bulk_sink)
        print(f"receiver processing per 1-frame message (parse + decode + engine + sink, "
              f"in process{', null sink' if device else ''}): p50/p99/max {_pct(cost)} ms")
    except Exception as e:
        print(f"receiver processing: failed: {type(e).__name__}: {e}")
    print()
    n_rt = max(int(args.seconds * SR / HOP), WARMUP + 10)
    print(f"real time: one frame per message every {1e3 * HOP / SR:.3f} ms, {n_rt} frames "
          f"({n_rt * HOP / SR:.1f} s), first {WARMUP} left out")
    print(f"{'transport':9}  {'frames':>6} {'lost':>4}  {'send->engine ms':>22}  "
          f"{'send->sink ms':>22}  {'sustained':>9}")
    print(f"{'':9}  {'':>6} {'':>4}  {'p50    p99     max':>22}  {'p50    p99     max':>22}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, ep in _endpoints(tmp):
            try:
                m = _receive(ep, n_rt, 1, True, args.sink, args.latency)
                audio = n_rt * HOP / SR
                ok = m["lost"] == 0 and m["seconds"] <= audio * 1.05
                print(f"{name:9}  {m['frames']:>6} {m['lost']:>4}  {_pct(m['engine']):>22}  "
                      f"{_pct(m['sink']):>22}  {'yes' if ok else 'NO':>9}")
                st = m["sink_stats"]
                if st.get("device_latency_ms") is not None:
                    rate = SR
                    low = st.get("queue_min", -1)
                    print(f"{'':9}  send->output (est.: + queue + DAC delay) p50/p99/max "
                          f"{_pct(m['output'])} ms")
                    print(f"{'':9}  device: latency target {st['latency_ms']:.0f} ms, standing "
                          f"queue {1e3 * low / rate if low >= 0 else math.nan:.1f} ms, DAC "
                          f"delay {st['dac_delay_ms'] or math.nan:.1f} ms (PortAudio "
                          f"{st['device_latency_ms']:.1f} ms), catch-up dropped "
                          f"{st['latency_trimmed_ms']:.1f} ms, open {st['open_ms']:.1f} ms, "
                          f"underruns {st['underruns']} ({st['shortages']} ring ran dry, "
                          f"{st['output_underflows']} flagged by PortAudio)")
            except Exception as e:          # never fail: say what went wrong
                print(f"{name:9}  failed: {type(e).__name__}: {e}")
        print()
        print(f"throughput: as fast as the receiver takes them (--rate max), {args.frames} "
              f"frames, decode + engine + sink included"
              + (" (null sink: a device plays at real time)" if device else ""))
        print(f"{'transport':9}  {'frames/msg':>10}  {'frames/s':>10}  {'MB/s':>7}  "
              f"{'x real time':>11}  {'lost':>4}")
        for name, ep in _endpoints(tmp):
            for per in (1, 16, 256):
                try:
                    m = _receive(ep, args.frames, per, False, bulk_sink)
                    fps = m["frames"] / m["seconds"] if m["seconds"] > 0 else math.nan
                    mbs = fps * spec.n_bins * 8 / 1e6
                    print(f"{name:9}  {per:>10}  {fps:>10.0f}  {mbs:>7.1f}  "
                          f"{fps * HOP / SR:>11.0f}  {m['lost']:>4}")
                except Exception as e:
                    print(f"{name:9}  {per:>10}  failed: {type(e).__name__}: {e}")
    print()
    print("targets: send->engine p99 < 1 ms at real time; >= 20000 frames/s with --rate max")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
