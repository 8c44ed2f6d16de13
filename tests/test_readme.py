"""The README's set-up commands are what CI runs, and tests start the program one way."""

import re

from programs import ROOT


def readme_commands() -> list[str]:
    """The shell commands of the README's Quick start, in order."""
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", quick, re.S)]


def test_ci_runs_the_readme_test_command_verbatim():
    install, test = readme_commands()
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test in ci_lines, "the README's test command and .ci/run differ"
    assert "python -m pytest" in test and "demo" in install


def test_readme_commands_work_with_and_without_sudo():
    # Root in a container has no sudo: every apt-get goes through $SUDO, which
    # is empty for root and "sudo" for anyone else.
    for cmd in readme_commands():
        assert cmd.startswith('SUDO=$([ "$(id -u)" = 0 ] || echo sudo); ')
        assert re.findall(r"(\S+) apt-get", cmd) == ["$SUDO", "$SUDO"], cmd


def test_tests_never_look_the_program_up_on_path():
    # One home for starting the program (tests/programs.py): sys.executable -m
    # stream, or the console script beside sys.executable.
    for path in sorted((ROOT / "tests").glob("*.py")):
        if path.name in ("programs.py", "test_readme.py"):
            continue
        text = path.read_text()
        assert not re.search(r"which\(\s*['\"]specstream", text), path.name
        assert '"-m", "stream"' not in text, f"{path.name}: use programs.SPECSTREAM"


def test_a_plain_install_ships_every_subpackage():
    # The README's first command is a plain (not editable) 'pip install .':
    # every package under stream/ must be in the distribution.
    import tomllib

    from setuptools import find_packages
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = set(find_packages(where=str(ROOT), include=include))
    packages = {".".join(p.parent.relative_to(ROOT).parts)
                for p in (ROOT / "stream").rglob("__init__.py")}
    assert packages and packages <= shipped, sorted(packages - shipped)


def readme_snippet(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_sender_and_receiver_run_as_written(tmp_path):
    """The two snippets a new user copies, run on loopback as they stand
    (only the port changed), give back the audio the frames hold."""
    import socket
    import threading

    import numpy as np

    from stream import STFTSpec, istft, stft
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    spec = STFTSpec(sample_rate=48000, n_fft=1024, hop_length=256)
    x = np.sin(2 * np.pi * 440 * np.arange(12000) / 48000).astype(np.float32)
    z = stft(x, spec)
    frames = list(zip(np.abs(z), np.angle(z)))
    received = []
    receive = readme_snippet("### Receive frames in your own program")
    send = readme_snippet("### Send frames from your own program")
    ready = threading.Event()

    def receiver():
        code = receive.replace("tcp://127.0.0.1:5556", endpoint)
        code = code.replace("    for event in rx:", "    ready.set()\n    for event in rx:")
        exec(code, {"play": received.append, "ready": ready})

    t = threading.Thread(target=receiver, daemon=True)
    t.start()
    assert ready.wait(10)
    exec(send.replace("tcp://127.0.0.1:5556", endpoint), {"frames": frames})
    t.join(30)
    assert not t.is_alive()
    y = np.concatenate(received)
    want = istft(z, spec)
    assert len(y) == len(want)
    np.testing.assert_allclose(y, want, atol=1e-5)
