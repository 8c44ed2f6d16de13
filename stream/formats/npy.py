"""``.npy`` and ``.npz``: numpy's own formats.

An ``.npy`` file and the uncompressed (``ZIP_STORED``) members of an
``.npz`` are memory-mapped: a one-hour spectrogram costs address space, not
RAM.  A compressed member is read whole, and only when what it inflates to
fits :func:`~stream.formats.base.inflate_cap` (the zip's sizes may lie: the
array's own header is believed, and no more than it says is ever inflated).
Headers are checked (magic, version, truncation) before any data is touched.
"""

from __future__ import annotations

import math
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import Variable, check_cap, check_file, check_numeric, mib

__all__ = ["NPY_MAGIC", "load_npy", "npy_dtype", "load_npz", "npz_names", "npz_variables",
           "npz_dtype", "open_zip"]

#: The first bytes of every .npy file (and of every array member of an .npz).
NPY_MAGIC = np.lib.format.MAGIC_PREFIX


@dataclass(frozen=True)
class _Header:
    """What an .npy header says: the array, and where its data starts."""

    shape: tuple
    fortran: bool
    dtype: np.dtype
    offset: int          # bytes from the start of the .npy data to the array's first byte

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def end(self) -> int:
        """Bytes the whole .npy takes: header and data."""
        return self.offset + self.nbytes

    def says(self) -> str:
        return f"shape {self.shape} of {self.dtype}, {self.end} bytes"


def _read_header(f, name: str) -> _Header:
    """The header of the .npy that starts at ``f``'s position (a file or a zip
    member stream), checked: magic, version and shape (the dtype is the caller's)."""
    start = f.tell()
    magic = f.read(8)
    prefix = NPY_MAGIC
    if len(magic) < 8 and prefix.startswith(magic[:6]):
        raise InputError(f"{name}: truncated: {len(magic)} bytes, too short for an .npy "
                         "header; save it again with np.save")
    if magic[:6] != prefix:
        raise InputError(f"{name}: not an .npy array (it starts with {magic[:6]!r}, not "
                         f"{prefix!r}); save it with np.save, or give a "
                         "raw binary file a .bin suffix and --dtype")
    major, minor = magic[6], magic[7]
    if major not in (1, 2, 3):
        raise InputError(f"{name}: .npy format version {major}.{minor}, which numpy does not "
                         "write; save it again with np.save")
    read = (np.lib.format.read_array_header_1_0 if major == 1
            else np.lib.format.read_array_header_2_0)     # 3.0 differs in field names only
    try:
        shape, fortran, dtype = read(f)
    except ValueError as e:
        what = ("truncated in its header" if str(e).startswith("EOF")
                else f"a damaged .npy header ({e})")
        raise InputError(f"{name}: {what}; save it again with np.save") from None
    if any(n < 0 for n in shape):
        raise InputError(f"{name}: a damaged .npy header (shape {shape}); save it again "
                         "with np.save")
    return _Header(tuple(shape), fortran, dtype, f.tell() - start)


def _map(path: Path, h: _Header, start: int, name: str):
    """Memory-map the data ``h`` describes, the .npy starting ``start`` bytes
    into ``path``; :class:`InputError` when the file ends before it does."""
    size = path.stat().st_size
    if start + h.end > size:
        raise InputError(f"{name}: truncated: its header says {h.says()}, the file holds "
                         f"{size - start}; copy or save it again")
    order = "F" if h.fortran else "C"
    if h.nbytes == 0:         # nothing to map (mmap refuses a length of 0)
        return np.empty(h.shape, h.dtype, order=order)
    return np.memmap(path, dtype=h.dtype, mode="r", offset=start + h.offset, shape=h.shape,
                     order=order)


def load_npy(path: Path) -> np.ndarray:
    """An ``.npy`` file, memory-mapped (arrays of numbers only)."""
    h = _npy_header(path)
    check_numeric(h.dtype, path)
    return _map(path, h, 0, str(path))


def npy_dtype(path: Path) -> np.dtype:
    """The dtype an ``.npy`` file's header gives."""
    return _npy_header(path).dtype


def _npy_header(path: Path) -> _Header:
    with open(path, "rb") as f:
        return _read_header(f, str(path))


# -------------------------------------------------------------------- npz
def npz_names(path: Path) -> list[str]:
    """Names of the arrays (``.npy`` members) of an ``.npz``; members of
    other kinds are not arrays and are left out."""
    with open_zip(path) as z:
        return [n[:-4] for n in z.namelist() if n.endswith(".npy")]


def npz_variables(path: Path) -> list[Variable]:
    """The arrays of an ``.npz``, from their headers (nothing is inflated)."""
    out = []
    with open_zip(path) as z:
        for name in [n[:-4] for n in z.namelist() if n.endswith(".npy")]:
            with _open_member(z, path, name) as (f, info, where):
                h = _read_header(f, where)
            out.append(Variable(name, h.shape, h.dtype,
                                lambda name=name: load_npz(path, name)))
    return out


def npz_dtype(path: Path, key: str | None) -> np.dtype:
    """The dtype of the ``key`` member (the first array when None), from its header."""
    with open_zip(path) as z, _open_member(z, path, key) as (f, info, where):
        return _read_header(f, where).dtype


def open_zip(path: Path) -> zipfile.ZipFile:
    """``path`` opened as a zip, or one :class:`~stream.errors.InputError` line."""
    check_file(path)
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise InputError(f"{path}: not a readable .npz file ({e}); save it with np.savez") \
            from None


def load_npz(path: Path, key: str | None) -> np.ndarray:
    """The ``key`` array of an ``.npz`` (the first when None): mapped when
    stored, inflated (capped) when compressed."""
    with open_zip(path) as z, _open_member(z, path, key) as (f, info, where):
        h = _read_header(f, where)
        check_numeric(h.dtype, where)
        if info.file_size < h.end:      # a zip bomb may declare little and inflate much
            raise InputError(f"{where}: the zip declares {info.file_size} bytes for it, its "
                             f"header says {h.says()}: a damaged or forged file; save it "
                             "again with np.savez")
        if info.compress_type == zipfile.ZIP_STORED:
            return _map(path, h, _member_start(path, info, where), where)
        return _inflate(f, h, where)


@contextmanager
def _open_member(z: zipfile.ZipFile, path: Path, key: str | None):
    """``(stream, info, where)``: the ``key`` member of ``z`` (the first array
    when None) open for reading, its ZipInfo, and how messages name it."""
    names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
    if not names:
        others = ", ".join(z.namelist()[:5])
        raise InputError(f"{path}: the .npz file holds no arrays"
                         + (f" (no .npy members: {others})" if others else "")
                         + "; save the arrays with np.savez")
    key = names[0] if key is None else key
    if key not in names:
        kind = " (that member is not an .npy array);" if key in z.namelist() else ";"
        raise InputError(f"{path}: no array named {key!r}{kind} it holds {', '.join(names)}")
    where = f"{path}: array {key!r}"
    info = z.getinfo(key + ".npy")
    try:
        stream = z.open(info)
    except (RuntimeError, NotImplementedError) as e:    # encrypted, unknown compression
        raise InputError(f"{where}: cannot be read ({e}); save it with np.savez") from None
    with stream:
        try:
            yield stream, info, where
        except zipfile.BadZipFile as e:    # a bad CRC: the data, or a size the zip lies about
            raise InputError(f"{where}: a damaged or forged zip member ({e}); save it again "
                             "with np.savez") from None


def _member_start(path: Path, info: zipfile.ZipInfo, where: str) -> int:
    """Where the data of an uncompressed (ZIP_STORED) member starts in ``path``."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise InputError(f"{where}: a damaged zip (no local header where the directory says); "
                         "save it again with np.savez")
    name_len = int.from_bytes(local[26:28], "little")
    extra_len = int.from_bytes(local[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len


def _inflate(f, h: _Header, where: str) -> np.ndarray:
    """Read a compressed member's data (``f`` just past its header) into
    memory: at most the ``h.nbytes`` its header says, and only when that fits
    :func:`~stream.formats.base.inflate_cap`."""
    check_cap(h.nbytes, where, f"compressed, it inflates to {mib(h.nbytes)}",
              "save it uncompressed with np.savez (it is then memory-mapped)")
    flat = np.empty(math.prod(h.shape), h.dtype)
    buf = memoryview(flat.view(np.uint8))
    done = 0
    while done < len(buf):
        n = f.readinto(buf[done:done + (4 << 20)])
        if not n:
            raise InputError(f"{where}: truncated: the compressed data ends after {done} of "
                             f"{h.nbytes} bytes; save it again with np.savez")
        done += n
    return flat.reshape(h.shape, order="F" if h.fortran else "C")


