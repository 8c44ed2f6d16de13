"""The package's imports point one way: source -> frames -> decode -> pipeline -> engine -> sink,
with the command line on top.  Read from the source (ast), every import, lazy ones too."""

import ast
import json
import subprocess
import sys

from programs import ROOT, program_env

PACKAGE = ROOT / "stream"
#: The DSP core: no I/O, no command line, no sockets, no sinks, no file readers.
CORE = ("stream.spec", "stream.fft", "stream.batch", "stream.engine", "stream.decode",
        "stream.phase", "stream.pipeline", "stream.errors", "stream.mel", "stream.jit")
#: What the core must never import.
OUTSIDE_CORE = ("stream.cli", "stream.transport", "stream.protocol", "stream.sinks",
                "stream.files", "stream.formats", "stream.probe")


def module_name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_package(path) -> bool:
    return path.name == "__init__.py"


def resolve(name: str) -> str | None:
    """The project module ``name`` refers to (a submodule, or its package), or None."""
    parts = name.split(".")
    while parts:
        dotted = "/".join(parts)
        if (ROOT / f"{dotted}.py").exists() or (ROOT / dotted / "__init__.py").exists():
            return ".".join(parts)
        parts = parts[:-1]
    return None


def imports_of(path) -> set[str]:
    """Every project module that ``path`` imports, at any depth of the code."""
    me = module_name(path)
    package = me if is_package(path) else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names = [f"{base}.{a.name}" for a in node.names] + ([base] if node.module else [])
        else:
            continue
        for n in names:
            if n.split(".")[0] == "stream":
                target = resolve(n)
                if target and target != me:
                    found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_no_import_cycles():
    g = graph()
    # A package's __init__ importing its own submodules is how packages are
    # made; what counts is a submodule importing back up into a cycle.
    edges = {m: {t for t in ts if not (is_pkg_init(m) and t.startswith(m + "."))}
             for m, ts in g.items()}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)


def is_pkg_init(name: str) -> bool:
    return (ROOT / name.replace(".", "/") / "__init__.py").exists()


def test_nothing_outside_the_command_line_imports_it():
    for m, targets in graph().items():
        if not within(m, ("stream.cli",)) and m not in ("stream.__main__",):
            assert not any(within(t, ("stream.cli",)) for t in targets), (m, targets)


def test_the_dsp_core_imports_no_io():
    for m, targets in graph().items():
        if within(m, CORE):
            bad = sorted(t for t in targets if within(t, OUTSIDE_CORE))
            assert not bad, f"{m} imports {bad}"


def test_no_import_error_guards_around_our_own_modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Try):
                continue
            catches = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if not any("ImportError" in c or "ModuleNotFoundError" in c for c in catches):
                continue
            for inner in node.body:
                for sub in ast.walk(inner):
                    if isinstance(sub, ast.ImportFrom):
                        assert not (sub.level or (sub.module or "").startswith("stream")), \
                            f"{path.name}:{sub.lineno}: ImportError guard around our own module"


def test_import_stream_loads_no_sockets_or_audio():
    code = ("import json, sys, stream, stream.sinks, stream.cli; "
            "print(json.dumps(sorted(m for m in ('zmq', 'sounddevice', 'pyfftw') "
            "if m in sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=program_env(), cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
