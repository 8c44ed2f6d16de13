"""Units of the stored values: magnitude (linear, power, dB, log) and phase
(radians, degrees, cycles), and the decoding of stored frames to complex bins.

The unit names and conversions are :mod:`stream.decode`'s
(:data:`~stream.decode.MAGNITUDES`, :data:`~stream.decode.PHASE_UNITS`,
:class:`~stream.decode.Decoder`); here is only how to tell them from the
values.  The magnitude candidates found here are settled by consistency.
"""

from __future__ import annotations

import numpy as np

from ..decode import PHASE_UNITS, Decoder, Encoding
from ..spec import STFTSpec
from .arrays import sample
from .result import Finding, ProbeResult

#: One turn in each phase unit (2 pi rad, 360 deg, 1 cycle), from decode's factors.
PHASE_SPANS = {unit: 2 * np.pi / factor for unit, factor in PHASE_UNITS.items()}


def phase_likeness(a: np.ndarray):
    """(score, unit, range) for values that fill a phase range evenly; score 0 if not."""
    v = sample(a)
    if v.size == 0 or np.iscomplexobj(v):
        return 0.0, None, None
    lo, hi = float(v.min()), float(v.max())
    for unit, span in PHASE_SPANS.items():
        if not (0.9 * span <= hi - lo <= span * (1 + 1e-3) + 1e-6):
            continue
        signed = lo < -0.05 * span
        if signed and hi > 0.5 * span * (1 + 1e-3) + 1e-6:
            continue
        hist = np.histogram(v, bins=8, range=(lo, hi))[0] / v.size
        even = hist.min() > 0.03
        rng = (f"[-{_fmt_span(unit, span / 2)}, {_fmt_span(unit, span / 2)}]" if signed
               else f"[0, {_fmt_span(unit, span)})")
        return (1.0 if even else 0.4), unit, rng
    return 0.0, None, None


def _fmt_span(unit, x):
    return {"rad": "pi" if abs(x - np.pi) < 1e-9 else "2pi", "deg": f"{x:g}",
            "cycles": f"{x:g}"}[unit]


def phase_period(unit: str | None) -> float:
    """One turn in ``unit`` (radians when not known)."""
    return PHASE_SPANS.get(unit or "rad", 2 * np.pi)


def magnitude_candidates(mag: np.ndarray, known: dict, res: ProbeResult) -> list[str]:
    """Magnitude units to try, most likely first; records the dB floor/reference."""
    if known.get("db_ref") is not None:
        res.findings["db_ref"] = Finding(known["db_ref"], "given", 2.0)
    v = sample(mag)
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
    if known.get("magnitude"):
        if known["magnitude"].startswith("db") and lo < 0:
            _relative_to_max(hi, known, res)
        return [known["magnitude"]]
    at_floor = float(np.mean(v == lo))
    if lo < 0:
        # 20 log10|X| and 10 log10|X|^2 are the same numbers: 'db' stands for both.
        cands = ["db", "log", "log10"]
        if at_floor > 1e-3 and hi - lo <= 150:
            res.findings["top_db"] = Finding(
                round(hi - lo, 2), f"{at_floor:.1%} of the values sit exactly at the minimum, "
                f"{hi - lo:.1f} below the maximum: a clipped floor (librosa top_db)", 0.9)
        _relative_to_max(hi, known, res)
    else:
        cands = ["linear", "power"]
        if lo > 0 and hi / lo < 1e4 and hi < 400:   # a positive dB/log range, not a magnitude
            cands += ["db", "log"]
    return cands


def _relative_to_max(hi: float, known: dict, res: ProbeResult):
    """dB values whose maximum is 0 are relative to it (librosa ``ref=np.max``),
    unless the caller gave the reference."""
    if abs(hi) < 1e-3 and known.get("db_ref") is None:
        res.findings["db_ref"] = Finding(
            1.0, "the maximum is 0: values are relative to the loudest bin (ref=np.max); "
            "the absolute level is lost (a global gain; use --normalize)", 0.3)


def phase_unit(phase: np.ndarray | None, known: dict, res: ProbeResult):
    """The phase unit finding (and the range the values span); None without a phase."""
    if phase is None:
        return None
    score, unit, rng = phase_likeness(phase)
    if known.get("phase_unit"):
        res.findings["phase_unit"] = Finding(known["phase_unit"], "given", 2.0)
        return known["phase_unit"]
    v = sample(phase)
    if unit is None and v.size and v.max() - v.min() > 3 * np.pi:
        res.findings["phase_unit"] = Finding(
            "rad", f"values span {(v.max() - v.min()) / (2 * np.pi):.0f} turns of 2 pi: unwrapped "
            "radians assumed (cos/sin do not care); consistency must confirm", 0.6)
        return "rad"
    if unit is None:
        res.findings["phase_unit"] = Finding("rad", "the phase values fill no phase range "
                                             "(2 pi, 360 or 1)", 0.0)
        res.problems.append("phase unit: the values span no phase range; give --phase-unit")
        return "rad"
    res.findings["phase_unit"] = Finding(unit, f"values span {rng}"
                                         + (" evenly" if score == 1 else " (unevenly)"),
                                         0.97 if score == 1 else 0.6)
    res.findings["phase_range"] = Finding(rng, "min/max of the phase values", 0.97)
    return unit


# -------------------------------------------------------------- decoding
def _decoder(n_fft: int, mag_unit: str, phase_unit: str | None) -> Decoder:
    """decode's Decoder for these units ('complex': the values are the bins)."""
    spec = STFTSpec(n_fft=n_fft, hop_length=max(1, n_fft // 4))
    # nyquist='zero': frames of n_fft/2 bins (no Nyquist bin stored) get a zero one
    return Decoder(spec, Encoding(magnitude=mag_unit if mag_unit != "complex" else "linear",
                                  phase_unit=phase_unit or "rad", nyquist="zero"),
                   dtype=np.complex128)


def decoded(fb, pb, n_fft, mag_unit, phase_unit, sl) -> np.ndarray:
    """Frames ``sl`` of the stored (frames x bins) arrays as complex bins."""
    first = np.asarray(fb[sl])
    return _decoder(n_fft, mag_unit, phase_unit).decode(
        first, None if pb is None else np.asarray(pb[sl]))


def preview(fb, mag_unit, n_fft, max_frames: int = 1000) -> np.ndarray:
    """The magnitude in dB (frames x bins, at most ``max_frames``), for plots."""
    step = max(1, fb.shape[0] // max_frames)
    dec = _decoder(n_fft, mag_unit, None)
    parts = []
    for i in range(0, fb.shape[0], 256 * step):     # a few MB at a time
        v = np.asarray(fb[i:i + 256 * step:step])
        m = np.abs(v) if np.iscomplexobj(v) else dec.magnitude(v)
        parts.append(m.astype(np.float32))
    m = np.concatenate(parts) if parts else np.zeros((0, fb.shape[1]), np.float32)
    top = float(m.max()) if m.size else 0.0
    np.maximum(m, np.float32(1e-10 * max(top, 1e-30)), out=m)
    np.log10(m, out=m)
    m *= 20
    return m


def log_floor(fb, res: ProbeResult):
    """Log magnitudes that stop at a floor many values sit on exactly are
    ``ln(|S| + eps)`` (tensorflow recipes: 1e-6), the floor ``ln(eps)``
    where the magnitude was 0: the eps finding (not a top_db clipping)."""
    unit = res.value("magnitude")
    if unit not in ("log", "log10") or "top_db" not in res.findings:
        return
    lo = float(sample(fb).min())
    eps = float(np.exp(lo) if unit == "log" else 10.0 ** lo)
    del res.findings["top_db"]
    res.findings["eps"] = Finding(float(f"{eps:.3g}"), f"{unit} values stop at {lo:.4g}, many "
                                  f"of them exactly: {unit}(|S| + eps) with eps = {eps:.3g} "
                                  "where |S| was 0", 0.8)
