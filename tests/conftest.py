"""Shared test set-up: a private FFTW wisdom/cache dir, fast planning, and the audio server fixture."""

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same examples every time (a failure there can be reproduced);
# elsewhere hypothesis explores new ones on every run.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    # Keep FFTW wisdom out of the user's home; subprocesses inherit it.
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield


try:  # the PulseAudio null-sink fixture (tests/audio_server.py)
    from audio_server import *  # noqa: F401,F403
except ImportError:
    pass
