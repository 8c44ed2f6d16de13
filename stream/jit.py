"""The hot loops compiled with numba, when it is there (``pip install specstream[fast]``).

The loops are written as plain Python (they run as such without numba, or
with ``SPECSTREAM_NO_NUMBA=1``, about 50x slower); :func:`compiler` gives the
decorator that compiles them (cached on disk: seconds once per installation,
under a second to load afterwards).  Importing this module imports no numba.
"""

from __future__ import annotations

import os
import warnings

__all__ = ["compiler"]

_warned = False


def compiler(inline: bool = False):
    """``numba.njit(cache=True, nogil=True)``, or None when numba is not to be used
    (a RuntimeWarning says so, once per process).  ``inline``: the compiled
    function is inlined into its compiled callers (numba's ``inline='always'``),
    for the small helpers of a hot loop, where a call costs more than the work."""
    global _warned
    try:
        if os.environ.get("SPECSTREAM_NO_NUMBA"):
            raise ImportError("SPECSTREAM_NO_NUMBA is set")
        import numba
    except ImportError as e:
        if not _warned:
            _warned = True
            warnings.warn(f"no numba ({e}): phase and mel reconstruction run as plain Python, "
                          "about 50x slower, near real time at best "
                          "(pip install specstream[fast])", RuntimeWarning, stacklevel=3)
        return None
    if inline:
        return numba.njit(cache=True, nogil=True, inline="always")
    return numba.njit(cache=True, nogil=True)
