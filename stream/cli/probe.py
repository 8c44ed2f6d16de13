"""``specstream probe`` and ``reconstruct --auto``: the probe on the command line.

``register(sub)`` adds the ``probe`` subcommand (a readable report, ``--json``,
``--plot``); :func:`apply_probe` fills the ``reconstruct`` flags the user left
unset from the probe's answer.  Explicit flags always win.
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

import numpy as np

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..probe import ProbeResult
from ..spec import SpecError

log = logging.getLogger("specstream")

#: reconstruct flag attribute -> probe finding (the values the probe can supply).
_FILL = (("layout", "layout"), ("n_fft", "n_fft"), ("hop_length", "hop_length"),
         ("win_length", "win_length"), ("window", "window"), ("center", "center"),
         ("magnitude", "magnitude"), ("db_ref", "db_ref"), ("phase_unit", "phase_unit"),
         ("scaling", "scaling"), ("phase_origin", "phase_origin"), ("dtype", "dtype"),
         ("bins", "bins"))
#: flags whose value the probe may use as known.
_KNOWN = ("layout", "n_fft", "hop_length", "win_length", "window", "center", "magnitude",
          "db_ref", "phase_unit", "scaling", "phase_origin", "dtype", "bins", "mag_key",
          "phase_key", "sample_rate", "length")


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
    p.add_argument("--plot", metavar="OUT.png",
                   help="write the spectrogram (dB) and the score of each hop/window to a PNG")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_probe)
    return p


def known_from_args(args) -> dict:
    """The flags the user gave, as the probe's ``known`` dict."""
    known = {k: getattr(args, k, None) for k in _KNOWN}
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
          "first_frame", "phase_origin", "magnitude", "top_db", "db_ref", "phase_unit",
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


def command_line(res: ProbeResult, output: str = "OUT.wav") -> str | None:
    """The ``specstream reconstruct`` command that follows from the findings."""
    if not res.ok:
        return None
    v = res.value
    cmd = ["specstream", "reconstruct", str(v("mag_file"))]
    if v("phase_file") and v("phase_file") != v("mag_file"):
        cmd.append(str(v("phase_file")))
    cmd += ["-o", output]
    if v("mag_key"):
        cmd += ["--mag-key", v("mag_key")]
    if v("phase_key"):
        cmd += ["--phase-key", v("phase_key")]
    if v("dtype"):
        cmd += ["--dtype", v("dtype"), "--bins", str(v("bins"))]
    cmd += ["--layout", v("layout"), "--n-fft", str(v("n_fft")),
            "--hop-length", str(v("hop_length")), "--win-length", str(v("win_length")),
            "--window", str(v("window")), "--center" if v("center", True) else "--no-center"]
    if v("first_frame", 0):
        cmd += ["--preset", "scipy-sfft"]
    elif v("window_align") == "left":
        cmd += ["--preset", "scipy"]
    if v("phase_origin") and v("phase_origin") != "frame-start":
        cmd += ["--phase-origin", v("phase_origin")]
    if v("magnitude") and v("magnitude") != "linear":
        cmd += ["--magnitude", v("magnitude")]
    if v("db_ref") not in (None, 1.0):
        cmd += ["--db-ref", str(v("db_ref"))]
    if v("phase_unit") and v("phase_unit") != "rad":
        cmd += ["--phase-unit", v("phase_unit")]
    if v("scaling") and v("scaling") != "none":
        cmd += ["--scaling", v("scaling")]
    cmd += ["--sample-rate", f"{v('sample_rate', 22050):g}"]
    if res.confidence("scaling") < 0.5:
        cmd += ["--normalize"]
    text = " ".join(shlex.quote(c) for c in cmd)
    if res.needs_copy:
        text += (f"   # {res.needs_copy}: make complex one-sided frames (bins 0..n_fft/2) "
                 "first; --auto does it for you")
    return text


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
def apply_probe(args):
    """Probe ``args.mag``/``args.phase`` and fill every flag left as None.

    Roles: swaps ``args.mag``/``args.phase`` or sets the npz keys when the
    magnitude and phase are not where the command line put them; a
    two-sided spectrum is cut to its one-sided half in a temporary .npy.
    Raises :class:`SpecError` saying what would settle it when the probe
    cannot tell.
    """
    res = _run(args)
    if not res.ok:
        raise SpecError("--auto cannot tell how these frames were made: "
                        + "; ".join(res.problems or ["see 'specstream probe'"]))
    _apply_roles(args, res)
    for attr, name in _FILL:
        value = res.value(name)
        if getattr(args, attr, None) is None and value is not None:
            if attr in ("dtype", "bins") and res.findings.get("dtype") is None:
                continue
            setattr(args, attr, value)
            log.info("probe: %s = %s (%s)", attr, value, res.findings[name].label)
    stored = res.value("stored") or {}
    if getattr(args, "sample_rate", None) is None and "sample_rate" in stored:
        args.sample_rate = stored["sample_rate"]
        log.info("probe: sample_rate = %g (stored in the file)", args.sample_rate)
    if getattr(args, "length", None) is None and "length" in stored:
        args.length = stored["length"]
    if getattr(args, "preset", None) is None:
        _preset_for_placement(args, res)
    if res.needs_copy:
        _readable_copy(args, res)
    if res.level_lost and getattr(args, "normalize", None) is None:
        _normalize_lost_level(args, res)
    for name in ("scaling", "sample_rate"):
        if res.confidence(name) == 0:
            log.info("probe: %s: %s", name, res.findings[name].evidence)
    if not getattr(args, "quiet", False):
        print(f"specstream: probe: {summary(res)}", file=sys.stderr)
    return res


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


def _normalize_lost_level(args, res: ProbeResult):
    """The files cannot say how loud the audio was: without a gain the output
    would sit wherever the stored numbers put it (-50 dBFS for dB re the
    maximum), so the peak goes to -1 dBFS, as the printed command line does."""
    args.normalize = -1.0
    why = f"the absolute level is lost ({res.level_lost})"
    log.info("probe: normalize = -1 dBFS: %s", why)
    if not getattr(args, "quiet", False):
        print(f"specstream: {why}: --normalize -1 dBFS", file=sys.stderr)


def _preset_for_placement(args, res: ProbeResult):
    """Frame placements the flags cannot say come from a preset: frames before
    sample 0 (ShortTimeFFT) or a window at the start of a longer frame (scipy)."""
    name = ("scipy-sfft" if res.value("first_frame", 0) else
            "scipy" if res.value("window_align") == "left" else None)
    if name is None:
        return
    args.preset = name
    if getattr(args, "sample_rate", None) is None:     # the scipy presets default to 1 Hz
        args.sample_rate = float(res.value("sample_rate", 22050))
    log.info("probe: preset = %s (frame placement)", name)


def _apply_roles(args, res: ProbeResult):
    mag_file, phase_file = res.value("mag_file"), res.value("phase_file")
    if args.phase is not None and mag_file == args.phase and phase_file == args.mag:
        args.mag, args.phase = args.phase, args.mag
        log.info("probe: %s holds the magnitude and %s the phase (swapped)", args.mag, args.phase)
    if args.mag_key is None and res.value("mag_key"):
        args.mag_key = res.value("mag_key")
    if args.phase_key is None and res.value("phase_key"):
        args.phase_key = res.value("phase_key")
        if phase_file == mag_file:
            args.phase = None


def _readable_copy(args, res: ProbeResult):
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
    if not getattr(args, "quiet", False):
        print(f"specstream: {why}: reading a one-sided complex copy", file=sys.stderr)
