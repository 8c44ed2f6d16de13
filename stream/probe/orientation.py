"""Orientation: which axis is frequency, one- or two-sided, and n_fft.

The frequency axis is the one whose first bin is real (DC of a real signal:
phase 0 or pi); the last bin tells even n_fft (Nyquist, also real) from odd;
a two-sided axis shows Hermitian symmetry.  When both axes pass (torch's
reflect-padded first frame is real too) the file layer's size rule
(:func:`stream.files.layout_guess`) guesses, and consistency decides
(:func:`stream.probe.probe` runs the search both ways).
"""

from __future__ import annotations

import numpy as np

from ..files import FileError, guess_layout, layout_guess
from ..spec import SpecError, bins_fit, n_fft_for_bins
from .arrays import sample
from .result import Finding, ProbeResult
from .units import phase_period


def orient(first, phase, unit, known, res: ProbeResult):
    """Frequency axis, one/two-sided, n_fft.  Returns frames x bins (one-sided) views."""
    period = phase_period(unit)
    f2 = first[0] if first.ndim == 3 else first        # channel 0 speaks for all
    p2 = None if phase is None else (phase[0] if phase.ndim == 3 else phase)
    # A long file is judged by its first frames (the long axis: bins are at
    # most 8193), read in one piece: flat memory for a file of any length.
    fh, ph = head(f2), None if p2 is None else head(p2)
    axis, layout_f = _frequency_axis(fh, ph, period, known, res, f2.shape)
    res.findings["layout"] = layout_f
    fb = np.swapaxes(f2, 0, 1) if axis == 0 else f2
    pb = None if p2 is None else (np.swapaxes(p2, 0, 1) if axis == 0 else p2)
    # n_fft may lean on the Nyquist bin once the chosen axis starts with real DC bins
    fbh, pbh = fb[:HEAD_FRAMES], None if pb is None else pb[:HEAD_FRAMES]
    dc_ok = (pb is not None or np.iscomplexobj(fb)) and _dc_realness(fbh, pbh, 1, 0,
                                                                    period) >= 0.9
    return _sides_and_n_fft(fb, pb, period, known, dc_ok, res)


#: Frames a long file is judged by (its first ones, read in one piece).
HEAD_FRAMES = 4096


def head(a: np.ndarray, limit: int = HEAD_FRAMES) -> np.ndarray:
    """A 2-D array with its long axis (frames, when the other holds at most
    8193 bins) cut to its first ``limit`` entries; others as they are."""
    if a.ndim != 2:
        return a
    r, c = a.shape
    if r > max(limit, 8193) and c <= 8193:
        return a[:limit]
    if c > max(limit, 8193) and r <= 8193:
        return a[:, :limit]
    return a


def _dc_realness(first: np.ndarray, phase: np.ndarray | None, axis: int, index: int,
                 period: float) -> float:
    """Fraction of the bins at ``index`` along ``axis`` that are real (phase 0 or pi).

    Only bins above -120 dB of the loudest count: a silent frame (digital
    zeros) is trivially "real" and proves nothing.  nan when too few count.
    """
    lin = _linear_guess(np.take(first, index, axis=axis))
    audible = lin > 1e-6 * _linear_guess(sample(first)).max()
    if audible.sum() < 3:
        return float("nan")
    if phase is not None:
        p = np.asarray(np.take(phase, index, axis=axis), dtype=np.float64)[audible]
        r = np.mod(p, period / 2)
        # 2e-3 of a turn: phases stored as float16 are still "exactly" 0 or pi
        return float(np.mean(np.minimum(r, period / 2 - r) <= 2e-3 * period))
    if np.iscomplexobj(first):
        z = np.asarray(np.take(first, index, axis=axis))[audible]
        return float(np.mean(np.abs(z.imag) <= 1e-5 * np.abs(z) + 1e-7 * lin.max()))
    return float("nan")


def _linear_guess(v) -> np.ndarray:
    """A monotone stand-in for linear magnitude, whatever the stored unit."""
    v = np.asarray(v)
    if np.iscomplexobj(v):
        return np.abs(v)
    v = v.astype(np.float64)
    return 10 ** (np.clip(v, -400, 400) / 20) if v.size and v.min() < 0 else np.abs(v)


def _hermitian(first, phase, axis: int, period: float) -> float:
    """Relative asymmetry of an axis under k -> n-k (0 for a two-sided spectrum)."""
    n = first.shape[axis]
    if n < 4:
        return 1.0
    k = np.arange(1, n)
    a = np.take(first, k, axis=axis).astype(np.complex128 if np.iscomplexobj(first) else np.float64)
    b = np.take(first, n - k, axis=axis)
    if np.iscomplexobj(first):
        d = np.abs(a - np.conj(b)).sum()
        return float(d / max(np.abs(a).sum(), 1e-300))
    d = np.abs(a - b).sum() / max(np.abs(a).sum(), 1e-300)
    if phase is not None:
        s = np.mod(np.take(phase, k, axis=axis) + np.take(phase, n - k, axis=axis), period)
        d += float(np.mean(np.minimum(s, period - s) > 1e-4 * period))
    return float(d)


def _frequency_axis(f2, p2, period, known, res, shape=None) -> tuple[int, Finding]:
    """Which axis is frequency: the one whose first bin is real in every frame.
    ``shape``: the whole array's (``f2`` may be its first frames)."""
    shape = f2.shape if shape is None else tuple(shape)
    if known.get("layout"):
        return _axis(known["layout"]), Finding(known["layout"], "given", 2.0)
    if p2 is None and not np.iscomplexobj(f2):
        return _axis_without_phase(f2, period, known, shape)
    dc = [_dc_realness(f2, p2, ax, 0, period) for ax in (0, 1)]
    ok = [ax for ax in (0, 1) if dc[ax] >= 0.9]        # nan (silent) fails too
    if len(ok) == 1:
        ax = ok[0]
        return ax, Finding(_layout_name(ax), f"axis {ax} ({shape[ax]} long) starts with a real "
                           f"bin (DC phase 0 or pi) in {dc[ax]:.0%} of frames; the other axis "
                           f"in {dc[1 - ax]:.0%}", 0.97)
    if len(ok) == 2:
        # A frame symmetric about its centre (torch's reflect padding) is
        # real too; the frequency axis also ends real (Nyquist, even n_fft).
        nyq = [_dc_realness(f2, p2, ax, -1, period) for ax in (0, 1)]
        nyq = [0.0 if np.isnan(q) else q for q in nyq]
        if abs(nyq[0] - nyq[1]) >= 0.5:
            ax = int(np.argmax(nyq))
            return ax, Finding(_layout_name(ax), f"both axes start real, but only axis {ax} "
                               f"({shape[ax]} long) also ends real (Nyquist) in {nyq[ax]:.0%} "
                               "of frames", 0.85)
        ax, why, _ = _size_guess(shape, known)
        return ax, Finding(_layout_name(ax), f"both axes start with real values; by size: {why}",
                           0.4)
    ax, _, _ = _size_guess(shape, known)
    res.problems.append("the frequency axis could not be confirmed: neither axis starts with "
                        "real DC bins; give --layout and check the phase file")
    return ax, Finding(_layout_name(ax), f"no axis starts with a real (DC) bin (DC test "
                       f"{dc[0]:.0%} / {dc[1]:.0%}): these may not be the STFT of a real "
                       "signal, or the phase is not what it seems", 0.0)


def _axis_without_phase(f2, period, known, shape) -> tuple[int, Finding]:
    """Magnitude only: a mirror-symmetric axis (two-sided), else the sizes."""
    sym = [_hermitian(f2, None, a, period) < 1e-6 for a in (0, 1)]
    if any(sym) and not all(sym):
        return sym.index(True), Finding(_layout_name(sym.index(True)), "magnitude only: axis "
                                        f"{sym.index(True)} is mirror-symmetric (two-sided)", 0.6)
    ax, why, clear = _size_guess(shape, known)
    return ax, Finding(_layout_name(ax), f"magnitude only: no phase to test; {why}",
                       0.5 if clear else 0.3)


def _sides_and_n_fft(fb, pb, period, known, confirmed, res):
    """One- or two-sided (Hermitian symmetry) and n_fft (from the bins, the Nyquist bin)."""
    n = fb.shape[1]
    even, odd = n_fft_for_bins(n)
    given = known.get("n_fft")
    if given and known.get("nyquist") and given == 2 * n:      # the Nyquist bin not stored
        res.findings["onesided"] = Finding(True, "given: the Nyquist bin is not stored", 2.0)
        res.findings["n_fft"] = Finding(given, "given", 2.0)
        return fb, pb, given
    if given and given not in (n, even, odd):
        raise SpecError(f"n_fft={given} does not fit frames of {n} bins: they fit "
                        f"{bins_fit(n)} one-sided, or n_fft={n} two-sided")
    k = min(fb.shape[0], 256)                    # a few hundred frames settle symmetry
    herm = _hermitian(fb[:k], None if pb is None else pb[:k], 1, period)
    if (given == n) or (not given and herm < 1e-3 and n >= 4):
        cut = n // 2 + 1
        res.findings["onesided"] = Finding(False, f"the {n} bins are Hermitian-symmetric "
                                           f"(X[n-k] = conj X[k], asymmetry {herm:.1e}): "
                                           "two-sided", 2.0 if given else 0.97)
        res.findings["n_fft"] = Finding(n, f"{n} bins, two-sided", 2.0 if given else 0.97)
        return fb[:, :cut], None if pb is None else pb[:, :cut], n
    can_test = pb is not None or np.iscomplexobj(fb)
    res.findings["onesided"] = Finding(True, f"not Hermitian-symmetric (asymmetry {herm:.2g}): "
                                       "one-sided", 0.9 if can_test else 0.6)
    if given:
        res.findings["n_fft"] = Finding(given, "given", 2.0)
        return fb, pb, given
    nyq = (_dc_realness(fb[:HEAD_FRAMES], None if pb is None else pb[:HEAD_FRAMES], 1, n - 1,
                        period) if confirmed else float("nan"))
    if confirmed and nyq < 0.5:      # nan: a silent Nyquist bin shows nothing
        res.findings["n_fft"] = Finding(odd, f"{n} bins and the last one is not real "
                                        f"(only {nyq:.0%} of frames): odd n_fft = 2*bins-1", 0.8)
        return fb, pb, odd
    if confirmed and not np.isnan(nyq):
        ev = f"{n} bins = n_fft//2+1; the last bin is real in {nyq:.0%} of frames (Nyquist)"
        conf = 0.97
    elif confirmed:
        ev, conf = f"{n} bins = n_fft//2+1; the last bin is silent, so even n_fft is assumed", 0.7
    else:
        ev, conf = f"{n} bins = n_fft//2+1 (even n_fft assumed; odd 2*bins-1 would also fit)", 0.6
    res.findings["n_fft"] = Finding(even, ev, conf)
    return fb, pb, even


def _layout_name(freq_axis: int) -> str:
    return "bins-frames" if freq_axis == 0 else "frames-bins"


def _axis(layout: str) -> int:
    return 0 if layout == "bins-frames" else 1


def _size_guess(shape, known) -> tuple[int, str, bool]:
    """``(axis, why, clear)``: the frequency axis by the file layer's rule, the
    axis of the n_fft given, else :func:`~stream.files.layout_guess`'s;
    ``clear`` is False when the sizes do not tell."""
    if known.get("n_fft"):
        try:
            layout = guess_layout(shape, known["n_fft"])
            return _axis(layout), f"the axis of {known['n_fft'] // 2 + 1} bins fits n_fft", True
        except FileError:          # no axis of n_fft//2+1 bins: two-sided, say
            pass
    layout, why = layout_guess(shape)
    return _axis(layout), why or f"the sizes do not tell: {layout} (librosa's order)", bool(why)
