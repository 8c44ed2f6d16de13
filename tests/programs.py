"""How the tests start the program: the one home for it.

Always as ``sys.executable -m stream``, or as the ``specstream`` console script
installed beside ``sys.executable`` (the venv's own ``bin/``), never looked up
on ``PATH``: a fresh machine has no ``specstream`` there, and one that does may
hold another install than the one under test.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: ``python -m stream`` with the interpreter running the tests.
SPECSTREAM = [sys.executable, "-m", "stream"]


def console_script() -> list[str]:
    """The installed ``specstream`` script of the venv running the tests."""
    # Not resolved: a venv's python is a symlink to the system one, and the
    # script lives beside the link, in the venv's bin/.
    exe = Path(sys.executable).parent / "specstream"
    assert exe.is_file(), (f"{exe} is missing: the console script is installed by "
                           f"'pip install -e .' into the venv of {sys.executable}")
    return [str(exe)]


def program_env(base: dict | None = None, **extra) -> dict:
    """``base`` (default: this process's environment) with this checkout first
    on ``PYTHONPATH``, so the program under test is the one in this tree."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_program(args, *, cmd: list[str] | None = None, env: dict | None = None,
                timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run ``specstream ARGS`` to completion, capturing text output."""
    cmd = SPECSTREAM if cmd is None else cmd
    kw.setdefault("cwd", ROOT)
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                          env=program_env(env), timeout=timeout, **kw)


@contextlib.contextmanager
def started_player(args, env, ready: str = "listening on", timeout: float = 30.0):
    """``specstream ARGS`` started (a player), its stderr relayed line by line
    into a list; yields ``(process, lines)`` once a line holds ``ready``, and
    kills the process if it is still running at the end."""
    proc = subprocess.Popen(SPECSTREAM + list(args), env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, said = [], threading.Event()

    def relay():
        for line in proc.stderr:
            lines.append(line)
            if ready in line:
                said.set()
        said.set()

    threading.Thread(target=relay, daemon=True).start()
    try:
        assert said.wait(timeout) and proc.poll() is None, "".join(lines)
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
