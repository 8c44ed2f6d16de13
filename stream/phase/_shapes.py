"""Shapes and seeds shared by the phase methods."""

from __future__ import annotations

import numpy as np

from ..engine import as_block
from ..spec import SpecError, STFTSpec
from .gradients import centre_shift


def _as_block(x, spec: STFTSpec, what: str, dtype=np.float64) -> np.ndarray:
    """One frame or a block -> (channels, n, bins), as the engine takes frames."""
    return as_block(x, spec, what, dtype)


def _unblock(a: np.ndarray, spec: STFTSpec) -> np.ndarray:
    return a[0] if spec.channels == 1 else a


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _known(mag3, phase, known, spec):
    """(mask int8, phase in window-centre convention) for the hybrid mode."""
    if phase is None:
        if known is not None:
            raise SpecError("a 'known' mask needs the 'phase' it refers to")
        return None, None
    ph = _as_block(phase, spec, "phase")
    if ph.shape != mag3.shape:
        raise SpecError(f"phase shape {np.shape(phase)} and magnitude shape differ")
    kn = np.isfinite(ph)
    if known is not None:
        kn &= np.broadcast_to(_as_block(known, spec, "known", bool), ph.shape)
    phc = np.where(kn, ph - centre_shift(spec), 0.0)
    return kn.astype(np.int8), phc
