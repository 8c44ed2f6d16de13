"""What every reader shares: the checks before a file is opened, the cap on
what is read whole, and :class:`Variable`, one named array of a file that
holds several.

Nothing is opened before :func:`check_file` has seen a regular, non-empty
file (a FIFO opened for reading blocks until a writer comes), and only arrays
of numbers are returned (:func:`check_numeric`: objects are never unpickled).
What cannot be mapped or read block by block (a compressed ``.npz`` member, a
MAT v5 file, a text file) is read whole only when it fits :func:`inflate_cap`.
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError, ParameterError, SpecstreamError

__all__ = ["check_file", "is_numeric", "check_numeric", "inflate_cap", "INFLATE_ENV",
           "check_cap", "mib", "reading", "Variable", "NO_NUMBERS", "no_numbers",
           "matlab_array", "matlab_shape"]

#: The environment variable that sets :func:`inflate_cap`, in MiB.
INFLATE_ENV = "SPECSTREAM_MAX_INFLATE_MB"
#: dtype kinds a spectrogram may hold: float, complex, signed and unsigned integer.
_NUMERIC_KINDS = "fciu"
_NOT_NUMBERS = {"b": "booleans", "U": "text", "S": "byte strings", "O": "Python objects",
                "M": "dates", "m": "time spans", "V": "raw bytes"}
_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def check_file(path) -> Path:
    """``path`` as a Path when it names a regular file that is not empty, else
    :class:`~stream.errors.InputError`.  Asked of the file's metadata before
    anything opens it: a FIFO opened for reading blocks until a writer comes,
    a device never ends, and neither can be memory-mapped."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a directory; give a file in it")
    if not stat.S_ISREG(st.st_mode):
        what = next((w for test, w in _NOT_REGULAR if test(st.st_mode)), "a special file")
        raise InputError(f"{path}: is {what}, not a regular file; save the frames to a file "
                         "and give that")
    if st.st_size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes); was it written to the end?")
    return path


def is_numeric(dtype) -> bool:
    """True for dtypes a spectrogram may hold: float, complex or integer
    (not bool, text, records, objects, dates or raw bytes)."""
    return np.dtype(dtype).kind in _NUMERIC_KINDS


def check_numeric(dtype, name) -> None:
    """:class:`~stream.errors.InputError` naming ``name`` unless
    :func:`is_numeric` (``dtype``)."""
    dt = np.dtype(dtype)
    if is_numeric(dt):
        return
    what = "records" if dt.names else _NOT_NUMBERS.get(dt.kind, "no numbers")
    why = ", which are never unpickled" if dt.hasobject else ""
    raise InputError(f"{name}: holds {what}{why} (dtype {dt}), "
                     "not numbers; save the spectrogram as float or complex values "
                     "(.astype(np.float32))")


# ------------------------------------------------------------ whole reads
def inflate_cap() -> int:
    """Bytes a file or member read whole may take in memory (a compressed
    ``.npz`` member inflated, a MAT v5 file, the numbers of a text file):
    ``$SPECSTREAM_MAX_INFLATE_MB`` (MiB) when set, else a quarter of the
    memory available, at most 2 GiB."""
    text = os.environ.get(INFLATE_ENV, "").strip()
    if not text:
        return min(_memory_available() // 4, 2 << 30)
    try:
        mb = float(text)
    except ValueError:
        mb = math.nan
    if not 0 < mb < math.inf:
        raise ParameterError(f"{INFLATE_ENV}={text!r}: the cap must be a positive number of "
                             "MiB (e.g. 4096)")
    return int(mb * (1 << 20))


def _memory_available() -> int:
    """Bytes of memory available (Linux's MemAvailable), or a guess of 8 GiB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return 8 << 30


def mib(n: int) -> str:
    """``n`` bytes in MiB, as messages give it."""
    return f"{n / (1 << 20):.1f} MiB"


def check_cap(nbytes: int, where: str, what: str, advice: str) -> None:
    """:class:`~stream.errors.InputError` when reading ``nbytes`` whole would
    pass :func:`inflate_cap`: "``where``: ``what``, over the cap of ...;
    ``advice``, or raise the cap with $SPECSTREAM_MAX_INFLATE_MB"."""
    cap = inflate_cap()
    if nbytes <= cap:
        return
    how = (f"set by {INFLATE_ENV}" if os.environ.get(INFLATE_ENV, "").strip()
           else "a quarter of the available memory, at most 2 GiB")
    raise InputError(f"{where}: {what}, over the cap of {mib(cap)} ({how}); {advice}, or "
                     f"raise the cap with {INFLATE_ENV}")


@contextmanager
def reading(path: Path, as_what: str):
    """What a reader raises, as one :class:`~stream.errors.InputError` line
    naming ``path`` and what it was read as (``as_what``: "text", ".npy"...)."""
    try:
        yield
    except SpecstreamError:
        raise
    except MemoryError:
        raise InputError(f"{path}: not enough memory to read it; convert it to .npy "
                         "(np.save), which is memory-mapped") from None
    except (ValueError, OSError, EOFError, KeyError, TypeError, zlib.error,
            zipfile.BadZipFile) as e:
        raise InputError(f"{path}: cannot read it as {as_what} ({e})") from None


# -------------------------------------------------------------- variables
@dataclass(eq=False)
class Variable:
    """One named array of a file that holds several: an ``.npz`` member, a
    MAT or HDF5 variable, a variable of Octave's text format.

    ``shape`` and ``dtype`` are known before the array is read (a complex
    dtype for complex values, whatever the file's encoding of them);
    :meth:`array` opens it, memory-mapped, read block by block or loaded, as
    its format allows.  ``note`` says what a variable of no numbers is when
    its dtype cannot ("a MATLAB cell array").
    """

    name: str
    shape: tuple
    dtype: np.dtype
    opener: Callable[[], object] = field(repr=False)
    note: str | None = None

    @property
    def numeric(self) -> bool:
        return self.note is None and is_numeric(self.dtype)

    def check_numeric(self, where: str) -> None:
        """:class:`~stream.errors.InputError` naming ``where`` unless it holds numbers."""
        if self.note is not None:
            raise InputError(f"{where}: holds {self.note}, not numbers; save the spectrogram "
                             "itself, as a numeric matrix")
        check_numeric(self.dtype, where)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def array(self):
        """The array: an ndarray, a memory map, or (HDF5) an array-like read by blocks."""
        return self.opener()


_SPARSE = "a sparse matrix (save full(S) instead)"
#: MATLAB classes and Octave types of variables that hold no numbers, as messages say them
NO_NUMBERS = {"cell": "a cell array", "struct": "a struct", "scalar struct": "a struct",
              "sparse": _SPARSE, "sparse matrix": _SPARSE, "complex sparse matrix": _SPARSE,
              "bool sparse matrix": _SPARSE, "function_handle": "a function handle",
              "function handle": "a function handle", "object": "an object",
              "opaque": "an object"}


def no_numbers(name: str, note: str, shape=()) -> Variable:
    """A variable that holds no numbers (a cell array, a struct...): listed,
    never read; ``note`` says what it is."""
    return Variable(name, tuple(shape), np.dtype(object), lambda: None, note=note)


def matlab_array(a: np.ndarray) -> np.ndarray:
    """A MATLAB/Octave matrix in the shape the rest of specstream reads:
    1 x 1 -> a 0-d scalar, 1 x N and N x 1 -> 1-D, and a 3-D array with its
    channels last (MATLAB's ``stft`` of a multichannel signal: bins x frames
    x channels, the shortest axis last) -> channels first; others as they are."""
    shape = matlab_shape(a.shape)
    if shape == a.shape:
        return a
    return np.moveaxis(a, -1, 0) if a.ndim == 3 else a.reshape(shape)


def matlab_shape(shape) -> tuple:
    """The shape :func:`matlab_array` gives a MATLAB matrix of ``shape``."""
    shape = tuple(shape)
    if len(shape) == 3 and shape[-1] < shape[0] and shape[-1] <= 16:
        return (shape[-1],) + shape[:-1]
    if len(shape) == 2 and 1 in shape:
        return tuple(n for n in shape if n != 1) or ()
    return shape
