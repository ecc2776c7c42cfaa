"""CPython 3.12 bytecode for the Lambda asset, compiled on a host whose Python may be another version.

Why: Lambda's ``/var/task`` is read-only, so a function whose asset has no ``.pyc`` compiles every module it
imports on every cold start and cannot keep the result. Measured here (docs/benchmarks.md, start-up): the
health check's first invocation imports in 680 ms in the asset's layout without bytecode and in 234 ms with
it; the difference is compiling botocore, pydantic and Powertools.

How: ``.pyc`` files are specific to a Python minor version (the magic number in their header, the
``cpython-312`` tag in their name), and the Lambda runtime is 3.12 while the host running ``cdk synth`` may
not be. So ``compile_bytecode.mjs`` runs CPython 3.12 itself, compiled to WebAssembly (Pyodide, pinned in
package.json), under the Node.js the CDK needs anyway, and compiles every ``.py`` of the asset in place:
- *unchecked-hash* pycs (PEP 552): no timestamp in them, so the same sources give the same bytes, and the
  runtime never compares them with the sources (nothing can change in an immutable asset);
- the code objects name ``/var/task/...`` (the asset's place at run time), so tracebacks read as deployed.
The Docker fallback runs the same compile with the 3.12 build image's own Python (``docker_command``).

Invariant: after ``compile_asset`` returns, every ``.py`` under ``lambdas/`` has its 3.12 pyc; a dependency's
file that CPython 3.12 cannot compile (none in the pinned set) is reported and left without one, as Python
would have failed on it at import too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("compile_bytecode.mjs")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUNTIME_DIR = "/var/task"  # where Lambda unpacks a .zip function's code
CACHE_TAG = "cpython-312"  # matches Runtime.PYTHON_3_12 (lambda_asset.PYTHON_VERSION)
# importlib.util.MAGIC_NUMBER of every CPython 3.12 release (3531, Lib/importlib/_bootstrap_external.py)
MAGIC_312 = bytes.fromhex("cb0d0d0a")
FLAG_HASH_BASED = 0b01  # PEP 552 flags word: bit 0 hash-based, bit 1 check_source
FLAG_CHECK_SOURCE = 0b10


class BytecodeError(RuntimeError):
    """The asset's bytecode could not be compiled for the Lambda runtime; the message says what to do."""


@dataclass(frozen=True)
class CompileReport:
    version: str
    cache_tag: str
    compiled: int
    failed: list[dict[str, str]]


def compile_asset(asset_dir: Path, *, node: str | None = None) -> CompileReport:
    """Compile every .py under ``asset_dir`` to CPython 3.12 bytecode, in place (see the module docstring)."""
    node = node or shutil.which("node")
    if not node:
        raise BytecodeError("albgate: bundling needs Node.js to compile the asset's bytecode (apt-get install nodejs)")
    if not (PROJECT_ROOT / "node_modules" / "pyodide").is_dir():
        raise BytecodeError(
            "albgate: bundling compiles the asset's CPython 3.12 bytecode with Pyodide, which is not installed: "
            f"run `npm ci` in {PROJECT_ROOT} (./dev does it)"
        )
    result = subprocess.run(
        [node, str(SCRIPT), str(asset_dir), RUNTIME_DIR], capture_output=True, text=True, check=False, cwd=PROJECT_ROOT
    )
    if result.returncode != 0:
        raise BytecodeError(f"albgate: compiling the asset's bytecode failed:\n{result.stderr.strip()[-2000:]}")
    raw = json.loads(result.stdout.strip().splitlines()[-1])
    report = CompileReport(raw["version"], raw["cache_tag"], raw["compiled"], raw["failed"])
    if report.cache_tag != CACHE_TAG or bytes.fromhex(raw["magic"]) != MAGIC_312:
        raise BytecodeError(
            f"albgate: the bytecode compiler is CPython {report.version} ({report.cache_tag}), not the Lambda "
            f"runtime's {CACHE_TAG}: package.json must pin a Pyodide release built on CPython 3.12"
        )
    own = [f["file"] for f in report.failed if f["file"].startswith("lambdas/")]
    if own:
        raise BytecodeError(f"albgate: CPython 3.12 cannot compile {', '.join(own)}: {report.failed}")
    if report.failed:
        print(f"albgate: {len(report.failed)} dependency file(s) have no 3.12 bytecode (CPython 3.12 cannot "
              f"compile them either): {', '.join(f['file'] for f in report.failed[:5])}", file=sys.stderr)
    return report


def docker_command(asset_dir: str = "/asset-output") -> str:
    """The same compile inside the Lambda runtime's 3.12 build image, whose own Python is the right one."""
    return f"python -m compileall -q -d {RUNTIME_DIR} --invalidation-mode unchecked-hash {asset_dir}"


def pyc_path(source: Path) -> Path:
    return source.parent / "__pycache__" / f"{source.stem}.{CACHE_TAG}.pyc"


def bytecode_problems(asset_dir: Path) -> list[str]:
    """Each .py under ``asset_dir`` whose 3.12 pyc is missing, for another version, or not unchecked-hash."""
    problems = []
    for source in sorted(asset_dir.rglob("*.py")):
        pyc = pyc_path(source)
        if not pyc.is_file():
            problems.append(f"{source.relative_to(asset_dir)}: no {pyc.name}")
            continue
        header = pyc.read_bytes()[:8]
        flags = int.from_bytes(header[4:8], "little")
        if header[:4] != MAGIC_312:
            problems.append(f"{source.relative_to(asset_dir)}: magic {header[:4].hex()}, not CPython 3.12's")
        elif flags & FLAG_HASH_BASED == 0 or flags & FLAG_CHECK_SOURCE:
            problems.append(f"{source.relative_to(asset_dir)}: flags {flags}, not an unchecked-hash pyc")
    return problems
