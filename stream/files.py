"""Readers for spectrogram and phase files: npy, npz, raw binary, csv/txt.

Arrays are opened, not loaded: ``.npy`` and uncompressed ``.npz`` members are
memory-mapped, raw binary files too, so a one-hour spectrogram costs address
space, not RAM.  Compressed ``.npz`` members and text files are read whole
(they cannot be mapped); the error path says so when that is too large.

:class:`FrameSource` walks one or two such arrays block by block in frame
order, whatever their layout, and is what ``reconstruct``, ``send`` and the
probe read through.
"""

from __future__ import annotations

import mmap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["FileError", "load_array", "array_names", "FrameSource", "LAYOUTS", "RAW_DTYPES"]

LAYOUTS = ("frames-bins", "bins-frames")
RAW_DTYPES = {"float32": "<f4", "float64": "<f8", "complex64": "<c8", "complex128": "<c16",
              "float32be": ">f4", "float64be": ">f8", "int16": "<i2"}
_RAW_SUFFIXES = {".bin", ".raw", ".dat", ".f32", ".f64"}
_TEXT_SUFFIXES = {".csv", ".txt", ".tsv"}


#: A file that cannot be read as asked (the name the file layer has always used).
FileError = InputError


def array_names(path) -> list[str]:
    """Names of the arrays in an ``.npz`` file ([] for other formats)."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        return []
    try:
        with zipfile.ZipFile(path) as z:
            return [n[:-4] if n.endswith(".npy") else n for n in z.namelist()]
    except (OSError, zipfile.BadZipFile) as e:
        raise FileError(f"{path}: not a readable .npz file ({e})") from None


def load_array(path, key: str | None = None, dtype: str | None = None,
               bins: int | None = None, layout: str | None = None) -> np.ndarray:
    """Open one array.

    Parameters
    ----------
    path : str or Path
        ``.npy``, ``.npz`` (``key`` names the array; the first one otherwise),
        ``.csv``/``.txt``/``.tsv``, or raw binary (``.bin``, ``.raw``, ``.dat``...).
    dtype : str
        For raw files: a key of :data:`RAW_DTYPES` (default float32, little endian).
    bins : int
        For raw files: frequency bins per frame, which fixes the shape.
    layout : str
        For raw files: element order, 'frames-bins' (default: each frame's
        bins are contiguous) or 'bins-frames'.
    """
    path = Path(path)
    if not path.exists():
        raise FileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if suffix == ".npz":
            return _load_npz(path, key)
        if suffix in _TEXT_SUFFIXES:
            return _load_text(path)
        return _load_raw(path, dtype, bins, layout)
    except FileError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise FileError(f"{path}: cannot read it as {suffix or 'raw binary'} ({e})") from None


def _load_npz(path: Path, key: str | None) -> np.ndarray:
    names = array_names(path)
    if not names:
        raise FileError(f"{path}: the .npz file holds no arrays")
    if key is None:
        key = names[0]
    if key not in names:
        raise FileError(f"{path}: no array named {key!r}; it holds {', '.join(names)}")
    mapped = _map_npz_member(path, key + ".npy")
    if mapped is not None:
        return mapped
    with np.load(path, allow_pickle=False) as z:   # compressed: read it whole
        return z[key]


def _map_npz_member(path: Path, member: str):
    """Memory-map an uncompressed (ZIP_STORED) npz member; None when it is compressed."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            f.seek(start)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dt = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dt = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
    if dt.hasobject:
        raise FileError(f"{path}: array {member[:-4]!r} holds Python objects; "
                        "they are never unpickled")
    return np.memmap(path, dtype=dt, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")


def _load_text(path: Path) -> np.ndarray:
    with open(path, "r") as f:
        head = f.readline()
    delimiter = "," if "," in head else ("\t" if "\t" in head else None)
    try:
        float(head.replace(",", " ").split()[0])
        skip = 0
    except (ValueError, IndexError):
        skip = 1     # a header row
    arr = np.loadtxt(path, delimiter=delimiter, skiprows=skip, dtype=np.float64, ndmin=2)
    return arr


def _load_raw(path: Path, dtype: str | None, bins: int | None, layout: str | None):
    dtype = dtype or "float32"
    if dtype not in RAW_DTYPES:
        raise FileError(f"--dtype {dtype!r} is not one of {', '.join(RAW_DTYPES)}")
    dt = np.dtype(RAW_DTYPES[dtype])
    size = path.stat().st_size
    if size % dt.itemsize:
        raise FileError(f"{path}: {size} bytes is not a whole number of {dtype} values; "
                        "try another --dtype")
    count = size // dt.itemsize
    if bins is None:
        raise FileError(f"{path}: a raw file has no shape; give --bins (or --n-fft), "
                        "or run 'specstream probe' to infer it")
    if count % bins:
        raise FileError(f"{path}: {count} {dtype} values do not split into frames of "
                        f"{bins} bins; check --bins/--n-fft and --dtype")
    shape = (count // bins, bins) if (layout or "frames-bins") == "frames-bins" else (bins, count // bins)
    return np.memmap(path, dtype=dt, mode="r", shape=shape)


@dataclass
class FrameSource:
    """One or two arrays read frame by frame.

    ``first`` holds magnitudes (or complex bins), ``second`` phases (or None).
    ``layout`` says which axis of each 2-D array is frequency; 3-D arrays have
    channels first.  ``second_layout`` is the layout of ``second`` when it
    differs (the same frames saved transposed: its last two axes are those of
    ``first`` swapped); None means ``layout``.  Iterating yields
    ``(first_block, second_block)`` of shape ``(n, bins)`` or
    ``(channels, n, bins)``, in frame order.
    """

    first: np.ndarray
    second: np.ndarray | None = None
    layout: str = "bins-frames"
    second_layout: str | None = None

    def __post_init__(self):
        for lay in (self.layout, self.second_layout):
            if lay is not None and lay not in LAYOUTS:
                raise FileError(f"layout {lay!r} is not one of {', '.join(LAYOUTS)}")
        if self.first.ndim not in (2, 3):
            raise FileError(f"a spectrogram must be 2-D (or 3-D with channels first), "
                            f"got shape {self.first.shape}")
        if self.second_layout is None or self.second is None:
            self.second_layout = self.layout
        if self.second is not None:
            want = self.first.shape
            if self.second_layout != self.layout:
                want = want[:-2] + want[-2:][::-1]
            if self.second.shape != want:
                how = ("" if self.second_layout == self.layout else
                       f" (with the phase in {self.second_layout} order it should be {want})")
                raise FileError(f"magnitude shape {self.first.shape} and phase shape "
                                f"{self.second.shape} differ{how}")

    @property
    def channels(self) -> int:
        return 1 if self.first.ndim == 2 else self.first.shape[0]

    @property
    def n_bins(self) -> int:
        return self.first.shape[-1] if self.layout == "frames-bins" else self.first.shape[-2]

    @property
    def n_frames(self) -> int:
        return self.first.shape[-2] if self.layout == "frames-bins" else self.first.shape[-1]

    @property
    def is_complex(self) -> bool:
        return np.iscomplexobj(self.first)

    def block(self, start: int, stop: int, which: np.ndarray | None = None,
              layout: str | None = None) -> np.ndarray:
        """Frames ``start:stop`` of one array in frames-bins order (a copy).

        ``which`` defaults to ``first``; ``layout`` to the layout of the array
        read (``second_layout`` for ``second``, ``layout`` otherwise)."""
        a = self.first if which is None else which
        if layout is None:
            layout = (self.second_layout if which is not None and which is self.second
                      else self.layout)
        if layout == "frames-bins":
            out = a[..., start:stop, :]
        else:
            out = np.swapaxes(a[..., :, start:stop], -1, -2)
        return np.array(out)

    def blocks(self, size: int = 1024, start: int = 0, stop: int | None = None):
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        for i in range(start, stop, size):
            j = min(i + size, stop)
            pair = (self.block(i, j, layout=self.layout),
                    None if self.second is None
                    else self.block(i, j, self.second, layout=self.second_layout))
            # The blocks are copies: let the kernel drop the mapped pages read so
            # far, or a file read once end to end stays resident (RSS grows by
            # the file's size although no RAM is allocated).
            _release_pages(self.first)
            if self.second is not None:
                _release_pages(self.second)
            yield pair


def _release_pages(a):
    """Drop the resident pages of a read-only/shared memory map (they stay in the
    page cache and fault back in if read again).  No-op for other arrays."""
    while a is not None and not isinstance(a, np.memmap):
        a = a.base if isinstance(a, np.ndarray) else None
    m = getattr(a, "_mmap", None)
    if m is None or a.mode not in ("r", "r+", "readonly", "readwrite"):
        return
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if advice is None or not hasattr(m, "madvise"):
        return
    try:
        m.madvise(advice)
    except (OSError, ValueError):
        pass


def guess_layout(shape: tuple, n_fft: int | None) -> str:
    """Which axis is frequency, from ``n_fft`` when known; librosa's bins-frames
    otherwise, unless that would mean more than 8193 bins (n_fft > 16384) and
    the other axis would not."""
    if n_fft is not None:
        b = n_fft // 2 + 1
        if shape[-1] == b and shape[-2] != b:
            return "frames-bins"
        if shape[-2] == b:
            return "bins-frames"
        raise FileError(
            f"an array of shape {tuple(shape)} has no axis of {b} bins, which n_fft={n_fft} "
            f"makes; its axes fit n_fft={2 * (shape[-2] - 1)} (bins-frames) or "
            f"n_fft={2 * (shape[-1] - 1)} (frames-bins)")
    if shape[-2] > _MAX_GUESS_BINS >= shape[-1]:
        # bins-frames would mean n_fft > 16384: no audio STFT; the frames run down
        return "frames-bins"
    return "bins-frames"


_MAX_GUESS_BINS = 8193     # n_fft 16384


def parse_window(text: str):
    """A window name, or a comma-separated list / .npy file of values."""
    if text.endswith(".npy"):
        return np.load(text, allow_pickle=False)
    if "," in text:
        try:
            return np.array([float(v) for v in text.split(",")])
        except ValueError:
            raise FileError(f"--window {text!r}: a list of values must be numbers "
                            "separated by commas") from None
    return text
