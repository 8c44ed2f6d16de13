"""Text files: numbers in rows, as ``np.savetxt``, pandas, spreadsheets,
MATLAB's ``writematrix``/``dlmwrite`` and Octave's ``save -ascii`` write
them; and Octave's own text format (``save -text``, Octave's default), which
holds named variables.

A plain text file may have header lines (any leading lines that are not
numbers), comment lines (``#``, ``%`` as MATLAB and Octave write them,
``//``) anywhere, an index column (pandas: a header row whose first name is
empty), and ``,`` ``;`` tab or blank delimiters (a ``;`` file may use
decimal commas).  Values may be complex (``1+2j``, ``(1+2j)``, ``1+2i``).

Text cannot be mapped: it is read whole, and only when the numbers it holds
(estimated from its first 64 KiB) fit :func:`~.base.inflate_cap`.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import NO_NUMBERS, Variable, check_cap, matlab_array, mib, no_numbers

__all__ = ["load_text", "octave_text_variables", "COMMENTS"]

#: what starts a comment line
COMMENTS = ("#", "%", "//")
_HEAD = 1 << 16                  # bytes looked at to find the header, delimiter and values
_COMPLEX = re.compile(r"\d[ij]\b|\(")
_MATLAB_I = re.compile(r"(?<=[\d.])i\b")


def _open(path: Path):
    return open(path, encoding="utf-8-sig", errors="replace")


def _check_size(path: Path, head: str, itemsize: int, extra: int = 0) -> None:
    """The numbers of the whole file, estimated from ``head`` (and ``extra``
    bytes more), must fit the cap."""
    size = path.stat().st_size
    per_byte = len(re.findall(r"[-+.\w]+", head)) / max(len(head), 1)
    values = int(size * per_byte)
    nbytes = values * itemsize + extra
    check_cap(nbytes, str(path), f"a text file of {mib(size)}, about {values} values "
              f"({mib(nbytes)} read whole)", "convert it to .npy (np.save), which is "
              "memory-mapped")


def _fields(line: str, delimiter: str | None) -> list[str]:
    return [f.strip().strip("\"'") for f in line.split(delimiter)]


def _value(token: str) -> complex:
    """A number as Python reads it; MATLAB's ``1+2i`` too."""
    return complex(_MATLAB_I.sub("j", token.strip()))


def _number(token: str, decimal_comma: bool) -> bool:
    try:
        float(token.replace(",", ".")) if decimal_comma else _value(token)
        return True
    except ValueError:
        return False


def _delimiter(line: str) -> tuple[str | None, bool]:
    """(delimiter, decimal commas) of a row of numbers: tab, ';' (with decimal
    commas when it also has commas and no points), ',', or blanks (None)."""
    for d in ("\t", ";", ","):
        if d in line:
            return d, d == ";" and "," in line and "." not in line
    return None, False


def _converter(decimal_comma: bool, cplx: bool, quoted: bool):
    """What reads one field, when numpy's own parser cannot (None when it can)."""
    if not (decimal_comma or cplx or quoted):
        return None

    def convert(t: str):
        t = t.strip().strip("\"'")
        return float(t.replace(",", ".")) if decimal_comma else _value(t) if cplx else float(t)
    return convert


def load_text(path: Path) -> np.ndarray:
    """The numbers of a text file, as a 2-D array (float64, or complex128)."""
    with _open(path) as f:
        head = f.read(_HEAD)
    lines = head.split("\n")
    if len(head) == _HEAD and len(lines) > 1:
        lines = lines[:-1]                       # the last one may be cut
    skip, header, first = 0, None, None
    for line in lines:
        s = line.strip()
        if s and not s.startswith(COMMENTS):
            d, comma = _delimiter(s)
            fields = _fields(s, d)
            if fields[-1] == "" and d is not None:
                fields = fields[:-1]             # a delimiter at the end of each row
            if fields and all(_number(t, comma) for t in fields):
                first = (s, d, comma, len(fields))
                break
            header = s
        skip += 1
    if first is None:
        raise InputError(f"{path}: holds no numbers (only {'a header row' if header else 'blanks'}"
                         "); give the file the frames were saved to")
    s, d, comma, ncols = first
    index = header is not None and _fields(header, d)[0].lower() in ("", "index", "unnamed: 0")
    cplx = bool(_COMPLEX.search(s))
    _check_size(path, head, 16 if cplx else 8)
    convert = _converter(comma, cplx, '"' in s or "'" in s)
    cols = range(1 if index else 0, ncols) if index or s.endswith(str(d)) else None
    with _open(path) as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.loadtxt(f, delimiter=d, skiprows=skip, comments=COMMENTS,
                          dtype=np.complex128 if cplx else np.float64, converters=convert,
                          usecols=cols, ndmin=2)


# ------------------------------------------------------ Octave's text format
_OCTAVE_FIELD = re.compile(r"^# (\w[\w ,]*): ?(.*)$")
_OCTAVE_COMPLEX = re.compile(r"\(([^,()]+),([^,()]+)\)")


def octave_text_variables(path: Path) -> list[Variable]:
    """The variables of a file in Octave's text format (``save -text``), read
    whole, one variable's text at a time."""
    with _open(path) as f:
        head = f.read(_HEAD)
    # the text of the largest variable is held while it is parsed: count the file too
    _check_size(path, head, 8, extra=path.stat().st_size)
    out, name, fields, rows = [], None, {}, []
    with _open(path) as f:
        for line in f:
            m = _OCTAVE_FIELD.match(line.rstrip("\r\n"))
            if m and m.group(1) == "name":
                if name is not None:
                    out.append(_octave_variable(path, name, fields, rows))
                name, fields, rows = m.group(2).strip(), {}, []
            elif m and not rows and name is not None:
                fields[m.group(1)] = m.group(2).strip()
            elif name is not None:
                rows.append(line)
    if name is not None:
        out.append(_octave_variable(path, name, fields, rows))
    return out


def _octave_variable(path: Path, name: str, fields: dict, rows: list[str]) -> Variable:
    kind = fields.get("type", "")
    where = f"{path}: variable {name!r}"
    if kind in NO_NUMBERS or not kind.endswith(("matrix", "scalar", "range", "bool")):
        note = "text" if "string" in kind else NO_NUMBERS.get(kind, f"an Octave {kind or 'value'}")
        return no_numbers(name, note)
    try:
        a = _octave_array(kind, fields, rows)
    except (ValueError, IndexError, KeyError) as e:
        raise InputError(f"{where}: not a readable Octave {kind} ({e}); save it again with "
                         "save -text (or -v7)") from None
    if kind.startswith("bool"):
        a = a.astype(bool)
    a = matlab_array(a)
    return Variable(name, a.shape, a.dtype, lambda: a)


def _octave_numbers(rows: list[str], cplx: bool) -> np.ndarray:
    """The numbers of ``rows`` (2-D, one row per line); complex ``(re,im)`` pairs as complex."""
    rows = [_OCTAVE_COMPLEX.sub(r"\1 \2", r) if cplx else r for r in rows if r.strip()]
    a = np.loadtxt([r.replace("NA", "NaN") for r in rows], ndmin=2)
    return a[:, 0::2] + 1j * a[:, 1::2] if cplx else a


def _octave_array(kind: str, fields: dict, rows: list[str]) -> np.ndarray:
    rows = [r for r in rows if r.strip()]
    if kind.endswith("range"):               # base limit increment
        base, limit, step = _octave_numbers(rows[-1:], False)[0][:3]
        n = int(math.floor((limit - base) / step + 1e-10)) + 1 if step else 1
        return base + step * np.arange(n, dtype=np.float64)
    cplx = "complex" in kind
    if "ndims" in fields:                    # the dims, then every value in column-major order
        dims = [int(n) for n in rows[0].split()]
        flat = _octave_numbers(rows[1:], cplx).ravel()
        if flat.size != math.prod(dims):
            raise ValueError(f"{flat.size} values for dims {dims}")
        return flat.reshape(dims, order="F")
    a = _octave_numbers(rows, cplx)
    if kind.endswith("scalar") or kind == "bool":
        return a.reshape(())
    if a.shape != (int(fields["rows"]), int(fields["columns"])):
        raise ValueError(f"{a.shape[0]} x {a.shape[1]} values, not {fields['rows']} x "
                         f"{fields['columns']}")
    return a
