"""How good a rebuilt phase is: spectral convergence, streamed."""

from __future__ import annotations

import math

import numpy as np

from ..engine import Analyzer, Reconstructor, as_block
from ..spec import STFTSpec
from ._shapes import _as_block

__all__ = ["ConvergenceMeter", "longest_length", "spectral_convergence"]


class ConvergenceMeter:
    """Spectral convergence of audio against target magnitudes, as both stream.

    ``add_target(mag)``: linear magnitudes (frames on axis -2, in order);
    ``add_audio(y)``: the samples, ``(n,)`` or ``(channels, n)``, in order.
    :meth:`result` (after the last audio) is
    ``20 log10(|| |STFT(y)| - M ||_F / ||M||_F)`` in dB, lower is better;
    target frames the audio does not reach count as all error.  Memory stays
    flat: frames are compared as soon as both sides have them.
    """

    def __init__(self, spec: STFTSpec):
        self.spec = spec
        self._analyzer = Analyzer(spec)
        self._num = self._den = 0.0
        self._targets, self._spectra = [], []
        self._ended = False

    def add_target(self, mag):
        self._targets.append(np.abs(_as_block(mag, self.spec, "magnitude")))
        self._compare()

    def add_audio(self, y):
        self._add_spectra(self._analyzer.push(y))

    def result(self) -> float:
        if not self._ended:
            self._ended = True
            self._add_spectra(self._analyzer.flush())
        q = sum(float(np.sum(t ** 2)) for t in self._targets)
        num, den = self._num + q, self._den + q
        if den <= 0:
            return float("nan") if num <= 0 else float("inf")
        return 10.0 * math.log10(max(num, 1e-300) / den)

    def _add_spectra(self, s):
        self._spectra.append(np.abs(as_block(s, self.spec)).astype(np.float64))
        self._compare()

    def _compare(self):
        have = [sum(a.shape[1] for a in side) for side in (self._targets, self._spectra)]
        k = min(have)
        if not k:
            return
        m = np.concatenate(self._targets, axis=1)
        s = np.concatenate(self._spectra, axis=1)
        self._num += float(np.sum((s[:, :k] - m[:, :k]) ** 2))
        self._den += float(np.sum(m[:, :k] ** 2))
        self._targets, self._spectra = [m[:, k:]], [s[:, k:]]


def longest_length(spec: STFTSpec, n_frames: int) -> int:
    """The longest signal whose analysis gives ``n_frames`` frames
    (:meth:`STFTSpec.max_samples_for`): Griffin-Lim and
    :func:`spectral_convergence` keep every sample the frames can describe."""
    return spec.max_samples_for(n_frames)


def spectral_convergence(mag, x_or_frames, spec: STFTSpec, length: int | None = None) -> float:
    """``20 log10(|| |STFT(x)| - M ||_F / ||M||_F)`` in dB (lower is better).

    ``mag``: target linear magnitudes ``(n_frames, bins)`` (or with channels
    first).  ``x_or_frames``: real samples ``(n,)`` / ``(channels, n)``, or
    complex frames -- inverted with the least-squares ISTFT first (to
    ``length`` samples, default :func:`longest_length`), so that the measure
    is that of the audio they make.  Computed block by block:
    memory stays flat for memory-mapped inputs.
    """
    m = np.asarray(mag)
    meter = ConvergenceMeter(spec)
    for i in range(0, m.shape[-2], 1024):
        meter.add_target(m[..., i:i + 1024, :])
    y = np.asarray(x_or_frames)
    if np.iscomplexobj(y):
        rec = Reconstructor(spec, length=longest_length(spec, m.shape[-2]) if length is None
                            else length)
        for i in range(0, y.shape[-2], 1024):
            meter.add_audio(rec.push(y[..., i:i + 1024, :]))
        meter.add_audio(rec.flush())
    else:
        for i in range(0, y.shape[-1], 1 << 18):
            meter.add_audio(y[..., i:i + (1 << 18)])
    return meter.result()
