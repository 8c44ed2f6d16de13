"""Cheap checks of parameters given explicitly: the classic mistakes.

A run with every parameter given does not probe; it still looks at a few
frames for what goes wrong most often, each with its fix:

* negative "magnitudes" -- dB (or a log) read as linear;
* phases beyond +-pi read as radians -- degrees;
* the magnitude file holding phases and the phase file magnitudes -- swapped;
* frames far less consistent (``||X - STFT(ISTFT(X))|| / ||X||``) than a
  right guess makes them -- a wrong hop, window, centring or unit (a librosa
  file with hop 200 read with hop 256 scores 0.9; the right parameters give
  1e-7, rounding).

:func:`check_frames` reads at most a few dozen frames, so it costs the same
for a minute and for an hour.
"""

from __future__ import annotations

import numpy as np

from ..decode import Decoder, Encoding
from ..engine import consistency
from ..files import FrameSource, sparse_reads
from ..spec import SpecError, STFTSpec
from .units import phase_likeness

__all__ = ["Check", "check_frames", "INCONSISTENT"]

#: Consistency above which the frames are not what the parameters say.
INCONSISTENT = 0.05


class Check:
    """One finding of :func:`check_frames`: ``what`` went wrong, ``fix`` (flags),
    and ``consistency`` (for the consistency check, else None)."""

    def __init__(self, what: str, fix: str, consistency: float | None = None):
        self.what, self.fix, self.consistency = what, fix, consistency

    def __str__(self):
        return f"{self.what}; {self.fix}"


def _middle(source: FrameSource, k: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``k`` consecutive frames from the middle of the file (frames x bins)."""
    n = source.n_frames
    a = max(0, n // 2 - k // 2)
    b = min(n, a + k)
    sparse_reads(source.first, source.second)
    try:
        first = source.block(a, b)
        second = None if source.second is None else source.block(a, b, source.second)
    finally:
        sparse_reads(source.first, source.second, on=False)
    return first, second


def check_frames(source: FrameSource, spec: STFTSpec, enc: Encoding) -> list[Check]:
    """The classic mistakes these frames show with ``spec`` and ``enc``."""
    r = -(-spec.n_fft // spec.hop_length)
    first, second = _middle(source, 2 * r + 16)
    if spec.channels > 1 and first.ndim == 3:
        first = first[0]
        second = None if second is None else second[0]
    out = []
    real = not np.iscomplexobj(first)
    if second is not None:
        _phase_checks(first, second, enc, out)
    lo = float(np.nanmin(first)) if real and first.size else 0.0
    if real and enc.magnitude in ("linear", "power") and lo < 0 and not out:
        hi = float(np.nanmax(first))
        out.append(Check(f"the magnitudes are negative ({lo:.3g} to {hi:.3g}): dB or a log "
                         "read as linear", "add --magnitude db (or log, log10)"))
    if out or not (second is not None or not real):
        return out
    try:
        x = Decoder(spec, enc, dtype=np.complex128).decode(first, second)
        c = consistency(x, spec.replace(center=False, first_frame=0, first_sample=0))
    except SpecError:
        return out
    if np.isfinite(c) and c > INCONSISTENT:
        out.append(Check(f"the frames are far from consistent with these parameters "
                         f"(||X - STFT(ISTFT(X))||/||X|| = {c:.2g}; the right ones give "
                         "about 1e-6)", "check --hop-length, --window, --center and the units, "
                         "or leave them out to have them inferred", c))
    return out


def _phase_checks(first, second, enc: Encoding, out: list):
    m_score, _, _ = phase_likeness(first)
    p_score, p_unit, p_range = phase_likeness(second)
    if m_score >= 1.0 and p_score < 1.0 and float(np.nanmin(second)) >= 0:
        out.append(Check("the magnitude file holds what look like phases (they fill a phase "
                         "range evenly) and the phase file non-negative values",
                         "give the two files the other way round"))
        return
    names = {"rad": "radians", "deg": "degrees", "cycles": "cycles"}
    if p_unit is not None and p_unit != enc.phase_unit:
        out.append(Check(f"the phases span {p_range}: {names[p_unit]} read as "
                         f"{names[enc.phase_unit]}", f"add --phase-unit {p_unit}"))
