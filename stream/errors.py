"""The project's exceptions: one root, one subclass per kind of fault.

Catch :class:`SpecstreamError` for anything specstream raises on purpose.
Messages name the parameter as the Python API spells it (``hop_length=0``);
the command line maps those names to its flags (``--hop-length``).

=================  ==========================================================
ParameterError     a parameter that cannot work (also a ``ValueError``)
InputError         a file or array that cannot be read as asked
ProtocolError      a wire message that breaks docs/protocol.md (``.kind``)
DeviceError        an audio device or sink that cannot do what is asked
SendError          frames that did not reach a receiver (none there, a send
                   that timed out, frames still queued when the sender closed)


MissingDependency  an optional package a feature needs is not installed
=================  ==========================================================
"""

from __future__ import annotations

__all__ = ["SpecstreamError", "ParameterError", "InputError", "ProtocolError", "DeviceError",
           "SendError", "MissingDependency"]


class SpecstreamError(Exception):
    """Root of every error specstream raises on purpose."""


class ParameterError(SpecstreamError, ValueError):
    """A parameter (STFT, units, option) that cannot work; the message says what to change."""


class InputError(SpecstreamError):
    """A file or array that cannot be read as asked; the message says why and what to try."""


class ProtocolError(SpecstreamError):
    """A message that does not follow the wire protocol.

    ``kind`` names the fault for the receiver's counters ('envelope',
    'version', 'header', 'frames', 'oversized', ...).
    """

    def __init__(self, message: str, kind: str = "header"):
        super().__init__(message)
        self.kind = kind


class DeviceError(SpecstreamError):
    """An audio device or sink that cannot be opened or used as asked."""


class SendError(SpecstreamError):
    """Frames that did not reach a receiver: nobody connected, a send that
    waited longer than its timeout, or frames still queued when the sender
    gave up at close.  The message says which, and how many frames."""


class MissingDependency(SpecstreamError, ImportError):
    """An optional package a feature needs is not installed; the message says
    what to install (:func:`stream.extras.require`)."""
