#!/usr/bin/env python
"""Mel -> audio benchmark: ours against librosa's mel_to_audio (and torchaudio's
InverseMelScale + GriffinLim when it is installed), in the same run.

The clips of tools/bench_phase.py (speech: the ALSA recordings; music: a
fluidsynth render), cut to whole hops, made into mel frames by each recipe
of ``stream.mel.mel_preset`` (librosa's defaults, HiFi-GAN, Whisper; the
values are the recipes' own, checked in tests/test_mel.py), then back:

- ours offline: ``FramePipeline(kind='mel')`` with the block phase stage
  (PGHI, then 32 fast Griffin-Lim iterations) -- what ``specstream
  reconstruct MEL --mel PRESET`` runs; its time split into the mel inverse
  (pseudo-inverse + 32 projected-gradient steps a frame), the phase, and the
  rest (decoding, the engine's inverse STFT);
- ours live: the same pipeline with RTPGHI (one frame of lookahead), frames
  pushed one by one as a live stream does;
- librosa ``feature.inverse.mel_to_audio`` (NNLS by L-BFGS-B, then 32
  Griffin-Lim iterations, momentum 0.99, random start): its two calls,
  ``mel_to_stft`` and ``griffinlim`` with ``random_state=0`` (mel_to_audio's
  own start is unseeded: np.random.seed does not reach it);
- torchaudio ``InverseMelScale`` (least squares, clipped) + ``GriffinLim``
  (32 iterations, momentum 0.99), when torchaudio imports.

Spectral convergence (dB, lower is better): "SC" is of the audio's
``|STFT|`` against the clip's, both framed as the recipe frames (its
padding; HiFi-GAN's frames start at -(n_fft - hop)/2); "mel SC" is of the
recipe's mel of the audio against the mel bands given (linear bands: power
or magnitude as the recipe); "mag SC" of the magnitude the inverse made of
the mel against the clip's.  librosa's and torchaudio's audio is of centred
frames: for HiFi-GAN it is moved half a hop (128 samples) later before it
is measured, as a user of theirs would have to.  "x RT" is seconds of audio
per second of compute on one core (BLAS/FFTW/numba pinned to one thread);
every timing is the best of ``--repeat`` runs and of a second's worth at
least, ours and theirs alike.
``--workers N``: ours on N threads (the mel inverse and Griffin-Lim's parts;
default what ``reconstruct`` uses, the CPUs up to 4; 1 for one thread);
librosa stays on one BLAS thread, its fastest here (two made its NNLS 1.1-1.5x
slower: set OPENBLAS_NUM_THREADS to see).

    python tools/bench_mel.py [--seconds 4] [--repeat 3] [--presets librosa,hifigan]
                              [--fewer 16,8] [--workers 1]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import importlib.util
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stream.workers import default_workers  # noqa: E402

#: What reconstruct uses here (read before bench_phase pins its own runs to one thread).
DEFAULT_WORKERS = default_workers()

_spec = importlib.util.spec_from_file_location("bench_phase", ROOT / "tools" / "bench_phase.py")
bench_phase = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_phase)

PRESETS = ("librosa", "hifigan", "whisper")
ITERATIONS = 32


#: Each timing runs at least ``--repeat`` times and for at least this long (s).
MIN_SECONDS = 1.0


def _best(fn, repeat, min_seconds=MIN_SECONDS):
    """The best of at least ``repeat`` runs lasting ``min_seconds`` in all.

    The same rule for ours and librosa's: a run of 20 ms and one of 200 ms
    each get a second of samples (as ``timeit``'s autorange), so that the
    shorter is not judged on three runs a busy moment of a shared machine
    can cover whole."""
    best, out, spent, runs = float("inf"), None, 0.0, 0
    while runs < max(1, repeat) or spent < min_seconds:
        t = time.perf_counter()
        out = fn()
        took = time.perf_counter() - t
        best, spent, runs = min(best, took), spent + took, runs + 1
    return out, best


def _sc(est, true):
    return 20 * np.log10(np.linalg.norm(est - true) / np.linalg.norm(true))


class _Timed:
    """Wraps a stage's method and adds up the seconds it takes."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *a):
        t = time.perf_counter()
        try:
            return self.fn(*a)
        finally:
            self.seconds += time.perf_counter() - t


def run(seconds: float, repeat: int, presets=PRESETS, fewer=(), workers: int = 1):
    from stream import mel as sm
    from stream import phase
    from stream.decode import mel_from_values
    from stream.pipeline import FramePipeline
    import librosa
    try:
        import torch
        import torchaudio
    except (ImportError, OSError):
        torchaudio = None

    phase._kernels()
    rows = []
    for name in presets:
        spec, mel = sm.mel_preset(name)
        sr, hop = int(spec.sample_rate), spec.hop_length
        analysis = sm.preset_analysis(name)
        framing = {k: v for k, v in analysis.items() if k != "eps"}
        # librosa's and torchaudio's frames are centred: where the recipe's
        # start later (HiFi-GAN's), their audio is moved that much later.
        delay = spec.n_fft // 2 - spec.start_trim if not spec.center else 0
        for clip_name, make in (("speech", bench_phase.speech_clip),
                                ("music", bench_phase.music_clip)):
            x = make(sr, seconds).astype(np.float64)
            x = x[:len(x) // hop * hop]
            # float32, as mel files and models hold them (librosa is 5-15 % faster
            # on float32 than on float64, so this is its faster case too)
            values = sm.melspectrogram(x, spec, mel, **analysis).astype(np.float32)
            bands = mel_from_values(values, mel.unit, mel.power, mel.ref).astype(np.float32)
            n = len(values)
            true = np.abs(sm.recipe_stft(x, spec, **framing))
            length = sm.preset_samples_for(name, spec, n)
            dur = length / sr
            tag = dict(preset=name, clip=clip_name, sr=sr, n_fft=spec.n_fft, hop=hop,
                       n_mels=mel.n_mels, dur=dur)

            def fit(y, delay=0):
                y = np.concatenate([np.zeros(delay), np.asarray(y, np.float64)])
                return np.pad(y, (0, max(len(x) - len(y), 0)))[:len(x)]

            def add(method, y, secs, mag=None, split=None, delay=0):
                y = fit(y, delay)
                got = mel_from_values(sm.melspectrogram(y, spec, mel, **analysis), mel.unit,
                                      mel.power, mel.ref)
                rows.append(dict(tag, method=method, secs=secs, rt=dur / secs, split=split,
                                 sc=_sc(np.abs(sm.recipe_stft(y, spec, **framing)), true),
                                 mel_sc=_sc(got, bands),
                                 mag_sc=None if mag is None else _sc(mag, true)))

            def offline(iterations, split):
                stage = phase.phase_stage(spec, "pghi", iterations, workers=workers)
                pipe = FramePipeline(spec, kind="mel", mel=mel, length=length, phase=stage,
                                     workers=workers)
                inv = pipe.mel_stage.invert = _Timed(pipe.mel_stage.invert)
                t = time.perf_counter()
                y = np.concatenate([pipe.push(values), pipe.flush()])
                total = time.perf_counter() - t
                if not split or total < sum(split.values()):
                    split.update(mel=inv.seconds, phase=stage.seconds,
                                 rest=total - inv.seconds - stage.seconds)
                return y

            def live():
                pipe = FramePipeline(spec, kind="mel", mel=mel, length=length,
                                     phase=phase.RTPGHI(spec, rng=0))
                out = [pipe.push(v) for v in values]
                out.append(pipe.flush())
                return np.concatenate(out)

            ours_mag = sm.MelInverter(spec, mel).invert(bands)
            split = {}
            y, s = _best(lambda: offline(ITERATIONS, split), repeat)
            add(f"ours pghi+fgla {ITERATIONS}", y, s, ours_mag, split)
            for its in fewer:          # not the same-iterations comparison: rows apart
                split = {}
                y, s = _best(lambda its=its, sp=split: offline(its, sp), repeat)
                add(f"ours pghi+fgla {its}", y, s, ours_mag, split)
            y, s = _best(live, repeat)
            add("ours live rtpghi", y, s, ours_mag)

            # Centred analysis of more than n * hop - 1 samples has n + 1 frames.
            their_length = min(length, n * hop - 1)
            kw = dict(sr=sr, n_fft=spec.n_fft, hop_length=hop, power=mel.power,
                      fmin=mel.fmin, fmax=mel.fmax, htk=mel.scale == "htk",
                      norm=None if mel.norm == "none" else mel.norm)

            def lr():
                # mel_to_audio is these two calls; its Griffin-Lim draws its
                # start from an unseeded default_rng (np.random.seed does not
                # reach it), so they are made here with random_state=0.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    s = librosa.feature.inverse.mel_to_stft(
                        bands.T, **{k: v for k, v in kw.items() if k != "hop_length"})
                    return librosa.griffinlim(s, n_iter=ITERATIONS, hop_length=hop,
                                              n_fft=spec.n_fft, length=their_length,
                                              random_state=0)
            def lr_mel():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return librosa.feature.inverse.mel_to_stft(
                        bands.T, **{k: v for k, v in kw.items() if k != "hop_length"}).T
            lr_mag, s_mel = _best(lr_mel, repeat)
            y, s = _best(lr, repeat)
            # its split: the NNLS (mel_to_stft, timed on its own), Griffin-Lim the rest
            add(f"librosa mel_to_audio {ITERATIONS}", y, s, None,
                dict(mel=s_mel, phase=s - s_mel, rest=0.0), delay=delay)
            rows[-1]["mag_sc"] = _sc(lr_mag, true)
            if torchaudio is not None:
                inv = torchaudio.transforms.InverseMelScale(
                    n_stft=spec.n_bins, n_mels=mel.n_mels, sample_rate=sr, f_min=mel.fmin,
                    f_max=mel.fmax, norm=None if mel.norm == "none" else mel.norm,
                    mel_scale=mel.scale)
                gl = torchaudio.transforms.GriffinLim(
                    n_fft=spec.n_fft, n_iter=ITERATIONS, hop_length=hop,
                    power=mel.power, momentum=0.99, length=their_length)
                m_t = torch.from_numpy(bands.T.copy()).float()

                def ta():
                    torch.manual_seed(0)
                    return gl(inv(m_t)).numpy()
                y, s = _best(ta, 1, 0.0)
                ta_mag = inv(m_t).numpy().T ** (1 / mel.power)
                add(f"torchaudio inverse+gl {ITERATIONS}", y, s, ta_mag, delay=delay)
    return rows, torchaudio is not None


def table(rows, markdown=False):
    head = ("preset", "clip", "method", "SC dB", "mel SC dB", "mag SC dB", "x RT", "seconds",
            "mel / phase / rest s")
    fmt = "| " + " | ".join(["{}"] * len(head)) + " |" if markdown else \
        "{:<8} {:<7} {:<28} {:>7} {:>9} {:>9} {:>7} {:>8}  {}"
    lines = [fmt.format(*head)]
    if markdown:
        lines.append("|" + "---|" * len(head))
    for r in rows:
        sp = r["split"]
        lines.append(fmt.format(r["preset"], r["clip"], r["method"], f'{r["sc"]:.2f}',
                                f'{r["mel_sc"]:.2f}',
                                "" if r["mag_sc"] is None else f'{r["mag_sc"]:.2f}',
                                f'{r["rt"]:.1f}', f'{r["secs"]:.3f}',
                                "" if not sp else
                                f'{sp["mel"]:.3f} / {sp["phase"]:.3f} / {sp["rest"]:.3f}'))
    return "\n".join(lines)


def verdicts(rows):
    def get(preset, clip, prefix):
        for r in rows:
            if (r["preset"], r["clip"]) == (preset, clip) and r["method"].startswith(prefix):
                return r
        return None

    out = []
    for preset in PRESETS:
        for clip in ("speech", "music"):
            a, b = get(preset, clip, "ours pghi"), get(preset, clip, "librosa")
            if a and b:
                speed = b["secs"] / a["secs"]
                better = a["sc"] <= b["sc"] + 0.05 and a["mel_sc"] <= b["mel_sc"] + 0.05
                out.append(f"{preset} {clip}: ours {a['secs']:.3f} s, librosa mel_to_audio "
                           f"{b['secs']:.3f} s (both {ITERATIONS} Griffin-Lim iterations): "
                           f"{speed:.1f}x faster ({'meets' if speed >= 10 else 'misses'} >= "
                           f"10x); SC {a['sc']:.2f} vs {b['sc']:.2f} dB against the clip's "
                           f"|STFT|, {a['mel_sc']:.2f} vs {b['mel_sc']:.2f} dB against the "
                           f"mel ({'equal or better' if better else 'worse'})")
    for r in rows:
        b = get(r["preset"], r["clip"], "librosa")
        if r["method"].startswith("ours pghi") and r["method"] != f"ours pghi+fgla {ITERATIONS}" \
                and b:
            out.append(f"{r['preset']} {r['clip']}: ours at {r['method'].split()[-1]} "
                       f"iterations (NOT the same-iterations comparison) {r['secs']:.3f} s, "
                       f"{b['secs'] / r['secs']:.1f}x faster than librosa at {ITERATIONS}; SC "
                       f"{r['sc']:.2f} vs {b['sc']:.2f} dB (clip), {r['mel_sc']:.2f} vs "
                       f"{b['mel_sc']:.2f} dB (mel)")
    for preset in PRESETS:
        for clip in ("speech", "music"):
            r = get(preset, clip, "ours live")
            if r:
                target = " (target >= 20x)" if preset == "hifigan" else ""
                out.append(f"live {preset} ({r['sr'] / 1000:g} kHz / {r['n_fft']} / {r['hop']} "
                           f"/ {r['n_mels']} mels) {clip}: {r['rt']:.0f}x real time frame by "
                           f"frame{target}, SC {r['sc']:.2f} dB")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=4.0, help="clip length (default 4 s)")
    p.add_argument("--repeat", type=int, default=3,
                   help="timing runs, best kept, ours and librosa's (default 3)")
    p.add_argument("--presets", default=",".join(PRESETS),
                   help=f"comma-separated, of {', '.join(PRESETS)} (default all)")
    p.add_argument("--fewer", default="",
                   help="also ours at these Griffin-Lim iteration counts, comma-separated "
                        "(rows apart from the same-iterations comparison)")
    p.add_argument("--markdown", action="store_true", help="a markdown table")
    p.add_argument("--workers", type=int,
                   help="threads for ours (default: what reconstruct uses here, the CPUs up "
                        "to 4; librosa stays on one, its fastest)")
    a = p.parse_args(argv)
    if a.workers is None:
        a.workers = DEFAULT_WORKERS
    presets = [n for n in a.presets.split(",") if n]
    bad = [n for n in presets if n not in PRESETS]
    if bad:
        p.error(f"unknown preset {', '.join(bad)}; use {', '.join(PRESETS)}")
    import platform
    fewer = [int(v) for v in a.fewer.split(",") if v]
    rows, have_torchaudio = run(a.seconds, a.repeat, presets, fewer, max(1, a.workers))
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"{'one thread' if a.workers <= 1 else f'ours on {a.workers} threads, librosa on one'}; "
          f"clips {a.seconds:g} s; timings best of {a.repeat} runs and {MIN_SECONDS:g} s at least (torchaudio: one run)")
    print(table(rows, a.markdown))
    if not have_torchaudio:
        print("torchaudio does not import here: no torchaudio rows")
    print()
    for line in verdicts(rows):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
