#!/usr/bin/env python
"""Drift compensation over a long run, and the resampler's quality and cost.

Usage::

    python tools/bench_drift.py [--ppm 100] [--minutes 10] [--out DIR]
    python tools/bench_drift.py --resampler          # SNR and cost of the converters

The drift run starts a private PulseAudio daemon with a null sink (the test
fixture's, ``tests/audio_server.py``: needs ``pulseaudio``, ``pactl`` and
``parec``), then for a producer ``+ppm`` and ``-ppm`` off real time plays
``specstream send --analyze NOISE.wav --rate 1+-ppm`` into ``specstream play
--sink sounddevice --latency LAT --stats-file``, records the sink's monitor,
and judges the recording as ``tests/test_live_drift.py`` does
(``tests/drift_run.py``): half-second chunks aligned to the source
resampled by the true ratio; their lag jumps and correlation.  It prints,
per direction: underruns, catch-ups, the ratio estimate's error after
settling (mean, standard deviation, largest), the latency against its
target, the largest lag jump and the spread of the lag; and writes
``DIR/drift-PPM.jsonl`` and ``DIR/drift-PPM.png`` (``tools/plot_latency.py``).

``--resampler`` converts sines of 1, 8 and 15 kHz (2 channels, 48 kHz,
256-frame blocks) at a ratio of 1/1.002 with each libsamplerate converter
and prints the SNR against the ideal and the CPU time per second of audio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

RATE = 48000


def resampler_table():
    from stream.sinks.resample import HISTORY, Resampler
    print(f"{'converter':13} {'f (Hz)':>7} {'SNR (dB)':>9} {'CPU ms per s of audio':>22}")
    for conv in ("sinc_best", "sinc_medium", "sinc_fastest"):
        for f in (1000, 8000, 15000):
            n = 4 * RATE
            x = np.sin(2 * np.pi * f * np.arange(n) / RATE).astype(np.float32)
            x2 = np.ascontiguousarray(np.stack([x, x], 1))
            r = Resampler(2, conv)
            r.process(np.zeros((HISTORY, 2), np.float32), 1.0)
            t0 = time.process_time()
            y = np.concatenate([r.process(x2[i:i + 256], 1 / 1.002)
                                for i in range(0, n, 256)])[:, 0].astype(np.float64)
            cost = (time.process_time() - t0) / (n / RATE)
            seg = y[RATE // 2:-RATE // 2]
            j = np.arange(len(seg))
            a = np.stack([np.sin(2 * np.pi * f * 1.002 * j / RATE),
                          np.cos(2 * np.pi * f * 1.002 * j / RATE)], 1)
            fit = a @ np.linalg.lstsq(a, seg, rcond=None)[0]
            snr = 10 * np.log10(np.sum(fit ** 2) / np.sum((seg - fit) ** 2))
            print(f"{conv:13} {f:>7} {snr:>9.1f} {1000 * cost:>22.1f}")


def judge(sig, factor, log, recs, cap, settled_s):
    from drift_run import (chunk_lags, ideal_output, piece_correlations, summary_number,
                           true_factor)
    factor, device = true_factor(factor, recs)      # against the device's own clock
    truth = (factor - 1) * 1e6
    ideal = ideal_output(sig, factor)
    starts, lags, corr = chunk_lags(cap, ideal)
    jumps = np.abs(np.diff(lags))
    late = [r for r in recs if r["time"] >= settled_s and r.get("ratio_ppm") is not None]
    ppm = np.array([r["ratio_ppm"] for r in late]) - truth
    lat = np.array([r["latency_ms"] - r["target_ms"] for r in late
                    if r.get("latency_ms") is not None])
    settled = starts >= settled_s * RATE
    out = {
        "truth_ppm": truth, "device_clock_ppm": device,
        "underruns": summary_number(log, r"underruns:\s*(\d+)"),
        "catch_ups": max((r.get("catch_ups") or 0) for r in recs),
        "ratio_error_ppm_mean": float(ppm.mean()), "ratio_error_ppm_std": float(ppm.std()),
        "ratio_error_ppm_max": float(np.abs(ppm).max()),
        "ratio_error_ppm_last_minute": float(np.abs(ppm[-60:]).max()),
        "latency_minus_target_ms_mean": float(lat.mean()),
        "latency_minus_target_ms_max": float(np.abs(lat).max()),
        "chunks": int(len(starts)), "lag_jump_max_ms": 1e3 * float(jumps.max()) / RATE,
        "lag_spread_settled_ms": 1e3 * float(np.ptp(lags[settled])) / RATE,
        "correlation_min_settled": float(corr[settled].min()),
        "piece_20ms_correlation_min_settled": float(piece_correlations(
            cap, ideal, starts[settled], lags[settled]).min()),
        "drift_holds": recs[-2].get("drift_holds") if len(recs) > 1 else None,
    }
    return out


def drift_runs(args):
    import soundfile as sf
    from audio_server import PulseServer, _missing_tools
    from drift_run import drift_signal, send_and_play

    missing = _missing_tools()
    if missing:
        print(f"{', '.join(missing)} not found (apt-get install pulseaudio pulseaudio-utils "
              f"libasound2-plugins libportaudio2)")
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Both directions at once, each into a PulseAudio server of its own.
    roots = [Path(tempfile.mkdtemp(prefix="specstream-drift-")) for _ in range(2)]  # short:
    servers = [PulseServer(root) for root in roots]                 # unix socket paths
    results, runs = {}, {}
    try:
        for server in servers:
            server.start()
        sig = drift_signal(args.minutes * 60)
        wav = roots[0] / "noise.wav"
        sf.write(wav, sig.T, RATE, subtype="FLOAT")
        t0 = time.monotonic()

        def play(sign, server, root):
            try:
                runs[sign] = send_and_play(server, root, wav, 1 + sign * args.ppm * 1e-6,
                                           ["--latency", str(args.latency)],
                                           timeout=args.minutes * 60 * 1.5 + 120)
            except AssertionError as e:           # the run failed: say why, go on
                print(f"producer {sign * args.ppm:+g} ppm: the run failed: {e}", flush=True)

        threads = [threading.Thread(target=play, args=a)
                   for a in zip((+1, -1), servers, roots)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for sign in (+1, -1):
            if sign not in runs:
                continue
            factor = 1 + sign * args.ppm * 1e-6
            log, recs, cap = runs[sign]
            res = judge(sig, factor, log, recs, cap, args.settled)
            res["wall_s"] = time.monotonic() - t0
            name = f"drift{sign * args.ppm:+g}ppm"
            (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
            (out / f"{name}.log").write_text(log)
            try:
                from plot_latency import plot
                plot({k: [r.get(k) for r in recs] for k in {k for r in recs for k in r}},
                     out / f"{name}.png", f"producer {sign * args.ppm:+g} ppm, --latency "
                     f"{args.latency}", res["truth_ppm"])
            except ImportError:
                pass
            results[name] = res
            print(name, json.dumps(res, indent=1), flush=True)
    finally:
        for server, root in zip(servers, roots):
            server.stop()
            shutil.rmtree(root, ignore_errors=True)
    (out / "drift.json").write_text(json.dumps(results, indent=1))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ppm", type=float, default=100.0, help="producer drift (default 100)")
    p.add_argument("--minutes", type=float, default=10.0, help="per direction (default 10)")
    p.add_argument("--latency", default="200", help="play --latency (default 200)")
    p.add_argument("--settled", type=float, default=60.0,
                   help="seconds after which the figures count (default 60)")
    p.add_argument("--out", default="bench-drift", help="output directory")
    p.add_argument("--resampler", action="store_true", help="the converters' SNR and cost")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tools"))
    if args.resampler:
        resampler_table()
        return 0
    return drift_runs(args)


if __name__ == "__main__":
    sys.exit(main())
