"""Optional dependencies: which extra of the package brings each, and the
one-line error when one is missing.

Imported where a feature needs them, never at ``import stream``: a plain
install answers ``--help`` without them, and says what to install when a
feature asks for one (``pip install 'specstream[plot]'``).
"""

from __future__ import annotations

import importlib

from .errors import MissingDependency

__all__ = ["EXTRAS", "require"]

#: module -> the extra of ``pyproject.toml`` that installs it
EXTRAS = {"scipy": "mat", "h5py": "mat", "matplotlib": "plot", "numba": "fast"}


def require(module: str, purpose: str):
    """``module`` imported, or :class:`MissingDependency` saying that
    ``purpose`` ("reading MAT files") needs it and which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS.get(module.split(".")[0])
        how = f"pip install 'specstream[{extra}]'" if extra else f"pip install {module}"
        raise MissingDependency(f"{purpose} needs {module.split('.')[0]}: {how}") from None
