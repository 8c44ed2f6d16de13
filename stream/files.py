"""Readers for spectrogram and phase files: npy, npz, raw binary, csv/txt.

Arrays are opened, not loaded: ``.npy`` and uncompressed ``.npz`` members are
memory-mapped, raw binary files too, so a one-hour spectrogram costs address
space, not RAM.  Compressed ``.npz`` members and text files are read whole
(they cannot be mapped); a compressed member is read only when what it
inflates to fits :func:`inflate_cap` (the zip's sizes may lie: the array's own
header is believed, and no more than it says is ever inflated).

Nothing is opened before :func:`check_file` has seen a regular, non-empty
file (a FIFO opened for reading blocks until a writer comes), and only arrays
of numbers are returned (:func:`check_numeric`: objects are never unpickled).

:class:`FrameSource` walks one or two such arrays block by block in frame
order, whatever their layout, and is what ``reconstruct`` and ``send`` read
through.  The file conventions have their one home here: the formats by
suffix (:data:`FORMATS`), which axis is frequency (:func:`guess_layout`,
:func:`layout_guess`) and a phase saved transposed (:func:`second_layout`);
the probe uses the same rules.
"""

from __future__ import annotations

import math
import mmap
import os
import stat
import warnings
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, ParameterError, SpecstreamError
from .spec import bins_fit, n_fft_for_bins

__all__ = ["FileError", "load_array", "array_names", "file_format", "FrameSource", "LAYOUTS",
           "RAW_DTYPES", "FORMATS", "guess_layout", "layout_guess", "other_layout",
           "is_transposed", "second_layout", "usual_n_fft", "fits_usual_n_fft", "check_file",
           "check_numeric", "check_spectrogram", "is_numeric", "array_dtype", "inflate_cap",
           "INFLATE_ENV"]

LAYOUTS = ("frames-bins", "bins-frames")
RAW_DTYPES = {"float32": "<f4", "float64": "<f8", "complex64": "<c8", "complex128": "<c16",
              "float32be": ">f4", "float64be": ">f8", "int16": "<i2"}
#: File formats by suffix (lower case); any other suffix is raw binary.
FORMATS = {".npy": "npy", ".npz": "npz", ".csv": "text", ".txt": "text", ".tsv": "text"}
#: The environment variable that sets :func:`inflate_cap`, in MiB.
INFLATE_ENV = "SPECSTREAM_MAX_INFLATE_MB"
#: dtype kinds a spectrogram may hold: float, complex, signed and unsigned integer.
_NUMERIC_KINDS = "fciu"
_NOT_NUMBERS = {"b": "booleans", "U": "text", "S": "byte strings", "O": "Python objects",
                "M": "dates", "m": "time spans", "V": "raw bytes"}
_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


#: A file that cannot be read as asked (the name the file layer has always used).
FileError = InputError


def file_format(path) -> str:
    """'npy', 'npz', 'text' or 'raw': how :func:`load_array` reads ``path`` (by its suffix)."""
    return FORMATS.get(Path(path).suffix.lower(), "raw")


def check_file(path) -> Path:
    """``path`` as a Path when it names a regular file that is not empty, else
    :class:`FileError`.  Asked of the file's metadata before anything opens
    it: a FIFO opened for reading blocks until a writer comes, a device never
    ends, and neither can be memory-mapped."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileError(f"{path}: no such file") from None
    except OSError as e:
        raise FileError(f"{path}: cannot read it ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise FileError(f"{path}: is a directory; give a file in it")
    if not stat.S_ISREG(st.st_mode):
        what = next((w for test, w in _NOT_REGULAR if test(st.st_mode)), "a special file")
        raise FileError(f"{path}: is {what}, not a regular file; save the frames to a file "
                        "and give that")
    if st.st_size == 0:
        raise FileError(f"{path}: the file is empty (0 bytes); was it written to the end?")
    return path


def is_numeric(dtype) -> bool:
    """True for dtypes a spectrogram may hold: float, complex or integer
    (not bool, text, records, objects, dates or raw bytes)."""
    return np.dtype(dtype).kind in _NUMERIC_KINDS


def check_numeric(dtype, name) -> None:
    """:class:`FileError` naming ``name`` unless :func:`is_numeric` (``dtype``)."""
    dt = np.dtype(dtype)
    if is_numeric(dt):
        return
    what = "records" if dt.names else _NOT_NUMBERS.get(dt.kind, "no numbers")
    why = ", which are never unpickled" if dt.hasobject else ""
    raise FileError(f"{name}: holds {what}{why} (dtype {dt}), "
                    "not numbers; save the spectrogram as float or complex values "
                    "(.astype(np.float32))")


def check_spectrogram(shape, name) -> None:
    """:class:`FileError` naming ``name`` unless ``shape`` is that of a
    spectrogram: 2-D (or 3-D with channels first), with frames and bins."""
    shape = tuple(shape)
    if len(shape) == 0:
        raise FileError(f"{name}: holds a single value (a 0-d array), not a spectrogram "
                        "(2-D: frames and bins); save the spectrogram itself")
    if len(shape) == 1:
        raise FileError(f"{name}: a 1-D array of {shape[0]} values is not a spectrogram "
                        "(2-D: frames and bins); reshape it to frames x bins, or give a raw "
                        "file and --bins")
    if len(shape) > 3:
        raise FileError(f"{name}: a spectrogram must be 2-D (or 3-D with channels first), "
                        f"got shape {shape}")
    if 0 in shape:
        raise FileError(f"{name}: the array of shape {shape} is empty (an axis of length 0): "
                        "no frames or no bins to reconstruct; check that it was saved whole")


def array_names(path) -> list[str]:
    """Names of the arrays (``.npy`` members) in an ``.npz`` file ([] for other
    formats); members of other kinds are not arrays and are left out."""
    path = Path(path)
    if file_format(path) != "npz":
        return []
    with _open_zip(path) as z:
        return [n[:-4] for n in z.namelist() if n.endswith(".npy")]


def _open_zip(path: Path) -> zipfile.ZipFile:
    check_file(path)
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise FileError(f"{path}: not a readable .npz file ({e}); save it with np.savez") \
            from None


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
    path = check_file(path)
    kind = file_format(path)
    with _reading(path):
        if kind == "npy":
            return _load_npy(path)
        if kind == "npz":
            return _load_npz(path, key)
        if kind == "text":
            return _load_text(path)
        return _load_raw(path, dtype, bins, layout)


def array_dtype(path, key: str | None = None) -> np.dtype:
    """The dtype of the array :func:`load_array` would open (``key`` as
    there), from its header alone; float64 for text, float32 for raw files."""
    path = check_file(path)
    kind = file_format(path)
    with _reading(path):
        if kind == "npy":
            with open(path, "rb") as f:
                return _read_header(f, str(path)).dtype
        if kind == "npz":
            with _open_zip(path) as z, _open_member(z, path, key) as (f, info, where):
                return _read_header(f, where).dtype
    return np.dtype(np.float64 if kind == "text" else np.float32)


@contextmanager
def _reading(path: Path):
    """What the readers below raise, as one :class:`FileError` line naming ``path``."""
    try:
        yield
    except SpecstreamError:
        raise
    except MemoryError:
        raise FileError(f"{path}: not enough memory to read it; convert it to .npy "
                        "(np.save), which is memory-mapped") from None
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        raise FileError(f"{path}: cannot read it as {path.suffix.lower() or 'raw binary'} "
                        f"({e})") from None


# ----------------------------------------------------------- npy headers
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
    prefix = np.lib.format.MAGIC_PREFIX
    if len(magic) < 8 and prefix.startswith(magic[:6]):
        raise FileError(f"{name}: truncated: {len(magic)} bytes, too short for an .npy "
                        "header; save it again with np.save")
    if magic[:6] != prefix:
        raise FileError(f"{name}: not an .npy array (it starts with {magic[:6]!r}, not "
                        f"{prefix!r}); save it with np.save, or give a "
                        "raw binary file a .bin suffix and --dtype")
    major, minor = magic[6], magic[7]
    if major not in (1, 2, 3):
        raise FileError(f"{name}: .npy format version {major}.{minor}, which numpy does not "
                        "write; save it again with np.save")
    read = (np.lib.format.read_array_header_1_0 if major == 1
            else np.lib.format.read_array_header_2_0)     # 3.0 differs in field names only
    try:
        shape, fortran, dtype = read(f)
    except ValueError as e:
        what = ("truncated in its header" if str(e).startswith("EOF")
                else f"a damaged .npy header ({e})")
        raise FileError(f"{name}: {what}; save it again with np.save") from None
    if any(n < 0 for n in shape):
        raise FileError(f"{name}: a damaged .npy header (shape {shape}); save it again "
                        "with np.save")
    return _Header(tuple(shape), fortran, dtype, f.tell() - start)


def _map(path: Path, h: _Header, start: int, name: str):
    """Memory-map the data ``h`` describes, the .npy starting ``start`` bytes
    into ``path``; :class:`FileError` when the file ends before it does."""
    size = path.stat().st_size
    if start + h.end > size:
        raise FileError(f"{name}: truncated: its header says {h.says()}, the file holds "
                        f"{size - start}; copy or save it again")
    order = "F" if h.fortran else "C"
    if h.nbytes == 0:         # nothing to map (mmap refuses a length of 0)
        return np.empty(h.shape, h.dtype, order=order)
    return np.memmap(path, dtype=h.dtype, mode="r", offset=start + h.offset, shape=h.shape,
                     order=order)


def _load_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        h = _read_header(f, str(path))
    check_numeric(h.dtype, path)
    return _map(path, h, 0, str(path))


def _load_npz(path: Path, key: str | None) -> np.ndarray:
    with _open_zip(path) as z, _open_member(z, path, key) as (f, info, where):
        h = _read_header(f, where)
        check_numeric(h.dtype, where)
        if info.file_size < h.end:      # a zip bomb may declare little and inflate much
            raise FileError(f"{where}: the zip declares {info.file_size} bytes for it, its "
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
        raise FileError(f"{path}: the .npz file holds no arrays"
                        + (f" (no .npy members: {others})" if others else "")
                        + "; save the arrays with np.savez")
    key = names[0] if key is None else key
    if key not in names:
        kind = " (that member is not an .npy array);" if key in z.namelist() else ";"
        raise FileError(f"{path}: no array named {key!r}{kind} it holds {', '.join(names)}")
    where = f"{path}: array {key!r}"
    info = z.getinfo(key + ".npy")
    try:
        stream = z.open(info)
    except (RuntimeError, NotImplementedError) as e:    # encrypted, unknown compression
        raise FileError(f"{where}: cannot be read ({e}); save it with np.savez") from None
    with stream:
        try:
            yield stream, info, where
        except zipfile.BadZipFile as e:    # a bad CRC: the data, or a size the zip lies about
            raise FileError(f"{where}: a damaged or forged zip member ({e}); save it again "
                            "with np.savez") from None


def _member_start(path: Path, info: zipfile.ZipInfo, where: str) -> int:
    """Where the data of an uncompressed (ZIP_STORED) member starts in ``path``."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise FileError(f"{where}: a damaged zip (no local header where the directory says); "
                        "save it again with np.savez")
    name_len = int.from_bytes(local[26:28], "little")
    extra_len = int.from_bytes(local[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len


def inflate_cap() -> int:
    """Bytes a compressed ``.npz`` member may inflate to: ``$SPECSTREAM_MAX_INFLATE_MB``
    (MiB) when set, else a quarter of the memory available, at most 2 GiB."""
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


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _inflate(f, h: _Header, where: str) -> np.ndarray:
    """Read a compressed member's data (``f`` just past its header) into
    memory: at most the ``h.nbytes`` its header says, and only when that fits
    :func:`inflate_cap`."""
    cap = inflate_cap()
    if h.nbytes > cap:
        how = (f"set by {INFLATE_ENV}" if os.environ.get(INFLATE_ENV, "").strip()
               else "a quarter of the available memory, at most 2 GiB")
        raise FileError(f"{where}: compressed, it inflates to {_mib(h.nbytes)}, over the cap of "
                        f"{_mib(cap)} ({how}); save it uncompressed with np.savez (it is then "
                        f"memory-mapped), or raise the cap with {INFLATE_ENV}")
    flat = np.empty(math.prod(h.shape), h.dtype)
    buf = memoryview(flat.view(np.uint8))
    done = 0
    while done < len(buf):
        n = f.readinto(buf[done:done + (4 << 20)])
        if not n:
            raise FileError(f"{where}: truncated: the compressed data ends after {done} of "
                            f"{h.nbytes} bytes; save it again with np.savez")
        done += n
    return flat.reshape(h.shape, order="F" if h.fortran else "C")


def _load_text(path: Path) -> np.ndarray:
    with open(path, "r") as f:
        head = f.readline()
    delimiter = "," if "," in head else ("\t" if "\t" in head else None)
    try:
        float(head.replace(",", " ").split()[0])
        skip = 0
    except (ValueError, IndexError):
        skip = 1     # a header row
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # "input contained no data": said below, in one line
        arr = np.loadtxt(path, delimiter=delimiter, skiprows=skip, dtype=np.float64, ndmin=2)
    if arr.size == 0:
        raise FileError(f"{path}: holds no numbers (only {'a header row' if skip else 'blanks'}); "
                        "give the file the frames were saved to")
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
        check_spectrogram(self.first.shape, "the spectrogram")
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
    _advise(a, "MADV_DONTNEED")


def sparse_reads(*arrays, on: bool = True):
    """Tell the kernel that the memory maps under ``arrays`` are about to be
    read in a few small pieces (``on``), or streamed again (``on=False``).

    A few frames of a bins-frames file touch every row: with the kernel's
    read-around each costs 64 kB of resident memory; read at random, less.
    ``on=False`` also drops the pages those reads made resident.  No-op for
    arrays that are not memory maps."""
    for a in arrays:
        _advise(a, "MADV_RANDOM" if on else "MADV_NORMAL")
        if not on:
            _release_pages(a)


def _advise(a, name: str):
    while a is not None and not isinstance(a, np.memmap):
        a = a.base if isinstance(a, np.ndarray) else None
    m = getattr(a, "_mmap", None)
    if m is None or a.mode not in ("r", "r+", "readonly", "readwrite"):
        return
    advice = getattr(mmap, name, None)
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
        return np.array(load_array(text))
    if "," in text:
        try:
            return np.array([float(v) for v in text.split(",")])
        except ValueError:
            raise FileError(f"--window {text!r}: a list of values must be numbers "
                            "separated by commas") from None
    return text
