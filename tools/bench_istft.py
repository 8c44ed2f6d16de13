#!/usr/bin/env python
"""Benchmark: our inverse STFT against scipy, ShortTimeFFT, librosa and torch.

One 10-minute 48 kHz input (n_fft 1024, hop 256, periodic hann, center=True:
112,501 frames of 513 complex64 bins), made once with ``librosa.stft`` and
stored as .npy in both layouts.  Each case runs in its own Python process
(so that one library's caches, threads and memory do not colour another's),
loads its input, warms up on a short piece (plans, FFTW wisdom, first-call
overheads), then times one call on the whole input.  Peak memory is the
process' RSS high-water mark during the timed call less its RSS before it
(``/proc/self/clear_refs`` resets the mark), plus the ``tracemalloc`` peak of
a second, untimed call (numpy's allocations; torch's are not traced).  Our
engine runs with its default of one FFTW thread; torch with its own default.

    python tools/bench_istft.py            # the table
    python tools/bench_istft.py --minutes 2 --keep DIR

It never fails: a case that errors or times out is reported as such.
Targets: our block path >= 1.5x faster than the fastest library; our
frame-by-frame engine >= 100,000 frames/s at n_fft 1024.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SR, N_FFT, HOP = 48000, 1024, 256

CASES = [
    ("ours: stream.istft (block)", "ours_block"),
    ("ours: Reconstructor frame by frame", "ours_frames"),
    ("ours: specstream reconstruct .npy -> .wav", "ours_cli"),
    ("scipy.signal.istft", "scipy_istft"),
    ("scipy ShortTimeFFT.istft", "scipy_sfft"),
    ("librosa.istft", "librosa"),
    ("torch.istft", "torch"),
]


# ------------------------------------------------------------ in the child
def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status("VmRSS")


def _timed(fn):
    """Time one call (RSS high-water mark only: no tracing overhead in the time),
    then run it again under tracemalloc for the peak of what it allocates."""
    import gc
    import tracemalloc
    gc.collect()
    base = _reset_peak()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    rss = _status("VmHWM") - base
    del out
    gc.collect()
    tracemalloc.start()
    out = fn()
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, {"seconds": seconds, "rss_peak": rss, "traced_peak": traced}


def run_case(case: str, d: Path) -> dict:
    import numpy as np
    info = json.loads((d / "info.json").read_text())
    n_frames = info["frames"]
    if case == "ours_cli":
        # End to end in its own process: start-up, mapped reading, decode, engine, WAV
        # (the child measures its own peak memory).
        out = d / "cli_out.wav"
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", _CLI_CHILD, str(d / "frames_fb.npy"),
                            str(out)], capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if p.returncode:
            raise RuntimeError(p.stderr.strip().splitlines()[-1])
        child = json.loads(p.stdout.strip().splitlines()[-1])
        out.unlink(missing_ok=True)
        return {"seconds": seconds, "rss_peak": child["rss_peak"],
                "traced_peak": child["traced_peak"], "samples": child["samples"]}

    if case.startswith("ours"):
        import stream
        X = np.load(d / "frames_fb.npy")                        # (frames, bins), in RAM
        spec = stream.preset("librosa", n_fft=N_FFT, hop_length=HOP, sample_rate=SR)
        stream.istft(X[:2000], spec)                            # plans + wisdom
        if case == "ours_block":
            y, r = _timed(lambda: stream.istft(X, spec))
        else:
            def frame_by_frame():
                eng = stream.Reconstructor(spec)
                push = eng.push
                total = 0
                for t in range(n_frames):
                    total += push(X[t]).shape[-1]
                return total + eng.flush().shape[-1]
            frame_by_frame_small = stream.Reconstructor(spec)
            for t in range(200):
                frame_by_frame_small.push(X[t])
            n, r = _timed(frame_by_frame)
            r["samples"] = n
            r["frames_per_s"] = n_frames / r["seconds"]
            return r
        r["samples"] = int(y.shape[-1])
        return r

    Z = np.load(d / "frames_bf.npy")                            # (bins, frames), in RAM
    if case == "scipy_istft":
        import scipy.signal as ss
        ss.istft(Z[:, :2000], fs=SR, nperseg=N_FFT, noverlap=N_FFT - HOP)
        (_, y), r = _timed(lambda: ss.istft(Z, fs=SR, nperseg=N_FFT, noverlap=N_FFT - HOP))
    elif case == "scipy_sfft":
        import scipy.signal as ss
        sft = ss.ShortTimeFFT(ss.get_window("hann", N_FFT), HOP, fs=SR)
        sft.istft(Z[:, :2000])
        y, r = _timed(lambda: sft.istft(Z))
    elif case == "librosa":
        import librosa
        librosa.istft(Z[:, :2000], hop_length=HOP, n_fft=N_FFT)
        y, r = _timed(lambda: librosa.istft(Z, hop_length=HOP, n_fft=N_FFT))
    elif case == "torch":
        import torch
        Zt = torch.from_numpy(Z)
        w = torch.hann_window(N_FFT)
        torch.istft(Zt[:, :2000], N_FFT, HOP, window=w)
        y, r = _timed(lambda: torch.istft(Zt, N_FFT, HOP, window=w))
        r["threads"] = torch.get_num_threads()
    else:
        raise ValueError(case)
    r["samples"] = int(y.shape[-1])
    return r


_CLI_CHILD = r"""
import json, sys, tracemalloc
import soundfile, tqdm, stream.cli
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
try:
    open("/proc/self/clear_refs", "w").write("5")
except OSError:
    pass
base = status("VmRSS")
tracemalloc.start()
rc = stream.cli.main(["reconstruct", sys.argv[1], "-o", sys.argv[2], "--n-fft", "1024",
                      "--hop-length", "256", "-r", "48000", "--layout", "frames-bins", "-q"])
_, traced = tracemalloc.get_traced_memory()
print(json.dumps({"rc": rc, "rss_peak": status("VmHWM") - base, "traced_peak": traced,
                  "samples": soundfile.info(sys.argv[2]).frames}))
"""


# ----------------------------------------------------------- in the parent
def make_input(d: Path, minutes: float):
    import librosa
    import numpy as np
    n = int(minutes * 60 * SR)
    rng = np.random.default_rng(0)
    t = np.arange(n, dtype=np.float64) / SR
    x = (0.1 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * (220 + 20 * t) * t))
    x = x.astype(np.float32)
    D = librosa.stft(x, n_fft=N_FFT, hop_length=HOP)           # complex64, bins x frames
    np.save(d / "frames_bf.npy", D)
    np.save(d / "frames_fb.npy", np.ascontiguousarray(D.T))
    (d / "info.json").write_text(json.dumps({"frames": D.shape[1], "samples": n}))
    return D.shape[1], n


def run_child(case: str, d: Path, timeout: float) -> dict:
    try:
        p = subprocess.run([sys.executable, __file__, "--case", case, "--dir", str(d)],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if p.returncode:
        lines = (p.stderr or p.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {p.returncode}"}
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "no result"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=900.0, help="per case, seconds")
    ap.add_argument("--keep", metavar="DIR", help="keep the input files in DIR")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.case:                       # child process
        print(json.dumps(run_case(args.case, Path(args.dir))))
        return 0

    try:
        import numpy as np
        d = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_istft_"))
        d.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        frames, n = make_input(d, args.minutes)
        audio_s = n / SR
        print(f"input: {args.minutes:g} min at {SR} Hz = {n:,} samples; n_fft {N_FFT}, hop {HOP}, "
              f"hann, center; {frames:,} frames x {N_FFT // 2 + 1} bins complex64 "
              f"({frames * (N_FFT // 2 + 1) * 8 / 1e6:.0f} MB); made in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        print(f"python {sys.version.split()[0]}, numpy {np.__version__}, cpus {os.cpu_count()}",
              flush=True)
        results = {}
        for label, case in CASES:
            results[case] = run_child(case, d, args.timeout)
            print(f"  done: {label}", file=sys.stderr, flush=True)
    except Exception as e:              # never fail
        print(f"benchmark could not run: {type(e).__name__}: {e}")
        return 0
    finally:
        if not args.keep and "d" in locals():
            shutil.rmtree(d, ignore_errors=True)

    ours = results.get("ours_block", {}).get("seconds")
    rows = []
    header = ("case", "seconds", "x real time", "time / ours(block)", "peak RSS MB",
              "tracemalloc MB", "samples")
    for label, case in CASES:
        r = results[case]
        if "error" in r:
            rows.append((label, "failed", "", "", "", "", r["error"][:60]))
            continue
        s = r["seconds"]
        rows.append((label, f"{s:.3f}", f"{audio_s / s:,.0f}x",
                     f"{s / ours:.2f}" if ours else "",
                     f"{r['rss_peak'] / 1e6:.0f}", f"{r['traced_peak'] / 1e6:.0f}",
                     f"{r.get('samples', '')}"))
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    fmt = " | ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print()
    print(fmt.format(*header))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(fmt.format(*row))
    print()

    libs = {c: results[c]["seconds"] for c in ("scipy_istft", "scipy_sfft", "librosa", "torch")
            if "seconds" in results[c]}
    if ours and libs:
        best = min(libs, key=libs.get)
        speedup = libs[best] / ours
        print(f"block path: {speedup:.2f}x faster than the fastest library ({best}, "
              f"{libs[best]:.3f} s); target >= 1.5x: {'met' if speedup >= 1.5 else 'NOT met'}")
    fps = results.get("ours_frames", {}).get("frames_per_s")
    if fps:
        print(f"frame by frame: {fps:,.0f} frames/s at n_fft {N_FFT} "
              f"({fps * HOP / SR:,.0f}x real time); target >= 100,000 frames/s: "
              f"{'met' if fps >= 100_000 else 'NOT met'}")
    if "threads" in results.get("torch", {}):
        print(f"torch used {results['torch']['threads']} threads; our engine one FFTW thread "
              f"(its default).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
