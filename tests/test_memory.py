"""Memory stays flat: a long spectrogram file, mapped from disk, never becomes the whole signal in RAM.

The spectrogram files are written to a temporary directory block by block
(never held in RAM), then ``specstream reconstruct`` runs in a fresh Python
process that reports its own peak RSS (``VmHWM``, which counts the mapped file
pages it keeps resident too) and the peak of what numpy allocated
(``tracemalloc``), measured from after its imports.  Only memory is asserted,
never time.
"""

import json
import subprocess
import sys

import numpy as np

SR, N_FFT, HOP = 16000, 512, 256
BINS = N_FFT // 2 + 1

MEASURE = r"""
import json, sys, tracemalloc
import numpy, soundfile, tqdm, stream, stream.cli
# The command line imports the engine (pyfftw, scipy) when it runs: import it
# first, so that the traced peak is the run's memory, not the import's.
import stream.engine, stream.pipeline, stream.phase

def status(key):   # kB, from the kernel's own accounting of this process
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

# ru_maxrss survives exec on Linux (it would report pytest's own peak); VmHWM
# does not, and writing 5 to clear_refs resets it to the current RSS.
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
base = status("VmRSS")
tracemalloc.start()
rc = stream.cli.main(sys.argv[1:])
_, peak = tracemalloc.get_traced_memory()
print(json.dumps({"rc": rc, "rss_growth": status("VmHWM") - base, "traced_peak": peak,
                  "base": base}))
"""


def _write_frames(path, shape, kind, frames_axis):
    """A long spectrogram on disk, filled block by block from a short random one."""
    rng = np.random.default_rng(0)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.complex64 if kind == "complex"
                                    else np.float32, shape=shape)
    n = shape[frames_axis]
    blk = (0.05 * (rng.standard_normal((2048, BINS)) + 1j * rng.standard_normal((2048, BINS))))
    if kind == "mag":
        blk = np.abs(blk)
    elif kind == "phase":
        blk = np.angle(blk)
    blk = blk.astype(out.dtype)
    for i in range(0, n, 2048):
        j = min(i + 2048, n)
        if frames_axis == 0:
            out[i:j] = blk[:j - i]
        else:
            out[:, i:j] = blk[:j - i].T
    out.flush()
    del out


def _measure(args):
    p = subprocess.run([sys.executable, "-c", MEASURE, "reconstruct", *map(str, args)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["rc"] == 0
    return r


def test_long_complex_file_frames_bins(tmp_path):
    minutes = 25
    frames = minutes * 60 * SR // HOP                     # 93,750 frames
    src = tmp_path / "long.npy"
    _write_frames(src, (frames, BINS), "complex", 0)      # 193 MB on disk
    n_samples = (frames - 1) * HOP
    signal_bytes = 4 * n_samples                          # the signal as float32: 96 MB
    out = tmp_path / "long.wav"
    r = _measure([src, "-o", out, "--n-fft", N_FFT, "--hop-length", HOP, "-r", SR,
                  "--subtype", "pcm16", "-q"])
    import soundfile as sf
    assert sf.info(out).frames == n_samples
    # Far below the signal (and the 193 MB file): blocks, plans and buffers only.
    assert r["traced_peak"] < signal_bytes / 5, r
    assert r["rss_growth"] < signal_bytes / 3, r


def test_long_mag_phase_bins_frames_normalized_is_flat(tmp_path):
    # librosa's layout (each frame is a column: strided reads from both maps)
    # and --normalize, which makes two passes over the signal through a
    # temporary file.  Each strided block maps the kernel's fault-around
    # window (64 kB) of every row, a cost that depends on the bin count, not on
    # the duration: the growth must not scale with the file.
    growth, traced = {}, {}
    for minutes in (5, 40):
        frames = minutes * 60 * SR // HOP                 # 18,750 and 150,000 frames
        mag, ph = tmp_path / f"mag{minutes}.npy", tmp_path / f"phase{minutes}.npy"
        _write_frames(mag, (BINS, frames), "mag", 1)      # 154 MB each at 40 min
        _write_frames(ph, (BINS, frames), "phase", 1)
        out = tmp_path / f"long{minutes}.wav"
        r = _measure([mag, ph, "-o", out, "--hop-length", HOP, "-r", SR, "--normalize",
                      "--subtype", "pcm16", "-q"])
        import soundfile as sf
        n_samples = (frames - 1) * HOP
        assert sf.info(out).frames == n_samples
        signal_bytes = 4 * n_samples                      # 154 MB at 40 min
        growth[minutes] = r["rss_growth"]
        traced[minutes] = r["traced_peak"]
        mag.unlink()
        ph.unlink()
        out.unlink()
    assert growth[40] < signal_bytes / 2, growth
    assert growth[40] - growth[5] < 0.1 * signal_bytes, growth
    assert traced[40] < signal_bytes / 10, traced
    assert traced[40] - traced[5] < 0.02 * signal_bytes, traced
