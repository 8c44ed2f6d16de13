"""The phase-gradient relations: the window's Gaussian parameter, the phase
convention shift, and the time/frequency phase gradients from the magnitude
(see the package docstring for the maths)."""

from __future__ import annotations

import functools
import math

import numpy as np

from ..spec import SpecError, STFTSpec

__all__ = ["GAMMA_CONSTANTS", "window_gamma", "window_centre", "centre_shift",
           "phase_gradients"]

GAMMA_CONSTANTS = {
    "hann": 0.25645, "hamming": 0.29794, "blackman": 0.17954,
    "sine": 0.41532, "sqrt-hann": 0.41532, "bartlett": 0.27561,
}

_TWO_PI = 2.0 * np.pi


# ------------------------------------------------------------------ window
def window_gamma(spec: STFTSpec, estimate_ok: bool = True) -> tuple[float, str]:
    """``(gamma, how)``: the Gaussian parameter (samples**2) the window stands for.

    ``how`` is 'table' for a window of :data:`GAMMA_CONSTANTS`, 'gaussian' when
    the window values are a sampled Gaussian, wherever its peak and however
    far its tails are cut (``exp(-pi (l - c)**2 / gamma)``, gamma and ``c``
    exact from the values: scipy's ``gaussian`` windows, symmetric or
    periodic, pghipy's and tifresi's), 'estimated' for any other window
    (least-squares Gaussian fit; the rectangular window fits badly and PGHI
    is a poor choice for it).  Custom windows are looked at once per process
    (the fit takes tens of ms; a live stream's set-up should not).
    """
    name = spec.window_name
    if name in GAMMA_CONSTANTS:
        return GAMMA_CONSTANTS[name] * spec.win_length ** 2, "table"
    if name != "custom":            # rectangular
        if not estimate_ok:
            raise SpecError(f"no PGHI constant for window {name!r}")
        return _estimated_gamma(spec.window_values), "estimated"
    fit = _custom_window(spec.window)
    if fit[0] == "gaussian":
        return fit[1], "gaussian"
    if not estimate_ok:
        raise SpecError(f"no PGHI constant for window {name!r}")
    return _estimated_gamma(spec.window_values), "estimated"


@functools.lru_cache(maxsize=32)
def _custom_window(values: tuple) -> tuple[str, float, float]:
    """``('gaussian', gamma, centre)`` when ``values`` are a sampled Gaussian
    (``centre`` in samples from the window's first value), else ``('other',
    0, energy centre)``."""
    w = np.asarray(values, dtype=np.float64)
    peak = float(np.abs(w).max()) if len(w) else 0.0
    if peak <= 0:
        raise SpecError("the window is all zeros")
    g = w / peak
    k = np.arange(len(w), dtype=np.float64)
    w2 = w ** 2
    energy_centre = float(k @ w2 / w2.sum())
    inside = g > 1e-12
    if inside.sum() >= 3 and np.all(w >= 0):
        # ln g = ln h - pi (k - c)**2 / gamma: a parabola in k, fitted exactly
        # (indices centred for the conditioning of the fit).
        mid = (len(w) - 1) / 2
        u = k[inside] - mid
        a2, a1, a0 = np.polyfit(u, np.log(g[inside]), 2)
        if a2 < 0:
            gam = -np.pi / a2
            c = mid - a1 / (2 * a2)
            model = np.exp(a0 - a1 * a1 / (4 * a2) - np.pi * (k - c) ** 2 / gam)
            if np.allclose(model, g, rtol=1e-6, atol=1e-9):
                return "gaussian", float(gam), float(c)
    return "other", 0.0, energy_centre


def _estimated_gamma(w: np.ndarray) -> float:
    """Least-squares fit of a unit-height Gaussian to the peak-normalised window
    (the published constants are reproduced to 0.2 %)."""
    n = len(w)
    peak = float(np.abs(w).max())
    if peak <= 0:
        raise SpecError("the window is all zeros")
    g = w / peak
    w2 = w ** 2
    t = np.arange(n) - float(np.arange(n) @ w2 / w2.sum())
    far = np.arange(1, 8 * n + 1, dtype=np.float64)
    tails = np.concatenate([t[0] - far, t[-1] + far])

    def err(lam):
        return (np.sum((g - np.exp(-np.pi * t ** 2 / lam)) ** 2)
                + np.sum(np.exp(-2 * np.pi * tails ** 2 / lam)))

    lo, hi = 0.01 * n * n, 2.0 * n * n   # golden-section search after a coarse grid
    grid = np.geomspace(lo, hi, 60)
    k = int(np.argmin([err(v) for v in grid]))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    phi = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        c1, c2 = b - phi * (b - a), a + phi * (b - a)
        if err(c1) < err(c2):
            b = c2
        else:
            a = c1
    return float((a + b) / 2)


def _window_centre_in_window(spec: STFTSpec) -> float:
    name, n = spec.window_name, spec.win_length
    if name in ("hann", "hamming", "blackman", "bartlett", "sqrt-hann"):
        return n / 2.0            # DFT-even: symmetric about n/2 (w[0] is the extra point)
    if name in ("sine", "rectangular"):
        return (n - 1) / 2.0
    # custom: a Gaussian's peak, else the centre of the window's energy
    return _custom_window(spec.window)[2]


def window_centre(spec: STFTSpec) -> float:
    """Position of the window's centre inside the ``n_fft`` frame (may be fractional)."""
    return spec.window_offset + _window_centre_in_window(spec)


def centre_shift(spec: STFTSpec) -> np.ndarray:
    """Per-bin phase (radians) to add to a window-centre phase to get the spec's phase:
    ``-2 pi m (c - r) / n_fft`` (``pi * m`` modulo 2 pi for frame-start, ``c = n_fft/2``)."""
    m = np.arange(spec.n_bins)
    d = window_centre(spec) - spec.phase_reference
    return np.remainder(-_TWO_PI * m * d / spec.n_fft + np.pi, _TWO_PI) - np.pi


# --------------------------------------------------------------- gradients
def _log_mag(mag: np.ndarray) -> np.ndarray:
    """ln|X| per frame, floored 200 dB under each frame's maximum (and at 1e-300)."""
    mag = np.asarray(mag, dtype=np.float64)
    peak = mag.max(axis=-1, keepdims=True) if mag.size else np.zeros(mag.shape[:-1] + (1,))
    return np.log(np.maximum(mag, np.maximum(peak * 1e-10, 1e-300)))


def _freq_diff(s: np.ndarray, n_fft: int) -> np.ndarray:
    """ds/dm (centred difference over bins) with the real signal's mirror at the edges."""
    d = np.empty_like(s)
    d[..., 1:-1] = (s[..., 2:] - s[..., :-2]) / 2
    d[..., 0] = 0.0                                  # |X[-1]| = |X[1]|
    if n_fft % 2 == 0:
        d[..., -1] = 0.0                             # |X[M/2+1]| = |X[M/2-1]|
    else:
        d[..., -1] = (s[..., -1] - s[..., -2]) / 2   # |X[(M+1)/2]| = |X[(M-1)/2]|
    return d


def _gradient_consts(spec: STFTSpec, gamma: float | None = None):
    if gamma is None:
        gamma, _ = window_gamma(spec)
    a, m_ = spec.hop_length, spec.n_fft
    k_t = a * m_ / gamma
    k_f = gamma / (a * m_)
    adv = _TWO_PI * a * np.arange(spec.n_bins) / m_
    return k_t, k_f, adv


def phase_gradients(mag, spec: STFTSpec, gamma: float | None = None):
    """``(dphi/dn, dphi/dm)`` in radians per frame and per bin, window-centre phase,
    from linear magnitudes ``(n_frames, bins)`` (centred differences in time,
    one-sided at the ends).  Compiled where numba is (the same operations)."""
    from .kernels import kernels
    k_t, k_f, adv = _gradient_consts(spec, gamma)
    compiled = kernels()[6]
    a = np.asarray(mag)
    if compiled is not None and a.ndim == 2 and a.dtype in (np.float32, np.float64):
        tg, fg = np.empty(a.shape), np.empty(a.shape)
        compiled(np.ascontiguousarray(a), k_t, k_f, adv, spec.n_fft % 2 == 1, tg, fg)
        return tg, fg
    s = _log_mag(mag)
    tgrad = k_t * _freq_diff(s, spec.n_fft) + adv
    ds = np.zeros_like(s)
    n = s.shape[-2]
    if n >= 3:
        ds[..., 1:-1, :] = (s[..., 2:, :] - s[..., :-2, :]) / 2
    if n >= 2:
        ds[..., 0, :] = s[..., 1, :] - s[..., 0, :]
        ds[..., -1, :] = s[..., -1, :] - s[..., -2, :]
    return tgrad, -k_f * ds
