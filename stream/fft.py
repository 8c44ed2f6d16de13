"""FFTW plans through pyfftw, with wisdom kept in the user's cache directory.

Plans are built once per (shape, direction) and reused; FFTW's wisdom is
loaded before the first plan and saved after a new one is measured, so the
next start of the program plans in microseconds instead of a fraction of a
second.  The wisdom file is FFTW's own text, never pickled.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from pathlib import Path

import numpy as np
import pyfftw

__all__ = ["irfft_plan", "rfft_plan", "empty_aligned", "wisdom_path", "planner_flag",
           "PLANNING", "RawPlans", "raw_plans"]

# Reentrant: a RawPlans freed by the garbage collector while this thread plans
# takes it again.
_lock = threading.RLock()
_wisdom_loaded = False
_PLANNERS = {"estimate": "FFTW_ESTIMATE", "measure": "FFTW_MEASURE",
             "patient": "FFTW_PATIENT"}


def wisdom_path() -> Path:
    """Where FFTW wisdom is kept: ``$XDG_CACHE_HOME/specstream/fftw-wisdom``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "specstream" / "fftw-wisdom"


def planner_flag() -> str:
    """The FFTW planner rigour, from ``SPECSTREAM_FFTW_PLANNER`` (default 'measure')."""
    name = os.environ.get("SPECSTREAM_FFTW_PLANNER", "measure").lower()
    return _PLANNERS.get(name, "FFTW_MEASURE")


_saved_wisdom = None
_planned = set()


def _load_wisdom():
    global _wisdom_loaded, _saved_wisdom
    if _wisdom_loaded:
        return
    _wisdom_loaded = True
    try:
        parts = wisdom_path().read_bytes().split(b"\n\x00\n")
        if len(parts) == 3:
            pyfftw.import_wisdom(tuple(parts))
            _saved_wisdom = pyfftw.export_wisdom()
    except (OSError, ValueError):
        pass  # no wisdom yet, or a damaged file: plan from scratch


def _save_wisdom():
    # Only when planning learnt something: a plan made from wisdom already on
    # disk must not rewrite the file (that cost ~5 ms per Reconstructor).
    global _saved_wisdom
    wisdom = pyfftw.export_wisdom()
    if wisdom == _saved_wisdom:
        return
    path = wisdom_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(b"\n\x00\n".join(wisdom))
        os.replace(tmp, path)
        _saved_wisdom = wisdom
    except OSError:
        pass  # a read-only home only costs planning time


#: How a plan is made: 'measure' (FFTW measures the fastest algorithm, the
#: wisdom file keeps it), 'wisdom' (a measured plan if the wisdom file knows
#: the size, else by estimate; never measures, never writes the file: for sizes
#: a remote peer chose), 'estimate' (by estimate, microseconds).
PLANNING = ("measure", "wisdom", "estimate")


def _plan(shape_in, dtype_in, shape_out, dtype_out, direction, threads, planning,
          input_array=None, output_array=None):
    if planning not in PLANNING:
        raise ValueError(f"planning={planning!r} is not one of {', '.join(PLANNING)}")
    for given, shape, dtype in ((input_array, shape_in, dtype_in),
                                (output_array, shape_out, dtype_out)):
        if given is not None and (given.shape != tuple(shape) or given.dtype != dtype):
            raise ValueError(f"an array {given.shape} {given.dtype} given for "
                             f"{tuple(shape)} {np.dtype(dtype)}")
    with _lock:
        _load_wisdom()
        a = pyfftw.empty_aligned(shape_in, dtype=dtype_in) if input_array is None else input_array
        b = (pyfftw.empty_aligned(shape_out, dtype=dtype_out) if output_array is None
             else output_array)
        flag = "FFTW_ESTIMATE" if planning == "estimate" else planner_flag()

        def make(*flags):
            return pyfftw.FFTW(a, b, axes=(-1,), direction=direction,
                               flags=(*flags, "FFTW_DESTROY_INPUT"), threads=threads)
        if planning == "wisdom" and flag != "FFTW_ESTIMATE":
            try:
                return make(flag, "FFTW_WISDOM_ONLY")
            except RuntimeError:          # no wisdom for this size: do not measure it
                return make("FFTW_ESTIMATE")
        plan = make(flag)
        if flag != "FFTW_ESTIMATE":
            _save_wisdom_once((tuple(shape_in), np.dtype(dtype_in).str, direction, threads,
                               flag, a.strides, b.strides))
        return plan


def _save_wisdom_once(key):
    """Save the wisdom after the first measured plan of ``key`` in this
    process (exporting it costs 2-9 ms; the plans after come from it)."""
    key = key + (str(wisdom_path()),)
    if key not in _planned:
        _save_wisdom()
        _planned.add(key)


def empty_aligned(shape, dtype, zero: bool = False) -> np.ndarray:
    """An array aligned for FFTW's SIMD code (zeros if ``zero``)."""
    return (pyfftw.zeros_aligned if zero else pyfftw.empty_aligned)(shape, dtype=dtype)


def irfft_plan(batch_shape: tuple, n_fft: int, dtype=np.float32, threads: int = 1,
               planning: str = "measure", input_array=None, output_array=None):
    """A c2r plan: complex input ``batch_shape + (n_fft//2+1,)`` -> real ``batch_shape + (n_fft,)``.

    Unnormalised (the caller folds 1/n_fft into its window); destroys its input.
    ``planning``: one of :data:`PLANNING` ('estimate' for one-off shapes).
    ``input_array``, ``output_array``: arrays of those shapes to use (views into larger
    buffers, say) instead of new aligned ones.
    """
    real = np.dtype(dtype)
    cplx = np.result_type(real, np.complex64)
    return _plan(tuple(batch_shape) + (n_fft // 2 + 1,), cplx,
                 tuple(batch_shape) + (n_fft,), real, "FFTW_BACKWARD", threads, planning,
                 input_array, output_array)


def rfft_plan(batch_shape: tuple, n_fft: int, dtype=np.float32, threads: int = 1,
              planning: str = "measure"):
    """An r2c plan: real ``batch_shape + (n_fft,)`` -> complex ``batch_shape + (n_fft//2+1,)``."""
    real = np.dtype(dtype)
    cplx = np.result_type(real, np.complex64)
    return _plan(tuple(batch_shape) + (n_fft,), real,
                 tuple(batch_shape) + (n_fft // 2 + 1,), cplx, "FFTW_FORWARD", threads, planning)


# ------------------------------------------------- plans for compiled loops
#: FFTW's flag bits (fftw3.h) for the names pyfftw takes.
_FLAG_BITS = {"FFTW_MEASURE": 0, "FFTW_DESTROY_INPUT": 1, "FFTW_PATIENT": 1 << 5,
              "FFTW_ESTIMATE": 1 << 6}
_fftwf = None


def _fftwf_library():
    """pyfftw's own single-precision FFTW (the one whose wisdom it keeps), by
    ctypes; None where it cannot be found."""
    global _fftwf
    if _fftwf is None:
        path = None
        try:                        # the copy pyfftw loaded (a wheel bundles its own)
            with open("/proc/self/maps") as maps:
                for line in maps:
                    name = line.rsplit(None, 1)[-1]
                    if "libfftw3f" in os.path.basename(name) and "_omp" not in name \
                            and "_threads" not in name:
                        path = name
                        break
        except OSError:
            pass
        path = path or ctypes.util.find_library("fftw3f")
        try:
            lib = ctypes.CDLL(path) if path else None
        except OSError:
            lib = None
        if lib is not None:
            args = [ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_void_p,
                    ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                    ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_uint]
            for name in ("fftwf_plan_many_dft_r2c", "fftwf_plan_many_dft_c2r"):
                getattr(lib, name).restype = ctypes.c_void_p
                getattr(lib, name).argtypes = args
            for name in ("fftwf_execute", "fftwf_destroy_plan"):
                getattr(lib, name).restype = None
                getattr(lib, name).argtypes = [ctypes.c_void_p]
        _fftwf = lib or False
    return _fftwf or None


class RawPlans:
    """A forward (r2c) and an inverse (c2r) FFTW plan of ``rows`` transforms of
    ``n_fft`` float32 samples, each on aligned buffers of its own
    (``fwd_in`` ``(rows, n_fft)`` -> ``fwd_out`` ``(rows, n_fft//2+1)``;
    ``inv_in`` -> ``inv_out``), for compiled loops that run them with no
    Python between: ``execute`` is FFTW's ``fftwf_execute`` (a ctypes
    function numba calls), ``forward`` and ``inverse`` the plans' addresses.
    Unnormalised, as :func:`irfft_plan`; the inverse destroys its input.
    Planned as :func:`rfft_plan` plans (``planning``), from and into the same
    wisdom.  Use :func:`raw_plans`, which says None where FFTW is not reachable."""

    def __init__(self, lib, n_fft: int, rows: int, planning: str = "measure"):
        b = n_fft // 2 + 1
        self.fwd_in = pyfftw.empty_aligned((rows, n_fft), dtype=np.float32)
        self.fwd_out = pyfftw.empty_aligned((rows, b), dtype=np.complex64)
        self.inv_in = pyfftw.empty_aligned((rows, b), dtype=np.complex64)
        self.inv_out = pyfftw.empty_aligned((rows, n_fft), dtype=np.float32)
        self._lib, self.execute = lib, lib.fftwf_execute
        flag = "FFTW_ESTIMATE" if planning == "estimate" else planner_flag()   # as _plan
        bits = _FLAG_BITS[flag] | _FLAG_BITS["FFTW_DESTROY_INPUT"]
        n = (ctypes.c_int * 1)(n_fft)
        with _lock:
            _load_wisdom()
            self.forward = lib.fftwf_plan_many_dft_r2c(
                1, n, rows, self.fwd_in.ctypes.data, None, 1, n_fft, self.fwd_out.ctypes.data,
                None, 1, b, bits)
            self.inverse = lib.fftwf_plan_many_dft_c2r(
                1, n, rows, self.inv_in.ctypes.data, None, 1, b, self.inv_out.ctypes.data,
                None, 1, n_fft, bits)
            if flag != "FFTW_ESTIMATE":
                _save_wisdom_once(("raw", n_fft, rows, flag))
        if not self.forward or not self.inverse:
            self.close()
            raise RuntimeError(f"FFTW made no plan of {rows} x {n_fft}")

    def close(self):
        with _lock:                  # FFTW's planner is not thread-safe: nor is freeing
            for name in ("forward", "inverse"):
                plan = getattr(self, name, None)
                if plan:
                    self._lib.fftwf_destroy_plan(plan)
                setattr(self, name, None)

    __del__ = close


def raw_plans(n_fft: int, rows: int, planning: str = "measure") -> RawPlans | None:
    """:class:`RawPlans`, or None where pyfftw's FFTW library cannot be
    reached by ctypes (the caller then runs its plans through pyfftw)."""
    lib = _fftwf_library()
    if lib is None:
        return None
    try:
        return RawPlans(lib, n_fft, rows, planning)
    except (RuntimeError, AttributeError, OSError):
        return None
