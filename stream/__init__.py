"""specstream: streaming, real-time audio reconstruction from STFT frames.

The data path, one module per stage::

    files / transport  ->  decode  ->  engine (inverse STFT)  ->  sinks

``sounddevice`` is imported only by the audio sink, when it is used.
"""

from .decode import Decoder, Encoding
from .engine import Analyzer, Reconstructor, istft, stft
from .spec import SpecError, STFTSpec, get_window, preset
from .transport import FrameReceiver, FrameSender

__version__ = "0.1.0"

__all__ = ["STFTSpec", "SpecError", "preset", "get_window", "Encoding", "Decoder",
           "Reconstructor", "Analyzer", "istft", "stft", "FrameSender", "FrameReceiver"]
