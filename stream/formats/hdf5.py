"""HDF5 files, through h5py: MAT v7.3 (MATLAB's ``save -v7.3``), Octave's
``save -hdf5``, and plain HDF5 (h5py, netCDF-4...).

Datasets are not loaded: a spectrogram comes as an :class:`H5Array`, which
reads the frames asked for (:class:`~stream.files.FrameSource` reads it
block by block) and nothing more.  MATLAB and Octave write column-major
arrays, so h5py sees each matrix transposed (MATLAB's dimensions reversed):
:class:`H5Array` presents MATLAB's shape, and complex values, stored as a
compound of (real, imag), as a complex array.  Scalars and vectors (``fs``,
``F``, ``T``) are read at once, in :func:`~.base.matlab_array`'s shape.

The three layouts: MATLAB's (every variable a dataset with a
``MATLAB_class`` attribute, after a 512-byte MATLAB header), Octave's
(every variable a group of ``type`` and ``value``, ``OCTAVE_NEW_FORMAT``),
and plain (every dataset a variable, named by its path, in C order).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..extras import require
from .base import NO_NUMBERS, Variable, check_cap, matlab_shape, mib, no_numbers, reading

__all__ = ["H5Array", "hdf5_variables"]

#: compound fields that hold complex values: MATLAB's and Octave's, h5py's own
_COMPLEX_FIELDS = (("real", "imag"), ("r", "i"))
#: datasets a layout keeps for itself
_HIDDEN = ("#refs#", "#subsystem#")


def _complex_dtype(dt: np.dtype) -> np.dtype | None:
    """The complex dtype a (real, imag) compound stands for; None for others."""
    names = dt.names or ()
    for re_, im in _COMPLEX_FIELDS:
        if names == (re_, im) and dt[re_] == dt[im] and dt[re_].kind == "f":
            return np.result_type(dt[re_], np.complex64)
    return None


def _as_complex(block: np.ndarray) -> np.ndarray:
    dt = _complex_dtype(block.dtype)
    if dt is None:
        return block
    re_, im = block.dtype.names
    out = np.empty(block.shape, dt)
    out.real, out.imag = block[re_], block[im]
    return out


class H5Array:
    """An HDF5 dataset as a read-only array that is read only where indexed.

    ``axes[i]`` is the dataset axis that is axis ``i`` here ((1, 0) for a
    MATLAB matrix: h5py sees it transposed).  Indexing takes integers, slices
    and ``...`` (what :class:`~stream.files.FrameSource` asks) and returns an
    ndarray; ``np.asarray`` reads it all.  The file stays open while the
    array lives.
    """

    def __init__(self, dataset, axes: tuple, name: str):
        self._ds, self.axes, self.name = dataset, tuple(axes), name
        self.shape = tuple(dataset.shape[a] for a in self.axes)
        self.dtype = _complex_dtype(dataset.dtype) or dataset.dtype
        self.ndim = len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"H5Array({self.name!r}, shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, key) -> np.ndarray:
        key = _full_key(key, self.ndim)
        ds_key = [slice(None)] * self.ndim
        for i, a in enumerate(self.axes):
            ds_key[a] = key[i]
        with reading(Path(self._ds.file.filename), "HDF5"):
            block = self._ds[tuple(ds_key)]
        kept = [a for a in range(self.ndim) if not isinstance(ds_key[a], int)]
        order = [kept.index(a) for a in self.axes if a in kept]
        return _as_complex(np.transpose(block, order))

    def __array__(self, dtype=None, copy=None):
        a = self[...]
        return a if dtype is None else a.astype(dtype)

    def read_whole(self, where: str) -> np.ndarray:
        """All of it in memory, when that fits :func:`~.base.inflate_cap`."""
        check_cap(self.nbytes, where, f"read whole, it takes {mib(self.nbytes)}",
                  "give the parameters on the command line (the frames are then read block "
                  "by block)")
        return self[...]


def _full_key(key, ndim: int) -> list:
    """``key`` as one integer or slice per axis (``...`` expanded)."""
    key = list(key) if isinstance(key, tuple) else [key]
    if any(k is Ellipsis for k in key):
        at = key.index(Ellipsis)
        key[at:at + 1] = [slice(None)] * (ndim - len(key) + 1)
    key += [slice(None)] * (ndim - len(key))
    if len(key) != ndim or not all(isinstance(k, (slice, int, np.integer)) for k in key):
        raise IndexError(f"an HDF5 array of {ndim} axes takes integers, slices and ..., "
                         f"not {key}")
    return [int(k) if isinstance(k, np.integer) else k for k in key]


# -------------------------------------------------------------- variables
def hdf5_variables(path: Path) -> list[Variable]:
    """The variables of an HDF5 file (MAT v7.3, Octave's -hdf5, or plain), in file order."""
    h5py = require("h5py", "reading HDF5 files (MAT v7.3, Octave -hdf5)")
    with reading(path, "HDF5"):
        f = h5py.File(path, "r")
        if _is_octave(f):
            return list(_octave_group(f, ""))
        if _is_matlab(path, f):
            return list(_matlab_group(f, ""))
        out = []
        f.visititems(lambda name, obj: out.append(_variable(name, obj, False))
                     if isinstance(obj, h5py.Dataset) else None)
        return out


def _is_octave(f) -> bool:
    return any("OCTAVE_NEW_FORMAT" in g.attrs for g in f.values())


def _is_matlab(path: Path, f) -> bool:
    with open(path, "rb") as fh:
        if fh.read(10) == b"MATLAB 7.3":
            return True
    return any("MATLAB_class" in obj.attrs for obj in f.values())


def _text(v) -> str:
    return v.decode("ascii", "replace") if isinstance(v, bytes) else str(v)


def _matlab_group(group, prefix: str):
    for name, obj in group.items():
        if name in _HIDDEN:
            continue
        cls = _text(obj.attrs.get("MATLAB_class", b""))
        full, sparse = prefix + name, "MATLAB_sparse" in obj.attrs
        if cls == "struct" and not hasattr(obj, "dtype"):
            yield from _matlab_group(obj, full + "/")
        elif sparse or not hasattr(obj, "dtype") or cls in NO_NUMBERS:
            yield no_numbers(full, NO_NUMBERS.get("sparse" if sparse else cls, "an object"))
        elif obj.attrs.get("MATLAB_empty"):
            dims = tuple(int(n) for n in np.ravel(obj[()]))[::-1]
            yield Variable(full, dims, np.dtype(np.float64), lambda d=dims: np.zeros(d))
        else:
            yield _variable(full, obj, True, {"char": "U", "logical": "?"}.get(cls))


def _octave_group(group, prefix: str):
    for name, obj in group.items():
        if not hasattr(obj, "keys") or "type" not in obj or "value" not in obj:
            continue
        kind = _text(obj["type"][()])
        full = prefix + name
        value = obj["value"]
        if kind in ("struct", "scalar struct") and not hasattr(value, "dtype"):
            yield from _octave_group(value, full + "/")
        elif kind in NO_NUMBERS or not hasattr(value, "dtype"):
            yield no_numbers(full, NO_NUMBERS.get(kind, "an object"))
        elif kind.endswith("range"):
            base, _, step = (float(value[()][k]) for k in ("base", "limit", "increment"))
            r = base + step * np.arange(int(value.attrs["OCTAVE_RANGE_NELEM"]))
            yield Variable(full, r.shape, r.dtype, lambda r=r: r)
        else:
            as_ = "U" if "string" in kind else "?" if kind.startswith("bool") else None
            yield _variable(full, value, True, as_)


def _variable(name: str, ds, matlab: bool, as_kind: str | None = None) -> Variable:
    """A dataset as a Variable (``as_kind``: 'U' for characters, '?' for
    booleans): a spectrogram as an :class:`H5Array`, scalars and vectors
    read now (they are small, and the probe reads their values), what holds
    no numbers read only when asked."""
    axes = tuple(range(len(ds.shape)))[::-1] if matlab else tuple(range(len(ds.shape)))
    shape = tuple(ds.shape[a] for a in axes)
    if as_kind is None and (ds.dtype.kind in "fciu" or _complex_dtype(ds.dtype) is not None):
        if sum(n > 1 for n in shape) < 2:
            a = _read(ds, axes, matlab)
            return Variable(name, a.shape, a.dtype, lambda: a)
        if matlab and matlab_shape(shape) != shape:     # 3-D, channels last: channels first
            axes = (axes[-1],) + axes[:-1]
        arr = H5Array(ds, axes, name)
        return Variable(name, arr.shape, arr.dtype, lambda: arr)
    if as_kind == "U":
        return Variable(name, (), np.dtype("U"), lambda: _chars(ds))
    dt = np.dtype(bool) if as_kind == "?" else ds.dtype
    return Variable(name, shape, dt, lambda: _read(ds, axes, matlab).astype(dt))


def _read(ds, axes: tuple, matlab: bool) -> np.ndarray:
    """A whole dataset, in MATLAB's shape when ``matlab`` (:func:`~.base.matlab_shape`)."""
    a = _as_complex(np.transpose(np.asarray(ds[()]), axes))
    return a.reshape(matlab_shape(a.shape)) if matlab and a.ndim <= 2 else a


def _chars(ds) -> np.ndarray:
    """MATLAB's and Octave's characters (uint16, int8 codes) as a string."""
    return np.array("".join(map(chr, np.ravel(ds[()]).astype(np.uint32))))
