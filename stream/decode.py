"""Stored units -> complex bins the engine can invert.

Every path (files, the wire, the probe) turns what it holds into complex bins
through :class:`Decoder`: magnitudes in linear, power, dB, dB-power or log
units, phases in radians, degrees or cycles (either range), or complex bins
directly.  The library conventions (amplitude scaling, phase reference) are
the spec's and the engine undoes them for free while it copies the bins into
its FFT buffer; the decoder deals only with units.

Non-finite values (NaN, +-Inf), and values beyond :data:`MAX_VALUE`, are replaced by 0
and counted, never passed on:
one bad bin must not become a blast of noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import SpecError, STFTSpec, bins_fit

__all__ = ["MAGNITUDES", "PHASE_UNITS", "MEL_UNITS", "NYQUIST", "Encoding", "Decoder",
           "mel_values", "mel_from_values"]

#: Magnitude units: how a stored value ``v`` relates to the magnitude ``|X|``.
MAGNITUDES = {
    "linear": "v = |X|",
    "power": "v = |X|**2",
    "db": "v = 20 log10(|X| / ref)",
    "db-power": "v = 10 log10(|X|**2 / ref)",
    "log": "v = ln(|X| + eps)",
    "log10": "v = log10(|X| + eps)",
    "log1p": "v = ln(1 + |X|)",
}
#: Whether the frames hold the Nyquist bin: 'stored', or 'zero' (Octave's
#: ``specgram`` keeps bins 0 .. n_fft/2 - 1; the missing bin is set to 0,
#: which real audio barely notices: 66 to 105 dB SNR on speech at 48 kHz,
#: n_fft 256-512, tests/test_foreign.py).
NYQUIST = ("stored", "zero")
#: The largest magnitude of a real or imaginary part the decoder passes on:
#: 1e30 is 600 dB re full scale; anything beyond it (or NaN/Inf) is zeroed and counted.
MAX_VALUE = 1e30
#: Phase units and the factor that turns them into radians.
PHASE_UNITS = {"rad": 1.0, "deg": np.pi / 180.0, "cycles": 2.0 * np.pi}
#: Units of stored mel values: how a value ``v`` relates to the mel band
#: ``M = filterbank @ |X|**power`` (``stream.mel``; ``power`` 1 or 2).  The
#: floors (``clamp``, ``top_db``, Whisper's 8 decades) lose what is under
#: them: decoding gives the floor back there.
MEL_UNITS = {
    "linear": "v = M",
    "db": "v = (20 / power) log10(max(M, clamp) / ref), floored top_db under the peak: "
          "librosa's power_to_db of a power mel, amplitude_to_db of a magnitude mel",
    "log": "v = ln(max(M, clamp)): HiFi-GAN, Tacotron 2 (clamp 1e-5)",
    "log10": "v = log10(max(M, clamp))",
    "whisper": "v = (max(log10(max(M, clamp)), peak - 8) + 4) / 4: Whisper (clamp 1e-10, "
               "peak the largest log10 value of the clip)",
}


@dataclass(frozen=True)
class Encoding:
    """How magnitudes and phases are stored.

    Parameters
    ----------
    magnitude : str
        One of :data:`MAGNITUDES`.
    db_ref : float
        Reference of the dB units: an amplitude for 'db', a power for 'db-power'
        (librosa's ``ref``).  1.0 unless the file was written relative to something else.
    phase_unit : str
        'rad', 'deg' or 'cycles'; phases may be in either range ([-pi, pi) or [0, 2pi)).
    eps : float
        The constant added to the magnitude before its logarithm
        (``ln(|S| + 1e-6)`` in tensorflow recipes); 'log', 'log10', 'db' and
        'db-power' (``10 log10(|X|**2 + eps)``) subtract it again.  0 by default.
    nyquist : str
        One of :data:`NYQUIST`: whether the frames hold the Nyquist bin.
    """

    magnitude: str = "linear"
    db_ref: float = 1.0
    phase_unit: str = "rad"
    eps: float = 0.0
    nyquist: str = "stored"

    def __post_init__(self):
        if self.magnitude not in MAGNITUDES:
            raise SpecError(f"magnitude unit {self.magnitude!r} is not one of "
                            f"{', '.join(MAGNITUDES)}")
        if self.phase_unit not in PHASE_UNITS:
            raise SpecError(f"phase unit {self.phase_unit!r} is not one of "
                            f"{', '.join(PHASE_UNITS)}")
        if not (float(self.db_ref) > 0 and np.isfinite(self.db_ref)):
            raise SpecError(f"db_ref must be a positive number, got {self.db_ref!r}")
        if not (float(self.eps) >= 0 and np.isfinite(self.eps)):
            raise SpecError(f"eps must be a number >= 0, got {self.eps!r}")
        if self.nyquist not in NYQUIST:
            raise SpecError(f"nyquist={self.nyquist!r} is not one of {', '.join(NYQUIST)}")


def mel_values(mel, unit: str = "linear", power: float = 2.0, ref: float = 1.0,
               clamp: float = 1e-10, top_db: float | None = None) -> np.ndarray:
    """Mel bands ``M`` (linear, any shape) -> the values stored in ``unit``
    (:data:`MEL_UNITS`): what librosa, HiFi-GAN and Whisper write.  The
    peak of the 'whisper' and ``top_db`` floors is that of the whole array."""
    m = np.asarray(mel, dtype=np.float64)
    if unit == "linear":
        return m.copy()
    if unit == "db":
        k = 20.0 / power
        v = k * np.log10(np.maximum(m, clamp)) - k * np.log10(max(clamp, ref))
        if top_db is not None and v.size:
            v = np.maximum(v, v.max() - top_db)
        return v
    if unit == "log":
        return np.log(np.maximum(m, clamp))
    if unit == "log10":
        return np.log10(np.maximum(m, clamp))
    if unit == "whisper":
        v = np.log10(np.maximum(m, clamp))
        if v.size:
            v = np.maximum(v, v.max() - 8.0)
        return (v + 4.0) / 4.0
    raise SpecError(f"mel unit {unit!r} is not one of {', '.join(MEL_UNITS)}")


def mel_from_values(values, unit: str = "linear", power: float = 2.0, ref: float = 1.0,
                    dtype=np.float64) -> np.ndarray:
    """Stored mel values in ``unit`` -> mel bands ``M`` (linear, same shape):
    the inverse of :func:`mel_values` (floored values come back as the floor)."""
    v = np.asarray(values, dtype=dtype)
    ten = v.dtype.type(10)
    if unit == "linear":
        return np.maximum(v, 0)
    if unit == "db":
        return ref * np.power(ten, v * v.dtype.type(power / 20.0))
    if unit == "log":
        return np.exp(v)
    if unit == "log10":
        return np.power(ten, v)
    if unit == "whisper":
        return np.power(ten, v * 4 - 4)
    raise SpecError(f"mel unit {unit!r} is not one of {', '.join(MEL_UNITS)}")


class Decoder:
    """Turn stored frames into complex bins.

    ``decode(mag, phase)``, ``decode(complex_bins)`` or ``magnitude(mag)``
    take arrays whose last axis is frequency and return arrays of
    ``spec.n_bins`` bins: the axis holds ``spec.n_bins`` bins, or
    ``spec.n_fft`` (a two-sided spectrum: bins 0..n_fft/2 are taken), or
    ``spec.n_bins - 1`` when ``encoding.nyquist`` says the Nyquist bin is not
    stored (it becomes 0).  ``nonfinite`` counts the values replaced by 0.
    """

    def __init__(self, spec: STFTSpec, encoding: Encoding = Encoding(), dtype=np.complex64):
        self.spec = spec
        self.encoding = encoding
        self.dtype = np.dtype(dtype)
        self.real_dtype = np.finfo(self.dtype).dtype
        self.nonfinite = 0

    # ----------------------------------------------------------------- api
    def magnitude(self, values) -> np.ndarray:
        """Stored magnitude values -> linear magnitude (before scaling is undone);
        NaN/Inf (and values past the float range) zeroed and counted."""
        with np.errstate(over="ignore", invalid="ignore"):
            mag = self._linear(self._bins(values))
        mag = self._pad_nyquist(mag)
        self._clean(mag)
        return mag

    def mel(self, values, mel) -> np.ndarray:
        """Stored mel values -> mel bands ``M`` (linear), by the unit, power and
        reference of ``mel`` (a :class:`stream.mel.MelSpec`); NaN/Inf (and
        values past the float range) zeroed and counted.  The last axis is
        ``mel.n_mels`` long."""
        v = np.asarray(values)
        if v.shape[-1:] != (mel.n_mels,):
            raise SpecError(f"mel frames have {v.shape[-1] if v.ndim else 0} values but "
                            f"n_mels={mel.n_mels}")
        with np.errstate(over="ignore", invalid="ignore"):
            m = mel_from_values(v, mel.unit, mel.power, mel.ref, self.real_dtype)
        self._clean(m)
        return m
    def _bins(self, values):
        """The one-sided bins of ``values``: a two-sided frame's first n_bins."""
        v = np.asarray(values)
        n = self.spec.n_fft
        if v.ndim and v.shape[-1] == n != self.spec.n_bins:
            return v[..., :self.spec.n_bins]
        return v

    def _pad_nyquist(self, x):
        """A zero Nyquist bin after frames that do not hold one."""
        if self.encoding.nyquist == "stored" or x.shape[-1] != self.spec.n_bins - 1:
            return x
        return np.concatenate([x, np.zeros(x.shape[:-1] + (1,), x.dtype)], axis=-1)

    def _linear(self, values) -> np.ndarray:
        v = np.asarray(values, dtype=self.real_dtype)
        e = self.encoding
        kind = e.magnitude
        if kind == "linear":
            mag = np.abs(v)
        elif kind == "power":
            mag = np.sqrt(np.maximum(v, 0))
        elif kind == "db":
            mag = e.db_ref * np.power(self.real_dtype.type(10), v / 20)
        elif kind == "db-power":
            mag = e.db_ref * np.power(self.real_dtype.type(10), v / 10)
            mag = np.sqrt(np.maximum(mag - e.eps, 0) if e.eps else mag)
        elif kind == "log":
            mag = np.exp(v)
        elif kind == "log10":
            mag = np.power(self.real_dtype.type(10), v)
        else:  # log1p
            mag = np.maximum(np.expm1(v), 0)
        if e.eps and kind in ("db", "log", "log10"):
            mag = np.maximum(mag - self.real_dtype.type(e.eps), 0)
        return mag.astype(self.real_dtype, copy=False)

    def phase(self, values) -> np.ndarray:
        """Stored phase values -> radians."""
        p = np.asarray(values, dtype=self.real_dtype)
        factor = PHASE_UNITS[self.encoding.phase_unit]
        return p * self.real_dtype.type(factor) if factor != 1.0 else p

    def decode(self, mag_or_complex, phase=None) -> np.ndarray:
        """Complex bins from (magnitude, phase) or from complex values."""
        if phase is None:
            arr = np.asarray(mag_or_complex)
            if not np.iscomplexobj(arr):
                raise SpecError("a magnitude with no phase cannot be decoded to complex "
                                "bins; give the phase, or use phase reconstruction")
            x = np.array(self._bins(arr), dtype=self.dtype)   # own copy: cleaned in place
        else:
            # Overflow (a dB value past the float range) and inf * 0 make
            # non-finite values, which _clean zeroes and counts: no numpy
            # warnings on the user's terminal for them.
            with np.errstate(over="ignore", invalid="ignore"):
                mag = self._linear(self._bins(mag_or_complex))
                ph = self.phase(self._bins(phase))
                if mag.shape != ph.shape:
                    raise SpecError(f"magnitude shape {mag.shape} and phase shape "
                                    f"{ph.shape} differ")
                x = np.empty(mag.shape, dtype=self.dtype)
                np.multiply(mag, np.cos(ph), out=x.real)
                np.multiply(mag, np.sin(ph), out=x.imag)
        x = self._pad_nyquist(x)
        self._check_bins(x)
        self._clean(x)
        return x

    def _check_bins(self, x):
        if x.shape[-1] != self.spec.n_bins:
            hint = (" or, without the Nyquist bin (Octave's specgram), n_fft="
                    f"{2 * x.shape[-1]} with the Nyquist bin missing (nyquist='zero')"
                    if x.shape[-1] == self.spec.n_bins - 1 else "")
            raise SpecError(
                f"frames have {x.shape[-1]} bins but n_fft={self.spec.n_fft} makes "
                f"{self.spec.n_bins}; they fit {bins_fit(x.shape[-1])}{hint}")

    def _clean(self, x):
        # Finite values beyond MAX_VALUE (a flipped exponent bit) are no
        # spectrum either, and would overflow the float32 inverse FFT.
        with np.errstate(invalid="ignore"):
            if x.dtype.kind == "c":
                bad = ~((np.abs(x.real) <= MAX_VALUE) & (np.abs(x.imag) <= MAX_VALUE))
            else:
                bad = ~(np.abs(x) <= MAX_VALUE)
        if bad.any():
            self.nonfinite += int(np.count_nonzero(bad))
            x[bad] = 0
