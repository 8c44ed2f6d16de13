"""What ``reconstruct`` and ``send`` do with the parameters not given.

* Not given (no ``--hop-length`` and no ``--preset``), or ``--auto``: the
  probe infers them from the files (the flags given are known to it and
  win); what it assumed and how sure it is goes to stderr.  When it cannot
  tell, the command refuses with the probe's reasons and the flags that would
  settle it -- except for a magnitude alone, which no file can show a hop
  for: librosa's defaults are assumed and said to be.
* Given: no probe, but a few frames are checked for the classic mistakes
  (:mod:`stream.probe.checks`), each warned about with its fix; frames far
  from consistent are probed to name the parameters that fit.
"""

from __future__ import annotations

import logging
import sys
from typing import NamedTuple

from ..decode import Encoding
from ..files import FrameSource
from ..mel import MEL_PRESETS, MelSpec, preset_samples_for
from ..spec import SpecError, STFTSpec
from .common import UsageError, encoding_from_args, mel_from_args, open_source, spec_from_args

log = logging.getLogger("specstream")

__all__ = ["Inputs", "frames_from_args", "say_notes"]


class Inputs(NamedTuple):
    """What the command's files hold and how they were made."""

    source: FrameSource
    spec: STFTSpec
    enc: Encoding
    notes: list           # what was assumed, to print once the command line has proved good
    mel: MelSpec | None = None     # mel bands: their recipe
    length: int | None = None      # samples the frames hold, where the recipe says (mel)


def _stated(args) -> bool:
    """The user said how the frames were made (a hop, or a preset, which has one)."""
    return args.hop_length is not None or bool(getattr(args, "preset", None))


def frames_from_args(args, command: str) -> Inputs:
    """The files of ``args`` opened, with the parameters inferred where not
    given and checked where given (:class:`Inputs`; its ``notes`` are
    printed once the command line has proved good, so that a bad flag is
    still one line of error).  Mel bands come with ``--mel``, or where the
    probe finds them (a file of a recipe's band count, floor and range)."""
    notes: list[str] = []
    if getattr(args, "mel", None):
        return _mel_inputs(args, notes)
    stated = _stated(args) and not getattr(args, "auto", False)
    if getattr(args, "auto", False):
        from .probe import apply_probe, probe_args
        res = probe_args(args)
        if _mel_from_probe(args, res, command, notes):
            return _mel_inputs(args, notes)
        apply_probe(args, say=notes.append, res=res)   # --auto: refuses when it cannot tell
        source = open_source(args)
    elif stated:
        source = open_source(args)
    else:
        # A bad file or flag is reported as such, before any probe (a raw
        # file's shape is --bins' or --auto's to give).
        source = open_source(args)          # fills what the file stores (fs, F, T...)
        spec_from_args(args, source)
        encoding_from_args(args)
        stated = _stated(args)
        if not stated:
            if _infer(args, command, notes):
                return _mel_inputs(args, notes)
            source = open_source(args)      # the probe may have swapped or copied the files
    spec = spec_from_args(args, source)
    enc = encoding_from_args(args)
    if stated:
        _check(args, source, spec, enc)
    return Inputs(source, spec, enc, notes)


def _mel_inputs(args, notes: list) -> Inputs:
    """Mel bands by ``args.mel``'s recipe (the flags over it), all the
    samples the recipe's frames hold unless ``--length`` says otherwise."""
    _, mel = mel_from_args(args)
    source = open_source(args, n_mels=mel.n_mels)
    spec, mel = mel_from_args(args, source)
    length = (args.length if getattr(args, "length", None) is not None
              else preset_samples_for(args.mel, spec, source.n_frames))
    return Inputs(source, spec, encoding_from_args(args), notes, mel, length)


def _mel_from_probe(args, res, command: str, notes: list) -> bool:
    """True when the probe found mel bands and named their recipe surely
    enough (then ``args`` has its ``--mel`` flags); where it could not name
    one, a one-line error asks for it."""
    if not res.mel_flags:
        return False
    found = res.findings["mel"]
    if res.mel_flags["mel"] is None or found.confidence < 0.7:
        extra = "".join(" " + w for w in res.mel_arguments()[2:])    # after --mel NAME
        raise UsageError(f"{_files(args)} looks like mel bands, not STFT bins "
                         f"({found.evidence}), made by a recipe the values do not tell: give "
                         f"--mel PRESET{extra} (PRESET one of {', '.join(MEL_PRESETS)}), or "
                         "--n-fft and --hop-length if these are STFT bins")
    for attr, value in res.mel_flags.items():
        if getattr(args, attr, None) is None:
            setattr(args, attr, value)
    spec, _ = mel_from_args(args)
    flags = " ".join(res.mel_arguments())
    notes.append(f"specstream {command}: probe: mel bands, not STFT bins ({found.evidence}): "
                 f"read as {flags}, the recipe's {spec.sample_rate:g} Hz, n_fft {spec.n_fft}, "
                 f"hop {spec.hop_length}; give --mel (and --sample-rate, --n-fft, --hop-length, "
                 "--fmax) where they were made otherwise")
    return True


def _infer(args, command: str, notes: list) -> bool:
    """Fill the flags not given from the probe (what it assumed goes to
    ``notes``); True when the files are mel bands (``args`` then has
    their ``--mel`` flags)."""
    from .probe import fill_from_probe, probe_args
    res = probe_args(args)
    if _mel_from_probe(args, res, command, notes):
        return True
    magnitude_only = res.value("input") == "magnitude"
    if not res.ok and not magnitude_only:
        why = "; ".join(res.problems or ["see 'specstream probe'"])
        raise UsageError(f"cannot tell how these frames were made: {why}. "
                         f"'specstream probe {_files(args)}' shows the evidence; give "
                         "--hop-length and --window (and --center or --no-center) to settle it")
    fill_from_probe(args, res, say=notes.append)
    if magnitude_only and args.hop_length is None:
        notes.append(f"specstream {command}: a magnitude alone cannot show how its frames "
                     "overlap: assuming librosa's defaults (hop n_fft/4, hann window, "
                     "centred); give --hop-length and --window if you know them")
    else:
        for name in ("window", "center", "scaling", "magnitude"):
            f = res.findings.get(name)
            if f is not None and 0 < f.confidence < 0.7 and not (name == "scaling"
                                                                  and f.value == "none"):
                notes.append(f"specstream {command}: probe: {name} = {f.value} is a guess: "
                             f"{f.evidence}")
    return False


def say_notes(args, notes: list):
    """Print what was assumed (unless quiet)."""
    if getattr(args, "quiet", False):
        return
    for n in notes:
        print(n, file=sys.stderr)


def _files(args) -> str:
    return " ".join(str(f) for f in (args.mag, args.phase) if f is not None)


def _check(args, source, spec, enc):
    """Warn about the classic mistakes the given parameters make (cheap)."""
    from ..probe.checks import check_frames
    found = check_frames(source, spec, enc)
    for c in found:
        fix = c.fix
        if c.consistency is not None:
            fix = _probe_fix(args, spec, enc) or fix
        log.warning("%s; %s", c.what, fix)


def _probe_fix(args, spec, enc) -> str | None:
    """The flags the probe finds for frames that the given ones do not fit."""
    from types import SimpleNamespace

    from .probe import probe_args, reconstruct_flags
    bare = SimpleNamespace(**{k: None for k in vars(args)})
    for k in ("mag", "phase", "mag_key", "phase_key", "dtype", "bins", "layout",
              "sample_rate"):
        setattr(bare, k, getattr(args, k, None))
    bare.quiet = True
    try:
        res = probe_args(bare)
    except SpecError:
        return None
    if not res.ok:
        return None
    flags = reconstruct_flags(res)
    names = {"hop_length": "--hop-length", "window": "--window", "win_length": "--win-length",
             "center": "--center", "first_sample": "--first-sample",
             "magnitude": "--magnitude", "phase_unit": "--phase-unit",
             "phase_origin": "--phase-origin", "n_fft": "--n-fft"}
    diff = []
    for k, flag in names.items():
        v = flags.get(k)
        mine = getattr(enc if k in ("magnitude", "phase_unit") else spec, k)
        if v is None or mine == v:
            continue
        if k == "center":
            diff.append("--center" if v else "--no-center")
        else:
            diff.append(f"{flag} {v}")
    if not diff:
        return None
    return (f"the probe finds that these fit: {' '.join(diff)} (consistency "
            f"{res.candidates[0].consistency:.2g}); or leave the flags out to have them inferred")
