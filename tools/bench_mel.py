#!/usr/bin/env python
"""Mel -> audio benchmark: ours against librosa's mel_to_audio (and torchaudio's
InverseMelScale + GriffinLim when it is installed), in the same run.

The clips of tools/bench_phase.py (speech: the ALSA recordings; music: a
fluidsynth render), made into mel frames by each recipe of
``stream.mel.mel_preset`` (librosa's defaults, HiFi-GAN, Whisper; the
values are the recipes' own, checked in tests/test_mel.py), then back:

- ours offline: ``FramePipeline(kind='mel')`` with the whole-file phase
  (PGHI, then 32 fast Griffin-Lim iterations) -- what ``specstream
  reconstruct MEL --mel PRESET`` runs;
- ours live: the same pipeline with RTPGHI (one frame of lookahead), frames
  pushed one by one as a live stream does;
- librosa ``feature.inverse.mel_to_audio`` (NNLS by L-BFGS-B, then 32
  Griffin-Lim iterations, momentum 0.99, random start seeded);
- torchaudio ``InverseMelScale`` (least squares, clipped) + ``GriffinLim``
  (32 iterations, momentum 0.99), when torchaudio imports.

Spectral convergence ("SC", dB, lower is better) is of the audio against the
true ``|STFT|`` of the clip (HiFi-GAN's frames are half a hop later: the
clip is shifted to match), over the frames the recipe keeps; "mag SC" is the
magnitude the inverse made of the mel, against the same.  "x RT" is seconds
of audio per second of compute on one core (BLAS/FFTW/numba pinned to one
thread), the best of ``--repeat`` runs.

    python tools/bench_mel.py [--seconds 4] [--repeat 3] [--markdown]
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

_spec = importlib.util.spec_from_file_location("bench_phase", ROOT / "tools" / "bench_phase.py")
bench_phase = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_phase)

PRESETS = ("librosa", "hifigan", "whisper")
ITERATIONS = 32
#: Samples by which a recipe's frames are centred later than center=True puts
#: them: HiFi-GAN pads by (n_fft - hop) / 2, not n_fft / 2, so half a hop.
SHIFT = {"hifigan": 128}


def _best(fn, repeat):
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def _sc(est, true):
    return 20 * np.log10(np.linalg.norm(est - true) / np.linalg.norm(true))


def run(seconds: float, repeat: int):
    from stream import mel as sm
    from stream import phase
    from stream.decode import mel_from_values
    from stream.engine import stft
    from stream.pipeline import FramePipeline
    import librosa
    try:
        import torch
        import torchaudio
    except (ImportError, OSError):
        torchaudio = None

    phase._kernels()
    rows = []
    for name in PRESETS:
        spec, mel = sm.mel_preset(name)
        sr = int(spec.sample_rate)
        for clip_name, make in (("speech", bench_phase.speech_clip),
                                ("music", bench_phase.music_clip)):
            x = make(sr, seconds).astype(np.float64)
            values = sm.melspectrogram(x, spec, mel, **sm.preset_analysis(name))
            bands = mel_from_values(values, mel.unit, mel.power, mel.ref)     # linear M
            n = len(values)
            shift = SHIFT.get(name, 0)
            ref_x = np.concatenate([x[shift:], np.zeros(shift)])
            true = np.abs(stft(ref_x, spec))[:n]
            length = spec.samples_for(n)
            dur = length / sr
            tag = dict(preset=name, clip=clip_name, sr=sr, n_fft=spec.n_fft,
                       hop=spec.hop_length, n_mels=mel.n_mels, dur=dur)

            def audio_sc(y):
                return _sc(np.abs(stft(np.asarray(y, np.float64)[:length], spec))[:n], true)

            def add(method, y, secs, mag=None):
                rows.append(dict(tag, method=method, sc=audio_sc(y), secs=secs, rt=dur / secs,
                                 mag_sc=None if mag is None else _sc(mag, true)))

            def offline():
                pipe = FramePipeline(spec, kind="mel", mel=mel, length=length,
                                     phase=phase.phase_stage(spec, "pghi", ITERATIONS))
                return np.concatenate([pipe.push(values), pipe.flush()])

            def live():
                pipe = FramePipeline(spec, kind="mel", mel=mel, length=length,
                                     phase=phase.RTPGHI(spec, rng=0))
                out = [pipe.push(v) for v in values]
                out.append(pipe.flush())
                return np.concatenate(out)

            ours_mag = sm.MelInverter(spec, mel).invert(bands)
            y, s = _best(offline, repeat)
            add(f"ours pghi+fgla {ITERATIONS}", y, s, ours_mag)
            y, s = _best(live, repeat)
            add("ours live rtpghi", y, s, ours_mag)

            kw = dict(sr=sr, n_fft=spec.n_fft, hop_length=spec.hop_length, power=mel.power,
                      fmin=mel.fmin, fmax=mel.fmax, htk=mel.scale == "htk",
                      norm=None if mel.norm == "none" else mel.norm)

            def lr():
                np.random.seed(0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return librosa.feature.inverse.mel_to_audio(
                        bands.T, n_iter=ITERATIONS, length=length, **kw)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lr_mag = librosa.feature.inverse.mel_to_stft(
                    bands.T, **{k: v for k, v in kw.items() if k != "hop_length"}).T
            y, s = _best(lr, 1 if repeat > 1 else repeat)
            add(f"librosa mel_to_audio {ITERATIONS}", y, s, lr_mag)
            if torchaudio is not None:
                inv = torchaudio.transforms.InverseMelScale(
                    n_stft=spec.n_bins, n_mels=mel.n_mels, sample_rate=sr, f_min=mel.fmin,
                    f_max=mel.fmax, norm=None if mel.norm == "none" else mel.norm,
                    mel_scale=mel.scale)
                gl = torchaudio.transforms.GriffinLim(
                    n_fft=spec.n_fft, n_iter=ITERATIONS, hop_length=spec.hop_length,
                    power=mel.power, momentum=0.99, length=length)
                m_t = torch.from_numpy(bands.T.copy()).float()

                def ta():
                    torch.manual_seed(0)
                    return gl(inv(m_t)).numpy()
                y, s = _best(ta, 1)
                ta_mag = inv(m_t).numpy().T ** (1 / mel.power)
                add(f"torchaudio inverse+gl {ITERATIONS}", y, s, ta_mag)
    return rows, torchaudio is not None


def table(rows, markdown=False):
    head = ("preset", "clip", "method", "SC dB", "mag SC dB", "x RT", "seconds")
    fmt = "| " + " | ".join(["{}"] * len(head)) + " |" if markdown else \
        "{:<8} {:<7} {:<28} {:>7} {:>9} {:>8} {:>8}"
    lines = [fmt.format(*head)]
    if markdown:
        lines.append("|" + "---|" * len(head))
    for r in rows:
        lines.append(fmt.format(r["preset"], r["clip"], r["method"], f'{r["sc"]:.2f}',
                                "" if r["mag_sc"] is None else f'{r["mag_sc"]:.2f}',
                                f'{r["rt"]:.1f}', f'{r["secs"]:.3f}'))
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
                out.append(f"{preset} {clip}: offline {speed:.1f}x faster than mel_to_audio "
                           f"({'meets' if speed >= 10 else 'misses'} >= 10x), SC "
                           f"{a['sc']:.2f} vs {b['sc']:.2f} dB "
                           f"({'equal or better' if a['sc'] <= b['sc'] + 0.05 else 'worse'})")
    for clip in ("speech", "music"):
        r = get("hifigan", clip, "ours live")
        if r:
            out.append(f"live, hifigan (22.05 kHz / 1024 / 256 / 80 mels) {clip}: {r['rt']:.0f}x "
                       f"real time frame by frame ({'meets' if r['rt'] >= 20 else 'misses'} "
                       f">= 20x), SC {r['sc']:.2f} dB")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=4.0, help="clip length (default 4 s)")
    p.add_argument("--repeat", type=int, default=3, help="timing runs, best kept (default 3)")
    p.add_argument("--markdown", action="store_true", help="a markdown table")
    a = p.parse_args(argv)
    import platform
    rows, have_torchaudio = run(a.seconds, a.repeat)
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"one thread; clips {a.seconds:g} s; timings best of {a.repeat} (librosa, torchaudio: "
          f"one run)")
    print(table(rows, a.markdown))
    if not have_torchaudio:
        print("torchaudio does not import here: no torchaudio rows")
    print()
    for line in verdicts(rows):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
