"""Which format a file holds, from its bytes; its name only when they do not tell.

A file called ``spectrogram`` holding ``.npy`` bytes is an ``.npy`` file,
and a ``.npy`` that is really a MAT file is read as one.  :func:`sniff`
answers one of :data:`KINDS`; a format that is recognised but not supported
(a pickle, a PyTorch ``.pt``, an image, audio, a compressed file...) is an
:class:`~stream.errors.InputError` that names it and says what to do, in
one line.  When the bytes match nothing, the suffix decides
(:data:`SUFFIXES`): a ``.npy`` that is not one gets the ``.npy`` reader's
own complaint, a ``.mat`` or ``.h5`` one line saying it is none, anything
else is raw binary.

MAT v4 has no magic number: a file is taken for one only when its headers
tile it exactly (every variable's header plausible, the last one ending at
the file's end), which raw samples do not.
"""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path

from ..errors import InputError
from .base import check_file

__all__ = ["KINDS", "SUFFIXES", "sniff", "HDF5_MAGIC"]

#: What :func:`sniff` answers: how the file is read.
KINDS = ("npy", "npz", "mat", "hdf5", "octave-text", "text", "raw")
#: Kinds by suffix (lower case), for files whose bytes match no format.
SUFFIXES = {".npy": "npy", ".npz": "npz", ".mat": "mat", ".h5": "hdf5", ".hdf5": "hdf5",
            ".hdf": "hdf5", ".csv": "text", ".txt": "text", ".tsv": "text", ".dat": "raw"}
#: The HDF5 signature: at 0, or after a user block of 512, 1024, 2048... bytes
#: (MAT v7.3 files are HDF5 after a 512-byte MATLAB header).
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"
#: formats a name may claim that the bytes must confirm
_NOT_BY_NAME = {"mat": "not a MAT file (no MAT v5 or v7.3 header, nor MAT v4 matrices)",
                "hdf5": "not an HDF5 file (no HDF5 signature)"}
_HEAD = 1 << 16            # bytes read to tell text from binary
_AUDIO = ("this is audio, not a spectrogram: to stream it use 'specstream send --analyze "
          "FILE'; to reconstruct, compute its STFT first")
_IMAGE = ("an image has lost the spectrogram's values; save the array itself with np.save "
          "(or save -v7 in MATLAB/Octave)")
_UNPACK = "decompress it first and give the file it holds"
#: (test on the first bytes, what it is, what to do) for formats not read
_UNSUPPORTED = (
    (lambda h: _pickle(h), "a Python pickle (.pkl, joblib, an old torch.save)",
     "pickles can run code and are never loaded; save the array with np.save"),
    (lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"), "a PNG image", _IMAGE),
    (lambda h: h.startswith(b"\xff\xd8\xff"), "a JPEG image", _IMAGE),
    (lambda h: h[:6] in (b"GIF87a", b"GIF89a"), "a GIF image", _IMAGE),
    (lambda h: h[:4] in (b"II*\0", b"MM\0*"), "a TIFF image", _IMAGE),
    (lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", "a WebP image", _IMAGE),
    (lambda h: h[:4] in (b"RIFF", b"RF64") and h[8:12] == b"WAVE", "WAV audio", _AUDIO),
    (lambda h: h[:4] == b"fLaC", "FLAC audio", _AUDIO),
    (lambda h: h[:4] == b"OggS", "Ogg audio", _AUDIO),
    (lambda h: h[:4] == b"FORM" and h[8:12] in (b"AIFF", b"AIFC"), "AIFF audio", _AUDIO),
    (lambda h: h[:3] == b"ID3" and h[3:4] in (b"\x02", b"\x03", b"\x04"), "MP3 audio", _AUDIO),
    (lambda h: h[4:8] == b"ftyp", "an MP4/M4A file", _AUDIO),
    (lambda h: h[:3] == b"\x1f\x8b\x08", "gzip-compressed", _UNPACK),
    (lambda h: h[:3] == b"BZh" and h[3:4].isdigit() and h[4:10] == b"1AY&SY", "bzip2-compressed",
     _UNPACK),
    (lambda h: h[:6] == b"\xfd7zXZ\0", "xz-compressed", _UNPACK),
    (lambda h: h[:4] == b"\x28\xb5\x2f\xfd", "zstd-compressed", _UNPACK),
    (lambda h: h[:6] == b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", _UNPACK),
    (lambda h: h[:4] == b"Rar!", "a RAR archive", _UNPACK),
    (lambda h: h[257:262] == b"ustar", "a tar archive", "unpack it and give the file it holds"),
    (lambda h: h[:10] in (b"Octave-1-L", b"Octave-1-B"), "Octave's binary format (save -binary)",
     "save it with save -v7 (a MAT file), -hdf5 or -text instead"),
    (lambda h: h[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel (.xls) or other "
     "Office file", "save the sheet as CSV"),
    (lambda h: h[:4] == b"PAR1", "Parquet", "save the array with np.save or as CSV"),
    (lambda h: h[:6] == b"ARROW1", "Arrow/Feather", "save the array with np.save or as CSV"),
    (lambda h: h[:3] == b"CDF" and h[3:4] in (b"\x01", b"\x02", b"\x05"), "classic NetCDF",
     "save it as netCDF-4 (HDF5, which is read) or the array with np.save"),
    (lambda h: h[:5] == b"%PDF-", "a PDF document", _IMAGE),
)


def sniff(path) -> str:
    """How ``path`` is read: one of :data:`KINDS`, from its first bytes, or
    from its suffix (:data:`SUFFIXES`, else 'raw') when they match nothing.
    :class:`~stream.errors.InputError` (one line naming the format and what
    to do) for a format recognised but not supported."""
    path = check_file(path)
    with open(path, "rb") as f:
        head = f.read(_HEAD)
    kind = _by_magic(path, head)
    if kind is None:
        kind = _by_text(path, head)
    if kind is None and _tiles_as_mat4(path):
        kind = "mat"
    if kind is not None:
        return kind
    kind = SUFFIXES.get(path.suffix.lower(), "raw")
    if kind in _NOT_BY_NAME:
        raise InputError(f"{path}: {_NOT_BY_NAME[kind]}; save it again (or give raw binary a "
                         ".bin suffix and --dtype)")
    return kind


def _by_magic(path: Path, head: bytes) -> str | None:
    if head[:6] == _NPY_MAGIC or (len(head) < 6 and _NPY_MAGIC.startswith(head)):
        return "npy"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _zip_kind(path)
    if head[:8] == HDF5_MAGIC or _hdf5_after_user_block(path):
        return "hdf5"
    if head[:19] in (b"MATLAB 5.0 MAT-file", b"MATLAB 7.3 MAT-file"):
        if head[126:128] in (b"IM", b"MI"):
            return "mat"
        raise InputError(f"{path}: a MAT file header without a MAT v5 or v7.3 body (damaged, "
                         "or truncated); save it again with save -v7")
    for test, what, todo in _UNSUPPORTED:
        if test(head):
            raise InputError(f"{path}: {what}: not supported; {todo}")
    return None


def _pickle(h: bytes) -> bool:
    """Pickle protocol 2 to 5: PROTO, then FRAME (4, 5) or a usual first opcode."""
    if len(h) < 3 or h[0] != 0x80 or not 2 <= h[1] <= 5:
        return False
    return h[2] == 0x95 if h[1] >= 4 else h[2:3] in (b"c", b"}", b"]", b"(", b"\x8a", b"K",
                                                       b"J", b"X", b"U", b"q", b")")


def _hdf5_after_user_block(path: Path) -> bool:
    """HDF5 after a user block (MAT v7.3: 512 bytes of MATLAB header)."""
    with open(path, "rb") as f:
        for at in (512, 1024, 2048, 4096):
            f.seek(at)
            if f.read(8) == HDF5_MAGIC:
                return True
    return False


def _zip_kind(path: Path) -> str:
    """'npz', or :class:`~stream.errors.InputError` for zips that are known
    to be something else (a PyTorch ``.pt``, an Office document).  A zip that
    cannot be opened is left to the ``.npz`` reader, which says why."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return "npz"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        raise InputError(f"{path}: PyTorch .pt (a zip with data.pkl): not supported (it holds "
                         "pickles, which are never loaded); save the tensor with "
                         "np.save(path, t.numpy())")
    if "[Content_Types].xml" in names:
        raise InputError(f"{path}: an Office document (.xlsx, .docx): not supported; save the "
                         "sheet as CSV")
    return "npz"


_TEXT_BYTES = bytes(range(32, 127)) + b"\t\n\r\f\v"
_OCTAVE_TEXT = re.compile(rb"^# name: \S+\r?\n# type: ", re.M)


def _by_text(path: Path, head: bytes) -> str | None:
    """'text' or 'octave-text' when the first bytes are text with numbers in it."""
    text = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    if not text or b"\0" in text:
        return None
    odd = text.translate(None, _TEXT_BYTES)
    if odd.translate(None, bytes(range(128, 256))):
        return None                         # control characters: binary
    if odd and not _utf8(text) and len(odd) > len(text) // 100:
        return None                         # not UTF-8, nor a Latin-1 header over numbers
    if not re.search(rb"\d", text):
        return None
    stripped = text.lstrip()
    if stripped[:1] in (b"{", b"[") and not _OCTAVE_TEXT.search(text):
        raise InputError(f"{path}: JSON: not supported; save the array with np.save or as CSV "
                         "(np.savetxt)")
    if stripped[:1] == b"<":
        raise InputError(f"{path}: XML/HTML: not supported; save the array with np.save or as "
                         "CSV (np.savetxt)")
    return "octave-text" if _OCTAVE_TEXT.search(text) else "text"


def _utf8(b: bytes) -> bool:
    """``b`` is UTF-8 text (a multi-byte character may be cut at its end)."""
    for cut in range(4):
        try:
            (b[:-cut] if cut else b).decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


# ------------------------------------------------------------------ MAT v4
#: bytes of one element of a MAT v4 matrix by its P digit (precision)
_MAT4_ITEMSIZE = {0: 8, 1: 4, 2: 4, 3: 2, 4: 2, 5: 1}


def _tiles_as_mat4(path: Path, most: int = 10000) -> bool:
    """True when ``path`` is a sequence of MAT v4 matrices: each 20-byte
    header plausible (type MOPT, sizes, imaginary flag, a NUL-terminated
    name), the last matrix ending exactly at the end of the file."""
    size = path.stat().st_size
    pos = 0
    with open(path, "rb") as f:
        for _ in range(most):
            if pos == size:
                return pos > 0
            f.seek(pos)
            header = f.read(20)
            length = _mat4_matrix_bytes(header, f)
            if length is None:
                return False
            pos += length
    return False


def _mat4_matrix_bytes(header: bytes, f) -> int | None:
    """Bytes the MAT v4 matrix whose 20-byte ``header`` was just read from
    ``f`` takes, header and name included; None when it is not one."""
    if len(header) < 20:
        return None
    for order, machine in (("<", 0), (">", 1)):
        mopt, rows, cols, imag, namelen = struct.unpack(order + "5i", header)
        m, o, p, t = mopt // 1000, mopt // 100 % 10, mopt // 10 % 10, mopt % 10
        if not (0 <= mopt < 2000 and m == machine and o == 0 and p in _MAT4_ITEMSIZE
                and t in (0, 1, 2) and rows >= 0 and cols >= 0 and imag in (0, 1)
                and 1 < namelen <= 64):
            continue
        name = f.read(namelen)
        if len(name) != namelen or name[-1:] != b"\0" or not name[:-1].isascii() \
                or not name[:-1].decode("ascii").isidentifier():
            return None
        return 20 + namelen + rows * cols * _MAT4_ITEMSIZE[p] * (1 + imag)
    return None
