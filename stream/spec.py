"""STFT parameters: one object that says how a spectrogram was made.

An :class:`STFTSpec` holds what the inverse needs to know about the analysis:
frame length, hop, window and its placement in the frame, centre padding, the
amplitude scaling a library applied, and where the phase of each frame is
referenced.  Derived quantities (the padded window, the window-sum-square,
the number of bins, the samples trimmed by centre padding) are properties,
computed from the fields, never stored twice.

Frame model
-----------
Frame ``t`` covers the samples ``x[t*H + o : t*H + o + n_fft]`` of the
original signal, where ``H = hop_length`` and ``o = -start_trim``.  Its bins are

    X_t[m] = s * sum_k w[k] x[t*H + o + k] exp(-2j*pi*m*(k - r)/n_fft),  0 <= m <= n_fft//2

with ``w`` the window padded to ``n_fft`` (centred as librosa and torch do,
or at the start of the frame as scipy does when ``nfft > nperseg``), ``s`` the
amplitude scaling (1, ``1/sum(w)``, ``1/sqrt(n_fft)``, ...) and ``r`` the
phase reference: 0 when the phase refers to the frame's first sample
(librosa, torch, ``scipy.signal.stft``), the window centre for
``ShortTimeFFT`` with ``phase_shift=0``.

The least-squares inverse (Griffin & Lim 1984; what scipy, librosa and torch
compute) is

    x[n] = sum_t w[n - t*H] y_t[n - t*H] / sum_t w[n - t*H]^2,   y_t = irfft(X_t) / s

and it exists wherever the denominator is non-zero: the NOLA condition,
checked here when the spec is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np

from .errors import ParameterError

__all__ = [
    "SpecError",
    "STFTSpec",
    "get_window",
    "WINDOWS",
    "SCALINGS",
    "PHASE_ORIGINS",
    "PRESETS",
    "preset",
]


#: The STFT's parameter error (the name the API has always had).
SpecError = ParameterError


def _cosine_sum(m: int, coeffs: tuple[float, ...]) -> np.ndarray:
    # The symmetric generalised cosine window of m points (denominator m - 1);
    # get_window makes the periodic one of it as every library does.
    k = np.arange(m, dtype=np.float64)
    w = np.zeros(m)
    for i, a in enumerate(coeffs):
        w += (-1) ** i * a * np.cos(2.0 * np.pi * i * k / (m - 1))
    return w


def _bartlett(m: int) -> np.ndarray:
    k = np.arange(m, dtype=np.float64)
    return np.where(k <= (m - 1) / 2.0, 2.0 * k / (m - 1), 2.0 - 2.0 * k / (m - 1))


def _sine(m: int) -> np.ndarray:
    # scipy's "cosine" window (a.k.a. sine window)
    return np.sin(np.pi / m * (np.arange(m) + 0.5))


def _tukey(m: int, alpha: float = 0.5) -> np.ndarray:
    # scipy.signal.windows.tukey: a flat top with cosine tapers over alpha * (m - 1)
    if alpha <= 0:
        return np.ones(m)
    if alpha >= 1:
        return _cosine_sum(m, (0.5, 0.5))
    k = np.arange(m, dtype=np.float64)
    width = alpha * (m - 1) / 2.0
    w = np.ones(m)
    lo, hi = k < width, k > (m - 1) - width
    w[lo] = 0.5 * (1 + np.cos(np.pi * (-1 + k[lo] / width)))
    w[hi] = 0.5 * (1 + np.cos(np.pi * (-2.0 / alpha + 1 + k[hi] / width)))
    return w


def _gaussian(m: int, std: float) -> np.ndarray:
    # scipy.signal.windows.gaussian: exp(-l**2 / (2 std**2)), l from the centre
    k = np.arange(m, dtype=np.float64) - (m - 1) / 2.0
    return np.exp(-0.5 * (k / std) ** 2)


def _kaiser(m: int, beta: float) -> np.ndarray:
    return np.kaiser(m, beta)


#: Windows by name.  Each function makes the *symmetric* window of m points
#: (m >= 2); the periodic ("DFT-even") window of n points that librosa, torch
#: and scipy's get_window make is the symmetric one of n + 1 points without
#: its last (:func:`get_window`).
WINDOWS = {
    "hann": lambda m: _cosine_sum(m, (0.5, 0.5)),
    "hamming": lambda m: _cosine_sum(m, (0.54, 0.46)),
    "blackman": lambda m: _cosine_sum(m, (0.42, 0.50, 0.08)),
    "rectangular": lambda m: np.ones(m),
    "bartlett": _bartlett,
    "sine": _sine,
    "sqrt-hann": lambda m: np.sqrt(np.maximum(_cosine_sum(m, (0.5, 0.5)), 0)),
}
#: Windows with a parameter, spelt ``name:value`` as scipy's ``(name, value)``:
#: name -> (function, what the value is, its default or None when required).
WINDOW_FAMILIES = {
    "tukey": (_tukey, "the tapered fraction alpha", 0.5),
    "gaussian": (_gaussian, "the standard deviation in samples", None),
    "kaiser": (_kaiser, "beta", None),
}
_ALIASES = {"hanning": "hann", "boxcar": "rectangular", "ones": "rectangular",
            "rect": "rectangular", "none": "rectangular", "cosine": "sine",
            "triangle": "bartlett", "triang": "bartlett", "sqrt_hann": "sqrt-hann",
            "tukeywin": "tukey", "gausswin": "gaussian", "gauss": "gaussian"}
_SYMMETRIC = ("-sym", "-symmetric", "_sym", ":sym")
_PERIODIC = ("-periodic", "-per", ":periodic")

#: How the frames' amplitude was scaled by the analysis, and the factor ``s``.
SCALINGS = ("none", "window-sum", "sqrt-n", "window-energy", "psd", "essentia")
#: Where each frame's phase is referenced.
PHASE_ORIGINS = ("frame-start", "window-center")
_ALIGNS = ("center", "left")


@dataclass(frozen=True)
class WindowName:
    """A window name taken apart: ``base`` (a key of :data:`WINDOWS` or
    :data:`WINDOW_FAMILIES`), its ``param`` (None for the plain windows) and
    ``symmetric``.  :attr:`text` spells it back: ``hann``, ``hamming-sym``,
    ``tukey:0.25``, ``gaussian-sym:7``."""

    base: str
    param: float | None = None
    symmetric: bool = False

    @property
    def text(self) -> str:
        out = self.base + ("-sym" if self.symmetric else "")
        return out if self.param is None else f"{out}:{self.param:g}"


def parse_window_name(name: str, symmetric: bool | None = None) -> WindowName:
    """``'hamming'``, ``'hamming-sym'``, ``'tukey:0.25'``, ``'tukey-sym:0.25'``
    (or ``'tukey:0.25-sym'``), ``'gaussian:7'``... -> :class:`WindowName`.

    A name alone is periodic, as librosa, torch and scipy's ``get_window`` make
    windows; ``-sym`` (or ``symmetric=True``) is the symmetric window of MATLAB,
    Octave, ``np.hamming`` and essentia.  Raises :class:`SpecError` for an
    unknown name or a missing or bad parameter."""
    text = name.strip().lower()
    sym = False
    for marks, value in ((_SYMMETRIC, True), (_PERIODIC, False)):
        for m in marks:
            if text.endswith(m) or (m + ":") in text:
                text = text.replace(m, "", 1)
                sym = value
    if symmetric is not None:
        sym = bool(symmetric)
    base, _, arg = text.partition(":")
    base = _ALIASES.get(base, base)
    if base in WINDOWS:
        if arg:
            raise SpecError(f"window {name!r}: {base} takes no parameter")
        return WindowName(base, None, sym)
    if base in WINDOW_FAMILIES:
        _, what, default = WINDOW_FAMILIES[base]
        if not arg and default is None:
            raise SpecError(f"window {name!r}: give {what}, as {base}:VALUE (the windows: "
                            f"{', '.join(WINDOWS)}, {', '.join(WINDOW_FAMILIES)})")
        try:
            value = float(arg) if arg else float(default)
        except ValueError:
            raise SpecError(f"window {name!r}: {what} must be a number") from None
        if not math.isfinite(value) or (base == "gaussian" and value <= 0):
            raise SpecError(f"window {name!r}: {what} must be a positive number")
        return WindowName(base, value, sym)
    raise SpecError(f"unknown window {name!r}; use one of {', '.join(WINDOWS)}, "
                    f"{', '.join(k + ':VALUE' for k in WINDOW_FAMILIES)} (add -sym for the "
                    "symmetric window), or pass an array")


def get_window(window, win_length: int, symmetric: bool | None = None) -> np.ndarray:
    """Return a window of ``win_length`` samples as float64.

    ``window`` is a name (:func:`parse_window_name`: a key of :data:`WINDOWS`
    or an alias such as ``boxcar``/``hanning``, ``tukey:ALPHA``,
    ``gaussian:STD``, ``kaiser:BETA``, each periodic unless it ends in
    ``-sym`` or ``symmetric=True``) or an array of exactly ``win_length`` values.
    """
    if isinstance(window, str):
        wn = parse_window_name(window, symmetric)
        if win_length == 1:
            return np.ones(1)   # scipy and librosa: every window of one point is [1.]
        if wn.base in WINDOWS:
            make = WINDOWS[wn.base]
        else:
            func = WINDOW_FAMILIES[wn.base][0]
            make = lambda m: func(m, wn.param)   # noqa: E731
        if wn.symmetric:
            return make(win_length)
        return make(win_length + 1)[:-1]
    w = np.asarray(window, dtype=np.float64)
    if w.ndim != 1 or len(w) != win_length:
        raise SpecError(f"window array has shape {w.shape}; it must be 1-D with "
                        f"win_length={win_length} values")
    if not np.all(np.isfinite(w)):
        raise SpecError("window array holds NaN or Inf")
    return w.copy()


@dataclass(frozen=True)
class STFTSpec:
    """The parameters of a short-time Fourier transform, validated up front.

    Parameters
    ----------
    sample_rate : float
        Samples per second of the signal (Hz).  Not visible in the frames;
        used for durations and for the 'psd' scaling.
    n_fft : int
        FFT length in samples; frames carry ``n_fft // 2 + 1`` bins.
    hop_length : int
        Samples between the starts of successive frames.  Default ``win_length // 4``.
    win_length : int
        Window length in samples, ``hop_length <= win_length <= n_fft``.  Default ``n_fft``.
    window : str or array
        Analysis window: a name from :data:`WINDOWS` or ``win_length`` values.
    center : bool
        True when the signal was padded so that frame ``first_frame + t`` is
        centred on sample ``t * hop_length`` (librosa, torch, scipy ``stft``
        with ``boundary='zeros'``).  The inverse trims that padding.
    channels : int
        Audio channels carried by each frame.
    scaling : str
        Amplitude scaling applied by the analysis, one of :data:`SCALINGS`:
        'none' (librosa, torch), 'window-sum' (divided by ``sum(w)``: scipy
        ``stft``'s 'spectrum', ``ShortTimeFFT`` 'magnitude'), 'sqrt-n' (torch
        ``normalized=True``), 'window-energy' (divided by ``sqrt(sum(w**2))``),
        'psd' (divided by ``sqrt(sample_rate * sum(w**2))``, ``ShortTimeFFT`` 'psd').
    phase_origin : str
        'frame-start' when phases refer to each frame's first sample (librosa,
        torch, scipy ``stft``), 'window-center' when they refer to the window's
        centre (``ShortTimeFFT``).
    window_align : str
        Where a window shorter than ``n_fft`` sits in the frame: 'center'
        (librosa, torch) or 'left' (scipy, which zero-pads the segment at its end).
    first_frame : int
        Index of the first frame relative to the one centred on sample 0
        (``center=True`` only).  ``ShortTimeFFT`` starts at ``p_min < 0``;
        everyone else at 0.
    first_sample : int
        The sample frame 0 starts at when ``center=False`` (samples; within
        ``-n_fft..n_fft``): 0 for tensorflow, MATLAB, Octave, librosa
        ``center=False``; ``-(n_fft - hop_length)`` for pyroomacoustics, whose
        analysis zero-pads that much before the signal.  Zeros stand before
        sample 0; the inverse trims them.
    gain : float
        A factor the analysis multiplied every bin by, besides ``scaling``
        (a tool's own normalisation; 1 for the libraries above).
    """

    sample_rate: float = 22050
    n_fft: int = 2048
    hop_length: int | None = None
    win_length: int | None = None
    window: object = "hann"
    center: bool = True
    channels: int = 1
    scaling: str = "none"
    phase_origin: str = "frame-start"
    window_align: str = "center"
    first_frame: int = 0
    first_sample: int = 0
    gain: float = 1.0
    _window_values: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        n_fft = _positive_int("n_fft", self.n_fft)
        win = n_fft if self.win_length is None else _positive_int("win_length", self.win_length)
        hop = win // 4 if self.hop_length is None else _positive_int("hop_length", self.hop_length)
        object.__setattr__(self, "n_fft", n_fft)
        object.__setattr__(self, "win_length", win)
        object.__setattr__(self, "hop_length", max(hop, 1))
        if win > n_fft:
            raise SpecError(f"win_length={win} exceeds n_fft={n_fft}; "
                            f"use win_length <= {n_fft} or a larger n_fft")
        if self.hop_length > win:
            raise SpecError(f"hop_length={self.hop_length} exceeds win_length={win}: "
                            f"samples between frames would be lost; use hop_length <= {win}")
        if not (self.sample_rate and float(self.sample_rate) > 0):
            raise SpecError(f"sample_rate must be positive, got {self.sample_rate!r}")
        if _positive_int("channels", self.channels) != self.channels:
            raise SpecError("channels must be a whole number")
        for name, value, allowed in (("scaling", self.scaling, SCALINGS),
                                     ("phase_origin", self.phase_origin, PHASE_ORIGINS),
                                     ("window_align", self.window_align, _ALIGNS)):
            if value not in allowed:
                raise SpecError(f"{name}={value!r} is not one of {', '.join(allowed)}")
        if self.first_frame != 0 and not self.center:
            raise SpecError("first_frame applies only with center=True")
        if self.first_sample != 0 and self.center:
            raise SpecError("first_sample applies only with center=False (centred frames "
                            "start half a frame before sample 0)")
        if (isinstance(self.first_sample, bool) or int(self.first_sample) != self.first_sample
                or abs(self.first_sample) > n_fft):
            raise SpecError(f"first_sample must be a whole number of samples within "
                            f"-{n_fft}..{n_fft} (n_fft), got {self.first_sample!r}")
        object.__setattr__(self, "first_sample", int(self.first_sample))
        if not (isinstance(self.gain, (int, float, np.floating, np.integer))
                and math.isfinite(self.gain) and self.gain > 0):
            raise SpecError(f"gain must be a positive number, got {self.gain!r}")
        if not isinstance(self.window, str):
            object.__setattr__(self, "window", tuple(np.asarray(self.window, float).tolist()))
        object.__setattr__(self, "_window_values", get_window(
            self.window if isinstance(self.window, str) else np.array(self.window), win))
        self._check_nola()

    def _check_nola(self):
        wss = self.window_sumsquare_periodic
        if wss.min() <= 1e-10 * max(wss.max(), 1e-300):
            raise SpecError(
                f"window {self.window_name!r} with win_length={self.win_length} and "
                f"hop_length={self.hop_length} leaves samples that no frame covers "
                "(NOLA fails), so no inverse exists; use a smaller hop_length")

    # ---------------------------------------------------------------- derived
    @property
    def n_bins(self) -> int:
        """Bins per one-sided frame: ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @property
    def window_name(self) -> str:
        return self.window if isinstance(self.window, str) else "custom"

    @property
    def window_values(self) -> np.ndarray:
        """The ``win_length`` window samples (float64, read-only copy)."""
        w = self._window_values.copy()
        w.flags.writeable = False
        return w

    @property
    def window_offset(self) -> int:
        """Index of the window's first sample inside the ``n_fft`` frame."""
        if self.window_align == "left":
            return 0
        return (self.n_fft - self.win_length) // 2

    @property
    def padded_window(self) -> np.ndarray:
        """The window placed in an ``n_fft``-sample frame (float64)."""
        w = np.zeros(self.n_fft)
        o = self.window_offset
        w[o:o + self.win_length] = self._window_values
        return w

    @property
    def frame_span(self) -> int:
        """Samples one frame spans in time: ``n_fft`` (librosa, torch) or
        ``win_length`` (scipy, whose segment is only ``nperseg`` long)."""
        return self.win_length if self.window_align == "left" else self.n_fft

    @property
    def start_trim(self) -> int:
        """Samples before the signal's start that frame 0 covers (centre padding)."""
        if not self.center:
            return -self.first_sample
        return self.frame_span // 2 - self.first_frame * self.hop_length

    @property
    def end_trim(self) -> int:
        """Samples trimmed after the last frame's span when no length is given."""
        return self.frame_span // 2 if self.center else 0

    @property
    def phase_reference(self) -> int:
        """Sample index inside the frame that phase 0 refers to."""
        if self.phase_origin == "frame-start":
            return 0
        return self.window_offset + self.win_length // 2

    @property
    def window_symmetric(self) -> bool | None:
        """True for a symmetric named window, False for a periodic one, None
        for window values given as an array."""
        if not isinstance(self.window, str):
            return None
        return parse_window_name(self.window).symmetric

    @property
    def scale(self) -> float:
        """The factor ``s`` the analysis multiplied each frame by (the
        scaling's, times :attr:`gain`)."""
        return self._scaling_factor * float(self.gain)

    @property
    def _scaling_factor(self) -> float:
        w = self._window_values
        return {
            "none": 1.0,
            "essentia": 2.0 / float(w.sum()),
            "window-sum": 1.0 / float(w.sum()),
            "sqrt-n": 1.0 / math.sqrt(self.n_fft),
            "window-energy": 1.0 / math.sqrt(float((w ** 2).sum())),
            "psd": 1.0 / math.sqrt(float(self.sample_rate) * float((w ** 2).sum())),
        }[self.scaling]

    @property
    def window_sumsquare_periodic(self) -> np.ndarray:
        """``sum_t w[n - t*H]**2`` for an infinite run of frames, one period of H samples."""
        w2 = self.padded_window ** 2
        h = self.hop_length
        n = -(-self.n_fft // h) * h
        return np.pad(w2, (0, n - self.n_fft)).reshape(-1, h).sum(axis=0)

    @property
    def latency(self) -> int:
        """Algorithmic latency in samples: from a sample's arrival in a frame
        until it is final, at most the frame's span less one hop."""
        return self.n_fft - self.hop_length

    # ------------------------------------------------- time and frequency
    @property
    def hop_seconds(self) -> float:
        """Seconds between the starts of successive frames: ``hop_length / sample_rate``."""
        return self.hop_length / float(self.sample_rate)

    @property
    def latency_seconds(self) -> float:
        """:attr:`latency` in seconds: ``(n_fft - hop_length) / sample_rate``."""
        return self.latency / float(self.sample_rate)

    @property
    def frequencies(self) -> np.ndarray:
        """Frequency in Hz of each of the :attr:`n_bins` bins (float64).

        Bin ``m`` is at ``m * sample_rate / n_fft`` Hz, ``0 <= m <= n_fft // 2``:
        ``np.fft.rfftfreq(n_fft, 1 / sample_rate)``, librosa's
        ``fft_frequencies``, ``ShortTimeFFT.f``.
        """
        return np.fft.rfftfreq(self.n_fft, 1.0 / float(self.sample_rate))

    def frame_times(self, n_frames: int) -> np.ndarray:
        """Time in seconds of the centre of each of ``n_frames`` frames (float64),
        counted from the signal's first sample.

        Frame ``t`` spans the samples from ``t*H - start_trim`` (``H = hop_length``)
        for :attr:`frame_span` samples, so its centre is the sample

            c_t = t*H - start_trim + frame_span // 2,    at  c_t / sample_rate  seconds.

        With ``center=True`` that is ``(t + first_frame) * H / sample_rate``:
        librosa's ``frames_to_time(t, sr=sample_rate, hop_length=H)``, and
        ``ShortTimeFFT.t`` (which starts at ``p_min``, the scipy-sfft preset's
        ``first_frame``), so the first times may be negative.  With
        ``center=False`` it is ``(t*H + frame_span // 2) / sample_rate``:
        ``frames_to_time(t, ..., n_fft=n_fft)``.
        """
        centre = (np.arange(n_frames) * self.hop_length - self.start_trim
                  + self.frame_span // 2)
        return centre / float(self.sample_rate)

    def frames_for(self, n_samples: int) -> int:
        """Frames the analysis makes of ``n_samples`` samples (librosa/torch
        counting; with ``first_sample < 0`` the frames that end inside the signal)."""
        if self.center:
            return 1 + n_samples // self.hop_length - self.first_frame
        return 1 + max(n_samples - self.first_sample - self.frame_span, 0) // self.hop_length

    def max_samples_for(self, n_frames: int) -> int:
        """The longest signal whose analysis gives ``n_frames`` frames (samples).

        :meth:`samples_for` (what the inverse writes when no length is given)
        may be up to a hop shorter; the frames can describe those last
        samples too.  No length beyond this is held by the frames.
        """
        if n_frames <= 0:
            return 0
        h = self.hop_length
        if self.center:
            n = (n_frames + self.first_frame) * h - 1
        else:
            n = (n_frames - 1) * h + self.frame_span + h - 1 + self.first_sample
        while n > 0 and self.frames_for(n) > n_frames:    # never more frames than given
            n -= 1
        return max(n, 0)

    def samples_for(self, n_frames: int) -> int:
        """Output length of the inverse of ``n_frames`` frames when no length is given."""
        full = (n_frames - 1) * self.hop_length + self.frame_span if n_frames else 0
        return max(full - self.start_trim - self.end_trim, 0)

    def covered_samples(self, n_frames: int) -> int:
        """Samples from the signal's start that ``n_frames`` frames hold (cover
        with a non-zero window), never more than :meth:`max_samples_for`.

        With centred frames that is up to half a frame more than
        :meth:`samples_for`: the last frame reaches past ``(n_frames-1)*hop``.
        """
        if n_frames <= 0:
            return 0
        nz = np.flatnonzero(self.padded_window)
        end = (n_frames - 1) * self.hop_length + int(nz[-1]) + 1 - self.start_trim
        return int(max(min(end, self.max_samples_for(n_frames)), 0))

    def replace(self, **changes) -> "STFTSpec":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    # ------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        """Every field by name, as JSON-safe values: numbers, strings, booleans,
        and the window as its name or a list of floats.  :meth:`from_dict`
        makes the same spec of it; the stream header carries these keys."""
        return {f.name: _json_value(f, getattr(self, f.name)) for f in _fields()}

    @classmethod
    def from_dict(cls, d: dict, strict: bool = False) -> "STFTSpec":
        """A spec from a dict of fields, such as :meth:`to_dict` returns.

        Missing fields take their defaults; keys that are not fields are
        ignored, so a dict that holds more (a stream header) will do.  With
        ``strict=True`` every value must have the JSON type ``to_dict`` gives
        it, as data from outside should: a whole number for ``n_fft`` (not
        64.0, "64" or true), true or false for ``center``, a name or a list of
        numbers for ``window``; otherwise :class:`SpecError` names the field.
        """
        params = {f.name: d[f.name] for f in _fields() if f.name in d}
        if strict:
            for f in _fields():
                if f.name in params:
                    _check_json_type(f, params[f.name])
                    params[f.name] = _json_value(f, params[f.name])   # 48000 -> 48000.0
        return cls(**params)

    def describe(self) -> str:
        text = (f"n_fft={self.n_fft} hop={self.hop_length} win={self.win_length} "
                f"window={self.window_name} center={self.center} sr={self.sample_rate:g} "
                f"scaling={self.scaling} phase_origin={self.phase_origin}")
        if self.first_sample:
            text += f" first_sample={self.first_sample}"
        if self.gain != 1.0:
            text += f" gain={self.gain:g}"
        return text


# The JSON type of each kind of field, by its annotation (a string here, with
# postponed annotations): the Python types accepted, their name in an error,
# and the conversion to_dict applies.  The window (annotation "object") is a
# name or a list of numbers.
_JSON_TYPES = {
    "float": ((int, float), "a number", float),
    "int": ((int,), "a whole number", int),
    "int | None": ((int,), "a whole number", int),
    "bool": ((bool,), "true or false", bool),
    "str": ((str,), "a string", str),
}


def _fields():
    """The fields a spec is made of (its constructor's parameters)."""
    return [f for f in fields(STFTSpec) if f.init]


def _json_value(f, value):
    if f.name == "window":
        return value if isinstance(value, str) else list(value)
    return _JSON_TYPES[f.type][2](value)


def _check_json_type(f, value):
    if f.name == "window":
        if isinstance(value, str) or isinstance(value, list) and all(
                is_finite_number(v) for v in value):
            return
        raise SpecError(f"window must be a name or a list of numbers (finite), got "
                        f"{type(value).__name__} {_short_repr(value)}")
    types, what, _ = _JSON_TYPES[f.type]
    if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        raise SpecError(f"{f.name} must be {what}, got {_short_repr(value)}")
    if types != (bool,) and types != (str,) and not is_finite_number(value):
        raise SpecError(f"{f.name} must be a finite number of sensible size, got "
                        f"{_short_repr(value)}")


#: The largest magnitude a number from outside may have (JSON allows 400-digit
#: integers; float() of one overflows, numpy's int64 of one fails).
_MAX_ABS = float(1 << 53)


def is_finite_number(v) -> bool:
    """A finite int or float (not bool) with ``|v| <= 2**53``."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if isinstance(v, int):
        return -(1 << 53) <= v <= 1 << 53
    return math.isfinite(v) and abs(v) <= _MAX_ABS


def _short_repr(value, limit: int = 60) -> str:
    # A header may hold a megabyte where a number belongs: quote the start of it.
    r = repr(value)
    return r if len(r) <= limit else r[:limit] + "..."


def _positive_int(name: str, value) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise SpecError(f"{name} must be a whole number, got {value!r}") from None
    if v != value or v < 1:
        raise SpecError(f"{name} must be a positive whole number, got {value!r}")
    return v


# ------------------------------------------------------------------- presets
def _sfft_first_frame(win_length: int, hop_length: int) -> int:
    # ShortTimeFFT's p_min: the first slice (centred on p*hop) that touches sample 0.
    return -((win_length - win_length // 2 - 1) // hop_length)


PRESETS = ("librosa", "scipy", "scipy-sfft", "scipy-spectrogram", "torch")


def preset(name: str, **params) -> STFTSpec:
    """An :class:`STFTSpec` with a library's conventions and defaults.

    ``params`` override the library's defaults (``n_fft``, ``hop_length``...).

    =========== ======== ======== ======= =============== ============== =========
    preset      window   hop      center  scaling         phase origin   window in
    =========== ======== ======== ======= =============== ============== =========
    librosa     hann     win//4   True    none            frame start    centre
    scipy       hann     win//2   True    window-sum      frame start    left
    scipy-sfft  hann     win//4*  True    none**          window centre  left
    torch       hann***  win//4   True    none            frame start    centre
    scipy-      tukey:   win -    False   window-energy   frame start    left
    spectrogram 0.25     win//8
    =========== ======== ======== ======= =============== ============== =========

    \\* ``ShortTimeFFT`` has no default hop; \\** pass ``scaling='window-sum'``
    for ``scale_to('magnitude')``; \\*** torch's own default is a rectangular
    window, but nearly everyone passes ``torch.hann_window``.  The scipy-sfft
    preset starts at ShortTimeFFT's ``p_min``.

    scipy-spectrogram is ``scipy.signal.spectrogram``'s defaults (nperseg 256,
    noverlap nperseg//8, frames from sample 0, no padding, ``fs=1`` density
    scaling ``1/sqrt(sum(w**2))``); its default ``mode='psd'`` stores power
    (``--magnitude power``; the one-sided doubling of every bin but DC and
    Nyquist is a gain of sqrt(2) on them), ``mode='magnitude'`` magnitudes,
    ``mode='phase'`` phases.  With ``fs`` given to scipy, use
    ``scaling='psd'`` and that sample rate.  scipy's default
    ``detrend='constant'`` removes each segment's mean, which no inverse can
    restore: the lowest bins come out a little off.
    """
    if name not in PRESETS:
        raise SpecError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    p = dict(params)
    if name == "librosa":
        p.setdefault("sample_rate", 22050)
    elif name == "scipy":
        n = p.get("n_fft") or p.get("win_length") or 256
        p.setdefault("n_fft", n)
        p.setdefault("win_length", n)
        p.setdefault("hop_length", p["win_length"] // 2)
        p.setdefault("scaling", "window-sum")
        p.setdefault("window_align", "left")
        p.setdefault("sample_rate", 1.0)
    elif name == "scipy-sfft":
        p.setdefault("window_align", "left")
        p.setdefault("phase_origin", "window-center")
        p.setdefault("center", True)
        spec = STFTSpec(**p)
        if spec.center and "first_frame" not in params:
            spec = spec.replace(first_frame=_sfft_first_frame(spec.win_length, spec.hop_length))
        return spec
    elif name == "scipy-spectrogram":
        n = p.get("n_fft") or p.get("win_length") or 256
        p.setdefault("n_fft", n)
        p.setdefault("win_length", n)
        p.setdefault("hop_length", p["win_length"] - p["win_length"] // 8)
        p.setdefault("window", "tukey:0.25")
        p.setdefault("center", False)
        p.setdefault("scaling", "window-energy")
        p.setdefault("window_align", "left")
        p.setdefault("sample_rate", 1.0)
    elif name == "torch":
        p.setdefault("sample_rate", 16000)
    return STFTSpec(**p)


# ------------------------------------------------------- bins <-> n_fft
def n_fft_for_bins(bins: int) -> tuple[int, int]:
    """The frame lengths (samples) whose one-sided spectrum has ``bins`` bins:
    ``(even, odd)``, ``2 * (bins - 1)`` and ``2 * bins - 1``."""
    return 2 * (bins - 1), 2 * bins - 1


def bins_fit(bins: int, name: str = "n_fft=") -> str:
    """What frames of ``bins`` bins fit, for error messages: ``'n_fft=1024 (or
    1025 if odd)'``.  ``name`` spells the parameter (the command line passes
    ``'--n-fft '``)."""
    even, odd = n_fft_for_bins(bins)
    return f"{name}{even} (or {odd} if odd)"
