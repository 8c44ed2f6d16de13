"""What every subcommand shares: the STFT and file flags, opening the files
they name, and turning flags into an :class:`STFTSpec` and an :class:`Encoding`.

Only light modules are imported here (numpy and the parameter tables), so
that ``--help``, ``--version`` and argument errors answer at once; the
engine, the transport and the sinks are imported where they are used.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys

import numpy as np

from ..decode import MAGNITUDES, PHASE_UNITS, Encoding
from ..errors import InputError
from ..files import (LAYOUTS, RAW_DTYPES, FrameSource, array_names, check_spectrogram,
                    guess_layout, load_array, parse_window)
from ..spec import (PHASE_ORIGINS, PRESETS, SCALINGS, SpecError, STFTSpec, bins_fit,
                    n_fft_for_bins, parse_window_name, preset)

log = logging.getLogger("specstream")

_PHASE_KEYS = ("phase", "phases", "angle", "angles", "ph", "p")
_MAG_KEYS = ("mag", "magnitude", "magnitudes", "spectrogram", "spec", "s", "stft", "m", "x")


class UsageError(SpecError):
    """A command line that cannot be carried out as given."""


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error that says where to look."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# The library's advice names parameters ("use hop_length <= 256", "or a larger
# n_fft"); on the command line it should name the flags.  Only a bare name after
# such a word is rewritten: a value quoted as name=value stays as it is.
_ADVICE = re.compile(r"\b(use|give|set|larger|smaller) ([a-z][a-z0-9_]*)\b(?!=)")


def flag_names(message: str, parser: argparse.ArgumentParser) -> str:
    """``message`` with the parameters it advises on named as ``parser``'s flags:
    "use hop_length <= 256" -> "use --hop-length <= 256".  Names that are not
    a flag of ``parser`` stay as they are."""
    def flag(m):
        option = "--" + m.group(2).replace("_", "-")
        # argparse keeps no public table of its option strings.
        known = option in parser._option_string_actions
        return f"{m.group(1)} {option}" if known else m.group(0)
    return _ADVICE.sub(flag, message)


# ------------------------------------------------------------- shared flags
def add_stft_args(p: argparse.ArgumentParser):
    """Flags that describe how the frames were made (default None: not given)."""
    g = p.add_argument_group("STFT parameters (how the frames were made)")
    g.add_argument("--preset", choices=PRESETS,
                   help="a library's conventions and defaults (scaling, window placement, "
                        "phase reference); the flags below override it")
    g.add_argument("-r", "--sample-rate", type=float, metavar="HZ",
                   help="sample rate in Hz (not stored in a spectrogram; default 22050)")
    g.add_argument("--n-fft", type=int, metavar="N",
                   help="FFT size in samples (default: from the bin count, 2*(bins-1))")
    g.add_argument("--hop-length", type=int, metavar="H",
                   help="samples between frames (default win_length//4)")
    g.add_argument("--win-length", type=int, metavar="W", help="window length (default n_fft)")
    g.add_argument("--window", metavar="NAME",
                   help="hann (default), hamming, blackman, rectangular, bartlett, sine, "
                        "sqrt-hann, tukey:ALPHA, gaussian:STD, kaiser:BETA (periodic, as "
                        "librosa/torch/scipy make them; NAME-sym for the symmetric window of "
                        "MATLAB, Octave, np.hamming, essentia); or comma-separated values, "
                        "or a .npy file")
    g.add_argument("--symmetric", action=argparse.BooleanOptionalAction, default=None,
                   help="the named window is symmetric (MATLAB/Octave hamming(N), np.hamming, "
                        "essentia), not periodic (the default)")
    g.add_argument("--center", action=argparse.BooleanOptionalAction, default=None,
                   help="frames were centred with n_fft//2 padding (default: yes)")
    g.add_argument("--first-sample", type=int, metavar="N",
                   help="uncentred frames: frame 0 starts at sample N, e.g. -768 "
                        "(pyroomacoustics: -(n_fft - hop)); implies --no-center (default 0)")
    g.add_argument("--gain", type=float, metavar="G",
                   help="a factor the analysis multiplied every bin by, besides --scaling "
                        "(default 1)")
    g.add_argument("--no-nyquist", action="store_const", const="zero",
                   help="the frames lack the Nyquist bin (Octave's specgram: bins 0 .. "
                        "n_fft/2-1); it is set to zero (on speech at 48 kHz: 66-105 dB "
                        "SNR)")
    g.add_argument("--window-align", choices=("center", "left"),
                   help="where a window shorter than n_fft sits in the frame: center "
                        "(librosa, torch; default) or left (scipy, tensorflow, MATLAB)")
    g.add_argument("--channels", type=int, metavar="C",
                   help="audio channels (default: 1, or the leading axis of a 3-D array)")
    g.add_argument("--scaling", choices=SCALINGS,
                   help="amplitude scaling of the analysis: window-sum = scipy stft's "
                        "default and ShortTimeFFT 'magnitude'; sqrt-n = torch normalized=True; "
                        "psd = ShortTimeFFT 'psd'; window-energy = scipy spectrogram's; "
                        "essentia = 2/sum(w), essentia Windowing(normalized=True) "
                        "(default none)")
    g.add_argument("--phase-origin", choices=PHASE_ORIGINS,
                   help="phase referenced to each frame's first sample (librosa, torch, "
                        "scipy stft; default) or to the window centre (ShortTimeFFT)")
    g.add_argument("--length", type=int, metavar="SAMPLES",
                   help="output exactly this many samples (trims or pads the end)")
    e = p.add_argument_group("units of the stored values")
    e.add_argument("--magnitude", choices=tuple(MAGNITUDES),
                   help="linear (default), power, db (20 log10), db-power (10 log10), "
                        "log (natural log), log10, log1p")
    e.add_argument("--db-ref", type=float, metavar="REF",
                   help="reference of dB values (default 1.0; a power for db-power)")
    e.add_argument("--eps", type=float, metavar="EPS",
                   help="constant added before the log: log = ln(|S| + EPS), as tensorflow "
                        "recipes store (default 0)")
    e.add_argument("--phase-unit", choices=tuple(PHASE_UNITS),
                   help="rad (default), deg or cycles; either range is accepted")


def add_file_args(p: argparse.ArgumentParser):
    p.add_argument("mag", metavar="MAG",
                   help="magnitude (or complex) spectrogram: .npy, .npz, .csv/.txt, raw .bin")
    p.add_argument("phase", metavar="PHASE", nargs="?",
                   help="phase file (omit for complex input, an npz holding both, "
                        "or magnitude only)")
    g = p.add_argument_group("file layout")
    g.add_argument("--layout", choices=LAYOUTS,
                   help="frames-bins or bins-frames (librosa/scipy/torch return "
                        "bins-frames; default: the axis that fits n_fft, else bins-frames)")
    g.add_argument("--mag-key", metavar="NAME", help="array name of the magnitude in an .npz")
    g.add_argument("--phase-key", metavar="NAME", help="array name of the phase in an .npz")
    g.add_argument("--dtype", choices=tuple(RAW_DTYPES),
                   help="element type of raw binary files (default float32, little endian)")
    g.add_argument("--bins", type=int, metavar="B",
                   help="bins per frame of raw binary files (default n_fft//2+1)")


def open_source(args) -> FrameSource:
    """The frames named on the command line, opened (memory-mapped where possible)."""
    bins = args.bins or (args.n_fft // 2 + 1 if args.n_fft else None)
    raw = dict(dtype=args.dtype, bins=bins, layout=args.layout)
    mag_key, phase_key = args.mag_key, args.phase_key
    names = array_names(args.mag)
    if args.phase is None and len(names) > 1 and not (mag_key and phase_key):
        mag_key = mag_key or _pick(names, _MAG_KEYS, exclude=phase_key)
        phase_key = phase_key or _pick(names, _PHASE_KEYS, exclude=mag_key)
    first = _load(args.mag, mag_key, raw)
    if args.phase is not None:
        second = _load(args.phase, phase_key, raw)
    elif phase_key is not None:
        second = _load(args.mag, phase_key, raw)
    else:
        second = None
    if second is not None and np.iscomplexobj(second):
        raise UsageError("the phase array is complex; give a complex spectrogram as MAG alone")
    layout = args.layout or frames_layout(first.shape, args)
    # a phase saved transposed is read in its own layout (files.second_layout)
    source = FrameSource(first, second, layout)
    if source.second_layout != layout:
        log.info("the phase %s is the magnitude %s transposed: reading it as %s",
                 tuple(second.shape), tuple(first.shape), source.second_layout)
    return source


def stored_bins(n_fft: int, no_nyquist: bool) -> tuple[int, ...]:
    """Bin counts frames of ``n_fft`` may be stored with: one-sided
    (``n_fft//2 + 1``), two-sided (``n_fft``), or one-sided without the Nyquist
    bin (``n_fft//2``, when the user says so)."""
    return (n_fft // 2,) if no_nyquist else (n_fft // 2 + 1, n_fft)


def frames_layout(shape, args) -> str:
    """The layout of an array of ``shape`` for the flags given: the axis whose
    length is a bin count :func:`stored_bins` allows (one-sided first)."""
    n_fft = args.n_fft
    if n_fft is None or not getattr(args, "no_nyquist", None):
        try:
            return guess_layout(shape, n_fft)
        except InputError:
            if n_fft is None:
                raise
    for b in stored_bins(n_fft, bool(getattr(args, "no_nyquist", None))):
        if shape[-1] == b and shape[-2] != b:
            return "frames-bins"
        if shape[-2] == b:
            return "bins-frames"
    return guess_layout(shape, n_fft)     # its error says what fits


def _load(path, key, raw: dict) -> np.ndarray:
    """One array of the command line, which must be a spectrogram (2-D or 3-D, not empty)."""
    a = load_array(path, key=key, **raw)
    check_spectrogram(a.shape, f"{path}" + (f": array {key!r}" if key else ""))
    return a


def _pick(names, wanted, exclude=None):
    for n in names:
        if n.lower() in wanted and n != exclude:
            return n
    for n in names:
        if n != exclude and any(w in n.lower() for w in wanted if len(w) > 2):
            return n
    return None


def spec_from_args(args, source: FrameSource | None = None) -> STFTSpec:
    """An STFTSpec from the flags given; what is not given comes from the preset or defaults."""
    given = {k: getattr(args, a) for k, a in (
        ("sample_rate", "sample_rate"), ("n_fft", "n_fft"), ("hop_length", "hop_length"),
        ("win_length", "win_length"), ("center", "center"), ("channels", "channels"),
        ("scaling", "scaling"), ("phase_origin", "phase_origin"))
        if getattr(args, a, None) is not None}
    for k in ("first_sample", "gain", "window_align"):
        if getattr(args, k, None) is not None:
            given[k] = getattr(args, k)
    if given.get("first_sample") and "center" not in given:
        given["center"] = False       # a first sample of its own: not centred
    if getattr(args, "window", None) is not None:
        given["window"] = parse_window(args.window)
    if getattr(args, "symmetric", None) is not None:
        name = given.get("window", "hann")
        if not isinstance(name, str):
            raise UsageError("--symmetric applies to a window name, not to window values")
        given["window"] = parse_window_name(name, args.symmetric).text
    if source is not None:
        no_nyq = bool(getattr(args, "no_nyquist", None))
        if "n_fft" not in given:
            given["n_fft"] = 2 * source.n_bins if no_nyq else n_fft_for_bins(source.n_bins)[0]
        elif source.n_bins not in stored_bins(given["n_fft"], no_nyq):
            half = given["n_fft"] // 2
            raise UsageError(
                f"the frames have {source.n_bins} bins, which fit "
                f"{bins_fit(source.n_bins, '--n-fft ')}, not {given['n_fft']}"
                + (f" (nor, two-sided, {source.n_bins})" if not no_nyq else "")
                + ("; if the Nyquist bin is missing (Octave's specgram), add --no-nyquist"
                   if source.n_bins == half and not no_nyq else ""))
        if "channels" not in given:
            given["channels"] = source.channels
        elif given["channels"] != source.channels:
            raise UsageError(
                f"--channels {given['channels']} does not fit the frames: a "
                f"{source.first.ndim}-D array of shape {tuple(source.first.shape)} holds "
                f"{source.channels} channel(s) (3-D arrays have channels first); "
                f"drop --channels or use --channels {source.channels}")
    if args.preset:
        if args.preset.startswith("scipy"):
            # scipy's default fs is 1 Hz: no rate for an audio file or a device.
            given.setdefault("sample_rate", 22050)
        return preset(args.preset, **given)
    return STFTSpec(**given)


def encoding_from_args(args) -> Encoding:
    magnitude = args.magnitude or ("power" if getattr(args, "preset", None)
                                   == "scipy-spectrogram" else "linear")
    return Encoding(magnitude=magnitude,
                    db_ref=args.db_ref if args.db_ref is not None else 1.0,
                    phase_unit=args.phase_unit or "rad",
                    eps=getattr(args, "eps", None) or 0.0,
                    nyquist=getattr(args, "no_nyquist", None) or "stored")


def progress(total: int, desc: str, unit: str = "frame", quiet: bool = False):
    """A tqdm bar on stderr (off when quiet or when stderr is not a terminal)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False,
                disable=True if quiet else None, file=sys.stderr, mininterval=0.5)


def dbfs(peak: float) -> str:
    return "-inf dBFS" if peak <= 0 else f"{20 * np.log10(peak):+.1f} dBFS"
