"""What the probe found: :class:`Finding` (one parameter), :class:`Candidate`
(one scored STFT hypothesis) and :class:`ProbeResult` (all of them).

:meth:`ProbeResult.parameters` is the one mapping from findings to the
parameters the inverse takes, by the names :class:`~stream.spec.STFTSpec`,
:class:`~stream.decode.Encoding` and the file readers use;
:meth:`~ProbeResult.to_spec`, :meth:`~ProbeResult.to_encoding`, the printed
command line and ``reconstruct --auto`` are all made from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..decode import Encoding
from ..spec import SpecError, STFTSpec

__all__ = ["Finding", "Candidate", "ProbeResult"]

#: Where the frames are and how to read them (file names, npz keys, raw layout).
SOURCE_PARAMETERS = ("mag", "phase", "mag_key", "phase_key", "layout", "dtype", "bins")
#: :class:`STFTSpec` fields a finding gives.
SPEC_PARAMETERS = ("n_fft", "hop_length", "win_length", "window", "center", "window_align",
                   "first_frame", "first_sample", "scaling", "gain", "phase_origin",
                   "sample_rate")
#: :class:`Encoding` fields a finding gives.
ENCODING_PARAMETERS = ("magnitude", "db_ref", "phase_unit", "eps", "nyquist")


@dataclass
class Finding:
    """One inferred parameter: its value, the evidence, a confidence in [0, 1]
    (0: cannot tell; the evidence then says what would settle it)."""

    value: object
    evidence: str
    confidence: float

    @property
    def label(self) -> str:
        c = self.confidence
        return ("given" if c > 1 else "certain" if c >= 0.95 else "likely" if c >= 0.7
                else "guess" if c > 0 else "cannot tell")


@dataclass(eq=False)
class Candidate:
    """One STFT hypothesis and its scores (both relative, 0 = consistent)."""

    hop: int
    window: str
    phase_origin: str
    magnitude: str
    pair_score: float
    consistency: float | None = None
    n_fft: int = 0
    win_length: int = 0
    align: str = "center"

    @property
    def relative(self) -> float:
        """Consistency over what random frames would score at this hop,
        ``sqrt(1 - hop/n_fft)``: the fewer samples frames share, the closer
        to consistent any frames are, and the less a low score proves."""
        if self.consistency is None:
            return np.inf
        base = math.sqrt(max(1 - self.hop / max(self.n_fft, 1), 1e-12))
        return self.consistency / base


@dataclass
class ProbeResult:
    """What :func:`~stream.probe.probe` found.  ``findings`` maps a parameter
    name to a :class:`Finding`; ``problems`` lists what could not be told and
    what would settle it; ``candidates`` the scored hypotheses (best first)."""

    findings: dict = field(default_factory=dict)
    candidates: list = field(default_factory=list)
    curves: dict = field(default_factory=dict)       # label -> (hops, pair scores)
    problems: list = field(default_factory=list)
    preview_db: np.ndarray | None = None              # frames x bins, for plots
    seconds: float = 0.0
    arrays: tuple = (None, None)                      # (first, phase) as read, for copies
    #: why the absolute level cannot be known from the files (None when it can):
    #: the output then needs ``--normalize``
    level_lost: str | None = None
    #: for mel bands: the ``reconstruct`` flags they need (``mel``, and
    #: ``n_mels``/``mel_unit`` where the file differs from the recipe); else empty
    mel_flags: dict = field(default_factory=dict)

    def mel_arguments(self) -> list[str]:
        """:attr:`mel_flags` as command-line words (``['--mel', 'whisper',
        '--n-mels', '128']``; ``PRESET`` where no recipe was named)."""
        words = []
        for attr, value in self.mel_flags.items():
            words += ["--" + attr.replace("_", "-"), "PRESET" if value is None else str(value)]
        return words

    @property
    def needs_copy(self) -> str | None:
        """Why ``reconstruct`` cannot read the files as they are (None when it can):
        a two-sided spectrum, or complex values made of real/imag parts."""
        first = self.arrays[0]
        if first is not None and first.derived:
            return first.derived
        if self.value("onesided") is False:
            return "two-sided spectrum"
        return None

    def value(self, name, default=None):
        f = self.findings.get(name)
        return default if f is None else f.value

    def confidence(self, name) -> float:
        f = self.findings.get(name)
        return 0.0 if f is None else f.confidence

    #: Parameters the inverse cannot do without.
    ESSENTIAL = ("layout", "n_fft", "hop_length", "window", "magnitude", "phase_unit")

    #: ... and those of mel bands (the recipe gives the rest).
    ESSENTIAL_MEL = ("layout", "n_fft", "hop_length", "window", "mel")

    @property
    def _essential(self) -> list[str]:
        """The essential parameters of this input (a phase unit only with a phase)."""
        if self.mel_flags:
            return list(self.ESSENTIAL_MEL)
        return [n for n in self.ESSENTIAL
                if not (n == "phase_unit" and self.value("input") != "magnitude+phase")]

    @property
    def ok(self) -> bool:
        """True when every essential parameter was inferred (or given)."""
        return all(self.confidence(n) > 0 for n in self._essential)

    @property
    def overall(self) -> float:
        """Overall confidence: the weakest essential finding (given ones count as 1)."""
        return min(min(self.confidence(n), 1.0) for n in self._essential)

    # ------------------------------------------------------- parameters
    def parameters(self) -> dict:
        """The parameters the findings give, by the names the library uses.

        ``mag``/``phase`` (files; ``phase`` only when it is another file),
        ``mag_key``/``phase_key``, ``layout``, ``dtype``/``bins`` (raw files),
        the :class:`STFTSpec` fields (``n_fft``, ``hop_length``, ``win_length``,
        ``window``, ``center``, ``window_align``, ``first_frame``, ``scaling``,
        ``phase_origin``; ``sample_rate`` in Hz when given or stored in the
        file, never the assumed default), the :class:`Encoding` fields
        (``magnitude``, ``db_ref``, ``phase_unit``) and ``length`` in samples
        when the file stores it.  What was not found is left out.
        """
        v = self.value
        out = {"mag": v("mag_file"),
               "phase": v("phase_file") if v("phase_file") != v("mag_file") else None}
        for name in SOURCE_PARAMETERS[2:] + SPEC_PARAMETERS + ENCODING_PARAMETERS:
            out[name] = v(name)
        if self.confidence("sample_rate") == 0:     # assumed, not found
            out["sample_rate"] = None
        out["length"] = (v("stored") or {}).get("length")
        return {k: x for k, x in out.items() if x is not None}

    def to_spec(self, sample_rate: float | None = None, **known) -> STFTSpec:
        """The :class:`STFTSpec` the frames were made with.

        Parameters
        ----------
        sample_rate : float, optional
            In Hz; default the one given to the probe or stored in the file,
            else STFTSpec's default (a spectrogram does not store its rate).
        known : STFTSpec fields the caller knows (``channels``, ...); they win.

        Raises :class:`~stream.errors.ParameterError` when an essential
        parameter could not be told (:attr:`ok` is False).  A two-sided
        spectrum's spec is that of its one-sided half (bins 0..n_fft/2).
        """
        self._require_ok()
        p = self.parameters()
        fields = {k: p[k] for k in SPEC_PARAMETERS if k in p}
        if sample_rate is not None:
            fields["sample_rate"] = sample_rate
        return STFTSpec(**{**fields, **known})

    def to_encoding(self, **known) -> Encoding:
        """The :class:`Encoding` of the stored values (``known`` fields win)."""
        self._require_ok()
        p = self.parameters()
        return Encoding(**{**{k: p[k] for k in ENCODING_PARAMETERS if k in p}, **known})

    def _require_ok(self):
        if not self.ok:
            missing = [n for n in self._essential if self.confidence(n) == 0]
            raise SpecError(f"the probe could not tell {', '.join(missing)}: "
                            + "; ".join(self.problems or ["see 'specstream probe'"]))

    # ------------------------------------------------------------- json
    def as_dict(self) -> dict:
        """A JSON-ready dict: the values, plus evidence and confidence per parameter."""
        keys = ("layout", "n_fft", "onesided", "hop_length", "win_length", "window",
                "center", "magnitude", "db_ref", "phase_unit", "scaling")
        out = {k: _jsonable(self.value(k)) for k in keys}
        best = self.candidates[0].consistency if self.candidates else None
        out["consistency"] = None if best is None else float(best)
        out["confidence"] = round(self.overall, 3)
        for k in ("phase_origin", "window_align", "first_frame", "first_sample", "phase_range",
                  "top_db", "nyquist", "eps",
                  "sample_rate", "stored",
                  "input", "mag_file", "mag_key", "phase_file", "phase_key", "phase_layout",
                  "dtype",
                  "bins", "raw_shape"):
            if k in self.findings:
                out[k] = _jsonable(self.value(k))
        out["ok"] = self.ok
        out["evidence"] = {k: {"value": _jsonable(f.value),
                               "confidence": round(min(f.confidence, 1), 3),
                               "label": f.label, "evidence": f.evidence}
                           for k, f in self.findings.items()}
        out["candidates"] = [dict(hop_length=c.hop, window=c.window, phase_origin=c.phase_origin,
                                  magnitude=c.magnitude, pair_score=_round(c.pair_score),
                                  consistency=_round(c.consistency))
                             for c in self.candidates[:12]]
        out["level_lost"] = self.level_lost
        out["problems"] = list(self.problems)
        out["seconds"] = round(self.seconds, 3)
        return out


def _round(v):
    return None if v is None or not np.isfinite(v) else float(f"{v:.4g}")


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, Path):
        return str(v)
    return v
