"""``specstream keygen DIR [--name NAME]``: a CURVE key pair for ``play`` and ``send``.

Writes ``DIR/NAME.key`` (the public key: give it to the other side) and
``DIR/NAME.key_secret`` (both keys, mode 0600: keep it), in ZeroMQ's own
certificate format (:func:`stream.security.create_key_pair`).
"""

from __future__ import annotations

import sys

__all__ = ["register"]


_ABOUT = ("Write a CURVE key pair in ZeroMQ's certificate format: NAME.key (public: give "
          "it to the other side, for its --allow or --curve-server) and NAME.key_secret "
          "(secret, mode 0600: this side's --curve-secret).")


def register(sub):
    """Add ``keygen`` to the ``specstream`` subparsers."""
    p = sub.add_parser("keygen", description=_ABOUT,
                       help="make a CURVE key pair (authenticated, encrypted streams)")
    p.add_argument("directory", metavar="DIR", help="where to write the keys (made if missing)")
    p.add_argument("--name", default="specstream",
                   help="file name of the pair: NAME.key, NAME.key_secret (default specstream)")
    p.add_argument("--force", action="store_true", help="replace an existing pair of that name")
    p.set_defaults(func=run_keygen)


def run_keygen(args) -> int:
    from ..security import create_key_pair, load_public_key
    public, secret = create_key_pair(args.directory, args.name, overwrite=args.force)
    key = load_public_key(public).decode()
    print(f"specstream keygen: public key {key}\n"
          f"  {public}  (public: the other side's --allow, or --curve-server)\n"
          f"  {secret}  (secret, mode 0600: this side's --curve-secret)", file=sys.stderr)
    return 0
