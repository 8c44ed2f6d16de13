"""The phase-gradient relations: the window's Gaussian parameter, the phase
convention shift, and the time/frequency phase gradients from the magnitude
(see the package docstring for the maths)."""

from __future__ import annotations

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
    the window values are a sampled Gaussian (gamma fitted exactly), 'estimated'
    for any other window (least-squares Gaussian fit; the rectangular window
    fits badly and PGHI is a poor choice for it).
    """
    name = spec.window_name
    w = spec.window_values
    if name in GAMMA_CONSTANTS:
        return GAMMA_CONSTANTS[name] * spec.win_length ** 2, "table"
    centre = _window_centre_in_window(spec)
    t = np.arange(len(w)) - centre
    peak = float(np.abs(w).max())
    if peak <= 0:
        raise SpecError("the window is all zeros")
    g = w / peak
    # A sampled Gaussian: ln g = -pi t^2 / gamma exactly.
    inside = g > 1e-12
    if inside.sum() >= 3 and np.all(g[inside] <= 1 + 1e-12):
        tt = t[inside] ** 2
        if tt.max() > 0:
            gam = -np.pi * (tt @ tt) / (tt @ np.log(g[inside]))
            if gam > 0 and np.allclose(np.exp(-np.pi * t ** 2 / gam), g, rtol=1e-6, atol=1e-9):
                return float(gam), "gaussian"
    if not estimate_ok:
        raise SpecError(f"no PGHI constant for window {name!r}")
    n = len(w)
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
    return float((a + b) / 2), "estimated"


def _window_centre_in_window(spec: STFTSpec) -> float:
    name, n = spec.window_name, spec.win_length
    if name in ("hann", "hamming", "blackman", "bartlett", "sqrt-hann"):
        return n / 2.0            # DFT-even: symmetric about n/2 (w[0] is the extra point)
    if name in ("sine", "rectangular"):
        return (n - 1) / 2.0
    w2 = spec.window_values ** 2  # custom: centre of the window's energy
    return float(np.arange(n) @ w2 / w2.sum())


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
    one-sided at the ends)."""
    s = _log_mag(mag)
    k_t, k_f, adv = _gradient_consts(spec, gamma)
    tgrad = k_t * _freq_diff(s, spec.n_fft) + adv
    ds = np.zeros_like(s)
    n = s.shape[-2]
    if n >= 3:
        ds[..., 1:-1, :] = (s[..., 2:, :] - s[..., :-2, :]) / 2
    if n >= 2:
        ds[..., 0, :] = s[..., 1, :] - s[..., 0, :]
        ds[..., -1, :] = s[..., -1, :] - s[..., -2, :]
    return tgrad, -k_f * ds
