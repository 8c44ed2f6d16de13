"""Real playback through PortAudio into a private PulseAudio null sink.

Each test runs the playing code in a subprocess started with the server's
environment (PortAudio reads it when ``sounddevice`` is imported), records
the sink's monitor, aligns the capture with the signal by cross-correlation
and compares sample values.  The fixture is ``tests/audio_server.py``.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
from programs import SPECSTREAM, program_env, run_program, started_player

ROOT = Path(__file__).resolve().parent.parent
RATE = 48000
HOP = 256

# The player: writes a signal (.npy, (n,) or (channels, n)) to a sink in
# hop-sized blocks, paced at real time (or as fast as the sink takes them),
# optionally stalling once (after a flush, as between two streams), or
# starting ``backlog_s`` late and catching up at once (the frames that
# queue up while a device opens); closes with drain and prints the sink's
# stats as JSON.
PLAYER = r"""
import json, sys, time
import numpy as np
cfg = json.loads(sys.argv[1])
sys.path.insert(0, cfg["root"])
from stream.sinks import open_sink
sig = np.load(cfg["signal"])
rate, hop, n = cfg["rate"], cfg["hop"], sig.shape[-1]
sink = open_sink(cfg.get("uri", "sounddevice"), latency_ms=cfg.get("latency_ms"),
                 catch_up=cfg.get("catch_up"))
sink.open(rate, 1 if sig.ndim == 1 else sig.shape[0])
stall_at, stall_s = cfg.get("stall_at"), cfg.get("stall_s", 0.0)
t0 = time.monotonic()
time.sleep(cfg.get("backlog_s", 0.0))
for i in range(0, n, hop):
    if i == stall_at:
        if cfg.get("flush"):
            sink.flush()
        time.sleep(stall_s)
        t0 += stall_s
    if cfg.get("pace", True):
        d = t0 + i / rate - time.monotonic()
        if d > 0:
            time.sleep(d)
    sink.write(sig[..., i:i + hop])
sink.close(drain=True)
print(json.dumps(sink.stats))
"""


def play(pulse_server, tmp_path, signal: np.ndarray, attempts: int = 2, **cfg):
    """Play ``signal`` in a subprocess while recording; return (stats, capture).

    A run in which PortAudio reported an output underflow while the sink's own
    ring never ran dry (``shortages == 0``) is run again, once: the process
    was not scheduled in time, on a loaded machine (the test's own player,
    server and recorder share it with everything else).  The second run must
    pass on its own; the sink's own shortages are never retried.
    """
    path = tmp_path / f"signal-{len(list(tmp_path.iterdir()))}.npy"
    np.save(path, signal.astype(np.float32))
    cfg = {"root": str(ROOT), "signal": str(path), "rate": RATE, "hop": HOP, **cfg}
    for attempt in range(attempts):
        with pulse_server.record() as rec:
            r = subprocess.run([sys.executable, "-c", PLAYER, json.dumps(cfg)],
                               env=pulse_server.env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"player failed:\n{r.stderr[-3000:]}"
        stats = json.loads(r.stdout.strip().splitlines()[-1])
        print(json.dumps(stats, indent=1))
        if stats["output_underflows"] and not stats["shortages"] and attempt + 1 < attempts:
            print("PortAudio reported an output underflow (machine too busy?): once more")
            continue
        return stats, rec.audio


def find_lag(captured: np.ndarray, ref: np.ndarray) -> int:
    """Offset of ``ref`` (1-D) in ``captured`` (1-D) maximising their cross-correlation."""
    n = 1 << int(np.ceil(np.log2(len(captured) + len(ref))))
    xc = np.fft.irfft(np.fft.rfft(captured, n) * np.conj(np.fft.rfft(ref, n)), n)
    return int(np.argmax(xc[:len(captured) - len(ref) + 1]))


def snr_db(captured: np.ndarray, ref: np.ndarray) -> float:
    err = np.sum((captured.astype(np.float64) - ref) ** 2)
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / max(err, 1e-300)))


def aligned_snr(capture: np.ndarray, ref: np.ndarray, channel_map=None) -> tuple[float, int]:
    """Align ``ref`` ((channels, n)) in ``capture`` by channel 0; return (SNR dB, lag)."""
    cap = capture if channel_map is None else capture[channel_map]
    lag = find_lag(cap[0], ref[0])
    seg = cap[:, lag:lag + ref.shape[1]]
    assert seg.shape == ref.shape, f"capture too short: {seg.shape} for {ref.shape} at {lag}"
    return snr_db(seg, ref), lag


def test_signal(seconds: float, channels: int = 2) -> np.ndarray:
    """Chirp 100 Hz -> 8 kHz on the left, three tones on the right, at 48 kHz;
    non-zero up to the last sample (so a lost tail shows)."""
    t = np.arange(int(seconds * RATE)) / RATE
    chirp = 0.5 * np.sin(2 * np.pi * (100 * t + (8000 - 100) / (2 * seconds) * t * t))
    tones = (0.3 * np.sin(2 * np.pi * 440 * t + 0.3) + 0.15 * np.sin(2 * np.pi * 1000 * t + 1)
             + 0.1 * np.sin(2 * np.pi * 3000 * t + 2))
    return np.stack([chirp, tones][:channels]).astype(np.float32)


test_signal.__test__ = False      # a helper, not a test


# ------------------------------------------------------------------ tests
def test_stereo_realtime_writer_is_captured_exactly(pulse_server, tmp_path):
    sig = test_signal(1.5)
    stats, cap = play(pulse_server, tmp_path, sig)
    snr, lag = aligned_snr(cap, sig)
    print(f"SNR {snr:.1f} dB, device latency {stats['device_latency_ms']:.1f} ms")
    assert snr > 60
    assert stats["underruns"] == 0 and stats["shortages"] == 0
    assert stats["output_underflows"] == 0
    assert stats["samples"] == sig.shape[1] and stats["played"] == sig.shape[1] + stats["padding"]
    assert not stats["drain_timeout"]
    assert stats["device_latency_ms"] > 0
    assert stats["max_queue"] <= stats["capacity"]
    # Normal playback: the queue stands at the target, nothing is dropped.
    assert stats["latency_trimmed_samples"] == 0 and stats["catch_ups"] == 0
    assert 0 <= stats["queue_min"] <= stats["catch_up_threshold"]
    # Silence around it: the signal was played once, whole, nothing else.
    assert np.max(np.abs(cap[:, :lag]), initial=0) == 0
    assert np.max(np.abs(cap[:, lag + sig.shape[1]:]), initial=0) == 0


def test_mono_blocks_and_backpressure(pulse_server, tmp_path):
    # Written as fast as the sink takes them: write() must block on the full
    # ring and nothing may be lost or reordered.  Mono (n,) blocks; the
    # server copies the mono stream to both channels of the sink.
    sig = test_signal(1.0, channels=1)[0]
    stats, cap = play(pulse_server, tmp_path, sig, pace=False)
    assert stats["waits"] > 0
    assert stats["max_queue"] <= stats["capacity"]
    assert stats["underruns"] == 0
    # A full ring is backpressure, not a backlog: catch-up leaves it alone.
    assert stats["latency_trimmed_samples"] == 0
    assert stats["played"] == len(sig) + stats["padding"]
    for ch in range(2):
        snr, _ = aligned_snr(cap[ch:ch + 1], sig[None])
        assert snr > 60, f"channel {ch}: {snr:.1f} dB"


def test_stall_underruns_are_counted_faded_and_recovered(pulse_server, tmp_path):
    # Chirps (not steady tones: their alignment would be ambiguous), kept
    # below 2 kHz so that a click stands out from the signal's own steps.
    t = np.arange(int(1.2 * RATE)) / RATE
    sig = np.stack([0.5 * np.sin(2 * np.pi * (200 * t + 1800 / 2.4 * t * t)),
                    0.5 * np.sin(2 * np.pi * (1500 * t - 1200 / 2.4 * t * t))]).astype(np.float32)
    stall_at = (int(0.5 * RATE) // HOP) * HOP
    stats, cap = play(pulse_server, tmp_path, sig, stall_at=stall_at, stall_s=0.3)
    assert stats["underruns"] >= 1 and stats["shortages"] >= 1
    assert stats["silence_samples"] > 0
    assert stats["prebuffers"] >= 2                       # it re-prebuffered and resumed
    assert stats["played"] == sig.shape[1] + stats["padding"]   # nothing dropped
    assert stats["latency_trimmed_samples"] == 0
    margin = 2400         # 50 ms each side of the stall: fades, and the callback's guard
    before, after = sig[:, :stall_at - margin], sig[:, stall_at + margin:]
    snr_b, lag_b = aligned_snr(cap, before)
    snr_a, lag_a = aligned_snr(cap, after)
    print(f"before {snr_b:.1f} dB, after {snr_a:.1f} dB, gap {(lag_a - lag_b - stall_at - margin)}")
    assert snr_b > 60 and snr_a > 60
    # The audio after the stall came later by the silence inserted: the
    # underrun added silence, it did not drop samples.
    gap = lag_a - (lag_b + stall_at + margin)
    assert gap > 0
    assert abs(gap - stats["silence_samples"]) <= stats["max_callback_samples"]
    # No click: no step larger than the signal's own steepest one, plus what
    # a 5 ms fade adds.
    steepest = np.abs(np.diff(sig, axis=1)).max()
    assert np.abs(np.diff(cap, axis=1)).max() < steepest + 0.01


def test_flush_between_streams_is_a_gap_not_an_underrun(pulse_server, tmp_path):
    # Two streams on one open sink, 0.3 s apart, flush() after the first (as
    # `specstream play --keep-alive` between streams): both play whole, with
    # no fade, and the silence between them is not counted as an underrun.
    sig = test_signal(1.0)
    cut = (int(0.5 * RATE) // HOP) * HOP
    stats, cap = play(pulse_server, tmp_path, sig, stall_at=cut, stall_s=0.3, flush=True)
    assert stats["underruns"] == 0 and stats["shortages"] == 0
    assert stats["silence_samples"] == 0
    assert stats["played"] == sig.shape[1] + stats["padding"]
    assert stats["latency_trimmed_samples"] == 0
    snr_1, lag_1 = aligned_snr(cap, sig[:, :cut])
    snr_2, lag_2 = aligned_snr(cap, sig[:, cut:])
    print(f"first {snr_1:.1f} dB, second {snr_2:.1f} dB, gap {lag_2 - lag_1 - cut}")
    assert snr_1 > 60 and snr_2 > 60
    assert lag_2 - lag_1 - cut > 0                 # a gap between them, nothing overlapped


def chirps(seconds: float) -> np.ndarray:
    """Two chirps below 2 kHz (unambiguous alignment; a click would stand out)."""
    t = np.arange(int(seconds * RATE)) / RATE
    return np.stack([0.5 * np.sin(2 * np.pi * (200 * t + 1800 / (2 * seconds) * t * t)),
                     0.5 * np.sin(2 * np.pi * (1500 * t - 1200 / (2 * seconds) * t * t))]
                    ).astype(np.float32)


def test_startup_backlog_is_caught_up_to_the_latency_target(pulse_server, tmp_path):
    # The producer is paced at real time but starts 150 ms late and sends
    # those 150 ms at once (the frames that queued while a device opened):
    # a backlog it can never drain.  The sink drops it once, crossfaded,
    # then holds the queue at the 20 ms target; the rest plays exactly.
    sig = chirps(2.0)
    backlog = int(0.15 * RATE)
    stats, cap = play(pulse_server, tmp_path, sig, latency_ms=20, backlog_s=0.15)
    assert stats["underruns"] == 0 and stats["shortages"] == 0
    assert stats["catch_ups"] == 1
    k, r = stats["latency_trimmed_samples"], stats["first_trim_at"]
    grain = max(stats["max_write_samples"], stats["max_callback_samples"])
    assert backlog - grain <= k <= backlog + stats["target"] + grain
    # Settled: the standing queue (lowest fill after a callback in the last
    # 0.5 s window) is back at the target, under the catch-up threshold.
    assert 0 <= stats["queue_min"] <= stats["catch_up_threshold"]
    assert stats["queue_min"] <= stats["target"] + grain
    # Every sample written was played or counted as trimmed.
    assert stats["played"] + k == sig.shape[1] + stats["padding"]
    # The capture: the signal up to the trim, then from k samples later on,
    # both exact; nothing else lost or repeated; no click at the crossfade.
    margin = 2400
    fade = int(round(0.005 * RATE))
    before, after = sig[:, :r - margin], sig[:, r + k + fade + margin:]
    snr_b, lag_b = aligned_snr(cap, before)
    snr_a, lag_a = aligned_snr(cap, after)
    print(f"trimmed {k} at {r}: before {snr_b:.1f} dB, after {snr_a:.1f} dB")
    assert snr_b > 60 and snr_a > 60
    assert lag_a - lag_b == (r + k + fade + margin) - k
    steepest = np.abs(np.diff(sig, axis=1)).max()
    assert np.abs(np.diff(cap, axis=1)).max() < steepest + 0.01


def test_no_catch_up_keeps_the_backlog_and_every_sample(pulse_server, tmp_path):
    # catch_up=False (specstream play --no-catch-up): the same backlog stays
    # queued for good (the standing queue is the target plus the backlog),
    # and every sample plays.
    sig = chirps(1.5)
    stats, cap = play(pulse_server, tmp_path, sig, latency_ms=20, backlog_s=0.15,
                      catch_up=False)
    assert stats["underruns"] == 0
    assert stats["latency_trimmed_samples"] == 0 and stats["catch_ups"] == 0
    assert stats["queue_min"] > stats["catch_up_threshold"]
    assert stats["queue_min"] >= int(0.15 * RATE) - stats["max_write_samples"]
    assert stats["played"] == sig.shape[1] + stats["padding"]
    snr, _ = aligned_snr(cap, sig)
    assert snr > 60


def test_devices_and_refused_rate(pulse_server):
    code = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from stream.sinks import SinkError, list_devices, open_sink
out = {"devices": list_devices()}
try:
    open_sink("sounddevice").open(1_000_000, 2)
except SinkError as e:
    out["error"] = str(e)
try:
    open_sink("sounddevice:no such device").open(48000, 2)
except SinkError as e:
    out["nodev"] = str(e)
print(json.dumps(out))
"""
    r = subprocess.run([sys.executable, "-c", code, str(ROOT)], env=pulse_server.env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert any(d["default"] for d in out["devices"])
    assert all(d["channels"] > 0 for d in out["devices"])
    assert "1000000 Hz" in out["error"] and "'default'" in out["error"]
    assert "no such device" in out["nodev"] and "outputs:" in out["nodev"]


def test_specstream_devices_lists_the_server(pulse_server):
    r = run_program(["devices"], env=pulse_server.env, timeout=60)
    assert r.returncode == 0, r.stderr
    default = [line for line in r.stdout.splitlines() if line.startswith("*")]
    assert len(default) == 1 and "default" in default[0], r.stdout


# -------------------------------------------------- specstream send -> play
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_specstream_send_to_play_on_the_device(pulse_server, tmp_path):
    import soundfile as sf
    clip = test_signal(2.0)
    # Fade the clip in and out so the reconstruction's edges are the clip's own.
    ramp = np.minimum(1.0, np.minimum(np.arange(clip.shape[1]),
                                      np.arange(clip.shape[1])[::-1]) / 480.0)
    clip = (clip * ramp).astype(np.float32)
    wav = tmp_path / "clip.wav"
    sf.write(wav, clip.T, RATE, subtype="FLOAT")
    for attempt in range(2):
        log, audio = _send_and_play(pulse_server, wav)
        m = re.search(r"underruns:\s*(\d+)", log)
        assert m, f"no underrun count in the summary:\n{log}"
        if int(m.group(1)) and attempt == 0:
            print("underruns in the first run (machine too busy?): once more")
            continue
        break
    assert int(m.group(1)) == 0
    assert "latency producer->output" in log
    trim = re.search(r"latency catch-up: .* \((\d+) samples\)", log)
    if trim is None:                    # the usual case: the player kept up from the start
        snr, lag = aligned_snr(audio, clip)
        print(f"send -> play -> device: SNR {snr:.1f} dB")
        assert snr > 60
        return
    # The player started late (a loaded machine) and caught up: a catch-up
    # comes at the end of a 0.5 s window of playback, the first or the
    # second.  Before the first window and after the second the audio is
    # exact, and the end comes early by what was dropped.
    k = int(trim.group(1))
    head, tail_at = clip[:, :int(0.4 * RATE)], int(1.5 * RATE)
    snr_h, lag_h = aligned_snr(audio, head)
    snr_t, lag_t = aligned_snr(audio, clip[:, tail_at:])
    print(f"send -> play -> device, {k} samples caught up: SNR {snr_h:.1f} dB before, "
          f"{snr_t:.1f} dB after")
    assert snr_h > 60 and snr_t > 60
    assert lag_t - lag_h == tail_at - k


def _send_and_play(pulse_server, wav):
    """``specstream play --sink sounddevice`` fed by ``specstream send --analyze``,
    recorded; returns (player's stderr, capture)."""
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    env = program_env(pulse_server.env)
    stft = ["--n-fft", "1024", "--hop-length", "256"]
    with pulse_server.record() as rec, started_player(
            ["play", "--bind", endpoint, "--sink", "sounddevice"], env) as (player, lines):
        sent = subprocess.run(
            SPECSTREAM + ["send", "--analyze", str(wav), *stft, "--connect", endpoint],
            env=env, cwd=ROOT, capture_output=True, text=True,
            timeout=60)
        assert sent.returncode == 0, sent.stderr
        assert player.wait(60) == 0, "".join(lines)
    log = "".join(lines)
    print(log)
    return log, rec.audio
