"""The asset's CPython 3.12 bytecode: compiled by CPython 3.12 (Pyodide under Node), deterministic, and used.

These run the real compiler on small trees (a few seconds: one Pyodide start each); the whole asset is
compiled by the opt-in bundling test.
"""

from __future__ import annotations

import importlib.util
import py_compile
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from stacks.constructs import bytecode
from stacks.constructs.bytecode import (
    MAGIC_312,
    BytecodeError,
    bytecode_problems,
    compile_asset,
    docker_command,
    pyc_path,
)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


SOURCES = {
    "lambdas/__init__.py": "",
    "lambdas/handlers/__init__.py": "",
    "lambdas/handlers/ping.py": "def handler(event, context):\n    return {'pong': event}\n",
    "dep/__init__.py": "VALUE = 42\n",
}


@pytest.fixture
def asset(tmp_path) -> Path:
    return _tree(tmp_path / "asset", SOURCES)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[Path, bytecode.CompileReport]:
    """One tree compiled once for the tests that only read it (each compile starts Pyodide: ~2 s)."""
    tree = _tree(tmp_path_factory.mktemp("compiled") / "asset", SOURCES)
    return tree, compile_asset(tree)


def test_every_source_gets_an_unchecked_hash_pyc_for_cpython_312(compiled):
    # Given the tree compiled, then: CPython 3.12 did it, and every .py has its cpython-312 pyc, hash-based and
    # never re-checked against its source
    tree, report = compiled
    assert report.cache_tag == "cpython-312" and report.version.startswith("3.12.")
    assert report.compiled == 4 and report.failed == []
    assert bytecode_problems(tree) == []
    assert pyc_path(tree / "dep" / "__init__.py").read_bytes()[:4] == MAGIC_312


def test_the_code_objects_name_the_runtime_path(compiled):
    tree, _ = compiled
    assert b"/var/task/lambdas/handlers/ping.py" in pyc_path(tree / "lambdas/handlers/ping.py").read_bytes()


def test_the_same_sources_give_the_same_bytes(compiled, asset):
    # Given the same sources compiled separately (another directory, another time)
    tree, _ = compiled
    compile_asset(asset)
    # Then the pycs are byte for byte the same: no timestamp, no host path in them
    for source in tree.rglob("*.py"):
        assert pyc_path(source).read_bytes() == pyc_path(asset / source.relative_to(tree)).read_bytes()


def test_python_312_imports_the_bytecode_not_the_source(compiled, tmp_path):
    # Given the compiled tree, with a source then replaced by something that does not even parse
    asset = shutil.copytree(compiled[0], tmp_path / "copy")
    (asset / "dep" / "__init__.py").write_text("this is not python (\n")
    # When CPython 3.12 imports it
    script = textwrap.dedent("""
        import { loadPyodide } from "pyodide";
        const py = await loadPyodide();
        py.FS.mkdirTree("/var/task");
        py.FS.mount(py.FS.filesystems.NODEFS, { root: process.argv[1] }, "/var/task");
        console.log(py.runPython(
          "import sys; sys.path.insert(0, '/var/task'); import dep; " +
          "f'{sys.version_info[:2]} {dep.VALUE} {dep.__cached__}'"));
    """)
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script, str(asset)],
        capture_output=True, text=True, check=True, cwd=bytecode.PROJECT_ROOT,
    )  # fmt: skip
    # Then it ran the pyc (unchecked-hash: the source is not read back)
    assert out.stdout.strip() == "(3, 12) 42 /var/task/dep/__pycache__/__init__.cpython-312.pyc"


def test_a_dependency_file_3_12_cannot_compile_is_reported_not_fatal(asset, capsys):
    _tree(asset, {"dep/py2_only.py": "print 'hello'\n"})
    report = compile_asset(asset)
    assert [f["file"] for f in report.failed] == ["dep/py2_only.py"]
    assert "1 dependency file(s) have no 3.12 bytecode" in capsys.readouterr().err
    assert bytecode_problems(asset) == ["dep/py2_only.py: no py2_only.cpython-312.pyc"]


def test_an_albgate_file_that_does_not_compile_stops_the_bundle(asset):
    _tree(asset, {"lambdas/handlers/broken.py": "def handler(:\n"})
    with pytest.raises(BytecodeError, match="cannot compile lambdas/handlers/broken.py"):
        compile_asset(asset)


def test_missing_pyodide_says_how_to_install_it(asset, monkeypatch, tmp_path):
    monkeypatch.setattr(bytecode, "PROJECT_ROOT", tmp_path)
    with pytest.raises(BytecodeError, match="run `npm ci`"):
        compile_asset(asset)


def test_problems_name_a_missing_a_foreign_and_a_checked_pyc(tmp_path):
    # Given three sources: one without a pyc, one compiled by this host's Python (3.11 here), one checked-hash
    tree = _tree(tmp_path, {"a.py": "A = 1\n", "b.py": "B = 2\n", "c.py": "C = 3\n"})
    local = importlib.util.MAGIC_NUMBER
    for name, mode in (("b", py_compile.PycInvalidationMode.UNCHECKED_HASH), ("c", py_compile.PycInvalidationMode.CHECKED_HASH)):
        out = pyc_path(tree / f"{name}.py")
        py_compile.compile(str(tree / f"{name}.py"), cfile=str(out), invalidation_mode=mode)
        if name == "c":  # make it a 3.12 header, so only its flags are wrong
            out.write_bytes(MAGIC_312 + out.read_bytes()[4:])
    problems = bytecode_problems(tree)
    assert problems[0] == "a.py: no a.cpython-312.pyc"
    if local != MAGIC_312:
        assert problems[1] == f"b.py: magic {local.hex()}, not CPython 3.12's"
    assert problems[-1] == "c.py: flags 3, not an unchecked-hash pyc"


def test_the_docker_fallback_compiles_the_same_way():
    assert docker_command() == "python -m compileall -q -d /var/task --invalidation-mode unchecked-hash /asset-output"
