"""specstream: streaming, real-time audio reconstruction from STFT frames.

The data path, one place per stage::

    source (files, transport)  ->  frames  ->  decode  ->  pipeline  ->  engine  ->  sinks

``import stream`` is light: it loads no numpy, and the FFT engine (pyfftw),
the transport (pyzmq) and the audio sink (sounddevice) are imported when
first used.  So the program can catch Ctrl-C from its very start: nothing
heavy runs before its ``main``.
"""

from __future__ import annotations

import importlib

from .errors import (DeviceError, InputError, ParameterError, ProtocolError, SendError,
                     SpecstreamError)

__version__ = "0.1.0"

#: Public names loaded on first use, and the module that holds each.
_LAZY = {
    "STFTSpec": "spec", "SpecError": "spec", "preset": "spec", "get_window": "spec",
    "Decoder": "decode", "Encoding": "decode",
    "Reconstructor": "engine", "Analyzer": "engine", "istft": "engine", "stft": "engine",
    "FramePipeline": "pipeline",
    "FrameSender": "transport", "SenderStats": "transport", "FrameReceiver": "transport",
    "ReceiverStats": "transport",
    "StreamStarted": "transport", "AudioBlock": "transport", "FramesBlock": "transport",
    "StreamEnded": "transport",
}

__all__ = ["SpecstreamError", "ParameterError", "InputError", "ProtocolError", "DeviceError",
           "SendError", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stream' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
