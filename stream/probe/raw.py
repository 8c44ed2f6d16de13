"""Raw binary files: a headerless file has no element type and no shape.

The element type is the one whose values are plausible numbers (a wrong byte
order or width makes exponents garbage); the row length is the divisor of the
element count whose rows look alike (log magnitudes of adjacent frames, or of
adjacent bins, are similar; misaligned rows are not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import RAW_DTYPES
from .result import Finding, ProbeResult

#: Element types tried when none is given (complex64 too for a lone file).
RAW_TRY = ("float32", "float64", "float32be", "float64be")


@dataclass
class RawGuess:
    """Element type and row length of a headerless binary file, and why."""

    dtype: str
    rowlen: int
    score: float
    evidence: str

    @staticmethod
    def plausible_dtypes(path, dtypes=None, allow_complex=False) -> list[tuple[float, str]]:
        """``(fraction of plausible values, dtype name)`` for each element type, best first."""
        size = Path(path).stat().st_size
        out = []
        names = list(dtypes or RAW_TRY) + (["complex64"] if allow_complex and not dtypes else [])
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
            g = cls(name, n, s, f"{name}: all values plausible numbers; rows of {n} values look "
                                f"alike (adjacent-row correlation {s:.2f}; next {others or '-'})")
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


def raw_hints(known) -> dict:
    """The raw-file hints the caller gave: element type, row length."""
    out = {}
    if known.get("dtype"):
        out["dtype"] = known["dtype"]
    if known.get("bins"):
        by_frames = known.get("layout", "frames-bins") == "frames-bins"
        out["rowlen"] = known["bins"] if by_frames else None
    return out


def share_row_length(arrays: list) -> list:
    """A raw phase file takes the row length of the raw magnitude file (phases
    of adjacent frames do not look alike, magnitudes do)."""
    raws = [a for a in arrays if a.raw is not None]
    if len(raws) == 2:
        best = max(raws, key=lambda a: a.raw.score)
        for a in raws:
            if a is not best and a.data.size == best.data.size:
                a.data = a.data.reshape(best.data.shape)
                a.raw = RawGuess(a.raw.dtype, best.raw.rowlen, best.raw.score,
                                 f"{a.raw.dtype}; rows of {best.raw.rowlen} as in {best.file}")
    return arrays


def record_raw(first, res: ProbeResult):
    """The dtype, bins and shape findings of a raw file (once the layout is known)."""
    if first.raw is None:
        return
    g = first.raw
    layout = res.value("layout")
    bins = first.data.shape[1] if layout == "frames-bins" else first.data.shape[0]
    conf = 0.9 if g.score > 0.5 else 0.4
    res.findings["dtype"] = Finding(g.dtype, g.evidence, conf)
    res.findings["bins"] = Finding(int(bins), f"raw file read as {first.data.shape[0]} rows x "
                                   f"{first.data.shape[1]} ({layout})", conf)
    res.findings["raw_shape"] = Finding(list(first.data.shape), "rows x row length", 0.9)
