"""A long magnitude-only file through ``specstream reconstruct``: time, peak
memory, and how soon Ctrl-C takes effect (reconstruct and probe).

    python tools/bench_long_magnitude.py                 # 30 minutes, 22.05 kHz, 1024/256
    python tools/bench_long_magnitude.py --minutes 5 --keep DIR

The magnitude is that of a real recording (/usr/share/sounds/alsa/*.wav,
resampled by repetition at 22.05 kHz: every clip one after the other, over
and over) analysed block by block into a memory-mapped .npy (librosa's
layout, bins x frames), so that making it needs no more memory than running
it.  The run is a child process; its peak RSS is the kernel's VmHWM, read
through /proc while it runs.  Ctrl-C: SIGINT is sent a few seconds into a
run, and the time until the process has exited is reported.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_magnitude(path: Path, minutes: float, sr: int, n_fft: int, hop: int) -> int:
    """Write |STFT| of ``minutes`` of recordings to ``path``; the frame count."""
    import soundfile as sf

    from stream.engine import Analyzer
    from stream.spec import STFTSpec
    clips = []
    for f in sorted(glob.glob("/usr/share/sounds/alsa/*.wav")):
        x, rate = sf.read(f, dtype="float32", always_2d=True)
        clips.append(x[:, 0])
    if not clips:                       # no recordings: a chirp with noise
        t = np.arange(5 * sr) / sr
        clips = [(0.3 * np.sin(2 * np.pi * (200 + 800 * t) * t)
                  + 0.01 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32)]
    loop = np.concatenate(clips)
    n = int(minutes * 60 * sr)
    spec = STFTSpec(sample_rate=sr, n_fft=n_fft, hop_length=hop)
    frames = spec.frames_for(n)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                    shape=(spec.n_bins, frames))
    an = Analyzer(spec)
    done, pos, step = 0, 0, 1 << 20
    while pos < n:
        k = min(step, n - pos)
        idx = (np.arange(pos, pos + k) % len(loop))
        f = an.push(loop[idx])
        out[:, done:done + f.shape[0]] = np.abs(f).T
        done += f.shape[0]
        pos += k
    f = an.flush()
    out[:, done:done + f.shape[0]] = np.abs(f).T
    out.flush()
    del out
    return frames


def run(cmd, interrupt_after: float | None = None, env=None) -> dict:
    """Run ``cmd``; peak RSS (VmHWM, polled), wall time, and with
    ``interrupt_after`` the seconds from SIGINT to exit."""
    t0 = time.monotonic()
    # A child of a background job inherits SIGINT ignored (and Python then
    # leaves it so): give it the default back, as a terminal's child has it.
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    peak, sent = 0, None
    status = Path(f"/proc/{p.pid}/status")
    while p.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            pass
        if interrupt_after is not None and sent is None and \
                time.monotonic() - t0 >= interrupt_after:
            p.send_signal(signal.SIGINT)
            sent = time.monotonic()
        time.sleep(0.02)
    end = time.monotonic()
    out, err = p.communicate()
    return {"rc": p.returncode, "seconds": round(end - t0, 2), "peak_rss_mb": round(peak / 2**20),
            "sigint_to_exit_s": None if sent is None else round(end - sent, 3),
            "stderr_tail": err.strip().splitlines()[-3:]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--sr", type=int, default=22050)
    ap.add_argument("--n-fft", type=int, default=1024)
    ap.add_argument("--hop", type=int, default=256)
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep the files")
    ap.add_argument("--interrupt-after", type=float, default=5.0, metavar="S")
    ap.add_argument("--ctrl-c-only", action="store_true", help="skip the full run")
    a = ap.parse_args()
    d = Path(a.keep or tempfile.mkdtemp(prefix="specstream-long-"))
    d.mkdir(parents=True, exist_ok=True)
    mag = d / "mag.npy"
    t = time.monotonic()
    if not mag.exists():
        frames = make_magnitude(mag, a.minutes, a.sr, a.n_fft, a.hop)
        print(f"made {mag}: {frames} frames in {time.monotonic() - t:.1f} s", flush=True)
    py = [sys.executable, "-m", "stream"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    base = ["reconstruct", str(mag), "-o", str(d / "out.wav"), "--n-fft", str(a.n_fft),
            "--hop-length", str(a.hop), "-r", str(a.sr), "--subtype", "pcm16", "-q"]
    results = {
        "reconstruct": run(py + base, env=env) if not a.ctrl_c_only else None,
        "reconstruct_ctrl_c": run(py + base, interrupt_after=a.interrupt_after, env=env),
        "probe": run(py + ["probe", str(mag), "-q"], env=env),
        "probe_ctrl_c": run(py + ["probe", str(mag), "-q"], interrupt_after=0.3, env=env),
    }
    results["setup"] = {"minutes": a.minutes, "sr": a.sr, "n_fft": a.n_fft, "hop": a.hop,
                        "file_mb": round(mag.stat().st_size / 2**20)}
    print(json.dumps(results, indent=1))
    if not a.keep:
        for f in d.iterdir():
            f.unlink()
        d.rmdir()


if __name__ == "__main__":
    main()
