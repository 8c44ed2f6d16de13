"""Readers for spectrogram and phase files, recognised by their content.

Formats (:mod:`stream.formats`): ``.npy`` and ``.npz``; MAT files v4, v5/v7
(scipy) and v7.3 (HDF5, h5py); Octave's ``-hdf5`` and ``-text``; plain
HDF5; text (header and comment lines, an index column, ``,`` ``;`` tab or
blank delimiters); raw binary.  A file is read as what its bytes say
(:func:`file_format`): a file called ``spectrogram`` that holds ``.npy``
bytes is an ``.npy`` file; a format that is recognised but not read (a
pickle, a PyTorch ``.pt``, an image, audio) is one line naming it.

Arrays are opened, not loaded: ``.npy``, uncompressed ``.npz`` members and
raw files are memory-mapped, HDF5 datasets read block by block, so a
one-hour spectrogram costs address space, not RAM.  What can only be read
whole (compressed ``.npz`` members, MAT v5, text) is read only when it fits
:func:`inflate_cap`.  Nothing is opened before :func:`check_file` has seen a
regular, non-empty file, and only arrays of numbers are returned.

Files that hold several arrays (``.npz``, MAT, HDF5, Octave text) list them
as :func:`variables`; :func:`pick_keys` finds the magnitude (or complex)
and phase among them by content and name, and :func:`stored_parameters`
reads what the file says of how it was made (``fs``, ``F``, ``T``, ``sr``,
``hop_length``...).

:class:`FrameSource` walks one or two such arrays block by block in frame
order, whatever their layout, and is what ``reconstruct`` and ``send`` read
through.  The file conventions have their one home here: which axis is
frequency (:func:`guess_layout`, :func:`layout_guess`), a phase saved
transposed (:func:`second_layout`), the names arrays go by; the probe uses
the same rules.
"""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .formats.base import (INFLATE_ENV, Variable, check_file, check_numeric, inflate_cap,
                           is_numeric, reading)
from .formats.hdf5 import H5Array, hdf5_variables
from .formats.mat import mat_variables
from .formats.npy import load_npy, load_npz, npy_dtype, npz_dtype, npz_names, npz_variables
from .formats.raw import RAW_DTYPES, load_raw
from .formats.sniff import SUFFIXES, sniff
from .formats.text import load_text, octave_text_variables
from .spec import bins_fit, n_fft_for_bins

__all__ = ["FileError", "load_array", "array_names", "file_format", "FrameSource", "LAYOUTS",
           "RAW_DTYPES", "FORMATS", "guess_layout", "layout_guess", "other_layout",
           "is_transposed", "second_layout", "usual_n_fft", "fits_usual_n_fft", "check_file",
           "check_numeric", "check_spectrogram", "is_numeric", "array_dtype", "inflate_cap",
           "INFLATE_ENV", "CONTAINERS", "Variable", "variables", "pick_variable", "pick_keys",
           "MAG_NAMES", "PHASE_NAMES", "name_rank", "stored_parameters", "in_memory"]

LAYOUTS = ("frames-bins", "bins-frames")
#: Formats by suffix (lower case), for files whose bytes match no format; any
#: other suffix is raw binary.
FORMATS = SUFFIXES
#: Formats that hold named arrays (:func:`variables`).
CONTAINERS = ("npz", "mat", "hdf5", "octave-text")
#: How messages name what a file was read as, by :func:`file_format`.
_READ_AS = {"npy": ".npy", "npz": ".npz", "mat": "a MAT file", "hdf5": "HDF5",
            "octave-text": "Octave text", "text": "text", "raw": "raw binary"}
#: Names the magnitude (or complex) and the phase arrays go by (lower case).
MAG_NAMES = ("mag", "magnitude", "magnitudes", "spectrogram", "spec", "s", "stft", "m", "x",
             "y", "z", "amplitude", "abs")
PHASE_NAMES = ("phase", "phases", "angle", "angles", "ph", "p", "phi", "arg")


#: A file that cannot be read as asked (the name the file layer has always used).
FileError = InputError


def file_format(path) -> str:
    """How :func:`load_array` reads ``path``: 'npy', 'npz', 'mat', 'hdf5',
    'octave-text', 'text' or 'raw', from the file's first bytes (its suffix
    only when they match no format: :data:`FORMATS`).  :class:`FileError`
    for a format recognised but not read, naming it."""
    return sniff(path)


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


# -------------------------------------------------------------- variables
def variables(path) -> list[Variable]:
    """The named arrays of a file that holds several (an ``.npz``, a MAT or
    HDF5 file, Octave's text format), in the file's order; [] for formats of
    one array (``.npy``, text, raw).  Listing reads headers only, except MAT
    v5 and Octave text, which are read whole (then each array is in memory)."""
    path = check_file(path)
    kind = sniff(path)
    if kind not in CONTAINERS:
        return []
    with reading(path, _READ_AS[kind]):
        return _VARIABLES[kind](path)


_VARIABLES = {"npz": npz_variables, "mat": mat_variables, "hdf5": hdf5_variables,
              "octave-text": octave_text_variables}


def array_names(path) -> list[str]:
    """Names of the arrays of a file that holds several ([] for other
    formats); in an ``.npz``, members of other kinds are not arrays and are
    left out."""
    path = check_file(path)
    if sniff(path) == "npz":
        return npz_names(path)
    return [v.name for v in variables(path)]


def is_spectrogram_like(shape) -> bool:
    """2-D or 3-D with at least two frames and two bins: what may be frames."""
    return len(shape) in (2, 3) and min(shape[-2:]) >= 2


def pick_variable(path, found: list[Variable], key: str | None) -> Variable:
    """The variable named ``key`` among ``found`` (the variables of ``path``),
    or, when ``key`` is None, the first that may be a spectrogram (else the
    first); :class:`FileError` listing the names when there is none."""
    if not found:
        raise FileError(f"{path}: holds no variables; save the spectrogram in it")
    if key is None:
        return next((v for v in found if v.numeric and is_spectrogram_like(v.shape)), found[0])
    for v in found:
        if v.name == key:
            return v
    raise FileError(f"{path}: no variable named {key!r}; it holds "
                    + ", ".join(f"{v.name} {_shape_text(v.shape)}" for v in found))


def _shape_text(shape) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def name_rank(name: str, wanted: tuple) -> int:
    """0 for a name of ``wanted`` (case-insensitive), 1 for one that holds a
    longer such name ('mag_db'), 2 otherwise."""
    n = name.rsplit("/", 1)[-1].lower()
    if n in wanted:
        return 0
    return 1 if any(w in n for w in wanted if len(w) > 2) else 2


def pick_keys(found: list[Variable], mag_key: str | None = None, phase_key: str | None = None,
              phase_file: bool = False) -> tuple[str | None, str | None]:
    """``(mag_key, phase_key)``: the magnitude (or complex) and phase
    variables among ``found``, the keys given kept.

    Only variables of numbers that may be frames count (2-D or 3-D: not
    ``fs``, ``F``, ``T``).  The magnitude is the one named so
    (:data:`MAG_NAMES`), else a complex one, else the first.  The phase (none
    when ``phase_file`` is given or the magnitude is complex: MATLAB's
    ``[S, F, T, P]`` pairs complex ``S`` with a power ``P``) is a real one
    named so (:data:`PHASE_NAMES`) of the magnitude's shape or its transpose.
    """
    frames = [v for v in found if v.numeric and is_spectrogram_like(v.shape)]
    if mag_key is None:
        pool = [v for v in frames if v.name != phase_key]
        pool.sort(key=lambda v: (name_rank(v.name, MAG_NAMES), v.dtype.kind != "c"))
        mag_key = pool[0].name if pool else None
    mag = next((v for v in frames if v.name == mag_key), None)
    if phase_key is None and not phase_file and mag is not None and mag.dtype.kind != "c":
        fits = [v for v in frames if v is not mag and v.dtype.kind != "c"
                and (v.shape == mag.shape or is_transposed(v.shape, mag.shape))
                and name_rank(v.name, PHASE_NAMES) < 2]
        fits.sort(key=lambda v: name_rank(v.name, PHASE_NAMES))
        phase_key = fits[0].name if fits else None
    return mag_key, phase_key


def in_memory(a, where: str) -> np.ndarray:
    """``a`` as an ndarray: itself, or an :class:`~stream.formats.hdf5.H5Array`
    read whole (when it fits :func:`inflate_cap`)."""
    return a.read_whole(where) if isinstance(a, H5Array) else a


# ------------------------------------------------------ stored parameters
#: names of scalars a file may store -> the parameter they give (lower case)
_SCALARS = {"sr": "sample_rate", "fs": "sample_rate", "rate": "sample_rate",
            "sample_rate": "sample_rate", "samplerate": "sample_rate",
            "sampling_rate": "sample_rate", "hop": "hop_length", "hop_length": "hop_length",
            "hop_size": "hop_length", "n_fft": "n_fft", "nfft": "n_fft",
            "win_length": "win_length", "length": "length"}
#: names of the vectors of bin frequencies and of frame times (lower case)
_FREQUENCIES = ("f", "freq", "freqs", "frequencies", "frequency", "w")
_TIMES = ("t", "time", "times")


def stored_parameters(arrays: dict) -> dict:
    """What a file says of how its frames were made: ``{parameter: (value,
    where it comes from)}``, from the arrays by name (``arrays``: name ->
    array).

    Scalars by name (``sr``, ``fs``/``Fs``, ``hop_length``, ``n_fft``...:
    ``sample_rate`` in Hz, the rest in samples), then what MATLAB's and
    Octave's ``[S, F, T] = spectrogram(..., fs)``/``specgram`` give beside
    the frames: ``F`` (bin frequencies) -> ``n_fft`` = fs / their spacing
    (or 2 pi / it, in rad/sample when no fs), ``n_bins`` (their count) and
    ``nyquist`` (whether the last is fs/2: Octave's ``specgram`` stores no
    Nyquist row); ``T`` (frame times, in s) -> ``hop_length`` = their
    spacing x fs, ``n_frames``.  A scalar given wins over what F and T say.
    """
    out: dict = {}
    for name, a in arrays.items():
        param = _SCALARS.get(str(name).rsplit("/", 1)[-1].lower())
        v = _scalar(a)
        if param is None or v is None or v <= 0 or param in out:
            continue
        if param != "sample_rate":
            if v != int(v):
                continue
            v = int(v)
        out[param] = (v, name)
    fs = out.get("sample_rate", (None,))[0]
    f_name, freqs = _vector(arrays, _FREQUENCIES)
    if freqs is not None:
        _from_frequencies(out, f_name, freqs, fs)
    t_name, times = _vector(arrays, _TIMES)
    if times is not None:
        out.setdefault("n_frames", (len(times), t_name))
        step = _spacing(times)
        if step and fs:
            hop = step * fs
            if abs(hop - round(hop)) < 1e-3 * max(1.0, hop):
                out.setdefault("hop_length", (int(round(hop)), f"{t_name}'s spacing x fs"))
    return out


def _from_frequencies(out: dict, name: str, freqs: np.ndarray, fs) -> None:
    step = _spacing(freqs)
    if not step or abs(freqs[0]) > 1e-6 * step:
        return
    out.setdefault("n_bins", (len(freqs), name))
    if fs:
        n, nyq = fs / step, fs / 2
    elif freqs[-1] <= np.pi * (1 + 1e-9):         # rad/sample (MATLAB's w)
        n, nyq = 2 * np.pi / step, np.pi
    else:
        return
    if abs(n - round(n)) < 1e-3 * n and round(n) >= 2:
        out.setdefault("n_fft", (int(round(n)), f"{name}'s spacing"))
        out.setdefault("nyquist", (bool(abs(freqs[-1] - nyq) < step / 2), name))


def _scalar(a):
    """The value of a real numeric 0-d array (or of one element), else None."""
    if not hasattr(a, "dtype") or not hasattr(a, "shape") or math.prod(a.shape) != 1:
        return None
    if a.dtype.kind not in "iuf":
        return None
    v = float(np.asarray(a).reshape(()))
    return v if math.isfinite(v) else None


def _vector(arrays: dict, names: tuple):
    """``(name, values)`` of the first 1-D real vector of 2+ values named one of ``names``."""
    for name, a in arrays.items():
        if str(name).rsplit("/", 1)[-1].lower() in names and getattr(a, "ndim", 0) == 1 \
                and a.shape[0] >= 2 and a.dtype.kind in "iuf":
            return name, np.asarray(a, dtype=np.float64)
    return None, None


def _spacing(v: np.ndarray) -> float | None:
    """The step of evenly spaced increasing values, else None."""
    d = np.diff(v)
    if not np.all(np.isfinite(d)) or d[0] <= 0 or not np.allclose(d, d[0], rtol=1e-4,
                                                                  atol=0):
        return None
    return float(d.mean())


# ----------------------------------------------------------------- reading
def load_array(path, key: str | None = None, dtype: str | None = None,
               bins: int | None = None, layout: str | None = None):
    """Open one array.

    Parameters
    ----------
    path : str or Path
        Any format :func:`file_format` recognises.  ``key`` names the array
        of a file that holds several (an ``.npz`` member, a MAT, HDF5 or
        Octave variable); by default the first that may be a spectrogram.
    dtype : str
        For raw files: a key of :data:`RAW_DTYPES` (default float32, little endian).
    bins : int
        For raw files: frequency bins per frame, which fixes the shape.
    layout : str
        For raw files: element order, 'frames-bins' (default: each frame's
        bins are contiguous) or 'bins-frames'.

    Returns an ndarray or a memory map; for HDF5 an
    :class:`~stream.formats.hdf5.H5Array`, read where indexed.
    """
    path = check_file(path)
    kind = sniff(path)
    with reading(path, _READ_AS[kind]):
        if kind == "npy":
            return load_npy(path)
        if kind == "npz":
            return load_npz(path, key)
        if kind == "text":
            return load_text(path)
        if kind == "raw":
            return load_raw(path, dtype, bins, layout)
        v = pick_variable(path, _VARIABLES[kind](path), key)
        v.check_numeric(f"{path}: variable {v.name!r}")
        return v.array()


def array_dtype(path, key: str | None = None) -> np.dtype:
    """The dtype of the array :func:`load_array` would open (``key`` as
    there), from its header where the format has one; float64 for text,
    float32 for raw files."""
    path = check_file(path)
    kind = sniff(path)
    if kind in ("text", "raw"):
        return np.dtype(np.float64 if kind == "text" else np.float32)
    with reading(path, _READ_AS[kind]):
        if kind == "npy":
            return npy_dtype(path)
        return (npz_dtype(path, key) if kind == "npz"
                else pick_variable(path, _VARIABLES[kind](path), key).dtype)


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
    ``(channels, n, bins)``, in frame order.  The arrays may be memory maps
    or :class:`~stream.formats.hdf5.H5Array` (HDF5 datasets): a block reads
    only its frames.
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
