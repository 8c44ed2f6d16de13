"""Raw binary files: headerless numbers, memory-mapped; the element type and
the bins per frame come from the caller (``--dtype``, ``--bins``), or from
the probe's guess (:mod:`stream.probe.raw`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["RAW_DTYPES", "load_raw"]

RAW_DTYPES = {"float32": "<f4", "float64": "<f8", "complex64": "<c8", "complex128": "<c16",
              "float32be": ">f4", "float64be": ">f8", "int16": "<i2"}


def load_raw(path: Path, dtype: str | None, bins: int | None, layout: str | None) -> np.memmap:
    """``path`` mapped as ``dtype`` (a key of :data:`RAW_DTYPES`, default
    float32), frames of ``bins`` values in ``layout`` order (default
    frames-bins: each frame's bins contiguous)."""
    dtype = dtype or "float32"
    if dtype not in RAW_DTYPES:
        raise InputError(f"--dtype {dtype!r} is not one of {', '.join(RAW_DTYPES)}")
    dt = np.dtype(RAW_DTYPES[dtype])
    size = path.stat().st_size
    if size % dt.itemsize:
        raise InputError(f"{path}: {size} bytes is not a whole number of {dtype} values; "
                         "try another --dtype")
    count = size // dt.itemsize
    if bins is None:
        raise InputError(f"{path}: a raw file has no shape; give --bins (or --n-fft), "
                         "or run 'specstream probe' to infer it")
    if count % bins:
        raise InputError(f"{path}: {count} {dtype} values do not split into frames of "
                         f"{bins} bins; check --bins/--n-fft and --dtype")
    frames = count // bins
    shape = (frames, bins) if (layout or "frames-bins") == "frames-bins" else (bins, frames)
    return np.memmap(path, dtype=dt, mode="r", shape=shape)
