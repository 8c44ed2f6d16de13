"""Forensics: infer how a spectrogram was made from the files alone.

:func:`probe` looks at one or two files (or the arrays of an ``.npz``) and
says, for every parameter the inverse needs, what it is, why, and how sure it
is.  Every stage is one small object or function:

* :class:`_RawGuess` -- a raw binary file has no header: the element type is
  the one whose values are plausible numbers, the row length the one whose
  rows look alike (adjacent frames of a spectrogram, or adjacent bins, are
  similar; misaligned rows are not).
* roles -- the phase is the array whose values fill a phase range (2 pi, 360
  or 1 cycle) evenly; a complex array is both.
* orientation -- the frequency axis is the one whose first bin is real (DC of
  a real signal: phase 0 or pi); the last bin tells even n_fft (Nyquist, also
  real) from odd; a two-sided axis shows Hermitian symmetry.  When both axes
  pass (torch's reflect-padded first frame is real too), consistency decides.
  Real and imaginary parts (two arrays, or pairs on a last axis of 2) are
  recognised by an imaginary part that is 0 along the DC edge.
* window length -- ``irfft`` of a frame is zero outside the window: a window
  shorter than n_fft (librosa ``win_length``, scipy ``nperseg < nfft``)
  shows where it sits; its exact length is the one whose pair mismatch at
  the found hop is least.
* units -- magnitude linear/power/dB/dB-power/log from the values (negative
  values, a flat floor at max - top_db), settled by consistency.
* :class:`_PairScan` (coarse) -- for a window ``w`` and hop ``H``, the
  windowed segments of successive frames must agree where they overlap:
  ``y_t[H+k] w[k] = y_{t+1}[k] w[H+k]``.  Three FFT correlations give the
  mismatch for every hop at once, on a slice of loud frames.
* :func:`consistency` (refine) -- for the best few (hop, window, phase
  origin, unit) candidates, ``||X - STFT(ISTFT(X))|| / ||X||`` with the
  engine's own transforms on interior frames; the right one is near zero
  (float rounding), wrong ones are not.
* edges -- centre padding leaves the first frame's first half zero (or a
  mirror image, torch's reflect padding); ``ShortTimeFFT`` starts earlier.
* level -- the amplitude scaling only shows in the absolute level; it is a
  guess that assumes audio peaks near full scale, and is said to be one.

Scalars stored in an ``.npz`` (``sr``, ``hop_length``...) are read: the
sample rate and length are taken, the rest is checked against the frames.

Nothing is claimed that the evidence does not support: a parameter that
cannot be told has confidence 0 and a note of what would settle it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .decode import Decoder, Encoding
from .engine import istft, stft
from .errors import SpecstreamError
from .files import RAW_DTYPES, array_names, load_array
from .spec import SpecError, STFTSpec

__all__ = ["Finding", "Candidate", "ProbeResult", "probe", "consistency", "WINDOW_CANDIDATES"]

#: Windows the search tries (all periodic, as the libraries make them).
WINDOW_CANDIDATES = ("hann", "hamming", "blackman", "rectangular", "bartlett", "sine",
                     "sqrt-hann")
#: Consistency below this is "an STFT made this way"; above _NOT_CONSISTENT, "not".
_CONSISTENT = 0.02
_NOT_CONSISTENT = 0.1
_DEFAULT_SR = 22050
_TEXT = {".csv", ".txt", ".tsv"}
_RAW_TRY = ("float32", "float64", "float32be", "float64be")
_PHASE_SPANS = {"rad": 2 * np.pi, "deg": 360.0, "cycles": 1.0}


# ---------------------------------------------------------------- results
@dataclass
class Finding:
    """One inferred parameter: its value, the evidence, a confidence in [0, 1]
    (0: cannot tell; the evidence then says what would settle it)."""

    value: object
    evidence: str
    confidence: float

    @property
    def label(self) -> str:
        c = self.confidence
        return ("given" if c > 1 else "certain" if c >= 0.95 else "likely" if c >= 0.7
                else "guess" if c > 0 else "cannot tell")


@dataclass(eq=False)
class Candidate:
    """One STFT hypothesis and its scores (both relative, 0 = consistent)."""

    hop: int
    window: str
    phase_origin: str
    magnitude: str
    pair_score: float
    consistency: float | None = None
    n_fft: int = 0
    win_length: int = 0
    align: str = "center"

    @property
    def relative(self) -> float:
        """Consistency over what random frames would score at this hop,
        ``sqrt(1 - hop/n_fft)``: the fewer samples frames share, the closer
        to consistent any frames are, and the less a low score proves."""
        if self.consistency is None:
            return np.inf
        base = math.sqrt(max(1 - self.hop / max(self.n_fft, 1), 1e-12))
        return self.consistency / base



@dataclass
class ProbeResult:
    """What :func:`probe` found.  ``findings`` maps a parameter name to a
    :class:`Finding`; ``problems`` lists what could not be told and what
    would settle it; ``candidates`` the scored hypotheses (best first)."""

    findings: dict = field(default_factory=dict)
    candidates: list = field(default_factory=list)
    curves: dict = field(default_factory=dict)       # label -> (hops, pair scores)
    problems: list = field(default_factory=list)
    preview_db: np.ndarray | None = None              # frames x bins, for plots
    seconds: float = 0.0
    arrays: tuple = (None, None)                      # (first, phase) as read, for copies
    #: why the absolute level cannot be known from the files (None when it can):
    #: the output then needs ``--normalize``
    level_lost: str | None = None

    @property
    def needs_copy(self) -> str | None:
        """Why ``reconstruct`` cannot read the files as they are (None when it can):
        a two-sided spectrum, or complex values made of real/imag parts."""
        first = self.arrays[0]
        if first is not None and first.derived:
            return first.derived
        if self.value("onesided") is False:
            return "two-sided spectrum"
        return None

    def value(self, name, default=None):
        f = self.findings.get(name)
        return default if f is None else f.value

    def confidence(self, name) -> float:
        f = self.findings.get(name)
        return 0.0 if f is None else f.confidence

    #: Parameters the inverse cannot do without.
    ESSENTIAL = ("layout", "n_fft", "hop_length", "window", "magnitude", "phase_unit")

    @property
    def ok(self) -> bool:
        """True when every essential parameter was inferred (or given)."""
        return all(self.confidence(n) > 0 for n in self.ESSENTIAL
                   if not (n == "phase_unit" and self.value("input") != "magnitude+phase"))

    @property
    def overall(self) -> float:
        """Overall confidence: the weakest essential finding (given ones count as 1)."""
        names = [n for n in self.ESSENTIAL
                 if not (n == "phase_unit" and self.value("input") != "magnitude+phase")]
        return min(min(self.confidence(n), 1.0) for n in names)

    def as_dict(self) -> dict:
        """A JSON-ready dict: the values, plus evidence and confidence per parameter."""
        keys = ("layout", "n_fft", "onesided", "hop_length", "win_length", "window",
                "center", "magnitude", "db_ref", "phase_unit", "scaling")
        out = {k: _jsonable(self.value(k)) for k in keys}
        best = self.candidates[0].consistency if self.candidates else None
        out["consistency"] = None if best is None else float(best)
        out["confidence"] = round(self.overall, 3)
        for k in ("phase_origin", "window_align", "first_frame", "phase_range", "top_db",
                  "sample_rate", "stored",
                  "input", "mag_file", "mag_key", "phase_file", "phase_key", "phase_layout",
                  "dtype",
                  "bins", "raw_shape"):
            if k in self.findings:
                out[k] = _jsonable(self.value(k))
        out["ok"] = self.ok
        out["evidence"] = {k: {"value": _jsonable(f.value), "confidence": round(min(f.confidence, 1), 3),
                               "label": f.label, "evidence": f.evidence}
                           for k, f in self.findings.items()}
        out["candidates"] = [dict(hop_length=c.hop, window=c.window, phase_origin=c.phase_origin,
                                  magnitude=c.magnitude, pair_score=_round(c.pair_score),
                                  consistency=_round(c.consistency))
                             for c in self.candidates[:12]]
        out["level_lost"] = self.level_lost
        out["problems"] = list(self.problems)
        out["seconds"] = round(self.seconds, 3)
        return out


def _round(v):
    return None if v is None or not np.isfinite(v) else float(f"{v:.4g}")


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, Path):
        return str(v)
    return v


# ------------------------------------------------------------- raw files
@dataclass
class _RawGuess:
    """Element type and row length of a headerless binary file.

    The element type must make plausible numbers (finite, not absurdly large
    or small: a wrong byte order or width makes exponents garbage); the row
    length is the divisor of the element count whose rows correlate best with
    their neighbours (log magnitudes of adjacent frames, or bins, are alike).
    """

    dtype: str
    rowlen: int
    score: float
    evidence: str

    @staticmethod
    def plausible_dtypes(path, dtypes=None, allow_complex=False) -> list[tuple[float, str]]:
        size = Path(path).stat().st_size
        out = []
        names = list(dtypes or _RAW_TRY) + (["complex64"] if allow_complex and not dtypes else [])
        for name in names:
            dt = np.dtype(RAW_DTYPES[name])
            if size % dt.itemsize or size == 0:
                continue
            v = np.memmap(path, dtype=dt, mode="r")[: 1 << 18]
            v = np.asarray(v).view(dt.str[0] + "f" + str(dt.itemsize // 2)) \
                if dt.kind == "c" else np.asarray(v)
            with np.errstate(all="ignore"):
                a = np.abs(v.astype(np.float64))
            good = np.isfinite(a) & ((a == 0) | ((a > 1e-30) & (a < 1e12)))
            out.append((float(good.mean()), name))
        return sorted(out, reverse=True)

    @classmethod
    def guess(cls, path, dtype=None, rowlen=None, allow_complex=False):
        """The best (dtype, row length) for ``path``; None when no dtype is plausible."""
        ranked = [(p, n) for p, n in cls.plausible_dtypes(path, [dtype] if dtype else None,
                                                          allow_complex) if p > 0.999]
        best, best_rank = None, -np.inf
        for plaus, name in ranked:
            dt = np.dtype(RAW_DTYPES[name])
            mm = np.memmap(path, dtype=dt, mode="r")
            lens = [rowlen] if rowlen else _divisors(mm.shape[0])
            scored = sorted(((_row_similarity(mm, n), n) for n in lens), reverse=True)
            if not scored:
                continue
            s, n = scored[0]
            # Rows of two or more whole frames look alike too: take the
            # shortest row the best one is a multiple of, if it scores as well.
            for s2, n2 in sorted(scored, key=lambda p: p[1]):
                if n2 < n and n % n2 == 0 and s2 >= s - 0.05:
                    s, n = s2, n2
                    break
            others = ", ".join(f"{m}: {v:.2f}" for v, m in scored[1:3])
            g = cls(name, n, s, f"{name}: all values plausible numbers; rows of {n} values "
                                f"look alike (adjacent-row correlation {s:.2f}; next {others or '-'})")
            rank = g.score
            if dt.kind == "c" and _real_edge(mm.reshape(-1, n)):
                # complex bins whose first bin is real (DC): the same bytes read
                # as float32 pairs would look smooth too, but not be complex
                rank += 1.0
                g.evidence += "; one edge of the rows is real (DC bins): complex"
            if best is None or rank > best_rank + 0.02:
                best, best_rank = g, rank
        return best


def _real_edge(a) -> bool:
    """True when the first row or the first column of complex ``a`` is real (DC)."""
    for edge in (np.asarray(a[:64, 0]), np.asarray(a[0, :4096])):
        scale = max(float(np.abs(edge).max()), 1e-30)
        if np.mean(np.abs(edge.imag) <= 1e-6 * scale) > 0.9 and np.any(edge.real):
            return True
    return False


def _divisors(count: int) -> list[int]:
    out = []
    for d in range(3, int(math.isqrt(count)) + 1):
        if count % d == 0:
            out.extend([d, count // d])
    return sorted({d for d in out if 5 <= d <= (1 << 17) and count // d >= 2})


def _row_similarity(mm, rowlen: int) -> float:
    """Mean correlation of adjacent rows (log magnitude) when the file is cut
    into rows of ``rowlen`` values; reads at most 48 rows x 2048 columns."""
    rows = min(mm.shape[0] // rowlen, 48)
    if rows < 2:
        return -1.0
    m = np.asarray(mm[:rows * rowlen].reshape(rows, rowlen)[:, :2048])
    g = np.abs(m).astype(np.float64) if np.iscomplexobj(m) else m.astype(np.float64)
    if np.iscomplexobj(m) or g.min() >= 0:
        g = np.log(g + 1e-9 * max(g.max(), 1e-30))
    lo, hi = np.percentile(g, [1, 99])    # exact zeros must not dominate the correlation
    g = np.clip(g, lo, hi)
    g = g - g.mean(axis=1, keepdims=True)
    num = (g[:-1] * g[1:]).sum(axis=1)
    den = np.sqrt((g[:-1] ** 2).sum(axis=1) * (g[1:] ** 2).sum(axis=1))
    ok = den > 0
    return float(np.mean(num[ok] / den[ok])) if ok.any() else -1.0


# ------------------------------------------------------------ the arrays
@dataclass(eq=False)
class _Array:
    """One array read from a file, with where it came from."""

    data: np.ndarray
    file: str
    key: str | None = None
    raw: _RawGuess | None = None
    #: how ``data`` was made from the stored arrays when it is not one of them
    derived: str | None = None
    #: ``data`` is the stored array transposed (the same frames as its partner,
    #: saved in the other layout)
    transposed: bool = False

    @property
    def name(self) -> str:
        return self.file + (f"[{self.key}]" if self.key else "")


def _read_file(path, known: dict, allow_complex: bool) -> list[_Array]:
    path = str(path)
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return [_pairs_last(_Array(load_array(path, key=k), path, k)) for k in array_names(path)]
    if suffix == ".npy" or suffix in _TEXT:
        return [_pairs_last(_Array(load_array(path), path))]
    if not Path(path).exists():
        raise SpecError(f"{path}: no such file")
    g = _RawGuess.guess(path, known.get("dtype"), known.get("rowlen"), allow_complex)
    if g is None:
        raise SpecError(f"{path}: no element type ({', '.join(_RAW_TRY)}) reads it as plausible "
                        "numbers; give --dtype (and --bins)")
    mm = np.memmap(path, dtype=np.dtype(RAW_DTYPES[g.dtype]), mode="r")
    return [_Array(mm.reshape(-1, g.rowlen), path, None, g)]


def _pairs_last(a: _Array) -> _Array:
    """A real array whose last axis holds (real, imag) pairs (torch's
    ``view_as_real``, ``return_complex=False``) becomes complex."""
    d = a.data
    if d.ndim == 3 and d.shape[-1] == 2 and not np.iscomplexobj(d) and d.dtype.kind == "f":
        z = np.asarray(d[..., 0]) + 1j * np.asarray(d[..., 1])
        return _Array(z, a.file, a.key, a.raw, derived="real/imag pairs on the last axis")
    return a


def _as_real_imag(two_d: list[_Array]):
    """Two same-shape signed arrays that are the real and imaginary parts:
    then the DC bins (one edge of one axis) have an imaginary part of 0."""
    for re in two_d:
        for im0 in two_d:
            if re is im0 or re.data.ndim != 2:
                continue
            im = _match(im0, re)
            if im is None:
                continue
            if not (_sample(re.data).min() < 0 and _sample(im.data).min() < 0):
                continue
            zero_edge = any(not np.any(np.take(np.asarray(im.data), 0, axis=ax)) and
                            np.any(np.take(np.asarray(re.data), 0, axis=ax)) for ax in (0, 1))
            if zero_edge:
                z = np.asarray(re.data, dtype=np.float64) + 1j * np.asarray(im.data)
                how = " (saved transposed)" if im.transposed else ""
                return _Array(z, re.file, re.key, re.raw,
                              derived=f"real part {re.name}, imaginary part {im.name}{how}"), im
    return None, None


def _match(a: _Array, like: _Array) -> _Array | None:
    """``a`` as an array of ``like``'s shape: itself, or -- when it holds the
    same frames saved in the other layout (2-D, the transposed shape, not
    square) -- a transposed view (``transposed`` set); None when the shapes
    are unrelated."""
    if a.data.shape == like.data.shape:
        return a
    s = like.data.shape
    if a.data.ndim == 2 and len(s) == 2 and s[0] != s[1] and a.data.shape == s[::-1]:
        return _Array(a.data.T, a.file, a.key, a.raw, a.derived, transposed=True)
    return None


def _check_pairable(arrays: list[_Array], first_file, second_file):
    """Two files named explicitly must hold arrays that go together: the same
    shape, or one the other transposed.  Otherwise one of them would be left
    out without a word."""
    a = [x for x in arrays if x.file == str(first_file) and x.data.ndim >= 2]
    b = [x for x in arrays if x.file == str(second_file) and x.data.ndim >= 2]
    if not a or not b or str(first_file) == str(second_file):
        return
    if any(_match(y, x) is not None for x in a for y in b):
        return
    shapes = lambda xs: ", ".join(f"{x.name} {tuple(x.data.shape)}" for x in xs)   # noqa: E731
    raise SpecError(f"{shapes(a)} and {shapes(b)} cannot be a magnitude/phase pair: the shapes "
                    "are neither equal nor each other's transpose; check that both files come "
                    "from the same spectrogram")


def _phase_likeness(a: np.ndarray):
    """(score, unit, range) for values that fill a phase range evenly; score 0 if not."""
    v = _sample(a)
    if v.size == 0 or np.iscomplexobj(v):
        return 0.0, None, None
    lo, hi = float(v.min()), float(v.max())
    for unit, span in _PHASE_SPANS.items():
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


def _sample(a: np.ndarray, n: int = 1 << 18) -> np.ndarray:
    """Up to ``n`` finite values spread over the array (cheap on memory maps)."""
    flat = a.reshape(-1) if a.flags.c_contiguous else np.ravel(a)
    step = max(1, flat.shape[0] // n)
    v = np.asarray(flat[::step][:n])
    return v[np.isfinite(v)]


def _assign_roles(arrays: list[_Array], known: dict, res: ProbeResult):
    """Pick (first, phase) among the arrays: complex, or magnitude + phase, or magnitude only."""
    two_d = [a for a in arrays if a.data.ndim in (2, 3) and min(a.data.shape[-2:]) >= 1]
    skipped = [a.name for a in arrays if a not in two_d]
    note = f"; ignored {', '.join(skipped)} (not 2-D)" if skipped else ""
    if not two_d:
        raise SpecError("no 2-D array in the input; a spectrogram is frames x bins")
    if known.get("mag_key") or known.get("phase_key"):
        two_d = _by_keys(two_d, known) or two_d
    cplx = [a for a in two_d if np.iscomplexobj(a.data)]
    if cplx:
        how = f" ({cplx[0].derived})" if cplx[0].derived else ""
        res.findings["input"] = Finding("complex", f"{cplx[0].name} holds complex values{how}"
                                        f"{note}", 1.0)
        return cplx[0], None
    scored = [(_phase_likeness(a.data), a) for a in two_d]
    phases = [(s, a) for s, a in scored if s[0] > 0]
    if not phases and len(two_d) >= 2:
        z, im = _as_real_imag(two_d)
        if z is not None:
            res.findings["input"] = Finding("real+imag", f"{z.derived}: the imaginary part is 0 "
                                            f"all along one edge (the DC bins){note}", 0.9)
            res.findings["imag_file"] = Finding(im.file, "the imaginary part", 0.9)
            res.findings["imag_key"] = Finding(im.key, "array name in the .npz", 0.9)
            return z, None
    mags = [a for s, a in scored if s[0] == 0]
    if len(two_d) >= 2 and phases:
        ph_score, ph = max(phases, key=lambda p: p[0][0])
        same = [a for a in two_d if a is not ph and a.data.shape == ph.data.shape]
        # the same frames saved in the other layout pair as well as equal shapes
        same += [a for a in two_d if a is not ph and a not in same and _match(ph, a)]
        rest = [a for a in same if a in mags] or same
        if rest:
            mag = rest[0]
            ph = _match(ph, mag)
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


def _unwrapped_pair(two_d: list[_Array]):
    """(magnitude, phase) when one array spans many turns (an unwrapped phase,
    which cos/sin read as well as a wrapped one); the non-negative or the
    narrower other array is the magnitude.  (None, None) otherwise."""
    spans = {id(a): (float(v.min()), float(v.max())) for a in two_d for v in [_sample(a.data)]
             if v.size}
    for ph in two_d:
        lo, hi = spans.get(id(ph), (0.0, 0.0))
        if not (lo < 0 and hi - lo > 3 * np.pi):
            continue
        others = [a for a in two_d if a is not ph and _match(ph, a) is not None]
        others.sort(key=lambda a: (a.data.shape != ph.data.shape, spans[id(a)][0] < 0,
                                   spans[id(a)][1] - spans[id(a)][0]))
        if others and (spans[id(others[0])][0] >= 0 or
                       spans[id(others[0])][1] - spans[id(others[0])][0] < hi - lo):
            return others[0], _match(ph, others[0])
    return None, None


def _transposed_note(mag: _Array, ph: _Array) -> str:
    if not ph.transposed:
        return ""
    return (f"; {ph.name} {tuple(ph.data.shape[::-1])} holds the frames of {mag.name} "
            f"{tuple(mag.data.shape)} transposed: each is read in its own layout")


def _by_keys(arrays, known):
    picked = [a for a in arrays if a.key in (known.get("mag_key"), known.get("phase_key"))]
    if known.get("mag_key"):
        picked.sort(key=lambda a: a.key != known.get("mag_key"))
    return picked


# ----------------------------------------------------------- orientation
def _dc_realness(first: np.ndarray, phase: np.ndarray | None, axis: int, index: int,
                 period: float) -> float:
    """Fraction of the bins at ``index`` along ``axis`` that are real (phase 0 or pi).

    Only bins above -120 dB of the loudest count: a silent frame (digital
    zeros) is trivially "real" and proves nothing.  nan when too few count.
    """
    lin = _linear_guess(np.take(first, index, axis=axis))
    audible = lin > 1e-6 * _linear_guess(_sample(first)).max()
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


def _nice(n: int) -> bool:
    return n >= 16 and (n & (n - 1) == 0 or n % 32 == 0 or n in (400, 480, 600, 800, 1200))


def _orient(first, phase, unit, known, res: ProbeResult):
    """Frequency axis, one/two-sided, n_fft.  Returns frames x bins (one-sided) views."""
    period = _PHASE_SPANS.get(unit or "rad", 2 * np.pi)
    f2 = first[0] if first.ndim == 3 else first        # channel 0 speaks for all
    p2 = None if phase is None else (phase[0] if phase.ndim == 3 else phase)
    axis, layout_f = _frequency_axis(f2, p2, period, known, res)
    res.findings["layout"] = layout_f
    fb = np.swapaxes(f2, 0, 1) if axis == 0 else f2
    pb = None if p2 is None else (np.swapaxes(p2, 0, 1) if axis == 0 else p2)
    # n_fft may lean on the Nyquist bin once the chosen axis starts with real DC bins
    dc_ok = (pb is not None or np.iscomplexobj(fb)) and _dc_realness(fb, pb, 1, 0, period) >= 0.9
    return _sides_and_n_fft(fb, pb, period, known, dc_ok, res)


def _frequency_axis(f2, p2, period, known, res) -> tuple[int, Finding]:
    """Which axis is frequency: the one whose first bin is real in every frame."""
    shape = f2.shape
    if known.get("layout"):
        return (0 if known["layout"] == "bins-frames" else 1), Finding(known["layout"], "given", 2.0)
    if p2 is None and not np.iscomplexobj(f2):
        return _axis_without_phase(f2, period, known)
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
        ax = _axis_by_size(shape, known)
        return ax, Finding(_layout_name(ax), "both axes start with real values; chose the one "
                           "whose length fits a usual n_fft", 0.4)
    ax = _axis_by_size(shape, known)
    res.problems.append("the frequency axis could not be confirmed: neither axis starts with "
                        "real DC bins; give --layout and check the phase file")
    return ax, Finding(_layout_name(ax), f"no axis starts with a real (DC) bin (DC test "
                       f"{dc[0]:.0%} / {dc[1]:.0%}): these may not be the STFT of a real "
                       "signal, or the phase is not what it seems", 0.0)


def _axis_without_phase(f2, period, known) -> tuple[int, Finding]:
    """Magnitude only: a mirror-symmetric axis (two-sided), else the usual sizes."""
    shape = f2.shape
    ax = _axis_by_size(shape, known)
    sym = [_hermitian(f2, None, a, period) < 1e-6 for a in (0, 1)]
    if any(sym) and not all(sym):
        return sym.index(True), Finding(_layout_name(sym.index(True)), "magnitude only: axis "
                                        f"{sym.index(True)} is mirror-symmetric (two-sided)", 0.6)
    clear = _nice(2 * (shape[ax] - 1)) != _nice(2 * (shape[1 - ax] - 1))
    return ax, Finding(_layout_name(ax), f"magnitude only: no phase to test; the axis of "
                       f"{shape[ax]} fits a usual n_fft" + (" better" if clear else
                                                           " (a guess)"), 0.5 if clear else 0.3)


def _sides_and_n_fft(fb, pb, period, known, confirmed, res):
    """One- or two-sided (Hermitian symmetry) and n_fft (from the bins, the Nyquist bin)."""
    n = fb.shape[1]
    given = known.get("n_fft")
    if given and given not in (n, 2 * (n - 1), 2 * n - 1):
        raise SpecError(f"--n-fft {given} does not fit frames of {n} bins: they fit "
                        f"{2 * (n - 1)} (or {2 * n - 1}) one-sided, or {n} two-sided")
    step = max(1, fb.shape[0] // 256)           # a few hundred frames settle symmetry
    herm = _hermitian(fb[::step], None if pb is None else pb[::step], 1, period)
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
    nyq = _dc_realness(fb, pb, 1, n - 1, period) if confirmed else float("nan")
    if confirmed and nyq < 0.5:      # nan: a silent Nyquist bin shows nothing
        res.findings["n_fft"] = Finding(2 * n - 1, f"{n} bins and the last one is not real "
                                        f"(only {nyq:.0%} of frames): odd n_fft = 2*bins-1", 0.8)
        return fb, pb, 2 * n - 1
    if confirmed and not np.isnan(nyq):
        ev, conf = f"{n} bins = n_fft//2+1; the last bin is real in {nyq:.0%} of frames (Nyquist)", 0.97
    elif confirmed:
        ev, conf = f"{n} bins = n_fft//2+1; the last bin is silent, so even n_fft is assumed", 0.7
    else:
        ev, conf = f"{n} bins = n_fft//2+1 (even n_fft assumed; odd 2*bins-1 would also fit)", 0.6
    res.findings["n_fft"] = Finding(2 * (n - 1), ev, conf)
    return fb, pb, 2 * (n - 1)


def _layout_name(freq_axis: int) -> str:
    return "bins-frames" if freq_axis == 0 else "frames-bins"


def _axis_by_size(shape, known) -> int:
    if known.get("n_fft"):
        b = known["n_fft"] // 2 + 1
        if shape[1] == b and shape[0] != b:
            return 1
        return 0
    nice = [_nice(2 * (s - 1)) or _nice(s) for s in shape]
    if nice[1] and not nice[0]:
        return 1
    return 0


# ------------------------------------------------------------------ units
def _magnitude_candidates(mag: np.ndarray, known: dict, res: ProbeResult) -> list[str]:
    """Magnitude units to try, most likely first; records the dB floor/reference."""
    if known.get("db_ref") is not None:
        res.findings["db_ref"] = Finding(known["db_ref"], "given", 2.0)
    v = _sample(mag)
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
    if known.get("magnitude"):
        if known["magnitude"].startswith("db") and lo < 0:
            _relative_to_max(hi, known, res)
        return [known["magnitude"]]
    at_floor = float(np.mean(v == lo))
    if lo < 0:
        # 20 log10|X| and 10 log10|X|^2 are the same numbers: 'db' stands for both.
        cands = ["db", "log"]
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


def _phase_unit(phase: np.ndarray | None, known: dict, res: ProbeResult):
    if phase is None:
        return None
    score, unit, rng = _phase_likeness(phase)
    if known.get("phase_unit"):
        res.findings["phase_unit"] = Finding(known["phase_unit"], "given", 2.0)
        return known["phase_unit"]
    v = _sample(phase)
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


# ---------------------------------------------------------- coarse: pairs
class _PairScan:
    """Overlap mismatch of successive frames for every hop at once.

    ``y_t = irfft(X_t)`` is ``w * x[tH : tH+N]`` (rolled by half a frame for a
    window-centre phase).  For the right window and hop
    ``y_t[H+k] w[k] = y_{t+1}[k] w[H+k]`` on the overlap ``0 <= k < N-H``; the
    squared mismatch is ``c(y_t^2, w^2) + c(w^2, y_{t+1}^2) - 2 c(y_t w, y_{t+1} w)``
    with ``c(f, g)[L] = sum_k f[L+k] g[k]``, three FFT correlations for all L.
    """

    def __init__(self, frames: np.ndarray, n_fft: int):
        self.n = n_fft
        self.y_file = np.fft.irfft(frames.astype(np.complex128), n=n_fft, axis=1)
        self._rolled = {}

    def scores(self, window: str, origin: str, win_length: int | None = None,
               align: str = "center") -> np.ndarray:
        """Mismatch / overlap energy for hops 0..N-1 (inf where undefined)."""
        n = self.n
        spec = STFTSpec(n_fft=n, win_length=win_length or n, hop_length=1, window=window,
                        window_align=align, phase_origin=origin)
        w = spec.padded_window
        r = spec.phase_reference      # undo a window-centre phase: y_fs = roll(y_file, r)
        if r not in self._rolled:
            self._rolled[r] = np.roll(self.y_file, r, axis=1) if r else self.y_file
        y = self._rolled[r]
        a, b = y[:-1], y[1:]
        m = 2 * n
        fa2, fb2 = np.fft.rfft(a * a, m), np.fft.rfft(b * b, m)
        fw2 = np.fft.rfft(w * w, m)
        faw, fbw = np.fft.rfft(a * w, m), np.fft.rfft(b * w, m)
        t1 = np.fft.irfft((fa2 * np.conj(fw2)).sum(0), m)[:n]
        t2 = np.fft.irfft((fw2 * np.conj(fb2)).sum(0), m)[:n]
        x = np.fft.irfft((faw * np.conj(fbw)).sum(0), m)[:n]
        den = t1 + t2
        num = np.maximum(den - 2 * x, 0)
        energy = float((a * a).sum() + (b * b).sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.sqrt(num / den)
        # Tapered windows at low overlap (blackman, 25 %) share little energy:
        # keep those hops; the engine check weeds out flukes.
        s[~(den > 1e-9 * energy * float((w * w).max()))] = np.inf
        s[: max(1, n // 8)] = np.inf      # the search range: hops n_fft/8 .. n_fft
        return s


def _score_at(scan: "_PairScan", window, origin, win_length, align, hop) -> float:
    """The pair mismatch at one hop (direct sums; for trying many window lengths)."""
    n = scan.n
    spec = STFTSpec(n_fft=n, win_length=win_length, hop_length=1, window=window,
                    window_align=align, phase_origin=origin)
    w, r = spec.padded_window, spec.phase_reference
    y = np.roll(scan.y_file, r, axis=1) if r else scan.y_file
    a, b = y[:-1, hop:], y[1:, :n - hop]
    wa, wb = w[:n - hop], w[hop:]
    num = ((a * wa - b * wb) ** 2).sum()
    den = ((a * wa) ** 2 + (b * wb) ** 2).sum()
    return float(np.sqrt(num / den)) if den > 0 else np.inf


def _refine_win_length(scan, cands: list, est_range, k: int = 4) -> list:
    """For the best few candidates with a short window, the window length
    whose pair mismatch at their hop is least (tapered windows hide their
    ends below any threshold, so the support only brackets the length)."""
    out, seen = [], set()
    for c in cands:
        if c.win_length >= c.n_fft or (c.window, c.align, c.phase_origin, c.hop) in seen:
            continue
        seen.add((c.window, c.align, c.phase_origin, c.hop))
        lo, hi = est_range
        scores = {w: _score_at(scan, c.window, c.phase_origin, w, c.align, c.hop)
                  for w in range(lo, min(hi, c.n_fft) + 1) if c.hop <= w}
        if scores:
            w = min(scores, key=scores.get)
            out.append(Candidate(c.hop, c.window, c.phase_origin, c.magnitude, scores[w],
                                 n_fft=c.n_fft, win_length=w, align=c.align))
        if len(seen) >= k:
            break
    return out


def _window_shapes(y_file: np.ndarray, known: dict, origins) -> list[tuple]:
    """(win_length, window_align, phase_origin) to search, from where frames are zero.

    ``irfft`` of each frame is the windowed segment, exactly zero outside
    the window: a window shorter than n_fft shows as a run of zeros --
    at the frame's end (scipy's left placement), at both ends (librosa's
    centred placement), or in the middle (a window-centre phase rolls it).
    Tapered windows look a sample or two shorter on each side, so a few
    lengths are tried.
    """
    n = y_file.shape[1]
    if known.get("win_length"):
        w = known["win_length"]
        aligns = ["center", "left"] if w < n else ["center"]
        return [(w, a, o) for a in aligns for o in origins]
    prof = (y_file ** 2).mean(axis=0)
    quiet = prof <= 1e-9 * max(prof.max(), 1e-300)
    gap, start = _longest_circular_run(quiet)
    if gap <= max(4, n // 64):
        return [(n, "center", o) for o in origins]
    est = n - gap                                   # support length, maybe a bit short
    s0 = (start + gap) % n                          # first sample of the support
    tol = max(3, gap // 4)
    shapes = []
    for w in sorted({min(est + d, n) for d in (1, 4)}):
        for align, origin in (("center", "frame-start"), ("left", "frame-start"),
                              ("center", "window-center")):
            if origin not in origins:
                continue
            first = STFTSpec(n_fft=n, win_length=w, hop_length=1, window_align=align,
                             phase_origin=origin)
            lead = (first.window_offset - first.phase_reference) % n
            if min((s0 - lead) % n, (lead - s0) % n) <= tol:
                shapes.append((w, align, origin))
    return shapes or [(n, "center", o) for o in origins]


def _support_range(shapes, n) -> tuple[int, int]:
    """Window lengths worth trying around the support the shapes came from."""
    est = min(w for w, _, _ in shapes)
    return max(est - 3, 1), min(n, est + max(12, est // 16))


def _longest_circular_run(mask: np.ndarray) -> tuple[int, int]:
    """(length, start) of the longest run of True in a circular boolean array."""
    n = len(mask)
    if mask.all():
        return n, 0
    if not mask.any():
        return 0, 0
    k = int(np.argmin(mask))               # start just after a False: no run wraps then
    m = np.roll(mask, -k)
    best, best_start, run = 0, 0, 0
    for i, q in enumerate(np.r_[m, False]):
        if q:
            run += 1
        else:
            if run > best:
                best, best_start = run, (i - run + k) % n
            run = 0
    return best, best_start


def _hop_candidates(score: np.ndarray, k: int = 3) -> list[int]:
    """The ``k`` best local minima of a score curve."""
    s = score
    fin = np.isfinite(s)
    if not fin.any():
        return []
    idx = np.flatnonzero(fin)
    left = np.r_[np.inf, s[:-1]]
    right = np.r_[s[1:], np.inf]
    minima = [i for i in idx if s[i] <= left[i] and s[i] <= right[i]]
    minima.sort(key=lambda i: s[i])
    return [int(i) for i in minima[:k]]


# ------------------------------------------------------- refine: engine
def consistency(frames: np.ndarray, spec: STFTSpec, margin: int | None = None,
                mask: np.ndarray | None = None) -> float:
    """``||X - STFT(ISTFT(X))|| / ||X||`` on the interior frames of a block.

    ``frames``: complex ``(n_frames, bins)`` in ``spec``'s conventions.  The
    block is treated as uncentred (a slice from inside the file); the first
    and last ``margin`` frames (default: frames one window spans) are left
    out, since fewer frames overlap there.  ``mask`` (same shape as
    ``frames``, bool) limits the measure to the bins it marks.
    """
    spec = spec.replace(center=False, first_frame=0)
    x = np.asarray(frames, dtype=np.complex128)
    y = istft(x, spec, dtype=np.float64)
    z = stft(y, spec, dtype=np.float64)
    r = -(-spec.n_fft // spec.hop_length) if margin is None else margin
    t = min(len(x), len(z))
    if t - 2 * r < 1:
        r = max(0, (t - 1) // 2)
    a, b = x[r:t - r], z[r:t - r]
    if mask is not None:
        # Only the bins that were stored faithfully: a dB floor (top_db)
        # replaced the others by a constant, which no signal would make.
        m = np.asarray(mask)[r:t - r]
        a, b = a * m, b * m
    den = np.linalg.norm(a)
    return float(np.linalg.norm(a - b) / den) if den > 0 else float("inf")


def _loud_slice(power: np.ndarray, length: int) -> slice:
    """``length`` consecutive frames around the loudest stretch."""
    t = len(power)
    if t <= length:
        return slice(0, t)
    c = np.convolve(power, np.ones(length), mode="valid")
    i = int(np.argmax(c))
    return slice(i, i + length)


# --------------------------------------------------------------- the probe
class _Progress:
    """A progress bar that appears only once the probe has run for a second."""

    def __init__(self, factory, total: int):
        self.factory, self.total, self.bar, self.done = factory, total, None, 0
        self.t0 = time.perf_counter()

    def step(self, n=1):
        self.done += n
        if self.factory and self.bar is None and time.perf_counter() - self.t0 > 1.0:
            self.bar = self.factory(self.total, "probe", unit="step")
            self.bar.update(self.done - n)
        if self.bar is not None:
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def probe(mag_path, phase_path=None, *, known: dict | None = None, progress=None) -> ProbeResult:
    """Infer how a spectrogram was made.

    Parameters
    ----------
    mag_path, phase_path : path
        The files, in any order (roles are inferred); ``phase_path`` may be
        None for a complex array, an ``.npz`` holding both, or magnitude only.
    known : dict
        Parameters the caller knows (``n_fft``, ``hop_length``, ``window``,
        ``center``, ``layout``, ``magnitude``, ``phase_unit``, ``scaling``,
        ``phase_origin``, ``length`` in samples, ``sample_rate`` in Hz,
        ``dtype``, ``bins``, ``mag_key``, ``phase_key``): they constrain the search.
    progress : callable, optional
        ``progress(total, desc, unit=...)`` returning a bar with ``update``/``close``
        (``stream.cli.common.progress``); used only when the probe takes over a second.
    """
    known = {k: v for k, v in (known or {}).items() if v is not None}
    t0 = time.perf_counter()
    res = ProbeResult()
    bar = _Progress(progress, 8)
    try:
        _run(mag_path, phase_path, known, res, bar)
        if _layout_open(res, known):
            res = _settle_layout(mag_path, phase_path, known, res, bar)
    finally:
        bar.close()
    res.seconds = time.perf_counter() - t0
    return res


def _layout_open(res: ProbeResult, known) -> bool:
    """Both axes looked like frequency (e.g. torch's reflect-padded first
    frame is real too) and there is a phase to test them with."""
    return ("layout" not in known and res.confidence("layout") < 0.5
            and res.value("input") != "magnitude" and res.value("n_frames", 0) >= 3)


def _settle_layout(mag_path, phase_path, known, res: ProbeResult, bar) -> ProbeResult:
    """Run the search with the other axis as frequency; keep the consistent one."""
    other = "frames-bins" if res.value("layout") == "bins-frames" else "bins-frames"
    alt = ProbeResult()
    try:
        _run(mag_path, phase_path, {**known, "layout": other}, alt, bar)
    except SpecstreamError:
        return res
    score = lambda r: r.candidates[0].relative if r.candidates else np.inf   # noqa: E731
    win, lose = (alt, res) if score(alt) < score(res) else (res, alt)
    if not np.isfinite(score(win)):
        return res
    f = win.findings["layout"]
    win.findings["layout"] = Finding(
        f.value, f"both axes could be frequency; only with {f.value} are the frames consistent "
        f"({win.candidates[0].consistency:.2g} against {score(lose) * 1:.2g} relative)",
        min(win.confidence("hop_length"), 0.9))
    win.problems = [p for p in win.problems if "frequency axis" not in p]
    return win


def _run(mag_path, phase_path, known, res: ProbeResult, bar: _Progress):
    arrays = _read_file(mag_path, _raw_known(known), allow_complex=phase_path is None)
    if phase_path is not None:
        arrays += _read_file(phase_path, _raw_known(known), allow_complex=False)
    arrays = _fix_raw_shapes(arrays)
    if phase_path is not None:
        _check_pairable(arrays, mag_path, phase_path)
    known = _file_metadata(arrays, known, res)
    first, ph = _assign_roles(arrays, known, res)
    res.arrays = (first, ph)
    _record_files(first, ph, res)
    bar.step()
    if ph is not None and ph.data.shape != first.data.shape:
        raise SpecError(f"magnitude {first.data.shape} and phase {ph.data.shape} differ in shape")
    unit = _phase_unit(None if ph is None else ph.data, known, res)
    fb, pb, n_fft = _orient(first.data, None if ph is None else ph.data, unit, known, res)
    if ph is not None and ph.transposed:
        lay = res.value("layout")
        res.findings["phase_layout"] = Finding(
            "frames-bins" if lay == "bins-frames" else "bins-frames",
            f"{ph.name} is {first.name} transposed ({tuple(ph.data.shape[::-1])} against "
            f"{tuple(first.data.shape)}): the other layout; reconstruct reads it so by itself",
            res.confidence("layout"))
    _record_raw(first, res)
    n_frames = fb.shape[0]
    res.findings["n_frames"] = Finding(n_frames, "frames in the file", 1.0)
    mags = ["complex"] if np.iscomplexobj(fb) else _magnitude_candidates(fb, known, res)
    if mags == ["complex"]:
        res.findings["magnitude"] = Finding("linear", "complex values carry their magnitude", 1.0)
    res.preview_db = _preview(fb, mags[0])
    bar.step()
    if ph is None and not np.iscomplexobj(fb):
        _magnitude_only(res, known, mags, n_fft)
        return
    cands = _search(fb, pb, n_fft, mags, unit, known, res, bar)
    _conclude(fb, pb, n_fft, unit, cands, known, res)
    bar.step()


#: names of scalars an .npz may carry -> the parameter they give
_META = {"sr": "sample_rate", "fs": "sample_rate", "rate": "sample_rate",
         "sample_rate": "sample_rate", "samplerate": "sample_rate", "hop": "hop_length",
         "hop_length": "hop_length", "hop_size": "hop_length", "n_fft": "n_fft",
         "nfft": "n_fft", "win_length": "win_length", "length": "length"}


def _file_metadata(arrays, known: dict, res: ProbeResult) -> dict:
    """Scalars stored next to the arrays (``sr``, ``hop_length``...): used as
    known unless the caller gave them; the search still checks them."""
    out = dict(known)
    for a in arrays:
        name = _META.get((a.key or "").lower())
        if name is None or a.data.ndim != 0 or a.data.dtype.kind not in "iuf":
            continue
        v = a.data.item()
        if v <= 0 or (name != "sample_rate" and v != int(v)):
            continue
        v = int(v) if name != "sample_rate" else float(v)
        if name not in out:
            if name in ("sample_rate", "length"):   # not in the frames: take them
                out[name] = v
            res.findings.setdefault("stored", Finding({}, "scalars stored in the file", 0.9))
            res.findings["stored"].value[name] = v
    if "stored" in res.findings:
        res.findings["stored"].evidence = ("stored in " + ", ".join(
            f"{k}={v}" for k, v in res.findings["stored"].value.items())
            + "; the sample rate and length are taken, the rest is checked")
    return out


def _raw_known(known) -> dict:
    """The raw-file hints the caller gave: element type, row length."""
    out = {}
    if known.get("dtype"):
        out["dtype"] = known["dtype"]
    if known.get("bins"):
        out["rowlen"] = known["bins"] if known.get("layout", "frames-bins") == "frames-bins" else None
    return out


def _fix_raw_shapes(arrays: list[_Array]) -> list[_Array]:
    """A raw phase file takes the row length of the raw magnitude file (phases
    of adjacent frames do not look alike, magnitudes do)."""
    raws = [a for a in arrays if a.raw is not None]
    if len(raws) == 2:
        best = max(raws, key=lambda a: a.raw.score)
        for a in raws:
            if a is not best and a.data.size == best.data.size:
                a.data = a.data.reshape(best.data.shape)
                a.raw = _RawGuess(a.raw.dtype, best.raw.rowlen, best.raw.score,
                                  f"{a.raw.dtype}; rows of {best.raw.rowlen} as in {best.file}")
    return arrays


def _record_files(first: _Array, ph: _Array | None, res: ProbeResult):
    res.findings["mag_file"] = Finding(first.file, "the magnitude (or complex) array", 1.0)
    res.findings["mag_key"] = Finding(first.key, "array name in the .npz", 1.0)
    res.findings["phase_file"] = Finding(None if ph is None else ph.file, "the phase array", 1.0)
    res.findings["phase_key"] = Finding(None if ph is None else ph.key, "array name in the .npz", 1.0)


def _record_raw(first: _Array, res: ProbeResult):
    if first.raw is None:
        return
    g = first.raw
    layout = res.value("layout")
    bins = first.data.shape[1] if layout == "frames-bins" else first.data.shape[0]
    res.findings["dtype"] = Finding(g.dtype, g.evidence, 0.9 if g.score > 0.5 else 0.4)
    res.findings["bins"] = Finding(int(bins), f"raw file read as {first.data.shape[0]} rows x "
                                   f"{first.data.shape[1]} ({layout})", 0.9 if g.score > 0.5 else 0.4)
    res.findings["raw_shape"] = Finding(list(first.data.shape), "rows x row length", 0.9)


def _preview(fb, mag_unit, max_frames: int = 2000) -> np.ndarray:
    step = max(1, fb.shape[0] // max_frames)
    v = np.asarray(fb[::step], dtype=np.complex128 if np.iscomplexobj(fb) else np.float64)
    if np.iscomplexobj(v):
        m = np.abs(v)
    elif mag_unit in ("db", "db-power", "log"):
        return v * (20 / np.log(10) if mag_unit == "log" else 1.0)
    else:
        m = np.sqrt(np.maximum(v, 0)) if mag_unit == "power" else np.abs(v)
    return 20 * np.log10(np.maximum(m, 1e-10 * max(m.max(), 1e-30)))


def _magnitude_only(res, known, mags, n_fft):
    if mags[0].startswith("db") and "db_ref" in res.findings and res.confidence("db_ref") < 0.5:
        res.level_lost = "dB values relative to their maximum, ref=np.max"
    res.findings["magnitude"] = Finding(mags[0], "magnitude only: linear or power cannot be told "
                                        "apart without a phase (consistency needs one)", 0.3)
    for name in ("hop_length", "window"):
        if known.get(name) is not None:
            res.findings[name] = Finding(known[name], "given", 2.0)
        else:
            res.findings[name] = Finding(None, "a magnitude alone cannot show how frames overlap",
                                         0.0)
    res.findings["center"] = Finding(known.get("center", True),
                                     "given" if "center" in known else "assumed (librosa default)",
                                     2.0 if "center" in known else 0.2)
    res.findings["win_length"] = Finding(n_fft, "assumed n_fft", 0.3)
    res.findings["scaling"] = Finding(known.get("scaling", "none"), "unknown without a phase", 0.0)
    res.findings["sample_rate"] = _sample_rate(known)
    res.findings["phase_origin"] = Finding("frame-start", "assumed", 0.2)
    res.findings["db_ref"] = res.findings.get("db_ref", Finding(1.0, "assumed", 0.2))
    if not (known.get("hop_length") and known.get("window")):
        res.problems.append("magnitude only: hop and window cannot be inferred from a magnitude "
                            "alone; give the phase file (or complex frames), or --hop-length and "
                            "--window (then phase reconstruction rebuilds a phase)")


def _sample_rate(known) -> Finding:
    if known.get("sample_rate"):
        return Finding(known["sample_rate"], "given or stored in the file", 2.0)
    return Finding(_DEFAULT_SR, "a spectrum does not store its sample rate: 22050 Hz assumed; "
                   "give --sample-rate", 0.0)


def _decoded(fb, pb, n_fft, mag_unit, phase_unit, sl):
    spec = STFTSpec(n_fft=n_fft, hop_length=max(1, n_fft // 4))
    dec = Decoder(spec, Encoding(magnitude=mag_unit if mag_unit != "complex" else "linear",
                                 phase_unit=phase_unit or "rad"), dtype=np.complex128)
    first = np.asarray(fb[sl])
    return dec.decode(first, None if pb is None else np.asarray(pb[sl]))


def _search(fb, pb, n_fft, mags, unit, known, res, bar) -> list[Candidate]:
    """Coarse pair scan over (unit, window, origin) for all hops; refine the best with the engine."""
    n_frames = fb.shape[0]
    if n_frames < 3:
        res.problems.append(f"only {n_frames} frame(s): too short to tell how frames overlap; "
                            "give --hop-length and --window, or a longer file")
        return []
    windows = [known["window"]] if known.get("window") else list(WINDOW_CANDIDATES)
    origins = [known["phase_origin"]] if known.get("phase_origin") else ["frame-start", "window-center"]
    power = np.abs(_decoded(fb, pb, n_fft, mags[0], unit, slice(None, None, 1))) ** 2 \
        if n_frames <= 4096 else None
    sl = _loud_slice(power.sum(1) if power is not None else np.ones(n_frames), 25)
    cands: list[Candidate] = []
    for mag in mags:
        scan = _PairScan(_decoded(fb, pb, n_fft, mag, unit, sl), n_fft)
        shapes = _window_shapes(scan.y_file, known, origins)
        for win in windows:
            for wl, align, origin in shapes:
                s = scan.scores(win, origin, wl, align)
                if known.get("hop_length"):
                    h = known["hop_length"]
                    hops = [h] if h < n_fft else []
                else:
                    hops = _hop_candidates(s)
                if mag == mags[0] and (wl == shapes[0][0]):
                    res.curves[f"{win}/{origin}" + (f"/{wl}" if wl != n_fft else "")] = s
                cands += [Candidate(h, win, origin, mag, float(s[h]) if h < n_fft else np.inf,
                                    n_fft=n_fft, win_length=wl, align=align) for h in hops]
        if shapes[0][0] < n_fft and not known.get("win_length"):
            mine = sorted((c for c in cands if c.magnitude == mag), key=lambda c: c.pair_score)
            cands += _refine_win_length(scan, mine, _support_range(shapes, n_fft))
    bar.step()
    cands.sort(key=lambda c: c.pair_score)
    floor = float(_sample(fb).min()) if "top_db" in res.findings else None
    return _refine(fb, pb, n_fft, unit, cands, known, power, floor)


def _candidate_spec(c: Candidate, n_fft: int) -> STFTSpec:
    return STFTSpec(n_fft=n_fft, hop_length=c.hop, window=c.window, center=False,
                    phase_origin=c.phase_origin, win_length=c.win_length or n_fft,
                    window_align=c.align)


def _refine(fb, pb, n_fft, unit, cands, known, power, floor=None) -> list[Candidate]:
    """Engine consistency for the best distinct candidates, on a longer loud slice."""
    top, seen = [], set()
    for c in cands:
        k = (c.hop, c.window, c.phase_origin, c.magnitude, c.win_length, c.align)
        if k in seen or not np.isfinite(c.pair_score):
            continue
        seen.add(k)
        top.append(c)
        if len(top) >= 12:
            break
    for c in top:
        r = -(-n_fft // c.hop)
        n = fb.shape[0]
        sl = _loud_slice(power.sum(1) if power is not None else np.ones(n), 2 * r + 16)
        try:
            spec = _candidate_spec(c, n_fft)
        except SpecError:
            c.consistency = np.inf
            continue
        mask = None if floor is None else np.asarray(fb[sl]) != floor
        c.consistency = consistency(_decoded(fb, pb, n_fft, c.magnitude, unit, sl), spec,
                                    mask=mask)
    top.sort(key=lambda c: c.relative)
    return top + [c for c in cands if c not in top]


def _conclude(fb, pb, n_fft, unit, cands, known, res: ProbeResult):
    res.candidates = cands
    res.findings["sample_rate"] = _sample_rate(known)
    res.findings["win_length"] = Finding(known.get("win_length", n_fft), "untested",
                                         2.0 if known.get("win_length") else 0.0)
    best = cands[0] if cands and cands[0].consistency is not None else None
    # Near zero, and far below what random frames score at that hop.
    if best is None or not (best.consistency < _NOT_CONSISTENT and best.relative < 0.2):
        _cannot_tell(res, best, known, n_fft)
        return
    alt = next((c for c in cands[1:] if c.consistency is not None
                and (c.hop, c.window, c.win_length) != (best.hop, best.window, best.win_length)),
               None)
    ratio = (alt.relative / max(best.relative, 1e-12)) if alt else np.inf
    conf = (0.97 if best.consistency < 1e-3 and best.relative < 1e-2 and ratio > 100 else
            0.85 if best.consistency < _CONSISTENT and best.relative < 0.05 and ratio > 5 else
            0.4 if ratio > 2 else 0.0)
    alt_txt = (f"; next best {alt.window} hop {alt.hop}: {alt.consistency:.2g}" if alt else "")
    ev = (f"||X - STFT(ISTFT(X))||/||X|| = {best.consistency:.2g} with hop {best.hop}, "
          f"{best.window} window{alt_txt}")
    given = lambda k: 2.0 if known.get(k) is not None else conf   # noqa: E731
    res.findings["hop_length"] = Finding(best.hop, ev, given("hop_length"))
    res.findings["window"] = Finding(best.window, ev, given("window"))
    res.findings["phase_origin"] = Finding(
        best.phase_origin, "phases referenced to the " +
        ("window centre (ShortTimeFFT)" if best.phase_origin == "window-center" else
         "frame start") + f": consistency {best.consistency:.2g}", given("phase_origin"))
    _magnitude_finding(cands, best, known, res)
    if conf == 0:
        res.problems.append(f"hop/window: {best.window} hop {best.hop} and {alt.window} hop "
                            f"{alt.hop} fit about equally well; give --hop-length or --window"
                            + ("; frames that barely overlap carry almost no redundancy, and "
                               f"if they do not overlap at all (hop = n_fft = {n_fft}) nothing "
                               "can be inferred" if best.hop > 7 * n_fft // 8 else ""))
    _window_length_finding(best, n_fft, known, res)
    spec = _candidate_spec(best, n_fft)
    _edges(fb, pb, spec, best.magnitude, unit, known, res)
    _length_check(known, fb.shape[0], res)
    _check_stored(res)
    _level(fb, pb, spec, best.magnitude, unit, known, res)


def _check_stored(res: ProbeResult):
    """Compare what the file says about itself with what the frames show."""
    for k, v in (res.value("stored") or {}).items():
        if k in ("hop_length", "n_fft", "win_length") and res.value(k) != v:
            res.problems.append(f"the file stores {k}={v}, but the frames fit {k}="
                                f"{res.value(k)}; the frames were believed")
        elif k in ("hop_length", "n_fft"):
            res.findings[k].evidence += f"; the file agrees ({k}={v})"


def _window_length_finding(best: Candidate, n_fft: int, known, res: ProbeResult):
    w = best.win_length or n_fft
    if known.get("win_length"):
        ev, conf = "given", 2.0
    elif w < n_fft:
        ev = (f"the frames are zero outside {w} samples "
              + ("at the start of the frame (scipy: nperseg < nfft)" if best.align == "left"
                 else "in the middle of the frame (librosa/torch: win_length < n_fft)")
              + f"; consistency {best.consistency:.2g}")
        conf = res.confidence("hop_length")
    else:
        ev, conf = "the frames are non-zero across all n_fft samples", res.confidence("hop_length")
    res.findings["win_length"] = Finding(w, ev, conf)
    res.findings["window_align"] = Finding(best.align, ev if w < n_fft else "full-length window",
                                           conf)


def _magnitude_finding(cands, best, known, res):
    if best.magnitude == "complex":
        res.findings["magnitude"] = Finding("linear", "complex values", 1.0)
        return
    others = [c for c in cands if c.consistency is not None and c.magnitude != best.magnitude]
    ev = f"{best.magnitude} makes the frames consistent ({best.consistency:.2g})"
    if others:
        o = min(others, key=lambda c: c.consistency)
        ev += f"; {o.magnitude} at best {o.consistency:.2g}"
    res.findings["magnitude"] = Finding(best.magnitude, ev, 2.0 if known.get("magnitude") else
                                        res.confidence("hop_length") if not others else
                                        min(res.confidence("hop_length"), 0.97))
    if "db_ref" not in res.findings:
        res.findings["db_ref"] = Finding(1.0, "dB relative to 1 (the values are not relative "
                                         "to their maximum)" if best.magnitude.startswith("db")
                                         else "not dB", 0.6)


def _cannot_tell(res, best, known, n_fft):
    c = "none" if best is None else f"{best.consistency:.2g}"
    for k in ("hop_length", "window", "phase_origin", "magnitude"):
        if k not in res.findings or res.findings[k].value is None:
            res.findings[k] = Finding(known.get(k), "no candidate makes the frames consistent "
                                      f"(best {c})", 2.0 if known.get(k) else 0.0)
    res.findings.setdefault("center", Finding(known.get("center"), "untested", 0.0))
    res.findings.setdefault("scaling", Finding(known.get("scaling"), "untested", 0.0))
    res.findings.setdefault("db_ref", Finding(1.0, "untested", 0.0))
    if best is not None:
        res.problems.append(
            f"no hop from n_fft/8 to n_fft and no window ({', '.join(WINDOW_CANDIDATES)}) makes "
            f"these frames consistent (best {best.window} hop {best.hop}: {c}); they may be noise, "
            "edited, not from a real signal, use a window shorter than n_fft, or frames that do "
            f"not overlap (hop = n_fft = {n_fft}, which any frames fit). Give --hop-length and "
            "--window if you know them")


# ------------------------------------------------------------ edges, level
def _edges(fb, pb, spec: STFTSpec, mag, unit, known, res: ProbeResult):
    """Centre padding from the first frames: zeros (or a mirror) before the signal."""
    if known.get("center") is not None:
        res.findings["center"] = Finding(known["center"], "given", 2.0)
        res.findings["first_frame"] = Finding(0, "given centre", 2.0)
        return
    n, h, wl = spec.n_fft, spec.hop_length, spec.win_length
    centred = spec.replace(center=True)
    half = centred.start_trim          # frame_span // 2: where centring puts sample 0
    t = fb.shape[0]
    k = min(t, -(-n // h) + 2)
    w = spec.padded_window
    y = _frames_time(fb, pb, spec, mag, unit, slice(0, k))
    y_end = _frames_time(fb, pb, spec, mag, unit, slice(t - k, t))[::-1, ::-1]
    i = np.arange(1, min(half, n - half))
    mirror = np.abs(y[0, half - i] - y[0, half + i]).sum() / max(np.abs(y[0]).sum(), 1e-300)
    est, est_end = _signal_estimate(y, spec, w), _signal_estimate(y_end, spec, w[::-1])
    ff = -((wl - wl // 2 - 1) // h)    # ShortTimeFFT's p_min
    # Where the signal starts in the first frame: after the centre padding,
    # or that plus -p_min hops (ShortTimeFFT).  At the end, centring leaves
    # at least frame_span/2 - hop silent samples in the last frame.
    hyps = [(half, True, 0)]
    if ff < 0:
        hyps.append((centred.replace(first_frame=ff).start_trim, True, ff))
    drops = {p: _drop(est, p, n) for p, _, _ in hyps}
    valid = [hy for hy in hyps if drops[hy[0]] < 0.01]
    end_drop = (_drop(est_end, n - half - h, n, post_start=n - half)
                if half - h >= max(spec.frame_span // 16, 1) else np.inf)
    level = _edge_level(fb, pb, n, mag, unit, k)
    floored = _floor_fraction(fb, k) if "top_db" in res.findings else 0.0
    silent = not np.any(est) or np.abs(y[0]).max() < 1e-6 * max(np.abs(y).max(), 1e-300)
    c, first, conf, ev = _judge_centre(silent, mirror, valid, drops, half, h, end_drop, level,
                                       floored)
    c, first, ev, conf = _centre_from_length(known, spec, fb.shape[0], c, first, ev, conf)
    res.findings["center"] = Finding(c, ev, conf)
    res.findings["first_frame"] = Finding(first, ev, conf)


def _judge_centre(silent, mirror, valid, drops, half, h, end_drop, level, floored):
    """Centre padding from the edge evidence, most telling first:
    (center, first_frame, confidence, evidence)."""
    if silent:
        c, first, conf = True, 0, 0.2
        ev = ("the first frame is silent: the edges cannot show padding; assumed centred, "
              "the libraries' default; give --center/--no-center")
    elif mirror < 1e-2:
        c, first, conf = True, 0, 0.9
        ev = "the first frame is mirror-symmetric about its centre: reflect padding (torch)"
    elif valid:
        p, c, first = max(valid)
        conf = 0.9 if drops[p] < 1e-3 else 0.7
        ev = (f"the first {p} samples of the first frame are silent ({_db(drops[p])} below "
              f"what follows): centre padding of {half}"
              + (f" and {-first} hop(s) before sample 0 (ShortTimeFFT's p_min)" if first else ""))
    elif end_drop < 0.01:
        c, first, conf = True, 0, 0.8
        ev = (f"the last frame ends in {half - h}+ silent samples ({_db(end_drop)}): centre "
              "padding")
    elif drops[half] > 0.1 and floored < 0.2:
        c, first, conf = False, 0, 0.85
        ev = (f"the signal is already there in the first frame's first half ({_db(drops[half])} "
              f"of the level after it, {_db(level)} re the loudest frame): no padding")
    else:
        c, first, conf = True, 0, 0.3
        ev = (f"the edges are too quiet to show padding ({_db(level)} re the loudest frame"
              + (f", {floored:.0%} of their bins at the dB floor" if floored else "")
              + "): assumed centred, the libraries' default; give --center/--no-center")
    return c, first, conf, ev


def _centre_from_length(known, spec: STFTSpec, n_frames, c, first, ev, conf):
    """A known signal length fixes the frame count, which differs with centring."""
    if not known.get("length"):
        return c, first, ev, conf
    length = int(known["length"])
    fits = {cc: spec.replace(center=cc, first_frame=first if cc else 0).frames_for(length)
            == n_frames for cc in (True, False)}
    if fits[c] and not fits[not c]:
        return c, first, ev + f"; {length} samples make {n_frames} frames only so", max(conf, 0.95)
    if fits[not c] and not fits[c] and conf < 0.85:
        return (not c, 0, f"{length} samples make {n_frames} frames only with "
                f"center={not c} (the edges were unclear: {ev})", 0.9)
    return c, first, ev, conf


def _frames_time(fb, pb, spec, mag, unit, sl) -> np.ndarray:
    """Windowed frames in time, ``w * x[tH : tH+N]``, with the phase origin undone."""
    y = np.fft.irfft(_decoded(fb, pb, spec.n_fft, mag, unit, sl), n=spec.n_fft, axis=1)
    r = spec.phase_reference
    return np.roll(y, r, axis=1) if r else y


def _edge_level(fb, pb, n_fft, mag, unit, k) -> float:
    """RMS of the first and last ``k`` frames over the loudest frame's (both edges' max)."""
    t = fb.shape[0]
    step = max(1, t // 2000)
    e = (np.abs(_decoded(fb, pb, n_fft, mag, unit, slice(0, t, step))) ** 2).sum(1)
    ends = (np.abs(_decoded(fb, pb, n_fft, mag, unit, slice(0, k))) ** 2).sum(1).mean(), \
        (np.abs(_decoded(fb, pb, n_fft, mag, unit, slice(t - k, t))) ** 2).sum(1).mean()
    return float(np.sqrt(max(ends) / max(e.max(), 1e-300)))


def _signal_estimate(y: np.ndarray, spec: STFTSpec, w: np.ndarray) -> np.ndarray:
    """The signal under the first frames, from windowed frames ``y`` (frame-start phase).

    ``w`` is the padded window (reversed for frames read backwards).
    Each sample is read from the frame whose window weighs it most, divided
    by that weight; samples no window weighs at 0.1 of its peak are left 0.
    """
    n, h = spec.n_fft, spec.hop_length
    k = y.shape[0]
    span = (k - 1) * h + n
    best_w = np.zeros(span)
    est = np.zeros(span)
    for t in range(k):
        seg = slice(t * h, t * h + n)
        better = w > best_w[seg]
        best_w[seg] = np.where(better, w, best_w[seg])
        est[seg] = np.where(better, y[t] / np.where(w > 0, w, 1), est[seg])
    est[best_w < 0.1 * w.max()] = 0
    return est


def _floor_fraction(fb, k: int) -> float:
    """Fraction of the stored values in the first/last ``k`` frames at the dB floor (max of both)."""
    lo = float(_sample(fb).min())
    ends = np.asarray(fb[:k]), np.asarray(fb[-k:])
    return max(float(np.mean(e == lo)) for e in ends)


def _drop(est: np.ndarray, p: int, n: int, post_start: int | None = None) -> float:
    """RMS before sample ``p`` over RMS of the quarter frame after ``post_start``
    (default ``p``); inf if nothing is there."""
    q = p if post_start is None else post_start
    pre, post = est[:p], est[q:q + max(n // 4, 1)]
    pre = pre[pre != 0]
    if post.size == 0 or not np.any(post):
        return np.inf
    r_pre = np.sqrt(np.mean(pre ** 2)) if pre.size else 0.0
    return float(r_pre / np.sqrt(np.mean(post ** 2)))


def _db(ratio: float) -> str:
    return "-inf dB" if ratio <= 0 else f"{20 * math.log10(ratio):+.0f} dB"


def _length_check(known, n_frames, res: ProbeResult):
    if not known.get("length") or res.confidence("hop_length") == 0:
        return
    f = res.findings["hop_length"]
    c = res.value("center")
    spec = STFTSpec(n_fft=res.value("n_fft"), hop_length=f.value, window=res.value("window"),
                    center=bool(c), first_frame=res.value("first_frame", 0) if c else 0)
    want = spec.frames_for(int(known["length"]))
    if want == n_frames:
        f.evidence += f"; {known['length']} samples make exactly {n_frames} frames: confirmed"
        f.confidence = max(f.confidence, 0.97) if f.confidence <= 1 else f.confidence
    else:
        f.evidence += (f"; but {known['length']} samples would make {want} frames, not "
                       f"{n_frames}")
        f.confidence = min(f.confidence, 0.4)
        res.problems.append(f"--length {known['length']} does not match hop {f.value} "
                            f"({want} frames expected, {n_frames} found)")


def _level(fb, pb, spec: STFTSpec, mag, unit, known, res: ProbeResult):
    """Amplitude scaling from the level: audio usually peaks between -40 and 0 dBFS."""
    if known.get("scaling"):
        res.findings["scaling"] = Finding(known["scaling"], "given", 2.0)
        return
    if mag.startswith("db") and res.confidence("db_ref") < 0.5:
        res.findings["scaling"] = Finding("none", "dB relative to the maximum: the absolute "
                                          "level is lost, so the scaling cannot be known; a "
                                          "global gain is left to --normalize", 0.0)
        res.level_lost = "dB values relative to their maximum, ref=np.max"
        return
    r = -(-spec.n_fft // spec.hop_length)
    n = fb.shape[0]
    x = _decoded(fb, pb, spec.n_fft, mag, unit, slice(0, n) if n <= 4096 else slice(0, 4096))
    sl = _loud_slice((np.abs(x) ** 2).sum(1), 2 * r + 8)
    y = istft(x[sl], spec, dtype=np.float64)
    peak = float(np.abs(y[len(y) // 4: 3 * len(y) // 4] if len(y) > 8 else y).max())
    w = spec.window_values
    gains = {"none": 1.0, "window-sum": float(w.sum()), "sqrt-n": math.sqrt(spec.n_fft)}
    dist = {k: abs(math.log10(max(peak * g, 1e-30)) - math.log10(0.3)) for k, g in gains.items()}
    order = sorted(dist, key=dist.get)
    best, second = order[0], order[1]
    implied = peak * gains[best]
    if not (1e-3 <= implied <= 3):
        res.findings["scaling"] = Finding("none", f"no scaling puts the peak in the range of "
                                          f"audio (none: {20 * math.log10(max(peak, 1e-30)):.0f} "
                                          "dBFS); cannot be known, use --normalize", 0.0)
        res.level_lost = (f"no amplitude scaling puts the peak in the range of audio, "
                          f"{20 * math.log10(max(implied, 1e-30)):+.0f} dBFS at best")
        return
    conf = 0.6 if dist[second] - dist[best] > 1 else 0.3
    res.findings["scaling"] = Finding(
        best, f"a guess from the level: with '{best}' the signal peaks at "
        f"{20 * math.log10(implied):+.0f} dBFS ('{second}': "
        f"{20 * math.log10(max(peak * gains[second], 1e-30)):+.0f}); "
        "window-energy and psd differ from sqrt-n by a gain only", conf)
