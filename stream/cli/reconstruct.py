"""``specstream reconstruct``: spectrogram (+ phase) files -> a WAV/FLAC file."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time

import numpy as np

from ..decode import Encoding
from ..files import FrameSource, sparse_reads
from ..spec import STFTSpec
from .common import UsageError, add_file_args, add_mel_args, add_stft_args, dbfs, progress

log = logging.getLogger("specstream")

SUBTYPES = {"float": "FLOAT", "double": "DOUBLE", "pcm16": "PCM_16", "16": "PCM_16",
            "pcm24": "PCM_24", "24": "PCM_24", "pcm32": "PCM_32", "32": "PCM_32"}


def register(sub):
    p = sub.add_parser("reconstruct", help="spectrogram (+ phase) files -> WAV/FLAC",
                       description="Rebuild audio from spectrogram and phase files.")
    add_file_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output audio file; .wav or .flac (by extension)")
    add_stft_args(p)
    add_mel_args(p)
    o = p.add_argument_group("output")
    o.add_argument("--subtype", choices=tuple(SUBTYPES),
                   help="sample format: float (WAV default), pcm16, pcm24 (FLAC default), "
                        "pcm32, double")
    o.add_argument("--normalize", nargs="?", type=float, const=-1.0, metavar="DBFS",
                   help="scale so that the peak is at DBFS (default -1 dBFS); two passes")
    o.add_argument("--phase-method", choices=("rtpghi", "pghi", "griffinlim", "zeros", "random"),
                   help="phase reconstruction for magnitude-only and mel input (default pghi)")
    o.add_argument("--iterations", type=int, metavar="N",
                   help="Griffin-Lim iterations after PGHI (default 32)")
    o.add_argument("--auto", action="store_true",
                   help="infer what is not given (layout, n_fft, hop, window, units, scaling) "
                        "with 'specstream probe' and refuse when it cannot tell; without "
                        "--hop-length or --preset this is done anyway (a magnitude alone then "
                        "assumes librosa's hop and window); flags given explicitly win")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run_reconstruct)
    return p


def _output_format(path: str, subtype: str | None):
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".wav", ".flac"):
        raise UsageError(f"output {path!r}: use a .wav or .flac file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"output {path!r}: no such directory {parent!r}")
    if subtype is None:
        subtype = "pcm24" if ext == ".flac" else "float"
    sf_subtype = SUBTYPES[subtype]
    if ext == ".flac" and sf_subtype in ("FLOAT", "DOUBLE", "PCM_32"):
        raise UsageError(f"FLAC cannot hold {subtype} samples; use --subtype pcm16 or pcm24")
    return ("WAV" if ext == ".wav" else "FLAC"), sf_subtype


def frame_kind(source: FrameSource, mel=None) -> str:
    """What the files hold: complex bins, magnitude + phase, magnitude only, or
    mel bands (``mel``: their MelSpec)."""
    if mel is not None:
        if source.is_complex or source.second is not None:
            raise UsageError("mel frames are real bands with no phase: give one real array")
        return "mel"
    if source.is_complex:
        return "complex"
    return "magphase" if source.second is not None else "magnitude"


def reconstruct_blocks(source: FrameSource, pipeline, bar=None, block: int = 1024):
    """Audio blocks for a whole file: its frames through ``pipeline``, block by block."""
    for first, second in source.blocks(block):
        yield pipeline.push(first, second)
        if bar is not None:
            bar.update(first.shape[-2])
    yield pipeline.flush()


def file_end(source: FrameSource, spec: STFTSpec, enc: Encoding, preset: bool = False):
    """``(length, how)``: the samples to write for a file when no ``--length``
    is given, and a sentence on how they were found (:mod:`stream.ends`):
    all the frames hold, less the end padding the last frames show.  With a
    preset, the library's own ``istft`` length (``spec.samples_for``), the
    end found said beside it."""
    from ..decode import Decoder
    from ..ends import SignalEnd, end_of_frames, tail_frames
    n = source.n_frames
    if frame_kind(source) == "magnitude":
        # no phase to invert: all the frames hold (a rebuilt phase is not exact)
        cover = spec.covered_samples(n)
        end = SignalEnd(cover, "covered", cover, cover)
    else:
        k = min(n, tail_frames(spec))
        sparse_reads(source.first, source.second)
        try:
            first = source.block(n - k, n)
            second = None if source.second is None else source.block(n - k, n, source.second)
        finally:
            sparse_reads(source.first, source.second, on=False)
        end = end_of_frames(Decoder(spec, enc).decode(first, second), spec, n)
    if not preset or end.how == "inconsistent":
        return end.length, end.describe()
    own = spec.samples_for(n)
    return own, (f"{own} samples, as the preset's library's istft returns them; "
                 f"{end.describe()}" + (f" (--length {end.length} for that)"
                                        if end.length != own else ""))


def make_pipeline(args, source: FrameSource, spec: STFTSpec, enc: Encoding,
                  length: int | None = None, mel=None):
    """The file's FramePipeline (made before the output file is, so that a bad
    ``length`` is an error first), its phase stage and convergence meter.
    ``length``: samples to write when ``--length`` is not given (default the
    inverse's own, ``spec.samples_for``; :func:`file_end` finds the signal's)."""
    from .. import phase
    from ..pipeline import FramePipeline
    kind = frame_kind(source, mel)
    stage = meter = None
    if kind in ("magnitude", "mel"):
        method = args.phase_method or "pghi"
        # block by block, as the frames come: the frame bar shows the progress
        stage = phase.phase_stage(spec, method, args.iterations, rng=0)
        meter = None if args.quiet else phase.ConvergenceMeter(spec)
    if args.length is not None:
        length = args.length
    elif length is None:
        length = spec.samples_for(source.n_frames)
    its = getattr(args, "mel_iterations", None)
    pipe = FramePipeline(spec, enc, kind=kind, phase=stage, length=length, monitor=meter,
                         mel=mel, mel_iterations=32 if its is None else its)
    return pipe


def run_reconstruct(args) -> int:
    t0 = time.perf_counter()
    from .infer import frames_from_args, say_notes
    fmt, subtype = _output_format(args.output, args.subtype)
    how = None
    source, spec, enc, notes, mel, length = frames_from_args(args, "reconstruct")
    if mel is None:
        if args.length is None:
            length, how = file_end(source, spec, enc, bool(args.preset))
        if not args.quiet and args.sample_rate is None:
            log.warning("sample rate not given: assuming %g Hz (set --sample-rate)",
                        spec.sample_rate)
    pipe = make_pipeline(args, source, spec, enc, length, mel)
    say_notes(args, notes)
    bar = progress(source.n_frames, "reconstruct", quiet=args.quiet)
    blocks = reconstruct_blocks(source, pipe, bar)
    if args.normalize is not None:
        writer = _write_normalized(args, blocks, spec, fmt, subtype)
    else:
        from ..sinks import SoundFileWriter
        writer = SoundFileWriter(args.output, spec.sample_rate, spec.channels, fmt, subtype)
        try:
            for y in blocks:
                writer.write(y)
        finally:
            writer.close()
    bar.close()
    if not args.quiet:
        _summary(args, source, spec, writer, pipe, time.perf_counter() - t0)
        if how is not None:
            print(f"  length: {how}", file=sys.stderr)
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
        from ..sinks import SoundFileWriter
        writer = SoundFileWriter(args.output, spec.sample_rate, spec.channels, fmt, subtype,
                                 gain)
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


def _summary(args, source, spec, writer, pipe, seconds):
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
    if pipe.mel is not None:
        lines.append(f"  mel bands: {pipe.mel.describe()}; magnitudes by the pseudo-inverse "
                     f"and {pipe.mel_stage.iterations} projected-gradient steps per frame")
    if pipe.phase is not None:
        lines.append("  " + _phase_line(args, pipe))
    if pipe.nonfinite:
        what = "magnitudes" if pipe.kind == "magnitude" else "values"
        lines.append(f"  {pipe.nonfinite} NaN/Inf {what} were replaced by 0")
    for line in lines:
        print(line, file=sys.stderr)
    if writer.clipped:
        what = "clipped" if writer.integer else "over full scale (players will clip them)"
        log.warning("%d samples %s; peak %s; use --normalize", writer.clipped, what,
                    dbfs(writer.peak))


def _phase_line(args, pipe) -> str:
    """How the phase was rebuilt, and how consistent the audio is with the magnitudes."""
    stage = pipe.phase
    method = getattr(stage, "method", "rtpghi")
    its = getattr(stage, "iterations", None)
    its = (32 if its is None else its) if method in ("pghi", "griffinlim") else None
    line = f"phase rebuilt from the magnitude by {method}"
    if its:
        line += f", {its} iterations"
    if getattr(stage, "seconds", None) is not None:
        line += f" in {stage.seconds:.2f} s"
    if pipe.monitor is not None:
        line += f"; spectral convergence {pipe.monitor.result():.2f} dB"
        if args.normalize is not None:
            line += " (before --normalize)"
    return line
