"""Roles: which array is the magnitude, which the phase, or the complex bins.

The phase is the array whose values fill a phase range (2 pi, 360 or 1
cycle) evenly; a complex array is both.  Real and imaginary parts (two
arrays) are recognised by an imaginary part that is 0 along the DC edge;
``--mag-key``/``--phase-key`` pick arrays of a file that holds several
(``.npz``, MAT, HDF5) by name.  Where the values leave a choice, the names
decide (:func:`stream.files.name_rank`: ``S`` before ``P`` as a magnitude).
"""

from __future__ import annotations

import numpy as np

from ..files import MAG_NAMES, name_rank, other_layout
from ..spec import SpecError
from .arrays import Array, match, sample
from .result import Finding, ProbeResult
from .units import phase_likeness


def assign_roles(arrays: list[Array], known: dict, res: ProbeResult):
    """Pick (first, phase) among the arrays: complex, or magnitude + phase, or magnitude only."""
    keyed = [a for a in arrays if a.key]
    if keyed:           # a file of several arrays (npz, MAT, HDF5): say what it holds
        files = dict.fromkeys(a.file for a in keyed)
        res.findings["variables"] = Finding([a.key for a in keyed], "; ".join(
            f"{f} holds " + ", ".join(f"{a.key} {'x'.join(map(str, a.data.shape)) or 'scalar'}"
                                      f" {a.data.dtype}" for a in keyed if a.file == f)
            for f in files), 1.0)
    two_d = [a for a in arrays if a.data.ndim in (2, 3) and min(a.data.shape[-2:]) >= 1]
    skipped = [a.name for a in arrays if a not in two_d]
    note = f"; ignored {', '.join(skipped)} (not 2-D)" if skipped else ""
    if not two_d:
        raise SpecError("no 2-D array in the input; a spectrogram is frames x bins")
    if known.get("mag_key") or known.get("phase_key"):
        two_d = _by_keys(two_d, known) or two_d
    two_d.sort(key=lambda a: name_rank(a.key or "", MAG_NAMES))     # stable: file order else
    cplx = [a for a in two_d if np.iscomplexobj(a.data)]
    if cplx:
        how = f" ({cplx[0].derived})" if cplx[0].derived else ""
        res.findings["input"] = Finding("complex", f"{cplx[0].name} holds complex values{how}"
                                        f"{note}", 1.0)
        return cplx[0], None
    scored = [(phase_likeness(a.data), a) for a in two_d]
    phases = [(s, a) for s, a in scored if s[0] > 0]
    if not phases and len(two_d) >= 2:
        z, im = _as_real_imag(two_d)
        if z is not None:
            res.findings["input"] = Finding("real+imag", f"{z.derived}: the imaginary part is 0 "
                                            f"all along one edge (the DC bins){note}", 0.9)
            res.findings["imag_file"] = Finding(im.file, "the imaginary part", 0.9)
            res.findings["imag_key"] = Finding(im.key, "array name in the file", 0.9)
            return z, None
    mags = [a for s, a in scored if s[0] == 0]
    if len(two_d) >= 2 and phases:
        ph_score, ph = max(phases, key=lambda p: p[0][0])
        same = [a for a in two_d if a is not ph and a.data.shape == ph.data.shape]
        # the same frames saved in the other layout pair as well as equal shapes
        same += [a for a in two_d if a is not ph and a not in same and match(ph, a)]
        rest = [a for a in same if a in mags] or same
        if rest:
            mag = rest[0]
            ph = match(ph, mag)
            conf = 0.95 if (ph_score[0] == 1.0 and mag in mags) else 0.6
            res.findings["input"] = Finding(
                "magnitude+phase",
                f"{ph.name} fills the phase range {ph_score[2]} ({ph_score[1]}) evenly; "
                f"{mag.name} does not" + _transposed_note(mag, ph) + note, conf)
            return mag, ph
    if not phases and len(two_d) >= 2:
        mag, ph = _unwrapped_pair(two_d)
        if ph is not None:
            res.findings["input"] = Finding(
                "magnitude+phase", f"{ph.name} spans many turns: an unwrapped phase? "
                f"{mag.name} as the magnitude; consistency must confirm"
                + _transposed_note(mag, ph) + note, 0.5)
            return mag, ph
    first = (mags or two_d)[0]
    res.findings["input"] = Finding(
        "magnitude", f"{first.name} is the only spectrogram-like array and holds no phase{note}",
        0.9 if len(two_d) == 1 else 0.5)
    return first, None


def _as_real_imag(two_d: list[Array]):
    """Two same-shape signed arrays that are the real and imaginary parts:
    then the DC bins (one edge of one axis) have an imaginary part of 0."""
    for re in two_d:
        for im0 in two_d:
            if re is im0 or re.data.ndim != 2:
                continue
            im = match(im0, re)
            if im is None:
                continue
            if not (sample(re.data).min() < 0 and sample(im.data).min() < 0):
                continue
            zero_edge = any(not np.any(np.take(np.asarray(im.data), 0, axis=ax)) and
                            np.any(np.take(np.asarray(re.data), 0, axis=ax)) for ax in (0, 1))
            if zero_edge:
                z = np.asarray(re.data, dtype=np.float64) + 1j * np.asarray(im.data)
                how = " (saved transposed)" if im.transposed else ""
                return Array(z, re.file, re.key, re.raw,
                             derived=f"real part {re.name}, imaginary part {im.name}{how}"), im
    return None, None


def _unwrapped_pair(two_d: list[Array]):
    """(magnitude, phase) when one array spans many turns (an unwrapped phase,
    which cos/sin read as well as a wrapped one); the non-negative or the
    narrower other array is the magnitude.  (None, None) otherwise."""
    spans = {id(a): (float(v.min()), float(v.max())) for a in two_d for v in [sample(a.data)]
             if v.size}
    for ph in two_d:
        lo, hi = spans.get(id(ph), (0.0, 0.0))
        if not (lo < 0 and hi - lo > 3 * np.pi):
            continue
        others = [a for a in two_d if a is not ph and match(ph, a) is not None]
        others.sort(key=lambda a: (a.data.shape != ph.data.shape, spans[id(a)][0] < 0,
                                   spans[id(a)][1] - spans[id(a)][0]))
        if others and (spans[id(others[0])][0] >= 0 or
                       spans[id(others[0])][1] - spans[id(others[0])][0] < hi - lo):
            return others[0], match(ph, others[0])
    return None, None


def _transposed_note(mag: Array, ph: Array) -> str:
    if not ph.transposed:
        return ""
    return (f"; {ph.name} {tuple(ph.data.shape[::-1])} holds the frames of {mag.name} "
            f"{tuple(mag.data.shape)} transposed: each is read in its own layout")


def _by_keys(arrays, known):
    picked = [a for a in arrays if a.key in (known.get("mag_key"), known.get("phase_key"))]
    if known.get("mag_key"):
        picked.sort(key=lambda a: a.key != known.get("mag_key"))
    return picked


def record_files(first: Array, ph: Array | None, res: ProbeResult):
    """Where the magnitude (or complex) and the phase arrays are: files and npz keys."""
    res.findings["mag_file"] = Finding(first.file, "the magnitude (or complex) array", 1.0)
    res.findings["mag_key"] = Finding(first.key, "array name in the file", 1.0)
    res.findings["phase_file"] = Finding(None if ph is None else ph.file, "the phase array", 1.0)
    res.findings["phase_key"] = Finding(None if ph is None else ph.key, "array name in the file",
                                        1.0)


def record_phase_layout(first: Array, ph: Array | None, res: ProbeResult):
    """A phase saved transposed is in the other layout (once the layout is known)."""
    if ph is None or not ph.transposed:
        return
    res.findings["phase_layout"] = Finding(
        other_layout(res.value("layout")),
        f"{ph.name} is {first.name} transposed ({tuple(ph.data.shape[::-1])} against "
        f"{tuple(first.data.shape)}): the other layout; reconstruct reads it so by itself",
        res.confidence("layout"))
