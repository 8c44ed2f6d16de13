"""Forensics: infer how a spectrogram was made from the files alone.

:func:`probe` looks at one or two files (or the arrays of an ``.npz``) and
says, for every parameter the inverse needs, what it is, why, and how sure it
is.  Each stage has its module:

* :mod:`.arrays` -- reading the files (whatever :mod:`stream.files` reads),
  pairing two of them (the same shape, or one saved transposed), and the
  scalars an ``.npz`` stores (``sr``, ``hop_length``...: the sample rate and
  length are taken, the rest is checked against the frames).
* :mod:`.raw` -- a raw binary file has no header: the element type is the one
  whose values are plausible numbers, the row length the one whose rows look
  alike.
* :mod:`.roles` -- which array is the magnitude, the phase, the complex bins,
  or the real and imaginary parts, and their npz keys.
* :mod:`.orientation` -- the frequency axis (the one whose first bin is real),
  one- or two-sided (Hermitian symmetry), n_fft (the Nyquist bin tells even
  from odd).
* :mod:`.units` -- magnitude (linear, power, dB, log) and phase (rad, deg,
  cycles) units from the values; decoding through :mod:`stream.decode`.
* :mod:`.framing` -- hop, window, window length and phase origin: a coarse
  pair scan for every hop at once, then :func:`consistency`,
  ``||X - STFT(ISTFT(X))|| / ||X||``, for the best candidates.
* :mod:`.mel` -- a magnitude-only array of mel bands: the recipe its band
  count and value floor fit, and what must be asked.
* :mod:`.edges` -- centre padding, the frame count against a known length,
  and the amplitude scaling from the level (a guess, said to be one).
* :mod:`.result` -- :class:`ProbeResult`, :class:`Finding`,
  :class:`Candidate`; :meth:`ProbeResult.to_spec` and
  :meth:`ProbeResult.to_encoding` turn the findings into an
  :class:`~stream.spec.STFTSpec` and an :class:`~stream.decode.Encoding`.

Nothing is claimed that the evidence does not support: a parameter that
cannot be told has confidence 0 and a note of what would settle it.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import SpecstreamError
from ..files import other_layout, sparse_reads
from ..spec import SpecError
from . import edges, framing
from .arrays import check_pairable, check_stored, read_file, stored_scalars
from .framing import WINDOW_CANDIDATES, consistency
from .mel import mel_findings
from .orientation import HEAD_FRAMES, orient
from .raw import raw_hints, record_raw, share_row_length
from .result import Candidate, Finding, ProbeResult
from .roles import assign_roles, record_files, record_phase_layout
from .units import log_floor, magnitude_candidates, phase_unit, preview

__all__ = ["Finding", "Candidate", "ProbeResult", "probe", "consistency", "WINDOW_CANDIDATES"]


class _Progress:
    """A progress bar that appears only once the probe has run for a second."""

    def __init__(self, factory, total: int):
        self.factory, self.total, self.bar, self.done = factory, total, None, 0
        self.t0 = time.perf_counter()

    def step(self, n=1):
        self.done += n
        if self.factory and self.bar is None and time.perf_counter() - self.t0 > 1.0:
            self.bar = self.factory(self.total, "probe", unit="step")
            self.bar.update(self.done - n)
        if self.bar is not None:
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def probe(mag_path, phase_path=None, *, known: dict | None = None, progress=None) -> ProbeResult:
    """Infer how a spectrogram was made.

    Parameters
    ----------
    mag_path, phase_path : path
        The files, in any order (roles are inferred); ``phase_path`` may be
        None for a complex array, an ``.npz`` holding both, or magnitude only.
    known : dict
        Parameters the caller knows (``n_fft``, ``hop_length``, ``window``,
        ``center``, ``layout``, ``magnitude``, ``phase_unit``, ``scaling``,
        ``phase_origin``, ``length`` in samples, ``sample_rate`` in Hz,
        ``dtype``, ``bins``, ``mag_key``, ``phase_key``): they constrain the search.
    progress : callable, optional
        ``progress(total, desc, unit=...)`` returning a bar with ``update``/``close``
        (a tqdm bar, say); used only when the probe takes over a second.
    """
    known = {k: v for k, v in (known or {}).items() if v is not None}
    t0 = time.perf_counter()
    res = ProbeResult()
    bar = _Progress(progress, 8)
    try:
        _run(mag_path, phase_path, known, res, bar)
        if _layout_open(res, known):
            res = _settle_layout(mag_path, phase_path, known, res, bar)
        if _nyquist_open(res, known):
            res = _settle_nyquist(mag_path, phase_path, known, res, bar)
    finally:
        bar.close()
        for a in res.arrays:
            if a is not None:
                sparse_reads(a.data, on=False)
    res.seconds = time.perf_counter() - t0
    return res


def _layout_open(res: ProbeResult, known) -> bool:
    """Both axes looked like frequency (e.g. torch's reflect-padded first
    frame is real too) and there is a phase to test them with."""
    # The other reading must be an audio STFT too: n_fft at most 16384.
    return ("layout" not in known and res.confidence("layout") < 0.5
            and res.value("input") != "magnitude" and 3 <= res.value("n_frames", 0) <= 8193)


def _nyquist_open(res: ProbeResult, known) -> bool:
    """An odd n_fft was inferred from a last bin that is not real: it may be
    an even n_fft whose Nyquist bin was not stored (Octave's specgram)."""
    n = res.value("n_fft")
    return ("n_fft" not in known and "nyquist" not in known and isinstance(n, int) and n % 2
            and res.value("onesided") is not False and res.confidence("hop_length") < 0.95)


def _settle_nyquist(mag_path, phase_path, known, res: ProbeResult, bar) -> ProbeResult:
    """Run the search with n_fft = 2 * bins and the Nyquist bin set to zero;
    keep it when the frames are more consistent so."""
    bins = (res.value("n_fft") + 1) // 2
    alt = ProbeResult()
    try:
        _run(mag_path, phase_path, {**known, "n_fft": 2 * bins, "nyquist": "zero",
                                    "layout": res.value("layout")}, alt, bar)
    except SpecstreamError:
        return res
    score = lambda r: r.candidates[0].relative if r.candidates else np.inf   # noqa: E731
    if not score(alt) < score(res) / 2:
        return res
    c = alt.candidates[0].consistency
    conf = min(alt.confidence("hop_length"), 0.9)
    alt.findings["n_fft"] = Finding(2 * bins, f"{bins} bins whose last is not real, and with "
                                    f"a zero Nyquist bin after them the frames are consistent "
                                    f"({c:.2g}; as odd n_fft {2 * bins - 1}: "
                                    f"{res.candidates[0].consistency:.2g})", conf)
    alt.findings["nyquist"] = Finding("zero", f"bins 0..{bins - 1} stored, the Nyquist bin "
                                      "missing (Octave's specgram); set to zero", conf)
    alt.findings["layout"] = res.findings["layout"]
    return alt


def _settle_layout(mag_path, phase_path, known, res: ProbeResult, bar) -> ProbeResult:
    """Run the search with the other axis as frequency; keep the consistent one."""
    other = other_layout(res.value("layout"))
    alt = ProbeResult()
    try:
        _run(mag_path, phase_path, {**known, "layout": other}, alt, bar)
    except SpecstreamError:
        return res
    score = lambda r: r.candidates[0].relative if r.candidates else np.inf   # noqa: E731
    win, lose = (alt, res) if score(alt) < score(res) else (res, alt)
    if not np.isfinite(score(win)):
        return res
    f = win.findings["layout"]
    win.findings["layout"] = Finding(
        f.value, f"both axes could be frequency; only with {f.value} are the frames consistent "
        f"({win.candidates[0].consistency:.2g} against {score(lose) * 1:.2g} relative)",
        min(win.confidence("hop_length"), 0.9))
    win.problems = [p for p in win.problems if "frequency axis" not in p]
    return win


def _run(mag_path, phase_path, known, res: ProbeResult, bar: _Progress):
    """Every stage once, in order, with the layout as ``known`` says or as found."""
    # arrays, raw files, roles
    arrays = read_file(mag_path, raw_hints(known), allow_complex=phase_path is None)
    if phase_path is not None:
        arrays += read_file(phase_path, raw_hints(known), allow_complex=False)
    arrays = share_row_length(arrays)
    sparse_reads(*(a.data for a in arrays))     # a few frames of each: no read-around
    if phase_path is not None:
        check_pairable(arrays, mag_path, phase_path)
    known = stored_scalars(arrays, known, res)
    first, ph = assign_roles(arrays, known, res)
    res.arrays = (first, ph)
    record_files(first, ph, res)
    bar.step()
    if ph is not None and ph.data.shape != first.data.shape:
        raise SpecError(f"magnitude {first.data.shape} and phase {ph.data.shape} differ in shape")
    # phase unit, orientation
    unit = phase_unit(None if ph is None else ph.data, known, res)
    fb, pb, n_fft = orient(first.data, None if ph is None else ph.data, unit, known, res)
    record_phase_layout(first, ph, res)
    record_raw(first, res)
    n_frames = fb.shape[0]
    res.findings["n_frames"] = Finding(n_frames, "frames in the file", 1.0)
    # Units and framing from the first frames of a long file (flat memory);
    # the edges read the first and the last frames themselves.
    fh = fb[:HEAD_FRAMES]
    ph_h = None if pb is None else pb[:HEAD_FRAMES]
    # magnitude units
    mags = ["complex"] if np.iscomplexobj(fb) else magnitude_candidates(fh, known, res)
    if mags == ["complex"]:
        res.findings["magnitude"] = Finding("linear", "complex values carry their magnitude", 1.0)
    res.preview_db = preview(fh, mags[0], n_fft)
    bar.step()
    if ph is None and not np.iscomplexobj(fb):
        framing.magnitude_only(res, known, mags, n_fft)
        mel_findings(fb, known, res)
        return
    # framing, then edges, length and level with the best candidate
    cands = framing.search(fh, ph_h, n_fft, mags, unit, known, res, bar)
    sparse_reads(fb, pb, on=False)             # the first frames were read: drop their pages
    spec = framing.conclude(cands, n_fft, known, res)
    log_floor(fh, res)
    if spec is not None:
        mag = cands[0].magnitude
        edges.centre(fb, pb, spec, mag, unit, known, res)
        edges.check_length(known, n_frames, res)
        check_stored(res)
        edges.guess_scaling(fh, ph_h, spec, mag, unit, known, res)
    bar.step()
