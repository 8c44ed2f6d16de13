"""The arrays the files hold: reading them (any format the file layer reads,
raw binary guessed), pairing two files, and what a file stores beside them
(scalars such as ``sr`` or ``hop_length``, MATLAB's ``fs``, ``F`` and ``T``:
:func:`stream.files.stored_parameters`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..files import (CONTAINERS, RAW_DTYPES, check_file, check_spectrogram, file_format,
                     in_memory, is_transposed, load_array, stored_parameters, variables)
from ..spec import SpecError, STFTSpec
from .raw import RAW_TRY, RawGuess
from .result import Finding, ProbeResult


@dataclass(eq=False)
class Array:
    """One array read from a file, with where it came from."""

    data: np.ndarray
    file: str
    key: str | None = None
    raw: RawGuess | None = None
    #: how ``data`` was made from the stored arrays when it is not one of them
    derived: str | None = None
    #: ``data`` is the stored array transposed (the same frames as its partner,
    #: saved in the other layout)
    transposed: bool = False

    @property
    def name(self) -> str:
        return self.file + (f"[{self.key}]" if self.key else "")


def read_file(path, hints: dict, allow_complex: bool) -> list[Array]:
    """Every array of numbers in ``path``, which must hold a spectrogram
    (:func:`stream.files.check_spectrogram`); a raw file is read as the
    element type and row length :class:`RawGuess` finds (``hints``: ``dtype``,
    ``rowlen``)."""
    arrays = _read_arrays(str(path), hints, allow_complex)
    if not any(a.data.ndim >= 2 and a.data.size for a in arrays):
        # say what is wrong with the likeliest one: the most axes, then the most values
        a = max(arrays, key=lambda a: (a.data.ndim, a.data.size))
        check_spectrogram(a.data.shape, a.name)
    return arrays


def _read_arrays(path: str, hints: dict, allow_complex: bool) -> list[Array]:
    kind = file_format(path)
    if kind in CONTAINERS:
        # arrays of no numbers (labels, dates, cells...) are no spectrogram:
        # left out, unless nothing else is there (then load_array says what
        # they are).  HDF5 datasets are read whole here (the probe looks at
        # all of it); reconstruct reads them block by block.
        found = [v for v in variables(path) if v.numeric]
        if not found:
            return [Array(load_array(path), path)]
        return [pairs_last(Array(in_memory(v.array(), f"{path}: variable {v.name!r}"), path,
                                 v.name)) for v in found]
    if kind != "raw":
        return [pairs_last(Array(load_array(path), path))]
    check_file(path)
    g = RawGuess.guess(path, hints.get("dtype"), hints.get("rowlen"), allow_complex)
    if g is None:
        raise SpecError(f"{path}: no element type ({', '.join(RAW_TRY)}) reads it as plausible "
                        "numbers; give --dtype (and --bins)")
    mm = np.memmap(path, dtype=np.dtype(RAW_DTYPES[g.dtype]), mode="r")
    return [Array(mm.reshape(-1, g.rowlen), path, None, g)]


def pairs_last(a: Array) -> Array:
    """A real array whose last axis holds (real, imag) pairs (torch's
    ``view_as_real``, ``return_complex=False``) becomes complex."""
    d = a.data
    if d.ndim == 3 and d.shape[-1] == 2 and not np.iscomplexobj(d) and d.dtype.kind == "f":
        z = np.asarray(d[..., 0]) + 1j * np.asarray(d[..., 1])
        return Array(z, a.file, a.key, a.raw, derived="real/imag pairs on the last axis")
    return a


def match(a: Array, like: Array) -> Array | None:
    """``a`` as an array of ``like``'s shape: itself, or -- when it holds the
    same frames saved in the other layout (:func:`stream.files.is_transposed`)
    -- a transposed view (``transposed`` set); None when the shapes are unrelated."""
    if a.data.shape == like.data.shape:
        return a
    if is_transposed(a.data.shape, like.data.shape):
        return Array(a.data.T, a.file, a.key, a.raw, a.derived, transposed=True)
    return None


def check_pairable(arrays: list[Array], first_file, second_file):
    """Two files named explicitly must hold arrays that go together: the same
    shape, or one the other transposed.  Otherwise one of them would be left
    out without a word."""
    a = [x for x in arrays if x.file == str(first_file) and x.data.ndim >= 2]
    b = [x for x in arrays if x.file == str(second_file) and x.data.ndim >= 2]
    if not a or not b or str(first_file) == str(second_file):
        return
    if any(match(y, x) is not None for x in a for y in b):
        return
    shapes = lambda xs: ", ".join(f"{x.name} {tuple(x.data.shape)}" for x in xs)   # noqa: E731
    raise SpecError(f"{shapes(a)} and {shapes(b)} cannot be a magnitude/phase pair: the shapes "
                    "are neither equal nor each other's transpose; check that both files come "
                    "from the same spectrogram")


def sample(a: np.ndarray, n: int = 1 << 18) -> np.ndarray:
    """Up to ``n`` finite values spread over the array (cheap on memory maps)."""
    # The values in the file's own order (a set of values: the order does not
    # matter): a transposed view of a memory map is not copied whole.
    if not a.flags.c_contiguous and a.T.flags.c_contiguous:
        a = a.T
    flat = a.reshape(-1) if a.flags.c_contiguous else np.ravel(a)
    total = flat.shape[0]
    if total <= n:
        v = np.asarray(flat)
    else:
        # 64 contiguous runs spread over the array: a strided read would
        # touch (and keep resident) every page of a memory-mapped file.
        run = n // 64
        starts = np.linspace(0, total - run, 64).astype(np.int64)
        v = np.concatenate([np.asarray(flat[s:s + run]) for s in starts])
    return v[np.isfinite(v)]


# ------------------------------------------------------- stored scalars
def stored_scalars(arrays, known: dict, res: ProbeResult) -> dict:
    """What the file stores of its making (:func:`stream.files.stored_parameters`:
    scalars such as ``sr`` or ``hop_length``, MATLAB's ``fs``, ``F`` and
    ``T``): the sample rate and length are used as known unless the caller
    gave them; the rest is recorded, and the search checks it."""
    out = dict(known)
    stored = stored_parameters({a.key: a.data for a in arrays if a.key})
    stored = {k: v for k, v in stored.items()
              if k in _CHECKED + _TAKEN and k not in out or (k, v[0]) == ("nyquist", False)}
    for name, (v, _) in stored.items():
        if name in _TAKEN and name not in out:       # not in the frames: take them
            out[name] = v
    if stored:
        value = {k: v for k, (v, _) in stored.items()}
        where = ", ".join(f"{k}={v}" + ("" if src == k else f" ({src})")
                          for k, (v, src) in stored.items())
        res.findings["stored"] = Finding(
            value, f"stored in {where}; the sample rate and length are taken, the rest is "
                   "checked", 0.9)
    return out


#: stored parameters the probe takes as known, and those it checks against the frames
#: (``nyquist`` False, when F ends below fs/2, is recorded too: no Nyquist row)
_TAKEN = ("sample_rate", "length")
_CHECKED = ("hop_length", "n_fft", "win_length")


def check_stored(res: ProbeResult):
    """Compare what the file says about itself with what the frames show."""
    for k, v in (res.value("stored") or {}).items():
        if k in ("hop_length", "n_fft", "win_length") and res.value(k) != v:
            res.problems.append(f"the file stores {k}={v}, but the frames fit {k}="
                                f"{res.value(k)}; the frames were believed")
        elif k in ("hop_length", "n_fft"):
            res.findings[k].evidence += f"; the file agrees ({k}={v})"


def sample_rate_finding(known) -> Finding:
    """The sample rate: given or stored, else STFTSpec's default, assumed (confidence 0)."""
    if known.get("sample_rate"):
        return Finding(known["sample_rate"], "given or stored in the file", 2.0)
    return Finding(STFTSpec.sample_rate, f"a spectrum does not store its sample rate: "
                   f"{STFTSpec.sample_rate:g} Hz assumed; give --sample-rate", 0.0)
