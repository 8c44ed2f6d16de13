"""Phase from magnitude: streaming RTPGHI, offline PGHI and fast Griffin-Lim.

Written from the papers' formulas (Prusa & Sondergaard, "Real-Time Spectrogram
Inversion Using Phase Gradient Heap Integration", DAFx-16; Prusa, Balazs &
Sondergaard, "A Noniterative Method for Reconstruction of Phase from STFT
Magnitude", IEEE/ACM TASLP 25(5), 2017; Perraudin, Balazs & Sondergaard, "A
fast Griffin-Lim algorithm", WASPAA 2013).  No code of the reference
implementations is used.

Phase-gradient relations
------------------------
For a Gaussian window ``exp(-pi l**2 / gamma)`` (``l`` in samples) and the STFT
whose phase refers to the window's centre, with ``s = ln|X|``, hop ``a``,
``M = n_fft`` and bin ``m``::

    dphi/dn (m, n) =  (a M / gamma) * ds/dm + 2 pi a m / M     (radians per frame)
    dphi/dm (m, n) = -(gamma / (a M)) * ds/dn                   (radians per bin)

with the derivatives of ``s`` taken as differences: centred in frequency,
centred in time with one frame of lookahead, or the second-order backward
difference ``(3 s[n] - 4 s[n-1] + s[n-2]) / 2`` without lookahead.  Other
windows use ``gamma = C * win_length**2`` (:data:`GAMMA_CONSTANTS`); a
custom window that is a sampled Gaussian (any centre, any truncation) is
recognised from its values, gamma exact; for any other ``gamma`` is
estimated by a least-squares fit of a unit-height Gaussian to the
peak-normalised window (that fit reproduces the published constants to
0.2 %; :func:`window_gamma` says which it did).

The phase is then integrated from the strongest coefficient outwards (a
queue in magnitude order, to 0.012 dB; trapezoidal rule to each neighbour); coefficients below ``tol`` times
the maximum get a random phase; each new island starts at phase 0; where some
phases are known (``known`` masks), integration starts from them.

Phase convention
----------------
The relations hold for the phase referenced to the window centre ``c`` (a
sample position inside the frame, fractional for odd lengths of DFT-even
windows).  A spec frame referenced to sample ``r`` of the frame
(``spec.phase_reference``: 0 for 'frame-start') is::

    X_spec[m] = X_centre[m] * exp(-2j pi m (c - r) / n_fft)

which is ``(-1)**m`` for 'frame-start' when ``c = n_fft / 2`` -- also for odd
``n_fft`` with a DFT-even window, whose centre is the half-integer
``n_fft / 2``, not ``n_fft // 2``.  :func:`centre_shift` returns the factor;
every function here takes and returns frames in the spec's convention.

Speed
-----
The integration is compiled with numba (``pip install specstream[fast]``)
on first use -- the first :class:`RTPGHI` or :func:`pghi` call, never at a
live stream's first frame -- and cached on disk (``cache=True``): a few
seconds once per installation, about 0.5 s to load afterwards.  Importing
this module does not import numba.  Without numba (or with
``SPECSTREAM_NO_NUMBA=1``) the same code runs as plain Python, about 50x
slower.  RTPGHI integrates a frame in a few linear passes (the widest
path to each bin from its left, its right and the previous frame: the
heap's phases without a heap), at 48 kHz, n_fft 1024, hop 256 about 28 us
per frame of 5.3 ms, 190x real time on one core, frame by frame
(``tools/bench_phase.py``).  Whole-file PGHI ranks the magnitudes in levels
of 1/512 octave (a bucket queue, O(1) a coefficient) instead of a heap:
400 x 201 coefficients in 2-3 ms.  Griffin-Lim runs on a whole-array STFT
pair made once per file.

Memory: :class:`RTPGHI` keeps a few frames, :class:`BlockPhase` (the
offline methods of :func:`phase_stage`, block by block) a block.  :func:`pghi`,
:func:`fgla` and :func:`reconstruct_phase` hold the whole magnitude and its
complex frames in RAM (plus the signal, for Griffin-Lim).
"""

from .gradients import GAMMA_CONSTANTS, centre_shift, phase_gradients, window_centre, window_gamma
from .kernels import kernels as _kernels  # noqa: F401  (the compile switch, for tests)
from .blocks import BlockPhase, phase_stage
from .offline import METHODS, WholeFilePhase, fgla, pghi, reconstruct_phase
from .quality import ConvergenceMeter, longest_length, spectral_convergence
from .rtpghi import RTPGHI

__all__ = [
    "GAMMA_CONSTANTS", "METHODS", "RTPGHI", "window_gamma", "window_centre",
    "centre_shift", "phase_gradients", "pghi", "fgla", "reconstruct_phase", "longest_length",
    "spectral_convergence", "ConvergenceMeter", "WholeFilePhase", "BlockPhase", "phase_stage",
]
