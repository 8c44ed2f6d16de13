"""The ``specstream`` command line: the top floor, nothing imports it.

Subcommands: ``reconstruct`` (files -> audio file), ``probe`` (infer how a
spectrogram was made), ``send`` / ``play`` (frames over ZeroMQ, live
playback), ``keygen`` (CURVE keys for them), ``devices``, ``demo``.

Exit status, the same for every command:

===  =====================================================================
0    done (``play --keep-alive`` also when stopped by a signal: its normal end)
1    frames did not reach a receiver (``send``: no player, dropped frames)
2    an error the user can fix: one line on stderr, no traceback
130  interrupted by Ctrl-C (SIGINT; 143 for SIGTERM), at any moment, start-up
     included: the heavy imports (numpy, pyfftw, pyzmq) happen inside
     :func:`main`, so that no traceback escapes
===  =====================================================================
"""

from __future__ import annotations

import signal
import sys

__all__ = ["main", "build_parser"]


def build_parser():
    """The ``specstream`` argument parser (a :class:`~stream.cli.common.Parser`)."""
    from .. import __version__
    from . import keygen, live, probe, reconstruct
    from .common import Parser
    p = Parser(prog="specstream",
               description="Streaming, real-time audio reconstruction from STFT frames.")
    p.add_argument("--version", action="version", version=f"specstream {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in (reconstruct, probe, live, keygen):
        command.register(sub)
    p.commands = sub.choices          # name -> its parser, whose flags errors name
    return p


_signals: list[int] = []


def _interrupt(signum, frame):
    # As Python's own handler, but remembered: a library that swallows the
    # KeyboardInterrupt in a bare except (some optional-import guards do, and
    # a Ctrl-C while they import lands there) must not make it vanish.
    _signals.append(signum)
    raise KeyboardInterrupt


def main(argv=None) -> int:
    """Run ``specstream ARGV``; returns the exit status (see the module docstring)."""
    command = None
    try:
        previous = signal.signal(signal.SIGINT, _interrupt)
    except ValueError:              # not the main thread: leave signals alone
        previous = None
    try:
        import logging
        parser = build_parser()
        args = parser.parse_args(argv)
        command = args.command
        logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                            format="specstream: %(levelname)s: %(message)s")
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        rc = _run(args, parser)
        if _signals:                # interrupted, though something swallowed it
            raise KeyboardInterrupt
        return rc
    except KeyboardInterrupt as e:
        print(f"specstream{' ' + command if command else ''}: interrupted", file=sys.stderr)
        return 128 + getattr(e, "signum", _signals[0] if _signals else signal.SIGINT)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _run(args, parser) -> int:
    from ..errors import SendError, SpecstreamError
    from .common import flag_names
    try:
        return args.func(args) or 0
    except (SpecstreamError, OSError) as e:
        if isinstance(e, SpecstreamError):
            msg = flag_names(str(e), parser.commands.get(args.command, parser))
        else:
            msg = f"{e.strerror or e}: {e.filename or ''}"
        print(f"specstream {args.command}: error: {msg}", file=sys.stderr)
        return 1 if isinstance(e, SendError) else 2
