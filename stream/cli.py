"""The ``specstream`` command line.

Subcommands: ``reconstruct`` (files -> audio file), ``probe`` (infer how a
spectrogram was made), ``send`` / ``play`` (frames over ZeroMQ, live
playback), ``devices``, ``demo``.  Every error the user can fix is one line
on stderr and exit status 2; no tracebacks for bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

import numpy as np

from . import __version__
from .decode import MAGNITUDES, PHASE_UNITS, Decoder, Encoding
from .engine import Reconstructor
from .files import (LAYOUTS, RAW_DTYPES, FileError, FrameSource, array_names, guess_layout,
                    load_array, parse_window)
from .spec import PHASE_ORIGINS, PRESETS, SCALINGS, SpecError, STFTSpec, preset

log = logging.getLogger("specstream")

SUBTYPES = {"float": "FLOAT", "double": "DOUBLE", "pcm16": "PCM_16", "16": "PCM_16",
            "pcm24": "PCM_24", "24": "PCM_24", "pcm32": "PCM_32", "32": "PCM_32"}
_PHASE_KEYS = ("phase", "phases", "angle", "angles", "ph", "p")
_MAG_KEYS = ("mag", "magnitude", "magnitudes", "spectrogram", "spec", "s", "stft", "m", "x")


class UsageError(SpecError):
    """A command line that cannot be carried out as given."""


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error that says where to look."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


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
                        "sqrt-hann; or comma-separated values, or a .npy file")
    g.add_argument("--center", action=argparse.BooleanOptionalAction, default=None,
                   help="frames were centred with n_fft//2 padding (default: yes)")
    g.add_argument("--channels", type=int, metavar="C",
                   help="audio channels (default: 1, or the leading axis of a 3-D array)")
    g.add_argument("--scaling", choices=SCALINGS,
                   help="amplitude scaling of the analysis: window-sum = scipy stft's "
                        "default and ShortTimeFFT 'magnitude'; sqrt-n = torch normalized=True; "
                        "psd = ShortTimeFFT 'psd' (default none)")
    g.add_argument("--phase-origin", choices=PHASE_ORIGINS,
                   help="phase referenced to each frame's first sample (librosa, torch, "
                        "scipy stft; default) or to the window centre (ShortTimeFFT)")
    g.add_argument("--length", type=int, metavar="SAMPLES",
                   help="output exactly this many samples (trims or pads the end)")
    e = p.add_argument_group("units of the stored values")
    e.add_argument("--magnitude", choices=tuple(MAGNITUDES),
                   help="linear (default), power, db (20 log10), db-power (10 log10), "
                        "log (natural log), log1p")
    e.add_argument("--db-ref", type=float, metavar="REF",
                   help="reference of dB values (default 1.0; a power for db-power)")
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
    first = load_array(args.mag, key=mag_key, **raw)
    if args.phase is not None:
        second = load_array(args.phase, key=phase_key, **raw)
    elif phase_key is not None:
        second = load_array(args.mag, key=phase_key, **raw)
    else:
        second = None
    if second is not None and np.iscomplexobj(second):
        raise UsageError("the phase array is complex; give a complex spectrogram as MAG alone")
    if first.ndim == 1:
        raise FileError(f"{args.mag}: a 1-D array of {first.shape[0]} values is not a "
                        "spectrogram; give --bins for raw files, or reshape it")
    layout = args.layout or guess_layout(first.shape, args.n_fft)
    return FrameSource(first, second, layout, _second_layout(first, second, layout))


def _second_layout(first, second, layout: str) -> str:
    """The phase array's layout: the magnitude's, unless the two are the same
    frames saved transposed (2-D shapes that are each other's transpose, not
    square), which some tools write; then the other one."""
    if (second is None or first.ndim != 2 or second.ndim != 2
            or first.shape[0] == first.shape[1] or second.shape != first.shape[::-1]):
        return layout
    other = "frames-bins" if layout == "bins-frames" else "bins-frames"
    log.info("the phase %s is the magnitude %s transposed: reading it as %s",
             tuple(second.shape), tuple(first.shape), other)
    return other


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
    if getattr(args, "window", None) is not None:
        given["window"] = parse_window(args.window)
    if source is not None:
        if "n_fft" not in given:
            given["n_fft"] = 2 * (source.n_bins - 1)
        elif given["n_fft"] // 2 + 1 != source.n_bins:
            b = source.n_bins
            raise UsageError(f"the frames have {b} bins, which fit --n-fft {2 * (b - 1)} "
                             f"(or {2 * b - 1}), not {given['n_fft']}")
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
    return Encoding(magnitude=args.magnitude or "linear",
                    db_ref=args.db_ref if args.db_ref is not None else 1.0,
                    phase_unit=args.phase_unit or "rad")


def progress(total: int, desc: str, unit: str = "frame", quiet: bool = False):
    """A tqdm bar on stderr (off when quiet or when stderr is not a terminal)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False,
                disable=True if quiet else None, file=sys.stderr, mininterval=0.5)


def dbfs(peak: float) -> str:
    return "-inf dBFS" if peak <= 0 else f"{20 * np.log10(peak):+.1f} dBFS"


# -------------------------------------------------------------- reconstruct
def add_reconstruct(sub):
    p = sub.add_parser("reconstruct", help="spectrogram (+ phase) files -> WAV/FLAC",
                       description="Rebuild audio from spectrogram and phase files.")
    add_file_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output audio file; .wav or .flac (by extension)")
    add_stft_args(p)
    o = p.add_argument_group("output")
    o.add_argument("--subtype", choices=tuple(SUBTYPES),
                   help="sample format: float (WAV default), pcm16, pcm24 (FLAC default), "
                        "pcm32, double")
    o.add_argument("--normalize", nargs="?", type=float, const=-1.0, metavar="DBFS",
                   help="scale so that the peak is at DBFS (default -1 dBFS); two passes")
    o.add_argument("--phase-method", choices=("rtpghi", "pghi", "griffinlim", "zeros", "random"),
                   help="phase reconstruction for magnitude-only input (default pghi)")
    o.add_argument("--iterations", type=int, metavar="N",
                   help="Griffin-Lim iterations after PGHI (default 32)")
    o.add_argument("--auto", action="store_true",
                   help="infer what is not given (layout, n_fft, hop, window, units, scaling) "
                        "with 'specstream probe'; flags given explicitly win")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run_reconstruct)
    return p


def _output_format(path: str, subtype: str | None):
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".wav", ".flac"):
        raise UsageError(f"output {path!r}: use a .wav or .flac file name")
    if subtype is None:
        subtype = "pcm24" if ext == ".flac" else "float"
    sf_subtype = SUBTYPES[subtype]
    if ext == ".flac" and sf_subtype in ("FLOAT", "DOUBLE", "PCM_32"):
        raise UsageError(f"FLAC cannot hold {subtype} samples; use --subtype pcm16 or pcm24")
    return ("WAV" if ext == ".wav" else "FLAC"), sf_subtype


class AudioWriter:
    """Writes blocks to WAV/FLAC, counting peak and clipped samples.

    Integer formats are clipped here (libsndfile would wrap around); float
    formats keep values over full scale, and both are reported.
    """

    def __init__(self, path, sample_rate, channels, fmt, subtype, gain=1.0):
        import soundfile as sf
        try:
            self.file = sf.SoundFile(path, "w", samplerate=int(round(sample_rate)),
                                     channels=channels, format=fmt, subtype=subtype)
        except (sf.SoundFileError, ValueError) as e:
            raise UsageError(f"cannot write {path} ({str(e).splitlines()[0]}); check that "
                             "its directory exists and is writable") from None
        self.integer = subtype.startswith("PCM")
        self.gain = gain
        self.peak = 0.0
        self.clipped = 0
        self.frames = 0

    def write(self, y: np.ndarray):
        """``y``: ``(n,)`` or ``(channels, n)`` samples."""
        if y.shape[-1] == 0:
            return
        if self.gain != 1.0:
            y = y * np.float32(self.gain)
        a = np.abs(y)
        self.peak = max(self.peak, float(a.max()))
        over = int(np.count_nonzero(a > 1.0))
        if over:
            self.clipped += over
            if self.integer:
                y = np.clip(y, -1.0, 1.0)
        self.file.write(y.T if y.ndim == 2 else y)
        self.frames += y.shape[-1]

    def close(self):
        self.file.close()


def reconstruct_blocks(source: FrameSource, spec: STFTSpec, decoder: Decoder,
                       length: int | None, bar=None, block: int = 1024):
    """Audio blocks for a whole file: decode -> engine, block by block.

    The engine is made here, before the first block is asked for, so that a
    bad ``length`` is an error before the output file is created."""
    engine = Reconstructor(spec, length=length if length is not None
                           else spec.samples_for(source.n_frames), block_frames=256)
    return _engine_blocks(engine, source, decoder, bar, block)


def _engine_blocks(engine, source, decoder, bar, block):
    for first, second in source.blocks(block):
        x = decoder.decode(first, second)
        yield engine.push(x)
        if bar is not None:
            bar.update(x.shape[-2])
    yield engine.flush()


def run_reconstruct(args) -> int:
    t0 = time.perf_counter()
    if args.auto:
        from .cli_probe import apply_probe
        apply_probe(args)    # fills the flags left as None from the probe's answer
    source = open_source(args)
    spec = spec_from_args(args, source)
    enc = encoding_from_args(args)
    fmt, subtype = _output_format(args.output, args.subtype)
    if not args.quiet and args.sample_rate is None:
        log.warning("sample rate not given: assuming %g Hz (set --sample-rate)", spec.sample_rate)
    decoder = Decoder(spec, enc)
    if source.second is None and not source.is_complex:
        source = _rebuild_phase(args, source, spec, decoder)
        decoder = Decoder(spec, Encoding())
    bar = progress(source.n_frames, "reconstruct", quiet=args.quiet)
    blocks = reconstruct_blocks(source, spec, decoder, args.length, bar)
    if args.normalize is not None:
        writer = _write_normalized(args, blocks, spec, fmt, subtype)
    else:
        writer = AudioWriter(args.output, spec.sample_rate, spec.channels, fmt, subtype)
        try:
            for y in blocks:
                writer.write(y)
        finally:
            writer.close()
    bar.close()
    if not args.quiet:
        _summary(args, source, spec, writer, decoder, time.perf_counter() - t0)
    return 0


def _write_normalized(args, blocks, spec, fmt, subtype):
    # Two passes with flat memory: float32 samples go to a temporary file
    # while the peak is measured, then come back scaled.
    target = 10 ** (args.normalize / 20)
    with tempfile.TemporaryFile() as tmp:
        peak, count = 0.0, 0
        for y in blocks:
            y2 = np.ascontiguousarray(np.atleast_2d(y).T, dtype=np.float32)
            if y2.size:
                peak = max(peak, float(np.abs(y2).max()))
            tmp.write(y2.tobytes())
            count += y2.shape[0]
        gain = target / peak if peak > 0 else 1.0
        writer = AudioWriter(args.output, spec.sample_rate, spec.channels, fmt, subtype, gain)
        tmp.seek(0)
        c = spec.channels
        step = 1 << 16
        try:
            for i in range(0, count, step):
                n = min(step, count - i)
                chunk = np.frombuffer(tmp.read(n * c * 4), dtype=np.float32).reshape(n, c)
                writer.write(chunk[:, 0] if c == 1 else chunk.T)
        finally:
            writer.close()
        writer.normalize_gain = gain
    return writer


def _rebuild_phase(args, source, spec, decoder):
    """Magnitude only: rebuild a phase (issue: phase reconstruction)."""
    try:
        from . import phase
    except ImportError:
        raise UsageError("no phase given and phase reconstruction is not available; "
                         "give a PHASE file or complex frames") from None
    return phase.rebuild_source(source, spec, decoder, method=args.phase_method or "pghi",
                                iterations=args.iterations, quiet=args.quiet,
                                length=args.length)


def _summary(args, source, spec, writer, decoder, seconds):
    dur = writer.frames / spec.sample_rate
    lines = [
        f"wrote {args.output}: {dur:.2f} s, {writer.frames} samples x {spec.channels} ch "
        f"at {spec.sample_rate:g} Hz ({writer.file.subtype})",
        f"  from {source.n_frames} frames: {spec.describe()}",
        f"  peak {dbfs(writer.peak)}"
        + (f", gain {20 * np.log10(getattr(writer, 'normalize_gain', 1.0)):+.1f} dB"
           if args.normalize is not None else ""),
        f"  {seconds:.2f} s of work, {dur / max(seconds, 1e-9):.0f}x real time",
    ]
    report = getattr(source, "phase_report", None)   # magnitude only: stream.phase
    if report:
        its = f", {report['iterations']} iterations" if report.get("iterations") else ""
        sc = report.get("spectral_convergence")
        lines.append(f"  phase rebuilt from the magnitude by {report['method']}{its} in "
                     f"{report['seconds']:.2f} s" + ("" if sc is None else
                     f"; spectral convergence {sc:.2f} dB"
                     + (" (before --normalize)" if args.normalize is not None else "")))
        if report.get("nonfinite"):
            lines.append(f"  {report['nonfinite']} NaN/Inf magnitudes were replaced by 0")
    if decoder.nonfinite:
        lines.append(f"  {decoder.nonfinite} NaN/Inf values were replaced by 0")
    for line in lines:
        print(line, file=sys.stderr)
    if writer.clipped:
        what = "clipped" if writer.integer else "over full scale (players will clip them)"
        log.warning("%d samples %s; peak %s; use --normalize", writer.clipped, what,
                    dbfs(writer.peak))


# --------------------------------------------------------------------- main
def build_parser() -> Parser:
    p = Parser(prog="specstream",
               description="Streaming, real-time audio reconstruction from STFT frames.")
    p.add_argument("--version", action="version", version=f"specstream {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    add_reconstruct(sub)
    for module in ("cli_probe", "cli_live"):
        try:
            mod = __import__(f"{__package__}.{module}", fromlist=["register"])
        except ImportError as e:
            if e.name and e.name.endswith(module):
                continue
            raise
        mod.register(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="specstream: %(levelname)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args) or 0
    except (SpecError, OSError) as e:
        msg = str(e) if isinstance(e, SpecError) else f"{e.strerror or e}: {e.filename or ''}"
        print(f"specstream {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"specstream {args.command}: interrupted", file=sys.stderr)
        return 130
