"""Readers for spectrogram and phase files: npy, npz, raw binary, csv/txt.

Arrays are opened, not loaded: ``.npy`` and uncompressed ``.npz`` members are
memory-mapped, raw binary files too, so a one-hour spectrogram costs address
space, not RAM.  Compressed ``.npz`` members and text files are read whole
(they cannot be mapped); the error path says so when that is too large.

:class:`FrameSource` walks one or two such arrays block by block in frame
order, whatever their layout, and is what ``reconstruct`` and ``send`` read
through.  The file conventions have their one home here: the formats by
suffix (:data:`FORMATS`), which axis is frequency (:func:`guess_layout`,
:func:`layout_guess`) and a phase saved transposed (:func:`second_layout`);
the probe uses the same rules.
"""

from __future__ import annotations

import mmap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .spec import bins_fit, n_fft_for_bins

__all__ = ["FileError", "load_array", "array_names", "file_format", "FrameSource", "LAYOUTS",
           "RAW_DTYPES", "FORMATS", "guess_layout", "layout_guess", "other_layout",
           "is_transposed", "second_layout", "usual_n_fft", "fits_usual_n_fft"]

LAYOUTS = ("frames-bins", "bins-frames")
RAW_DTYPES = {"float32": "<f4", "float64": "<f8", "complex64": "<c8", "complex128": "<c16",
              "float32be": ">f4", "float64be": ">f8", "int16": "<i2"}
#: File formats by suffix (lower case); any other suffix is raw binary.
FORMATS = {".npy": "npy", ".npz": "npz", ".csv": "text", ".txt": "text", ".tsv": "text"}


#: A file that cannot be read as asked (the name the file layer has always used).
FileError = InputError


def file_format(path) -> str:
    """'npy', 'npz', 'text' or 'raw': how :func:`load_array` reads ``path`` (by its suffix)."""
    return FORMATS.get(Path(path).suffix.lower(), "raw")


def array_names(path) -> list[str]:
    """Names of the arrays in an ``.npz`` file ([] for other formats)."""
    path = Path(path)
    if file_format(path) != "npz":
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
    kind = file_format(path)
    try:
        if kind == "npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if kind == "npz":
            return _load_npz(path, key)
        if kind == "text":
            return _load_text(path)
        return _load_raw(path, dtype, bins, layout)
    except FileError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise FileError(f"{path}: cannot read it as {path.suffix.lower() or 'raw binary'} "
                        f"({e})") from None


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
    frames = count // bins
    shape = (frames, bins) if (layout or "frames-bins") == "frames-bins" else (bins, frames)
    return np.memmap(path, dtype=dt, mode="r", shape=shape)


@dataclass
class FrameSource:
    """One or two arrays read frame by frame.

    ``first`` holds magnitudes (or complex bins), ``second`` phases (or None).
    ``layout`` says which axis of each 2-D array is frequency; 3-D arrays have
    channels first.  ``second_layout`` is the layout of ``second`` when it
    differs (the same frames saved transposed: its last two axes are those of
    ``first`` swapped); None means :func:`second_layout`'s answer: ``layout``,
    or the other one when ``second`` is ``first`` transposed.  Iterating
    yields ``(first_block, second_block)`` of shape ``(n, bins)`` or
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
        if self.second is None:
            self.second_layout = self.layout
        elif self.second_layout is None:
            self.second_layout = second_layout(self.first.shape, self.second.shape, self.layout)
        if self.second is not None:
            want = self.first.shape
            if self.second_layout != self.layout:
                want = _transposed_shape(want)
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


# --------------------------------------------------------------- layouts
def other_layout(layout: str) -> str:
    """'bins-frames' for 'frames-bins' and the other way round."""
    return "bins-frames" if layout == "frames-bins" else "frames-bins"


def _transposed_shape(shape) -> tuple:
    """The shape of the same frames in the other layout (the last two axes swapped)."""
    shape = tuple(shape)
    return shape[:-2] + shape[-2:][::-1]


def is_transposed(shape, like) -> bool:
    """True when an array of ``shape`` holds the frames of one of shape ``like``
    saved in the other layout, as some tools write the phase: both 2-D, not
    square, each the other's transpose."""
    return (len(shape) == 2 and len(like) == 2 and like[0] != like[1]
            and tuple(shape) == _transposed_shape(like))


def second_layout(first_shape, second_shape, layout: str) -> str:
    """The layout to read the second (phase) array in: the first's ``layout``,
    or the other one when the second is the first transposed."""
    return other_layout(layout) if is_transposed(second_shape, first_shape) else layout


def guess_layout(shape: tuple, n_fft: int | None = None) -> str:
    """Which axis of an array of ``shape`` (2-D, or 3-D with channels first) is
    frequency: the one of ``n_fft // 2 + 1`` bins when ``n_fft`` is known
    (:class:`FileError` when neither is), else :func:`layout_guess`'s."""
    if n_fft is None:
        return layout_guess(shape)[0]
    b = n_fft // 2 + 1
    if shape[-1] == b and shape[-2] != b:
        return "frames-bins"
    if shape[-2] == b:
        return "bins-frames"
    raise FileError(
        f"an array of shape {tuple(shape)} has no axis of {b} bins, which n_fft={n_fft} "
        f"makes; as bins-frames it fits {bins_fit(shape[-2])}, as frames-bins "
        f"{bins_fit(shape[-1])}")


def layout_guess(shape: tuple) -> tuple[str, str | None]:
    """``(layout, why)`` from the axis lengths alone; ``why`` is None when they
    do not tell and the layout is librosa's bins-frames by default.

    An axis is frequency when only it fits a usual ``n_fft``
    (:func:`fits_usual_n_fft`) -- the last axis only when it is also the
    shorter one, since a clip of few frames (``(50, 513)``) reads either way
    -- or when the other reading would mean more than 8193 bins (n_fft > 16384).
    """
    rows, cols = shape[-2:]
    fits = fits_usual_n_fft(rows), fits_usual_n_fft(cols)
    if fits[0] and not fits[1]:
        return "bins-frames", f"only the first axis ({rows}) fits a usual n_fft"
    if fits[1] and not fits[0] and cols < rows:
        return "frames-bins", (f"only the last axis ({cols}) fits a usual n_fft, and the "
                               f"{rows} frames outnumber the bins")
    if rows > _MAX_GUESS_BINS >= cols:
        # bins-frames would mean n_fft > 16384: no audio STFT; the frames run down
        return "frames-bins", f"{rows} bins would mean n_fft > {2 * (_MAX_GUESS_BINS - 1)}"
    return "bins-frames", None


_MAX_GUESS_BINS = 8193     # n_fft 16384


def usual_n_fft(n: int) -> bool:
    """A frame length tools use: a power of two or a multiple of 32 from 16 on,
    or 400, 480, 600, 800, 1200 (25 ms at 16 kHz, 10-25 ms at 48 kHz...)."""
    return n >= 16 and (n & (n - 1) == 0 or n % 32 == 0 or n in (400, 480, 600, 800, 1200))


def fits_usual_n_fft(bins: int) -> bool:
    """``bins`` is the one-sided (``n_fft//2 + 1``, even n_fft) or the
    two-sided (``n_fft``) bin count of a usual n_fft."""
    return usual_n_fft(n_fft_for_bins(bins)[0]) or usual_n_fft(bins)


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
