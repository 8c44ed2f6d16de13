"""Drifting producers played through PortAudio into the recorded null sink,
and the recording judged against the source: the one home of both, for
``tests/test_drift.py`` and ``tools/bench_drift.py``.

:func:`send_and_play` runs ``specstream send --analyze WAV --rate FACTOR``
into ``specstream play --sink sounddevice --stats-file F.jsonl`` while
recording the sink's monitor.  :func:`chunk_lags` cuts the recording into
half-second chunks aligned to the source resampled by the true ratio (what a
perfect drift compensation plays) and returns each chunk's lag and
correlation: a gap shows as a chunk that does not correlate, a drop or an
inserted silence as a jump of the lag between neighbours.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
from programs import SPECSTREAM, program_env

ROOT = Path(__file__).resolve().parent.parent
RATE = 48000
CHUNK = RATE // 2


def drift_signal(seconds: float, seed: int = 1) -> np.ndarray:
    """(2, n) float32: noise band-limited to 60-900 Hz (a correlation peak
    about 1 ms wide, unambiguous everywhere), independent per channel,
    faded in and out over 10 ms, then 0.25 s of silence."""
    n = int(seconds * RATE)
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal((2, n)), axis=1)
    f = np.fft.rfftfreq(n, 1 / RATE)
    spec[:, (f < 60) | (f > 900)] = 0
    x = np.fft.irfft(spec, n, axis=1)
    x *= 0.3 / x.std()
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.01 * RATE))
    x = np.clip(x * ramp, -0.95, 0.95)
    return np.concatenate([x, np.zeros((2, RATE // 4))], axis=1).astype(np.float32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send_and_play(pulse_server, tmp: Path, wav: Path, factor: float, play_args=(),
                  timeout: float = 900.0, before_send=None):
    """Play ``wav`` sent at ``factor`` x real time; returns (player's stderr,
    stats-file records, capture (2, n))."""
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    env = program_env(pulse_server.env)
    stats = tmp / f"stats-{factor}.jsonl"
    with pulse_server.record() as rec:
        player = subprocess.Popen(
            SPECSTREAM + ["play", "--bind", endpoint, "--sink", "sounddevice",
                          "--stats-file", str(stats), *play_args],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines, ready = [], threading.Event()

        def relay():
            for line in player.stderr:
                lines.append(line)
                if "listening on" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=relay, daemon=True).start()
        try:
            assert ready.wait(30) and player.poll() is None, "".join(lines)
            if before_send is not None:
                before_send()
            sender = subprocess.Popen(
                SPECSTREAM + ["send", "--analyze", str(wav), "--n-fft", "1024", "--hop-length",
                              "256", "--rate", str(factor), "--connect", endpoint],
                env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                deadline = time.monotonic() + timeout
                while sender.poll() is None:          # a player that dies ends the run
                    assert player.poll() is None, f"the player died:\n{''.join(lines)}"
                    assert time.monotonic() < deadline, "send timed out"
                    time.sleep(0.5)
            finally:
                if sender.poll() is None:
                    sender.kill()
                err = sender.communicate()[1]
            assert sender.returncode == 0, err + "".join(lines)
            try:
                assert player.wait(60) == 0, "".join(lines)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"the player did not end:\n{''.join(lines)}") from None
        finally:
            if player.poll() is None:
                player.kill()
                player.wait()
    log = "".join(lines)
    records = [json.loads(line) for line in stats.read_text().splitlines() if line.strip()]
    return log, records, rec.audio


def ideal_output(src: np.ndarray, factor: float) -> np.ndarray:
    """``src`` ((2, n)) as a perfect compensation of a producer ``factor`` x
    fast plays it: resampled by 1 / factor (libsamplerate sinc_best)."""
    import samplerate
    return np.ascontiguousarray(samplerate.resample(src.T, 1.0 / factor, "sinc_best").T)


def _xcorr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    return np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)[:len(a) - len(b) + 1]


def chunk_lags(capture: np.ndarray, ref: np.ndarray, search_ms: float = 40.0):
    """Align each half-second chunk of ``ref`` (channel 0) in ``capture``.

    Returns (start of each chunk in ``ref``, lag in samples, normalised
    correlation in [-1, 1]) as arrays, over the chunks that hold sound.
    The first chunk is found in the whole capture, each next one within
    ``search_ms`` of where its neighbour's lag puts it."""
    cap, r = capture[0].astype(np.float64), ref[0].astype(np.float64)
    w = int(search_ms * RATE / 1000)
    starts, lags, corrs = [], [], []
    lag = None
    for s in range(0, len(r) - CHUNK, CHUNK):
        seg = r[s:s + CHUNK]
        energy = float(np.dot(seg, seg))
        if energy < 1e-3 * CHUNK * 0.09:             # the silent tail
            continue
        if lag is None:
            xc = _xcorr(cap, seg)
            base = 0
        else:
            base = max(0, s + lag - w)
            win = cap[base:s + lag + w + CHUNK]
            if len(win) < CHUNK:
                break
            xc = _xcorr(win, seg)
        k = int(np.argmax(xc))
        at = base + k
        got = cap[at:at + CHUNK]
        c = float(np.dot(got, seg) / np.sqrt(energy * max(np.dot(got, got), 1e-30)))
        lag = at - s
        starts.append(s)
        lags.append(lag)
        corrs.append(c)
    return np.array(starts), np.array(lags), np.array(corrs)


def piece_correlations(capture: np.ndarray, ref: np.ndarray, starts, lags,
                       piece: int = RATE // 50, search: int = RATE // 400) -> np.ndarray:
    """The correlation of each ``piece`` (20 ms) of the chunks :func:`chunk_lags`
    aligned, each piece aligned anew within ``search`` (2.5 ms) of its chunk's
    lag: a gap or a drop shows here as a piece that does not correlate, while
    a slow bend of the rate (the loop gliding back to its target, 0.15 % at
    most: 0.7 ms over a half-second chunk, 0.03 ms over a piece) does not."""
    cap, r = capture[0].astype(np.float64), ref[0].astype(np.float64)
    out = []
    for s, lag in zip(starts, lags):
        for p in range(s, s + CHUNK - piece + 1, piece):
            seg = r[p:p + piece]
            if float(np.dot(seg, seg)) < 1e-3 * piece * 0.09:      # the fade, the silent tail
                continue
            base = max(0, p + lag - search)
            win = cap[base:p + lag + search + piece]
            if len(win) < piece:
                break
            xc = _xcorr(win, seg)
            at = base + int(np.argmax(xc))
            got = cap[at:at + piece]
            out.append(float(np.dot(got, seg) / np.sqrt(max(np.dot(seg, seg), 1e-30)
                                                      * max(np.dot(got, got), 1e-30))))
    return np.array(out)


def true_factor(factor: float, records: list) -> tuple[float, float]:
    """(producer rate / device rate, the device's clock against the system's
    in ppm) for a producer paced at ``factor`` x the system clock.

    PulseAudio's null sink keeps the system's clock only nearly (it has been
    seen 54-65 ppm fast, run to run), so the player's own fit of the device's
    clock (its read position against PortAudio's DAC times, apart from the
    drift controller; the last per-second record's ``device_clock_ppm``) is
    taken into account."""
    device = [r["device_clock_ppm"] for r in records if r.get("device_clock_ppm") is not None]
    assert device, "no device clock in the stats file"
    return factor / (1.0 + device[-1] * 1e-6), device[-1]


def summary_number(log: str, pattern: str) -> float | None:
    m = re.search(pattern, log)
    return None if m is None else float(m.group(1))
