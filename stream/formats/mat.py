"""MAT files of versions 4 and 5 (MATLAB's and Octave's ``-v4``, ``-v6``,
``-v7``), through :func:`scipy.io.loadmat`.

scipy reads a MAT v5 file whole: it is neither mapped nor read by blocks
(``-v7`` compresses each variable).  Its size, from the variables' headers
(:func:`scipy.io.whosmat`), is checked against
:func:`~stream.formats.base.inflate_cap` before anything is loaded; a file
too large for memory is better saved as MAT v7.3 (HDF5, read block by
block: :mod:`.hdf5`) or as ``.npy``.  Matrices come in MATLAB's shape
(scipy undoes the column-major order), then :func:`~.base.matlab_array`:
scalars 0-d, vectors 1-D, channels first.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..extras import require
from .base import NO_NUMBERS, Variable, check_cap, matlab_array, mib, no_numbers, reading

__all__ = ["mat_variables"]

#: bytes per element of each MATLAB class, for the size of a whole read
_ITEMSIZE = {"double": 8, "single": 4, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2,
             "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "logical": 1, "char": 4}


def mat_variables(path: Path) -> list[Variable]:
    """The variables of a MAT v4 or v5 file, in the file's order, loaded."""
    sio = require("scipy.io", "reading MAT files")
    with reading(path, "a MAT file"):
        listing = sio.whosmat(str(path))
    if not listing:
        raise InputError(f"{path}: the MAT file holds no variables; save the spectrogram in it "
                         "(save -v7 file.mat S)")
    nbytes = sum(math.prod(shape) * _ITEMSIZE.get(cls, 8) for _, shape, cls in listing)
    check_cap(nbytes, str(path), f"a MAT file read whole (scipy), about {mib(nbytes)}",
              "save it with save -v7.3 (read block by block) or the spectrogram with np.save "
              "(memory-mapped)")
    with reading(path, "a MAT file"):
        data = sio.loadmat(str(path), squeeze_me=False, chars_as_strings=True)
    return [_variable(name, cls, data[name]) for name, _, cls in listing if name in data]


def _variable(name: str, cls: str, a) -> Variable:
    if cls in NO_NUMBERS or not isinstance(a, np.ndarray):
        return no_numbers(name, NO_NUMBERS.get(cls, "an object"), getattr(a, "shape", ()))
    if cls == "logical":
        a = a.astype(bool)
    a = matlab_array(a)
    return Variable(name, a.shape, a.dtype, lambda: a)
