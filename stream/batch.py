"""The block path's FFTW batches: plans, buffers and the views that read them.  No I/O.

:class:`Batch` holds the c2r plans for a block of ``t`` frames and the buffer
their output goes to; :class:`stream.engine.Reconstructor` does the
arithmetic on it.
"""

from __future__ import annotations

import numpy as np

from . import fft

__all__ = ["Batch", "FFT_ROWS"]

#: Frames per FFTW plan: 64 frames of 1024 samples keep a plan's input and
#: output in a 2 MB L2 cache; the copy and transform cost ~20% less per frame
#: than in plans of 256.
FFT_ROWS = 64


class Batch:
    """The FFTW plans for a block of ``t`` frames and the buffer they write.

    The c2r output of the block's frames is rows ``before .. before + t`` of
    ``buf`` ``(channels, t + 2*before, n_fft)``: the overlap-add reads the
    ``before`` frames that precede the block in the rows before them (the
    previous block's, or transformed here by :meth:`transform_before`) and
    zeros in the rows after.  ``parts``: ``(first, end, execute)`` of each plan
    of at most ``rows`` frames.  ``views`` and ``num`` are the
    overlap-add's (its strided views of ``buf``, its numerators).
    """

    def __init__(self, n_fft: int, shape: tuple, dtype, threads: int, planning: str,
                 before: int = 0, rows: int = FFT_ROWS):
        c, t, _ = shape
        real = np.dtype(dtype)
        self.t, self.before, self.threads = t, before, threads
        self.inp = fft.empty_aligned(shape, np.result_type(real, np.complex64))
        self.buf = fft.empty_aligned((c, t + 2 * before, n_fft), real, zero=True)
        self.out = self.buf[:, before:before + t]
        self.parts = []
        for i in range(0, t, rows):
            j = min(i + rows, t)
            plan = fft.irfft_plan((c, j - i), n_fft, real, threads, planning,
                                  input_array=self.inp[:, i:j], output_array=self.out[:, i:j])
            self.parts.append((i, j, plan.execute))
        self._before_plan = None
        self.views = self.num = None

    @classmethod
    def of_plan(cls, plan) -> "Batch":
        """One frame through ``plan`` (its arrays ``(channels, ...)``)."""
        self = cls.__new__(cls)
        self.t, self.before = 1, 0
        self.inp = plan.input_array[:, None, :]
        self.buf = self.out = plan.output_array[:, None, :]
        self.parts = [(0, 1, plan.execute)]
        self._before_plan = None
        self.views = self.num = None
        return self

    def transform(self, x, factor):
        """``x`` (``(channels, t, bins)``, times ``factor`` per bin; None: 1)
        through FFTW into ``out``, one plan's part at a time (the part just
        copied is still in the cache when it is transformed)."""
        for i, j, execute in self.parts:
            if factor is None:
                self.inp[:, i:j] = x[:, i:j]
            else:
                np.multiply(x[:, i:j], factor, out=self.inp[:, i:j])
            execute()

    def transform_before(self, x, factor):
        """The ``before`` frames ``x`` that precede the block, into the rows
        before its own (planned by estimate the first time: a few frames)."""
        if self._before_plan is None:
            c, _, n = self.buf.shape
            self._before_plan = fft.irfft_plan((c, self.before), n, self.buf.dtype, self.threads,
                                               "estimate",
                                               output_array=self.buf[:, :self.before])
        plan = self._before_plan
        if factor is None:
            plan.input_array[...] = x
        else:
            np.multiply(x, factor, out=plan.input_array)
        plan.execute()
