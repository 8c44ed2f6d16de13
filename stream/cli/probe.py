"""``specstream probe`` and ``reconstruct --auto``: the probe on the command line.

``register(sub)`` adds the ``probe`` subcommand (a readable report, ``--json``,
``--plot``); :func:`apply_probe` fills the ``reconstruct`` flags the user left
unset from the probe's answer.  Explicit flags always win.  Both the printed
command line and ``--auto`` come from :func:`reconstruct_flags`, the probe's
parameters in ``reconstruct``'s terms: what one does, the other says.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shlex
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING

import numpy as np

from ..decode import Encoding
from ..spec import SpecError, STFTSpec
from .common import UsageError

if TYPE_CHECKING:
    from ..probe import ProbeResult

log = logging.getLogger("specstream")

#: reconstruct's flag for each argument the probe fills, in the order the
#: printed command line gives them (``center`` is --center/--no-center).
_FLAGS = (("mag_key", "--mag-key"), ("phase_key", "--phase-key"), ("dtype", "--dtype"),
          ("bins", "--bins"), ("layout", "--layout"), ("n_fft", "--n-fft"),
          ("hop_length", "--hop-length"), ("win_length", "--win-length"),
          ("window", "--window"), ("window_align", "--window-align"), ("center", "--center"),
          ("first_sample", "--first-sample"),
          ("no_nyquist", "--no-nyquist"), ("preset", "--preset"), ("gain", "--gain"),
          ("phase_origin", "--phase-origin"), ("magnitude", "--magnitude"),
          ("db_ref", "--db-ref"), ("eps", "--eps"), ("phase_unit", "--phase-unit"),
          ("scaling", "--scaling"),
          ("sample_rate", "--sample-rate"), ("length", "--length"),
          ("normalize", "--normalize"))
#: flags the printed command leaves out at these values (the library's defaults)...
_DEFAULTS = {"phase_origin": STFTSpec.phase_origin, "scaling": STFTSpec.scaling,
             "magnitude": Encoding.magnitude, "db_ref": Encoding.db_ref,
             "phase_unit": Encoding.phase_unit, "first_sample": STFTSpec.first_sample,
             "gain": STFTSpec.gain, "eps": Encoding.eps}
#: ...except these when a preset is given: it has defaults of its own for them.
_PRESET_DEFAULTS = ("phase_origin", "scaling")
#: flags whose value the probe may use as known.
_KNOWN = ("layout", "n_fft", "hop_length", "win_length", "window", "center", "magnitude",
          "db_ref", "phase_unit", "scaling", "phase_origin", "dtype", "bins", "mag_key",
          "phase_key", "sample_rate", "length", "first_sample", "gain", "eps")


def register(sub):
    """Add ``specstream probe MAG [PHASE] [--json] [--plot OUT.png]``."""
    from .common import add_file_args, add_stft_args
    p = sub.add_parser(
        "probe", help="infer how a spectrogram was made (n_fft, hop, window, units...)",
        description="Infer the STFT parameters of spectrogram/phase files from their "
                    "contents, with the evidence and a confidence for each, and print the "
                    "'specstream reconstruct' command that follows.  Flags given here are "
                    "taken as known and constrain the search.")
    add_file_args(p)
    add_stft_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    p.add_argument("--plot", metavar="OUT.png", help="write the spectrogram (dB) and the score "
                   "of each hop/window to a PNG (needs pip install 'specstream[plot]')")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_probe)
    return p


def known_from_args(args) -> dict:
    """The flags the user gave, as the probe's ``known`` dict."""
    known = {k: getattr(args, k, None) for k in _KNOWN}
    if known["window"] is not None:
        from ..files import parse_window
        if not isinstance(parse_window(known["window"]), str):
            raise UsageError("the probe tries windows by name; with window values "
                             f"(--window {known['window']}) give --hop-length as well")
    if known["window"] is not None and getattr(args, "symmetric", None) is not None:
        from ..spec import parse_window_name
        known["window"] = parse_window_name(known["window"], args.symmetric).text
    if getattr(args, "no_nyquist", None):
        known["nyquist"] = args.no_nyquist
    if getattr(args, "preset", None):
        from ..spec import preset
        s = preset(args.preset, **({"n_fft": args.n_fft} if args.n_fft else {}))
        known.setdefault("scaling", None)
        known["scaling"] = known["scaling"] or s.scaling
        known["phase_origin"] = known["phase_origin"] or s.phase_origin
    return {k: v for k, v in known.items() if v is not None}


def _run(args) -> ProbeResult:
    from .common import progress
    quiet = getattr(args, "quiet", False)
    from ..probe import probe
    return probe(args.mag, args.phase, known=known_from_args(args),
                 progress=None if quiet else progress)


def run_probe(args) -> int:
    if args.plot:       # before the work: a missing extra is one line, not a traceback after it
        from ..extras import require
        require("matplotlib", "probe --plot")
    res = _run(args)
    if args.plot:
        write_plot(res, args.plot)
    if args.json:
        out = res.as_dict()
        out["command"] = command_line(res)
        print(json.dumps(out))
    else:
        print(report(res))
    return 0


# ----------------------------------------------------------------- report
_ORDER = ("input", "mag_file", "mag_key", "phase_file", "phase_key", "dtype", "bins", "layout",
          "phase_layout", "onesided", "n_fft", "n_frames", "hop_length", "win_length", "window",
          "center",
          "first_frame", "first_sample", "nyquist", "phase_origin", "magnitude", "top_db",
          "db_ref", "eps", "phase_unit",
          "phase_range", "scaling", "sample_rate")


def report(res: ProbeResult) -> str:
    """A readable report: one line per parameter with its confidence and evidence."""
    lines = ["specstream probe:"]
    for name in _ORDER + tuple(k for k in res.findings if k not in _ORDER):
        f = res.findings.get(name)
        if f is None or (f.value is None and name.endswith(("_key", "_file"))):
            continue
        lines.append(f"  {name:<13} {str(f.value):<16} [{f.label}] {f.evidence}")
    if res.candidates:
        lines.append("  candidates (consistency, 0 = an exact STFT):")
        for c in res.candidates[:5]:
            score = "-" if c.consistency is None else f"{c.consistency:.3g}"
            lines.append(f"    hop {c.hop:<6} {c.window:<12} {c.phase_origin:<14} "
                         f"{c.magnitude:<9} {score}")
    lines.append(f"  overall confidence {res.overall:.2f}; {res.seconds:.2f} s")
    if res.problems:
        lines.append("cannot tell:" if not res.ok else "notes:")
        lines += [f"  - {p}" for p in res.problems]
    if res.ok:
        lines.append("reconstruct with:")
        lines.append("  " + command_line(res))
    return "\n".join(lines)


def reconstruct_flags(res: ProbeResult) -> dict:
    """The ``reconstruct`` arguments (attribute -> value) the probe's
    :meth:`~stream.probe.ProbeResult.parameters` make: the one translation
    the printed command line and ``--auto`` share.

    ShortTimeFFT's frames before sample 0 come as the ``scipy-sfft`` preset.  A level the files have lost comes as
    ``normalize=-1`` (dBFS).
    """
    flags = res.parameters()
    if flags.pop("nyquist", "stored") != "stored":
        flags["no_nyquist"] = "zero"
    first_frame, align = flags.pop("first_frame", 0), flags.pop("window_align", "center")
    if first_frame:
        flags["preset"] = "scipy-sfft"
    elif align == "left":
        flags["window_align"] = "left"
    if res.level_lost:
        flags["normalize"] = -1.0
    return flags


def command_line(res: ProbeResult, output: str = "OUT.wav") -> str | None:
    """The ``specstream reconstruct`` command that follows from the findings:
    what ``--auto`` does, spelled out (None when the probe cannot tell)."""
    if not res.ok:
        return None
    if res.mel_flags:
        cmd = ["specstream", "reconstruct", str(res.value("mag_file")), "-o", output]
        return " ".join(shlex.quote(c) for c in cmd + res.mel_arguments())
    flags = reconstruct_flags(res)
    flags.setdefault("sample_rate", STFTSpec.sample_rate)    # assumed: shown, to be changed
    cmd = ["specstream", "reconstruct", str(flags["mag"])]
    if "phase" in flags:
        cmd.append(str(flags["phase"]))
    cmd += ["-o", output]
    for attr, flag in _FLAGS:
        value = flags.get(attr)
        if value is None or _left_out(attr, value, flags):
            continue
        if attr == "center":
            cmd.append("--center" if value else "--no-center")
        elif attr == "no_nyquist":
            cmd.append(flag)
        elif isinstance(value, int) and value < 0:
            cmd.append(f"{flag}={value}")
        elif isinstance(value, float) and value < 0:      # the value must not look like a flag
            cmd.append(f"{flag}={_text(value)}")
        else:
            cmd += [flag, _text(value)]
    text = " ".join(shlex.quote(c) for c in cmd)
    if res.needs_copy:
        text += (f"   # {res.needs_copy}: make complex one-sided frames (bins 0..n_fft/2) "
                 "first; --auto does it for you")
    return text


def _left_out(attr, value, flags) -> bool:
    """A flag at the default reconstruct assumes anyway."""
    if "preset" in flags and attr in _PRESET_DEFAULTS:
        return False
    return attr in _DEFAULTS and _DEFAULTS[attr] == value


def _text(value) -> str:
    """A flag's value as typed: 48000 for 48000.0, 1e-05 as it is."""
    return f"{value:g}" if isinstance(value, float) and value.is_integer() else str(value)


# ------------------------------------------------------------------- plot
def write_plot(res: ProbeResult, path: str):
    """PNG: the spectrogram in dB (time x frequency) and each window's score per hop."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 8))
    if res.preview_db is not None:
        img = res.preview_db.T
        top = float(np.nanmax(img)) if img.size else 0.0
        im = a.imshow(img, origin="lower", aspect="auto", cmap="magma", vmin=top - 90, vmax=top)
        fig.colorbar(im, ax=a, label="dB")
    a.set_xlabel("frame")
    a.set_ylabel("bin")
    a.set_title("spectrogram (dB)")
    for label, s in res.curves.items():
        hops = np.arange(len(s))
        ok = np.isfinite(s)
        b.semilogy(hops[ok], np.maximum(s[ok], 1e-12), lw=0.8, label=label)
    for c in res.candidates[:8]:
        if c.consistency is not None and np.isfinite(c.consistency):
            b.plot(c.hop, max(c.consistency, 1e-12), "k.", ms=6)
    b.set_xlabel("hop (samples)")
    b.set_ylabel("overlap mismatch / consistency")
    b.set_title("consistency of each hop and window (dots: engine check)")
    if res.curves:
        b.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------- auto
def apply_probe(args, say=None, res: ProbeResult | None = None):
    """Probe ``args.mag``/``args.phase`` and fill every flag left as None
    from :func:`reconstruct_flags` (what the printed command line gives).

    Roles: ``args.mag``/``args.phase`` become the files the probe found the
    magnitude and the phase in (swapped, or the phase None when it is in the
    magnitude's ``.npz``); a two-sided spectrum or real/imaginary parts are
    made into a one-sided complex temporary .npy.  Raises :class:`SpecError`
    saying what would settle it when the probe cannot tell.  ``say(line)``
    is given what is announced (default: printed to stderr unless quiet);
    ``res``: the probe's result, where it has run already.
    """
    if res is None:
        res = _run(args)
    if not res.ok:
        raise SpecError("--auto cannot tell how these frames were made: "
                        + "; ".join(res.problems or ["see 'specstream probe'"]))
    return fill_from_probe(args, res, say)


def probe_args(args) -> ProbeResult:
    """The probe on the files and flags of ``args`` (the flags given are known)."""
    return _run(args)


def fill_from_probe(args, res: ProbeResult, say=None) -> ProbeResult:
    """Fill every flag of ``args`` left as None from what ``res`` found (the
    roles, the readable copy, the parameters; :func:`apply_probe`'s work
    once the probe has run).  ``say(line)``: as :func:`apply_probe`."""
    if say is None:
        say = _printer(args)
    flags = reconstruct_flags(res)
    _apply_roles(args, flags.pop("mag"), flags.pop("phase", None))
    for attr, value in flags.items():
        if getattr(args, attr, None) is None:
            setattr(args, attr, value)
            f = res.findings.get(attr)
            log.info("probe: %s = %s (%s)", attr, value, f.label if f else "from the findings")
            if attr == "normalize":
                _announce_lost_level(args, res, say)
    if res.needs_copy:
        _readable_copy(args, res, say)
    for name in ("scaling", "sample_rate"):
        if res.confidence(name) == 0:
            log.info("probe: %s: %s", name, res.findings[name].evidence)
    if res.ok:
        say(f"specstream: probe: {summary(res)}")
    return res


def _printer(args):
    """Print a line to stderr, unless ``args.quiet``."""
    def say(line):
        if not getattr(args, "quiet", False):
            print(line, file=sys.stderr)
    return say


def summary(res: ProbeResult) -> str:
    """One line: the parameters that matter, the consistency and the confidence."""
    v = res.value
    best = res.candidates[0].consistency if res.candidates else None
    parts = [f"{v('layout')}", f"n_fft={v('n_fft')}", f"hop={v('hop_length')}",
             f"window={v('window')}", f"center={v('center')}", f"magnitude={v('magnitude')}"]
    if v("phase_unit"):
        parts.append(f"phase={v('phase_unit')}")
    parts.append(f"scaling={v('scaling')}")
    if best is not None:
        parts.append(f"consistency={best:.2g}")
    return " ".join(parts) + f" (confidence {res.overall:.2f}; flags given win)"


def _announce_lost_level(args, res: ProbeResult, say):
    """The files cannot say how loud the audio was: without a gain the output
    would sit wherever the stored numbers put it (-50 dBFS for dB re the
    maximum), so the peak goes to -1 dBFS (:func:`reconstruct_flags`)."""
    why = f"the absolute level is lost ({res.level_lost})"
    say(f"specstream: {why}: --normalize {args.normalize:g} dBFS")


def _apply_roles(args, mag, phase):
    """The magnitude (or complex) file and the phase file as the probe found them."""
    if args.phase is not None and (mag, phase) == (args.phase, args.mag):
        log.info("probe: %s holds the magnitude and %s the phase (swapped)", mag, phase)
    args.mag, args.phase = mag, phase


def _readable_copy(args, res: ProbeResult, say):
    """Write what the probe read as one-sided .npy files ``reconstruct`` can open:
    complex values from real/imag parts, bins 0..n_fft/2 of a two-sided spectrum."""
    n = res.value("n_fft")
    first, phase = res.arrays
    tmp = tempfile.mkdtemp(prefix="specstream-probe-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)   # the copy lives as long as the run
    for attr, arr in (("mag", first), ("phase", phase)):
        if arr is None:
            setattr(args, attr, None)
            continue
        a = arr.data
        if res.value("onesided") is False:
            axis = a.ndim - 2 + (0 if res.value("layout") == "bins-frames" else 1)
            a = np.take(a, np.arange(n // 2 + 1), axis=axis)
        out = os.path.join(tmp, f"{attr}.npy")
        np.save(out, a)
        setattr(args, attr, out)
    args.mag_key = args.phase_key = args.dtype = args.bins = None
    why = res.needs_copy
    log.info("probe: %s; readable copy in %s", why, tmp)
    say(f"specstream: {why}: reading a one-sided complex copy")
