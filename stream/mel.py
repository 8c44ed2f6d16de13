"""Mel spectrograms: the filterbank, the recipes' presets, mel -> linear magnitude.

A mel frame holds ``n_mels`` values ``v`` made from one STFT frame ``X``::

    M = F @ |X|**power          (F: the mel filterbank, n_mels x (n_fft//2 + 1))
    v = unit(M)                 (stream.decode.MEL_UNITS: linear, dB, log, Whisper's log10)

:func:`mel_filterbank` is librosa's ``filters.mel`` (Slaney's or the HTK mel
scale; Slaney's area normalisation or none), equal to it to float precision.
:class:`MelSpec` holds the mel parameters and the unit; :func:`mel_preset`
gives an :class:`~stream.spec.STFTSpec` and a :class:`MelSpec` for the common
recipes (:data:`MEL_PRESETS`), each checked against the recipe's own numbers.

Inverse
-------
:class:`MelInverter` turns mel bands back into linear magnitudes, frame by
frame: ``Z = |X|**power`` is the non-negative least-squares solution of
``F Z = M`` reached from the pseudo-inverse (``max(pinv(F) M, 0)``) by
``iterations`` steps of accelerated projected gradient (FISTA) with the
diagonal majoriser ``diag(F^T F 1)`` as the metric, which stays fast where
the filters' widths and heights differ (the HTK scale without norm); then
``|X| = Z**(1/power)``.  Every frame is solved on its own by the same loop,
so a block gives the frames that frame-by-frame pushes give, bit for bit.
The filterbank is sparse (each bin is in at most two triangles): an
iteration costs a few operations per bin.  The phase is then rebuilt from
the magnitude by :mod:`stream.phase` (RTPGHI live, PGHI + fast Griffin-Lim
offline).

No I/O here; :func:`melspectrogram` and :func:`recipe_stft` (the forward, for tests,
tools and senders) import the FFT engine when they are called.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from .decode import MEL_UNITS, mel_values
from .jit import compiler
from .spec import SpecError, STFTSpec, is_finite_number
from .workers import default_workers, run_parts

__all__ = ["MEL_SCALES", "MEL_NORMS", "MEL_PRESETS", "MelSpec", "hz_to_mel", "mel_to_hz",
           "mel_frequencies", "mel_filterbank", "mel_preset", "preset_analysis",
           "preset_samples_for", "melspectrogram", "recipe_stft", "MelInverter"]

#: Mel scales: Slaney's (librosa's default: linear below 1 kHz, log above) and HTK's.
MEL_SCALES = ("slaney", "htk")
#: Filter normalisation: Slaney's (each triangle of unit area) or none (unit height).
MEL_NORMS = ("slaney", "none")


# ---------------------------------------------------------------- the scale
_F_SP = 200.0 / 3                 # Slaney: Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(hz, scale: str = "slaney") -> np.ndarray:
    """Frequencies (Hz) -> mels, as librosa's ``hz_to_mel`` (``htk=scale == 'htk'``)."""
    f = np.asarray(hz, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    lin = f / _F_SP
    with np.errstate(divide="ignore", invalid="ignore"):
        log = _MIN_LOG_MEL + np.log(np.maximum(f, 1e-300) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(f >= _MIN_LOG_HZ, log, lin)


def mel_to_hz(mels, scale: str = "slaney") -> np.ndarray:
    """Mels -> frequencies (Hz), the inverse of :func:`hz_to_mel`."""
    m = np.asarray(mels, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)),
                    _F_SP * m)


def mel_frequencies(n_mels: int, fmin: float, fmax: float, scale: str = "slaney") -> np.ndarray:
    """``n_mels`` frequencies (Hz) evenly spaced in mels from ``fmin`` to ``fmax``."""
    return mel_to_hz(np.linspace(hz_to_mel(fmin, scale), hz_to_mel(fmax, scale), n_mels), scale)


def mel_filterbank(sample_rate: float, n_fft: int, n_mels: int = 128, fmin: float = 0.0,
                   fmax: float | None = None, scale: str = "slaney",
                   norm: str = "slaney") -> np.ndarray:
    """The mel filterbank ``(n_mels, n_fft // 2 + 1)`` (float64): triangles
    between consecutive mel frequencies, on the bins' frequencies in Hz.

    ``sample_rate`` in Hz, ``n_fft`` in samples, ``fmin``/``fmax`` in Hz
    (``fmax`` default ``sample_rate / 2``).  librosa's ``filters.mel(sr,
    n_fft, n_mels, fmin, fmax, htk=scale == 'htk', norm=norm or None)``, and
    torchaudio's ``melscale_fbanks`` for ``scale='htk', norm='none'``.
    """
    _check_choice("scale", scale, MEL_SCALES)
    _check_choice("norm", norm, MEL_NORMS)
    return _filterbank(float(sample_rate), int(n_fft), int(n_mels), float(fmin),
                       float(sample_rate) / 2 if fmax is None else float(fmax), scale,
                       norm).copy()


@functools.lru_cache(maxsize=16)
def _filterbank(sr, n_fft, n_mels, fmin, fmax, scale, norm) -> np.ndarray:
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = mel_frequencies(n_mels + 2, fmin, fmax, scale)
    fdiff = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    w = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        w *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    w.flags.writeable = False
    return w


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise SpecError(f"mel {name}={value!r} is not one of {', '.join(allowed)}")


# -------------------------------------------------------------- parameters
@dataclass(frozen=True)
class MelSpec:
    """How mel frames were made from STFT frames (with an :class:`STFTSpec`).

    Parameters
    ----------
    n_mels : int
        Mel bands per frame.
    fmin, fmax : float
        Lowest and highest filter edge in Hz; ``fmax=None``: ``sample_rate / 2``.
    scale : str
        'slaney' (librosa's default) or 'htk' (:data:`MEL_SCALES`).
    norm : str
        'slaney' (unit-area triangles, librosa's default) or 'none' (unit
        height: HTK, torchaudio's default) (:data:`MEL_NORMS`).
    power : float
        1 (the filterbank of the magnitude) or 2 (of the power).
    unit : str
        How the bands are stored, one of :data:`stream.decode.MEL_UNITS`.
    ref : float
        Reference of 'db' (librosa's ``ref``), in the units of the bands.
    clamp : float
        The floor of the log units (HiFi-GAN 1e-5, Whisper 1e-10) and of 'db'
        (librosa's ``amin``); used by the forward only, the inverse needs none.
    top_db : float, optional
        The floor of 'db' under the peak (librosa's ``top_db``); forward only.
    """

    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    scale: str = "slaney"
    norm: str = "slaney"
    power: float = 2.0
    unit: str = "linear"
    ref: float = 1.0
    clamp: float = 1e-10
    top_db: float | None = None

    def __post_init__(self):
        if isinstance(self.n_mels, bool) or not isinstance(self.n_mels, (int, np.integer)) \
                or self.n_mels < 1:
            raise SpecError(f"n_mels must be a positive whole number, got {self.n_mels!r}")
        object.__setattr__(self, "n_mels", int(self.n_mels))
        for name in ("fmin", "power", "ref", "clamp"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.fmax is not None:
            object.__setattr__(self, "fmax", float(self.fmax))
        _check_choice("scale", self.scale, MEL_SCALES)
        _check_choice("norm", self.norm, MEL_NORMS)
        _check_choice("unit", self.unit, tuple(MEL_UNITS))
        if self.power not in (1.0, 2.0):
            raise SpecError(f"mel power must be 1 (magnitude) or 2 (power), got {self.power!r}")
        if not (self.fmin >= 0 and math.isfinite(self.fmin)):
            raise SpecError(f"fmin must be a frequency >= 0 Hz, got {self.fmin!r}")
        if self.fmax is not None and not (self.fmax > self.fmin and math.isfinite(self.fmax)):
            raise SpecError(f"fmax={self.fmax!r} must be above fmin={self.fmin!r} (Hz)")
        for name in ("ref", "clamp"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise SpecError(f"mel {name} must be a positive number, got {v!r}")
        if self.top_db is not None:
            object.__setattr__(self, "top_db", float(self.top_db))
            if not self.top_db > 0:
                raise SpecError(f"top_db must be positive, got {self.top_db!r}")

    def fmax_for(self, spec: STFTSpec) -> float:
        """The highest filter edge in Hz for frames of ``spec``."""
        return float(spec.sample_rate) / 2 if self.fmax is None else self.fmax

    def check(self, spec: STFTSpec) -> None:
        """That these bands fit frames of ``spec`` (fmax at most the Nyquist frequency)."""
        if self.fmax_for(spec) > float(spec.sample_rate) / 2 * (1 + 1e-9):
            raise SpecError(f"fmax={self.fmax:g} Hz is above the Nyquist frequency "
                            f"{float(spec.sample_rate) / 2:g} Hz of sample_rate="
                            f"{float(spec.sample_rate):g}; use fmax <= "
                            f"{float(spec.sample_rate) / 2:g} or a larger sample_rate")

    def filterbank(self, spec: STFTSpec) -> np.ndarray:
        """The filterbank ``(n_mels, spec.n_bins)`` for frames of ``spec`` (read-only)."""
        self.check(spec)
        return _filterbank(float(spec.sample_rate), spec.n_fft, self.n_mels, self.fmin,
                           self.fmax_for(spec), self.scale, self.norm)

    def replace(self, **changes) -> "MelSpec":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """Every field by name, JSON-safe (the ``mel`` object of a stream header)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, strict: bool = False) -> "MelSpec":
        """A MelSpec from a dict such as :meth:`to_dict` gives; keys that are
        not fields are ignored.  ``strict``: every value must have its JSON
        type (data from outside): numbers for numbers, strings for names."""
        params = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        if strict:
            for name, value in params.items():
                if name in ("scale", "norm", "unit"):
                    ok = isinstance(value, str)
                elif name in ("fmax", "top_db"):
                    ok = value is None or is_finite_number(value)
                elif name == "n_mels":
                    ok = is_finite_number(value) and isinstance(value, int)
                else:
                    ok = is_finite_number(value)
                if not ok:
                    raise SpecError(f"mel {name} has the wrong type: {value!r:.60}")
        return cls(**params)

    def describe(self) -> str:
        fmax = "sr/2" if self.fmax is None else f"{self.fmax:g}"
        return (f"n_mels={self.n_mels} fmin={self.fmin:g} fmax={fmax} scale={self.scale} "
                f"norm={self.norm} power={self.power:g} unit={self.unit}")


# ----------------------------------------------------------------- presets
#: The recipes: STFT parameters, mel parameters, and how their analysis
#: pads the signal (for :func:`melspectrogram`).
_PRESETS = {
    # librosa.feature.melspectrogram's defaults (librosa >= 0.10 pads with zeros).
    "librosa": (dict(sample_rate=22050, n_fft=2048, hop_length=512),
                dict(n_mels=128, scale="slaney", norm="slaney", power=2.0),
                dict(pad_mode="constant")),
    # torchaudio.transforms.MelSpectrogram's defaults.
    "htk": (dict(sample_rate=16000, n_fft=400, hop_length=200),
            dict(n_mels=128, scale="htk", norm="none", power=2.0),
            dict(pad_mode="reflect")),
    # HiFi-GAN's meldataset.mel_spectrogram (and Tacotron 2's, with its clamp):
    # reflect-padded by (n_fft - hop) / 2, no centring (frame 0 starts at
    # sample -(n_fft - hop) / 2: mel_preset sets first_sample), |X| = sqrt(re^2
    # + im^2 + 1e-9).
    "hifigan": (dict(sample_rate=22050, n_fft=1024, hop_length=256, center=False),
                dict(n_mels=80, fmin=0.0, fmax=8000.0, scale="slaney", norm="slaney",
                     power=1.0, unit="log", clamp=1e-5),
                dict(pad_mode="reflect", pad="hifigan", eps=1e-9)),
    # Whisper's audio.log_mel_spectrogram (80 mels; 128 for large-v3): the
    # last frame of torch.stft is dropped.
    "whisper": (dict(sample_rate=16000, n_fft=400, hop_length=160),
                dict(n_mels=80, scale="slaney", norm="slaney", power=2.0, unit="whisper",
                     clamp=1e-10),
                dict(pad_mode="reflect", drop_last=True)),
}
#: Names of the presets of :func:`mel_preset`.
MEL_PRESETS = tuple(_PRESETS)
_MEL_FIELDS = tuple(f.name for f in fields(MelSpec))


def mel_preset(name: str, **params) -> tuple[STFTSpec, MelSpec]:
    """``(STFTSpec, MelSpec)`` of a recipe; ``params`` override its values, each
    going to the object that has a field of that name (``n_fft``, ``n_mels``...).

    ========= ======== ===== ==== ===== ============= ====== ==== ================
    preset    sr (Hz)  n_fft hop  mels  fmin-fmax Hz  scale  norm stored
    ========= ======== ===== ==== ===== ============= ====== ==== ================
    librosa   22050    2048  512  128   0 - sr/2      slaney yes  power
    htk       16000    400   200  128   0 - sr/2      htk    no   power
    hifigan   22050    1024  256  80    0 - 8000      slaney yes  ln(max(mag, 1e-5))
    whisper   16000    400   160  80*   0 - 8000      slaney yes  Whisper's log10
    ========= ======== ===== ==== ===== ============= ====== ==== ================

    Hann windows of ``n_fft`` samples, frames centred (``center=True``), but
    HiFi-GAN's: it pads ``(n_fft - hop) / 2`` samples on both sides and does
    not centre, so its frames are ``center=False`` with frame 0 starting at
    ``first_sample = -(n_fft - hop) // 2`` (-384 samples), half a hop later
    than centred frames.  \\* 128 for Whisper large-v3 (``n_mels=128``).
    """
    if name not in _PRESETS:
        raise SpecError(f"unknown mel preset {name!r}; use one of {', '.join(MEL_PRESETS)}")
    stft_p, mel_p, analysis = _PRESETS[name]
    stft_p, mel_p = dict(stft_p), dict(mel_p)
    for k, v in params.items():
        (mel_p if k in _MEL_FIELDS else stft_p)[k] = v
    if analysis.get("pad") == "hifigan" and not stft_p.get("center", True):
        stft_p.setdefault("first_sample", -_padding(stft_p["n_fft"], stft_p["hop_length"]))
    return STFTSpec(**stft_p), MelSpec(**mel_p)


def _padding(n_fft: int, hop_length: int) -> int:
    """HiFi-GAN's padding at each end of the signal: ``int((n_fft - hop) / 2)`` samples."""
    return (int(n_fft) - int(hop_length)) // 2


def preset_samples_for(name: str, spec: STFTSpec, n_frames: int) -> int:
    """Samples of the signal that the recipe ``name`` made ``n_frames`` frames
    of (its shortest such signal): what the inverse writes when no length is
    given.  HiFi-GAN pads the signal at both ends, so that is the frames'
    span less both paddings, ``n_frames * hop`` (its audio length, a
    multiple of the hop); Whisper drops the last of its centred frames, so
    its signal is that of one frame more, ``n_frames * hop``, of which the
    inverse gives all but the last sample (``spec.max_samples_for``: a
    centred analysis of ``n_frames * hop`` samples has a frame more than
    the file holds); the others: ``spec.samples_for(n_frames)``."""
    analysis = preset_analysis(name)
    if analysis.get("pad") == "hifigan" and not spec.center and n_frames > 0:
        p = _padding(spec.n_fft, spec.hop_length)
        return max((n_frames - 1) * spec.hop_length + spec.frame_span - 2 * p, 0)
    if analysis.get("drop_last") and spec.center and n_frames > 0:
        return min(spec.samples_for(n_frames + 1), spec.max_samples_for(n_frames))
    return spec.samples_for(n_frames)


def preset_analysis(name: str) -> dict:
    """How the recipe ``name`` pads the signal: :func:`melspectrogram`'s keywords."""
    if name not in _PRESETS:
        raise SpecError(f"unknown mel preset {name!r}; use one of {', '.join(MEL_PRESETS)}")
    return dict(_PRESETS[name][2])


# ----------------------------------------------------------------- forward
def melspectrogram(y, spec: STFTSpec, mel: MelSpec, pad_mode: str = "constant",
                   pad: int | str | None = None, drop_last: bool = False, eps: float = 0.0,
                   dtype=np.float64) -> np.ndarray:
    """Stored mel values ``(n_frames, n_mels)`` (channels first for more) of
    samples ``y``: the STFT of ``spec`` (:func:`recipe_stft`), the filterbank
    of ``mel``, its unit.  ``eps``: ``|X| = sqrt(|X|**2 + eps)`` (HiFi-GAN's 1e-9).
    """
    frames = recipe_stft(y, spec, pad_mode, pad, drop_last, dtype)
    a2 = frames.real.astype(np.float64) ** 2 + frames.imag.astype(np.float64) ** 2
    mag = np.sqrt(a2 + eps) if eps else np.sqrt(a2)
    z = mag if mel.power == 1.0 else mag ** 2
    bands = z @ mel.filterbank(spec).T
    return mel_values(bands, mel.unit, mel.power, mel.ref, mel.clamp, mel.top_db)


def recipe_stft(y, spec: STFTSpec, pad_mode: str = "constant", pad: int | str | None = None,
                drop_last: bool = False, dtype=np.float64) -> np.ndarray:
    """The complex frames ``(n_frames, bins)`` a recipe analyses samples ``y`` into.

    ``pad_mode``: 'constant' (zeros, librosa) or 'reflect' (torch, torchaudio,
    Whisper) for the ``n_fft // 2`` samples of centre padding; ``pad``: pad
    this many samples at both ends instead, frames not centred ('hifigan':
    ``(n_fft - hop) // 2``; ``spec`` then has ``first_sample = -pad``);
    ``drop_last``: drop the last frame (Whisper).  ``dtype``: of the STFT.
    """
    from .engine import stft
    x = np.asarray(y, dtype=np.float64)
    if pad == "hifigan":
        pad = _padding(spec.n_fft, spec.hop_length)
    if pad_mode not in ("constant", "reflect"):
        raise SpecError(f"pad_mode={pad_mode!r} is not 'constant' or 'reflect'")
    if pad is None and (not spec.center or pad_mode == "constant"):
        frames = stft(x, spec, dtype=dtype)
    else:
        p = spec.n_fft // 2 if pad is None else int(pad)
        widths = [(0, 0)] * (x.ndim - 1) + [(p, p)]
        xp = np.pad(x, widths, mode=pad_mode)
        frames = stft(xp, spec.replace(center=False, first_frame=0, first_sample=0), dtype=dtype)
    return frames[..., :-1, :] if drop_last else frames


# ----------------------------------------------------------------- inverse
class MelInverter:
    """Mel bands -> linear magnitudes, frame by frame (see the module docstring).

    Parameters
    ----------
    spec : STFTSpec
        The STFT the mel frames were made from (``n_fft``, ``sample_rate``).
    mel : MelSpec
        Their filterbank and power.
    iterations : int
        Projected-gradient steps per frame after the pseudo-inverse start
        (default 32; 0: the clipped pseudo-inverse alone).
    workers : int or None
        Threads a long block of frames is shared among (1, the default: the
        caller's; None: :func:`stream.workers.default_workers`).

    ``invert(bands)`` takes linear mel bands ``M`` -- one frame ``(n_mels,)``
    or any number of frames ``(..., n_mels)`` -- and returns magnitudes
    ``(..., n_bins)`` (float32).  Decode stored values first
    (:meth:`stream.decode.Decoder.mel`).
    """

    def __init__(self, spec: STFTSpec, mel: MelSpec, iterations: int = 32,
                 workers: int | None = 1):
        if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 0:
            raise SpecError(f"mel iterations must be a whole number >= 0, got {iterations!r}")
        self.spec, self.mel, self.iterations = spec, mel, int(iterations)
        self.workers = default_workers() if workers is None else max(1, int(workers))
        self.filterbank = mel.filterbank(spec)
        mel.check(spec)
        self._tables = _inverse_tables(float(spec.sample_rate), spec.n_fft, mel.n_mels,
                                       mel.fmin, mel.fmax_for(spec), mel.scale, mel.norm)
        self._kernel = _mel_kernel()

    def invert(self, bands) -> np.ndarray:
        m = np.asarray(bands, dtype=np.float64)
        if m.shape[-1:] != (self.mel.n_mels,):
            raise SpecError(f"mel frames of shape {m.shape} do not have n_mels="
                            f"{self.mel.n_mels} values on the last axis")
        lead = m.shape[:-1]
        flat = np.ascontiguousarray(m.reshape(-1, self.mel.n_mels))
        out = np.empty((flat.shape[0], self.spec.n_bins), np.float32)
        one, lanes = self._kernel
        if flat.shape[0] < LANES:       # a frame or few (live): not lanes mostly empty
            one(flat, *self._tables, self.mel.power, self.iterations, out)
        else:
            # Parts of whole lanes on the threads, each worth a thread's start
            # (~0.1 ms; a part of 64 frames is 1-5 ms of work): every frame is
            # solved alone, so the result is the same for any number of them.
            rows = max(64, -(-flat.shape[0] // (LANES * self.workers)) * LANES)
            run_parts(lambda a=a: lanes(flat[a:a + rows], *self._tables, self.mel.power,
                                        self.iterations, out[a:a + rows], LANES)
                      for a in range(0, flat.shape[0], rows))
        return out.reshape(lead + (self.spec.n_bins,))

    __call__ = invert


@functools.lru_cache(maxsize=16)
def _inverse_tables(sr, n_fft, n_mels, fmin, fmax, scale, norm):
    """What :class:`MelInverter` precomputes for a filterbank (once per process):
    ``pinv(F F^T)``, ``F`` sparse (each band's first bin, offsets, weights) and
    each bin's step."""
    f = _filterbank(sr, n_fft, n_mels, fmin, fmax, scale, norm)
    # pinv(F) = F^T pinv(F F^T): the start costs n_mels**2 + the filters'
    # size per frame, not n_mels * n_bins.
    gram_pinv = np.ascontiguousarray(np.linalg.pinv(f @ f.T))          # (mels, mels)
    lo, off, weights = [], [0], []
    for row in f:                        # band j covers bins lo[j] .. lo[j] + len(j)
        nz = np.flatnonzero(row)
        a, b = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 0)
        lo.append(a)
        weights.append(row[a:b])
        off.append(off[-1] + b - a)
    w = np.ascontiguousarray(np.concatenate(weights)) if weights else np.zeros(0)
    # The diagonal majoriser of F^T F (F >= 0): its inverse is each bin's step.
    d = f.T @ (f @ np.ones(f.shape[1]))
    step = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    # Shared by every inverter of this filterbank: not to be written to (left
    # writeable: numba compiles read-only arrays as another type).
    return gram_pinv, np.array(lo, np.int64), np.array(off, np.int64), w, step


def _invert_frames(M, Q, lo, off, w, step, power, iterations, out):
    """Each row of ``M`` (mel bands) -> a row of ``out`` (magnitudes): the
    clipped pseudo-inverse start ``max(F^T Q m, 0)`` (``Q = pinv(F F^T)``),
    then ``iterations`` FISTA steps on ``||F z - m||**2`` with ``z >= 0``
    (``F`` sparse: band j's weights ``w[off[j]:off[j+1]]`` from bin
    ``lo[j]``; per-bin steps ``step``)."""
    T, J = M.shape
    B = out.shape[1]
    z = np.empty(B)
    y = np.empty(B)
    g = np.empty(B)
    r = np.empty(J)
    q = np.empty(J)
    # The loops run over views from index 0 (band j's weights, its bins):
    # numba then emits no negative-index check and they vectorise (a third
    # faster than indexing by offsets, the same sums in the same order).
    for t in range(T):
        m = M[t]
        for i in range(J):
            acc = 0.0
            qi = Q[i]
            for j in range(J):
                acc += qi[j] * m[j]
            q[i] = acc
        for b in range(B):
            z[b] = 0.0
        for j in range(J):                         # z = F^T q
            wj = w[off[j]:off[j + 1]]
            zj = z[lo[j]:lo[j] + wj.shape[0]]
            for k in range(wj.shape[0]):
                zj[k] += wj[k] * q[j]
        for b in range(B):
            if z[b] < 0.0:
                z[b] = 0.0
            y[b] = z[b]
        tk = 1.0
        for _ in range(iterations):
            for j in range(J):                     # r = F y - m
                wj = w[off[j]:off[j + 1]]
                yj = y[lo[j]:lo[j] + wj.shape[0]]
                acc = 0.0
                for k in range(wj.shape[0]):
                    acc += wj[k] * yj[k]
                r[j] = acc - m[j]
            for b in range(B):
                g[b] = 0.0
            for j in range(J):                     # g = F^T r
                wj = w[off[j]:off[j + 1]]
                gj = g[lo[j]:lo[j] + wj.shape[0]]
                rj = r[j]
                for k in range(wj.shape[0]):
                    gj[k] += wj[k] * rj
            tn = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * tk * tk))
            mom = (tk - 1.0) / tn
            for b in range(B):
                zn = max(y[b] - step[b] * g[b], 0.0)
                y[b] = zn + mom * (zn - z[b])
                z[b] = zn
            tk = tn
        if power == 2.0:
            for b in range(B):
                out[t, b] = math.sqrt(z[b])
        else:
            for b in range(B):
                out[t, b] = z[b]
    return T


#: Frames solved side by side by :func:`_invert_lanes`: one AVX-512 vector of
#: float64 (two of AVX2).  Each frame keeps its own lane, so the result of a
#: frame does not depend on the others, nor on how many are solved at once.
LANES = 8


def _invert_lanes(M, Q, lo, off, w, step, power, iterations, out, lanes):
    """:func:`_invert_frames` for ``lanes`` frames at a time, each in a lane of
    the ``(bins, lanes)`` arrays: the innermost loops run across the lanes
    and vectorise (the loops of one frame, a band a few bins wide, do not),
    1.6-2.4x faster for blocks of frames; each lane's sums are those of
    :func:`_invert_frames`, in the same order, so a frame comes out the same
    bit for bit whichever kernel solved it."""
    T, J = M.shape
    B = out.shape[1]
    L = lanes
    z = np.empty((B, L))
    y = np.empty((B, L))
    g = np.empty((B, L))
    r = np.empty((J, L))
    q = np.empty((J, L))
    m = np.empty((J, L))
    for t0 in range(0, T, L):
        n = min(L, T - t0)
        for j in range(J):
            for k in range(L):
                m[j, k] = M[t0 + k, j] if k < n else 0.0
        for i in range(J):                         # q = Q m
            qi = Q[i]
            for k in range(L):
                q[i, k] = 0.0
            for j in range(J):
                a = qi[j]
                for k in range(L):
                    q[i, k] += a * m[j, k]
        _spread(w, lo, off, q, z)                  # z = max(F^T q, 0)
        for b in range(B):
            for k in range(L):
                v = max(z[b, k], 0.0)
                z[b, k] = v
                y[b, k] = v
        tk = 1.0
        for _ in range(iterations):
            for j in range(J):                     # r = F y - m
                wj = w[off[j]:off[j + 1]]
                yj = y[lo[j]:lo[j] + wj.shape[0]]
                for k in range(L):
                    r[j, k] = 0.0
                for i in range(wj.shape[0]):
                    a = wj[i]
                    for k in range(L):
                        r[j, k] += a * yj[i, k]
                for k in range(L):
                    r[j, k] -= m[j, k]
            _spread(w, lo, off, r, g)              # g = F^T r
            tn = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * tk * tk))
            mom = (tk - 1.0) / tn
            for b in range(B):
                s = step[b]
                for k in range(L):
                    zn = max(y[b, k] - s * g[b, k], 0.0)
                    y[b, k] = zn + mom * (zn - z[b, k])
                    z[b, k] = zn
            tk = tn
        for k in range(n):
            for b in range(B):
                out[t0 + k, b] = math.sqrt(z[b, k]) if power == 2.0 else z[b, k]
    return T


def _spread(w, lo, off, r, g):
    """``g = F^T r`` for lanes of band values ``r`` ``(n_mels, LANES)``."""
    g[:] = 0.0
    for j in range(r.shape[0]):
        wj = w[off[j]:off[j + 1]]
        gj = g[lo[j]:lo[j] + wj.shape[0]]
        for i in range(wj.shape[0]):
            a = wj[i]
            for k in range(r.shape[1]):
                gj[i, k] += a * r[j, k]
    return 0


_KERNEL = None


def _mel_kernel():
    """``(_invert_frames, _invert_lanes)``, compiled with numba when it is there
    (once, and run on tiny inputs so that a live stream does not compile at
    its first frame)."""
    global _KERNEL
    if _KERNEL is None:
        jit = compiler()
        if jit is not None:
            global _spread
            _spread = jit(_spread)      # module globals are what compiled code calls
        one, lanes = ((_invert_frames, _invert_lanes) if jit is None else
                      (jit(_invert_frames), jit(_invert_lanes)))
        z = np.zeros((1, 2))
        tables = (np.zeros((2, 2)), np.zeros(2, np.int64), np.zeros(3, np.int64), np.zeros(0),
                  np.zeros(3))
        one(z, *tables, 2.0, 1, np.empty((1, 3), np.float32))
        lanes(z, *tables, 2.0, 1, np.empty((1, 3), np.float32), LANES)
        _KERNEL = one, lanes
    return _KERNEL
