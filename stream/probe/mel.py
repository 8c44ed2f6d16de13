"""Mel bands, not STFT bins: what a magnitude-only array's shape and values say.

A mel file holds no phase and no sign of its STFT, so little can be proved;
what can be seen is said, with the recipe (:data:`stream.mel.MEL_PRESETS`)
that fits, and the rest is asked for:

* the band count: a recipe's exact number of mels (80, 128), and a count
  whose bins would mean an n_fft nobody uses (80 -> 158);
* the floor of the values: HiFi-GAN's ``ln(1e-5)``, Whisper's range of
  exactly 2 (8 decades of log10, divided by 4), librosa's ``top_db``;
* non-negative values with a wide range: a linear (power) mel -- librosa's
  or torchaudio's, which the values cannot tell apart.
"""

from __future__ import annotations

import math

import numpy as np

from ..files import fits_usual_n_fft
from ..mel import MEL_PRESETS, mel_preset
from .arrays import sample
from .result import Finding, ProbeResult

__all__ = ["mel_findings"]

#: The band counts of the recipes (Whisper large-v3 has 128).
_COUNTS = {}
for _name in MEL_PRESETS:
    _COUNTS.setdefault(mel_preset(_name)[1].n_mels, []).append(_name)
_COUNTS.setdefault(128, []).append("whisper")


def _at(v: np.ndarray, value: float, tol: float) -> float:
    """Fraction of ``v`` within ``tol`` of ``value``."""
    return float(np.mean(np.abs(v - value) <= tol))


def mel_findings(fb: np.ndarray, known: dict, res: ProbeResult) -> bool:
    """Record a 'mel' finding for frames x bins ``fb`` when they look like mel
    bands; True when they do (the recipe, its evidence and a question then
    lead the problems)."""
    bands = fb.shape[1]
    v = sample(fb)
    if v.size == 0 or np.iscomplexobj(v):
        return False
    v = np.asarray(v, dtype=np.float64)
    lo, hi = float(v.min()), float(v.max())
    names = _COUNTS.get(bands, [])
    why = []
    if names:
        why.append(f"{bands} values per frame is the mel count of {', '.join(names)}")
    if not fits_usual_n_fft(bands):
        why.append(f"{bands} bins would mean n_fft={2 * (bands - 1)}, which nobody uses")
    preset, unit, sure = None, None, 0.0
    if _at(v, math.log(1e-5), 1e-4) > 1e-3 and hi < 10:
        preset, unit, sure = "hifigan", "log", 0.9
        why.append(f"{_at(v, math.log(1e-5), 1e-4):.1%} of the values sit at ln(1e-5) = -11.51: "
                   "HiFi-GAN's (Tacotron 2's) log clamp")
    elif abs((hi - lo) - 2.0) < 1e-3 and _at(v, lo, 1e-5) > 1e-3:
        preset, unit, sure = "whisper", "whisper", 0.9
        why.append("the values span exactly 2 with a floor that many sit at: Whisper's log10 "
                   "mel, floored 8 decades under its peak, (x + 4) / 4")
    elif lo >= 0 and hi > 0:
        preset, unit, sure = ("librosa" if "librosa" in names or not names else names[0]), \
            "linear", 0.4
        why.append("non-negative values: a linear mel (librosa's or torchaudio's; their "
                   "scales cannot be told from the values)")
    elif lo < 0 and _at(v, lo, 1e-4) > 1e-3 and abs((hi - lo) - 80.0) < 0.01:
        preset, unit, sure = "librosa", "db", 0.6
        why.append("a floor 80 under the peak: librosa's power_to_db with top_db=80")
    if not names and preset is None:
        return False
    if not names and fits_usual_n_fft(bands):
        return False
    sure = sure if names else sure * 0.5
    res.findings["mel"] = Finding(preset, "; ".join(why), sure)
    if unit is not None:
        res.findings["mel_unit"] = Finding(unit, "from the values' floor and range", sure)
    res.mel_flags = {"mel": preset}
    if preset is None or mel_preset(preset)[1].n_mels != bands:
        res.mel_flags["n_mels"] = bands
    if unit and preset and unit != mel_preset(preset)[1].unit:
        res.mel_flags["mel_unit"] = unit
    flags = " ".join(res.mel_arguments())
    if preset is not None:
        _recipe_findings(preset, bands, known, res, sure)
    res.problems.insert(0, f"these look like mel bands ({'; '.join(why)}): reconstruct with "
                           f"{flags}; the sample rate, n_fft, hop and fmax are the recipe's "
                           "-- give --sample-rate, --n-fft, --hop-length, --fmax where the file "
                           "was made otherwise (a mel file does not store them)")
    return True


def _recipe_findings(preset: str, bands: int, known: dict, res: ProbeResult, sure: float):
    """The STFT findings of a magnitude alone (an n_fft from the band count,
    no hop, a dB floor) do not apply to mel bands: the recipe's parameters
    stand instead (the flags given win), as sure as the recipe is."""
    spec, _ = mel_preset(preset)
    why = f"the {preset} recipe's (a mel file does not store it)"
    for name in ("n_fft", "hop_length", "win_length", "window", "center", "sample_rate"):
        if known.get(name) is None:
            res.findings[name] = Finding(getattr(spec, name), why, 0.8 * sure)
    layout = res.findings.get("layout")
    if layout is not None and layout.confidence < 1:
        res.findings["layout"] = Finding(layout.value, f"the axis of {bands} values is the "
                                         "bands'", 0.8 * sure)
    for name in ("onesided", "top_db", "db_ref", "magnitude", "scaling", "phase_origin"):
        res.findings.pop(name, None)
    res.problems[:] = [p for p in res.problems if not p.startswith("magnitude only:")]
