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

from ..decode import MAGNITUDES, MEL_UNITS, PHASE_UNITS, Encoding
from ..errors import InputError
from ..files import (LAYOUTS, RAW_DTYPES, FileError, FrameSource, check_spectrogram,
                     guess_layout, load_array, pick_keys, pick_variable, parse_window,
                     stored_parameters, variables)
from ..mel import MEL_NORMS, MEL_PRESETS, MEL_SCALES, MelSpec, mel_preset
from ..spec import (PHASE_ORIGINS, PRESETS, SCALINGS, SpecError, STFTSpec, bins_fit,
                    n_fft_for_bins, parse_window_name, preset)

log = logging.getLogger("specstream")


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


def add_mel_args(p: argparse.ArgumentParser, inverse: bool = True):
    """Flags for mel frames: a recipe and what differs from it (default None);
    ``inverse``: also the mel inverse's own (``--mel-iterations``)."""
    g = p.add_argument_group("mel frames (the input holds mel bands, not STFT bins)")
    g.add_argument("--mel", choices=MEL_PRESETS, metavar="PRESET",
                   help="the frames are mel bands made by this recipe: "
                        + ", ".join(MEL_PRESETS) + " (its STFT and mel parameters; "
                        "the flags override them)")
    g.add_argument("--n-mels", type=int, metavar="N", help="mel bands per frame")
    g.add_argument("--fmin", type=float, metavar="HZ", help="lowest filter edge in Hz")
    g.add_argument("--fmax", type=float, metavar="HZ", help="highest filter edge in Hz")
    g.add_argument("--mel-scale", choices=MEL_SCALES, help="slaney (librosa) or htk")
    g.add_argument("--mel-norm", choices=MEL_NORMS,
                   help="slaney (unit-area triangles, librosa) or none (HTK, torchaudio)")
    g.add_argument("--mel-power", type=float, choices=(1.0, 2.0), metavar="{1,2}",
                   help="the filterbank of the magnitude (1) or of the power (2)")
    g.add_argument("--mel-unit", choices=tuple(MEL_UNITS),
                   help="how the bands are stored: linear, db (librosa power_to_db, "
                        "--db-ref), log (ln, HiFi-GAN), log10, whisper")
    if not inverse:
        return
    g.add_argument("--mel-iterations", type=int, metavar="N",
                   help="projected-gradient steps per frame of the mel -> magnitude "
                        "inverse (default 32)")


#: Mel flags and the MelSpec fields they set.
_MEL_FLAGS = (("n_mels", "n_mels"), ("fmin", "fmin"), ("fmax", "fmax"), ("mel_scale", "scale"),
              ("mel_norm", "norm"), ("mel_power", "power"), ("mel_unit", "unit"),
              ("db_ref", "ref"))


def mel_from_args(args, source: FrameSource | None = None) -> tuple[STFTSpec, MelSpec]:
    """The STFTSpec and MelSpec of mel frames: the ``--mel`` recipe, the flags over it."""
    if getattr(args, "preset", None):
        raise UsageError("--mel sets the STFT of its recipe; change it with --n-fft, "
                         "--hop-length... rather than --preset")
    given = _stft_flags(args)
    given.update({field: getattr(args, a) for a, field in _MEL_FLAGS
                  if getattr(args, a, None) is not None})
    if source is not None:
        given.setdefault("channels", source.channels)
    spec, mel = mel_preset(args.mel, **given)
    if source is not None and source.n_bins != mel.n_mels:
        raise UsageError(f"the frames have {source.n_bins} values, not the n_mels={mel.n_mels} "
                         f"of --mel {args.mel}; give --n-mels {source.n_bins} (or --layout)")
    mel.check(spec)
    return spec, mel


def mel_layout(shape: tuple, n_mels: int) -> str:
    """Which axis of a mel array is the mel one: the axis of ``n_mels`` values
    (librosa, torchaudio and Whisper write bands-frames)."""
    if shape[-2] == n_mels:
        return "bins-frames"
    if shape[-1] == n_mels:
        return "frames-bins"
    raise FileError(f"an array of shape {tuple(shape)} has no axis of n_mels={n_mels} bands; "
                    "give --n-mels")


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


def open_source(args, n_mels: int | None = None) -> FrameSource:
    """The frames named on the command line, opened (memory-mapped, or read
    block by block, where the format allows).

    In a file that holds several arrays the magnitude (or complex) and the
    phase are found by content and name (:func:`stream.files.pick_keys`)
    unless ``--mag-key``/``--phase-key`` name them; what the file stores of
    its making (``fs``, ``F``, ``T``, ``sr``, ``hop_length``...:
    :func:`stream.files.stored_parameters`) fills the flags left unset.
    ``n_mels`` for mel frames (the frame length and the layout follow it).
    """
    bins = args.bins or n_mels or (args.n_fft // 2 + 1 if args.n_fft else None)
    raw = dict(dtype=args.dtype, bins=bins, layout=args.layout)
    found = variables(args.mag)
    mag_key, phase_key = pick_keys(found, args.mag_key, args.phase_key, args.phase is not None)
    first = _load(args.mag, mag_key, raw, found)
    if args.phase is not None:
        second = _load(args.phase, phase_key, raw, variables(args.phase))
    elif phase_key is not None:
        second = _load(args.mag, phase_key, raw, found)
    else:
        second = None
    if second is not None and np.iscomplexobj(second):
        raise UsageError("the phase array is complex; give a complex spectrogram as MAG alone")
    stored = _take_stored(args, found, first.shape)
    layout = args.layout or stored.pop("layout", None) or (
        mel_layout(first.shape, n_mels) if n_mels else frames_layout(first.shape, args))
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


def _load(path, key, raw: dict, found: list):
    """One array of the command line, which must be a spectrogram (2-D or 3-D, not empty):
    the variable ``key`` of ``found`` (the variables of ``path``), or what
    :func:`~stream.files.load_array` opens (and says of a key that is not there)."""
    where = f"{path}" + (f": array {key!r}" if key else "")
    if found and (key is None or key in [v.name for v in found]):
        v = pick_variable(path, found, key)
        where = f"{path}: array {v.name!r}"
        v.check_numeric(where)
        a = v.array()
    else:
        a = load_array(path, key=key, **raw)
    check_spectrogram(a.shape, where)
    return a


#: stored parameters that fill these flags when they are not given
_STORED_FLAGS = ("sample_rate", "hop_length", "n_fft", "win_length", "length")


def _take_stored(args, found: list, shape) -> dict:
    """Fill the flags left unset from what the file stores (sample rate, hop,
    n_fft when it fits the frames' bins, win_length, length); say so.
    Returns ``{"layout": ...}`` when the stored bin or frame count tells the
    frequency axis."""
    small = {v.name: v.array() for v in found if v.numeric and v.ndim <= 1}
    stored = stored_parameters(small)
    out = {}
    for count, layouts in (("n_bins", LAYOUTS[::-1]), ("n_frames", LAYOUTS)):
        n = stored.get(count, (None,))[0]
        axes = [i for i, m in enumerate(shape[-2:]) if m == n]
        if n and len(axes) == 1:
            out["layout"] = layouts[axes[0]]         # F's length is the frequency axis
            break
    n_fft = stored.get("n_fft", (None,))[0]
    if n_fft and n_fft // 2 + 1 not in shape[-2:]:
        log.info("the file's %s says n_fft=%d, but no axis of %s has %d bins%s",
                 stored["n_fft"][1], n_fft, tuple(shape), n_fft // 2 + 1,
                 " (no Nyquist row)" if stored.get("nyquist", (True,))[0] is False else "")
        stored.pop("n_fft")
    taken = []
    for name in _STORED_FLAGS:
        if name in stored and getattr(args, name, None) is None and hasattr(args, name):
            value, src = stored[name]
            setattr(args, name, value)
            taken.append(f"{name}={value:g}" + ("" if src == name else f" ({src})"))
    if taken and not getattr(args, "quiet", False):
        print(f"specstream: from {args.mag}: {', '.join(taken)} (flags given win)",
              file=sys.stderr)
    return out


def _stft_flags(args) -> dict:
    """The STFTSpec fields given as flags."""
    given = {k: getattr(args, k) for k in (
        "sample_rate", "n_fft", "hop_length", "win_length", "center", "channels", "scaling",
        "phase_origin") if getattr(args, k, None) is not None}
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
    return given


def spec_from_args(args, source: FrameSource | None = None) -> STFTSpec:
    """An STFTSpec from the flags given; what is not given comes from the preset or defaults."""
    given = _stft_flags(args)
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
