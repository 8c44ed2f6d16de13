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
a second, untimed call (numpy's allocations; torch's are not traced).  Each
time is the best of ``--repeats`` calls (the command line, a process of its
own, runs once).  Our block path runs with its defaults (segments of a long
push on as many threads as CPUs, at most 4; one FFTW thread each) and again
on one thread (``workers=1``); torch with its own default (the threads of
``torch.get_num_threads()``).

Frame by frame, ``Reconstructor.push`` of one frame at a time is set beside a
bare Python loop of the same work on the same frames: copy the frame into one
pyfftw c2r plan (the engine's, made by ``stream.fft.irfft_plan``), execute,
window, add into a buffer, normalise one hop.  The two loops alternate in one
process, best of ``--repeats`` each; their ratio is what the engine's per-call
overhead costs, and, measured in the same run, it holds on a busy machine
where frames/s do not.

    python tools/bench_istft.py                 # everything, the table
    python tools/bench_istft.py --only frames   # push against the bare loop
    python tools/bench_istft.py --only block    # our block path and the libraries
    python tools/bench_istft.py --minutes 2 --repeats 5 --keep DIR

It never fails: a case that errors or times out is reported as such.
Targets: our block path >= 3x faster than the fastest library; frame by frame,
push >= 0.8 of the bare loop's frames/s.
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
# Every child imports the stream package beside this file, not an installed one.
ROOT = Path(__file__).resolve().parent.parent
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}

CASES = [
    ("ours: stream.istft (block)", "ours_block"),
    ("ours: stream.istft (block, one thread)", "ours_block1"),
    ("ours: Reconstructor frame by frame", "ours_frames"),
    ("ours: specstream reconstruct .npy -> .wav", "ours_cli"),
    ("scipy.signal.istft", "scipy_istft"),
    ("scipy ShortTimeFFT.istft", "scipy_sfft"),
    ("librosa.istft", "librosa"),
    ("torch.istft", "torch"),
]
LIBRARIES = ("scipy_istft", "scipy_sfft", "librosa", "torch")
ONLY = {"all": [case for _, case in CASES], "frames": ["ours_frames"],
        "block": ["ours_block", "ours_block1", *LIBRARIES]}


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


def _timed(fn, repeats=1):
    """Time ``repeats`` calls, keep the best (RSS high-water mark only: no
    tracing overhead in the time), then run it again under tracemalloc for
    the peak of what it allocates."""
    import gc
    import tracemalloc
    gc.collect()
    base = _reset_peak()
    seconds = float("inf")
    for _ in range(max(1, repeats)):
        out = None
        t0 = time.perf_counter()
        out = fn()
        seconds = min(seconds, time.perf_counter() - t0)
    rss = _status("VmHWM") - base
    del out
    gc.collect()
    tracemalloc.start()
    out = fn()
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, {"seconds": seconds, "rss_peak": rss, "traced_peak": traced}


def _bare_loop(X, n_frames: int):
    """The work of one push per frame with none of the engine around it:
    copy into one pyfftw c2r plan, execute, window, add into a buffer (a
    ring unrolled, rewound every 256 hops as the engine's is), normalise one
    hop (a fresh array, as push returns).  The window's support (periodic
    hann: samples 1..n_fft-1) and the periodic window-sum-square, as in the
    engine.  Returns the number of samples, as the push loop does."""
    import numpy as np
    import scipy.signal as ss
    from stream import fft
    plan = fft.irfft_plan((1,), N_FFT, np.float32)
    x_in, seg = plan.input_array[0], plan.output_array[0, 1:]
    w = ss.get_window("hann", N_FFT)[1:]
    synth = (w / N_FFT).astype(np.float32)
    wss = np.zeros(HOP)
    for j in range(0, N_FFT - 1, HOP):
        piece = w[j:j + HOP] ** 2
        wss[:len(piece)] += piece
    inv = (1.0 / wss).astype(np.float32)
    s, live = N_FFT - 1, N_FFT - 1 - HOP
    buf = np.zeros(260 * HOP, np.float32)
    p, total = 0, 0
    for t in range(n_frames):
        x_in[...] = X[t]
        plan.execute()
        seg *= synth
        if p + s > len(buf):
            buf[:live] = buf[p:p + live]
            buf[live:] = 0
            p = 0
        buf[p:p + s] += seg
        total += (buf[p:p + HOP] * inv).shape[-1]
        p += HOP
    return total


def _frames_case(X, spec, n_frames: int, repeats: int) -> dict:
    """push one frame at a time against the bare loop, alternating, best of each."""
    import stream

    def push_loop():
        eng = stream.Reconstructor(spec)
        push = eng.push
        total = 0
        for t in range(n_frames):
            total += push(X[t]).shape[-1]
        return total + eng.flush().shape[-1]

    warm = stream.Reconstructor(spec)
    for t in range(200):
        warm.push(X[t])
    _bare_loop(X, 200)
    n, r = _timed(push_loop)
    bare = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        _bare_loop(X, n_frames)
        bare = min(bare, time.perf_counter() - t0)
        t0 = time.perf_counter()
        push_loop()
        r["seconds"] = min(r["seconds"], time.perf_counter() - t0)
    r["samples"] = n
    r["frames_per_s"] = n_frames / r["seconds"]
    r["bare_frames_per_s"] = n_frames / bare
    return r


def run_case(case: str, d: Path, repeats: int = 1) -> dict:
    import numpy as np
    info = json.loads((d / "info.json").read_text())
    n_frames = info["frames"]
    if case == "ours_cli":
        # End to end in its own process: start-up, mapped reading, decode, engine, WAV
        # (the child measures its own peak memory).
        out = d / "cli_out.wav"
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", _CLI_CHILD, str(d / "frames_fb.npy"),
                            str(out)], capture_output=True, text=True, env=CHILD_ENV)
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
        if case == "ours_frames":
            return _frames_case(X, spec, n_frames, repeats)
        workers = 1 if case == "ours_block1" else None
        y, r = _timed(lambda: stream.istft(X, spec, workers=workers), repeats)
        r["samples"] = int(y.shape[-1])
        r["threads"] = stream.Reconstructor(spec, workers=workers).workers
        return r

    Z = np.load(d / "frames_bf.npy")                            # (bins, frames), in RAM
    if case == "scipy_istft":
        import scipy.signal as ss
        ss.istft(Z[:, :2000], fs=SR, nperseg=N_FFT, noverlap=N_FFT - HOP)
        (_, y), r = _timed(lambda: ss.istft(Z, fs=SR, nperseg=N_FFT, noverlap=N_FFT - HOP),
                           repeats)
    elif case == "scipy_sfft":
        import scipy.signal as ss
        sft = ss.ShortTimeFFT(ss.get_window("hann", N_FFT), HOP, fs=SR)
        sft.istft(Z[:, :2000])
        y, r = _timed(lambda: sft.istft(Z), repeats)
    elif case == "librosa":
        import librosa
        librosa.istft(Z[:, :2000], hop_length=HOP, n_fft=N_FFT)
        y, r = _timed(lambda: librosa.istft(Z, hop_length=HOP, n_fft=N_FFT), repeats)
    elif case == "torch":
        import torch
        Zt = torch.from_numpy(Z)
        w = torch.hann_window(N_FFT)
        torch.istft(Zt[:, :2000], N_FFT, HOP, window=w)
        y, r = _timed(lambda: torch.istft(Zt, N_FFT, HOP, window=w), repeats)
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


def run_child(case: str, d: Path, timeout: float, repeats: int) -> dict:
    try:
        p = subprocess.run([sys.executable, __file__, "--case", case, "--dir", str(d),
                            "--repeats", str(repeats)],
                           capture_output=True, text=True, timeout=timeout, env=CHILD_ENV)
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
    ap.add_argument("--minutes", type=float, default=10.0, help="input length (default 10)")
    ap.add_argument("--only", choices=tuple(ONLY), default="all",
                    help="run only: 'frames' (push one frame at a time beside the bare loop), "
                         "'block' (our block path and the libraries); default all")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed calls per case, the best kept (default 3)")
    ap.add_argument("--timeout", type=float, default=900.0, help="per case, seconds")
    ap.add_argument("--keep", metavar="DIR", help="keep the input files in DIR")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.case:                       # child process
        print(json.dumps(run_case(args.case, Path(args.dir), args.repeats)))
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
        cases = [(label, case) for label, case in CASES if case in ONLY[args.only]]
        results = {}
        for label, case in cases:
            results[case] = run_child(case, d, args.timeout, args.repeats)
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
    for label, case in cases:
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

    libs = {c: results[c]["seconds"] for c in LIBRARIES if "seconds" in results.get(c, {})}
    if ours and libs:
        best = min(libs, key=libs.get)
        speedup = libs[best] / ours
        print(f"block path: {speedup:.2f}x faster than the fastest library ({best}, "
              f"{libs[best]:.3f} s); target >= 3x: {'met' if speedup >= 3 else 'NOT met'}")
        one = results.get("ours_block1", {}).get("seconds")
        if one:
            print(f"block path on one thread: {libs[best] / one:.2f}x faster than {best}")
    fps = results.get("ours_frames", {}).get("frames_per_s")
    bare = results.get("ours_frames", {}).get("bare_frames_per_s")
    if fps and bare:
        ratio = fps / bare
        print(f"frame by frame: push {fps:,.0f} frames/s ({fps * HOP / SR:,.0f}x real time), "
              f"bare loop {bare:,.0f} frames/s, push/bare {ratio:.2f} (n_fft {N_FFT}, hop {HOP}, "
              f"best of {args.repeats}); target >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'}")
    if "threads" in results.get("torch", {}):
        print(f"torch used {results['torch']['threads']} threads (its default).")
    if "threads" in results.get("ours_block", {}):
        print(f"our block path used {results['ours_block']['threads']} threads (its default: "
              f"segments of a long push at once, one FFTW thread each); one thread: "
              f"workers=1.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
