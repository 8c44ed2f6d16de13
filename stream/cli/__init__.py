"""The ``specstream`` command line: the top floor, nothing imports it.

Subcommands: ``reconstruct`` (files -> audio file), ``probe`` (infer how a
spectrogram was made), ``send`` / ``play`` (frames over ZeroMQ, live
playback), ``devices``, ``demo``.  Every error the user can fix is one line
on stderr and exit status 2; no tracebacks for bad input.
"""

from __future__ import annotations

import logging
import sys

from .. import __version__
from ..errors import SpecstreamError
from . import live, probe, reconstruct
from .common import Parser, flag_names

__all__ = ["main", "build_parser"]


def build_parser() -> Parser:
    p = Parser(prog="specstream",
               description="Streaming, real-time audio reconstruction from STFT frames.")
    p.add_argument("--version", action="version", version=f"specstream {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in (reconstruct, probe, live):
        command.register(sub)
    p.commands = sub.choices          # name -> its parser, whose flags errors name
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
    except (SpecstreamError, OSError) as e:
        if isinstance(e, SpecstreamError):
            msg = flag_names(str(e), parser.commands.get(args.command, parser))
        else:
            msg = f"{e.strerror or e}: {e.filename or ''}"
        print(f"specstream {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"specstream {args.command}: interrupted", file=sys.stderr)
        return 130
