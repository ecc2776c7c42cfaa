"""Benchmark (not a test): how long each Lambda handler module takes to import, and how big the code asset is.

Job:
- for every deployed handler (stacks/constructs/specs.py), ``python -X importtime -c "import
  lambdas.handlers.<m>"`` in a fresh process with the function's environment from the synthesized template
  (plus what Lambda sets: AWS_REGION, AWS_LAMBDA_FUNCTION_NAME, LAMBDA_TASK_ROOT, so Powertools' Tracer is on
  as with ``Tracing.ACTIVE``); the import time is the sum of ``self`` times from the first ``lambdas`` import
  on (the interpreter's own start-up imports excluded), median of ``--repeat`` (5) runs; also the process's
  wall time minus that of ``python -c pass``, and which heavy packages the import pulled in (kubernetes?);
- one more row per path that matters: the first invocation of the health check and of the drain check, which
  builds the real ports (``lambdas.adapters.wiring``) and, because both list the step's pods first, the
  Kubernetes adapter on its light transport (``kube_http``: reads never import the kubernetes client); with
  ``--client-row``, also the health check's first invocation as it was before ``kube_http``, over the
  kubernetes client (the path a write's first call still takes), for a comparison inside one run;
- three layouts: the development venv (``.pyc`` cached); the asset layout without bytecode (the requirements
  installed with ``--no-compile`` for this host's Python into a temp dir, the package copied, run with
  ``-S -B``: Lambda's /var/task is read-only, so there every cold start compiles what it imports); and the same
  layout with bytecode compiled as the bundler compiles the real asset (unchecked-hash pycs, ``/var/task``
  paths; ``stacks/constructs/bytecode.py``), here by this host's Python, since the asset's own 3.12 pycs do not
  load on another version: it measures what shipping bytecode saves, on this machine;
- the Lambda asset: bundled with ``stacks/constructs/lambda_asset.py``'s local bundler (pip, wheels for
  manylinux2014_x86_64 / CPython 3.12, CPython 3.12 bytecode) into a temp dir; unpacked and zipped (deflate)
  size in MB (10^6 bytes).
Invariant: nothing is imported into this process from the handlers; every number comes from a child process.

Run: .venv/bin/python bench/bench_startup.py [--repeat 5] [--modules m ...] [--skip-bundle] [--write-docs]
Method: docs/benchmarks.md, section 4; results: docs/results/startup.md (with --write-docs; wall times: run it
on an idle machine).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ROOT,
    add_write_docs,
    command_line,
    docs_header,
    fmt,
    machine,
    markdown_table,
    pinned_template,
    write_docs,
    write_result,
)

HEAVY = ("kubernetes", "boto3", "botocore", "pydantic", "aws_lambda_powertools", "aws_xray_sdk", "urllib3", "yaml")
TARGET_MS = 300.0
HEALTH_MODULE = "check_target_health"
# Handlers whose first invocation gets its own row: both read the step's pods before anything else.
FIRST_CALL_MODULES = (HEALTH_MODULE, "verify_drain")
# What their first invocation imports on top of the handler: the real ports, then the Kubernetes adapter on
# the light transport (wiring.LazyKubernetes.adapter, which every rollout handler uses for reads and writes).
FIRST_CALL_IMPORTS = ("lambdas.adapters.wiring", "lambdas.adapters.kube_http", "lambdas.adapters.kubernetes")
# The same before kube_http existed (the bootstrap's adapter still runs on it): the adapter over the kubernetes client.
CLIENT_CALL_IMPORTS = ("lambdas.adapters.wiring", "lambdas.adapters.kube_client", "lambdas.adapters.kubernetes")
_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)\s*$")


def handler_modules() -> list[tuple[str, str]]:
    """(module, function name) of every deployed handler, in the order the stack's spec lists give them."""
    try:
        from stacks.constructs.specs import ALL_HANDLERS, TRIGGER

        specs = (*ALL_HANDLERS, *TRIGGER)
    except ImportError:  # before stacks/constructs/specs.py existed
        from stacks.constructs.handler_specs import ALL_HANDLERS

        specs = ALL_HANDLERS
    return list(dict.fromkeys((s.module, s.name) for s in specs))


def core_modules() -> set[str]:
    """Handler modules that run on the core asset (stacks/constructs/specs.py, asset_family)."""
    from stacks.constructs.specs import ALL_HANDLERS, TRIGGER, asset_family

    return {s.module for s in (*ALL_HANDLERS, *TRIGGER) if asset_family(s).name == "core"}


def lambda_environment(module: str, function_name: str, memory: int = 256) -> dict[str, str]:
    """The function's environment from the template, plus the variables the Lambda runtime itself sets."""
    env_vars: dict[str, str] = {}
    for res in pinned_template()[1]["Resources"].values():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Lambda::Function" and props.get("Handler") == f"lambdas.handlers.{module}.handler":
            env_vars = {k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()
                        if isinstance(v, (str, int, float))}
            memory = int(props.get("MemorySize", memory))
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
        **env_vars,
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": f"albgate-{function_name}", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12", "LAMBDA_TASK_ROOT": str(ROOT),
    }


def parse_importtime(stderr: str) -> dict[str, Any]:
    """Sum of self times (us) from the first top-level ``lambdas`` import on; the packages imported then."""
    rows = []
    for line in stderr.splitlines():
        m = _LINE.match(line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2, m.group(4)))
    start = next((i for i, r in enumerate(rows) if r[3] == "lambdas" or r[3].startswith("lambdas.")), None)
    if start is None:
        raise RuntimeError("no `lambdas` import in the -X importtime output:\n" + stderr[-2000:])
    # importtime prints a package after its children: the block of our import starts at the first line after
    # the interpreter's start-up (the last top-level line before the first `lambdas` line that is not ours).
    first = start
    while first > 0 and rows[first - 1][2] > 0:
        first -= 1
    mine = rows[first:]
    names = {r[3].split(".")[0] for r in mine}
    by_package: Counter[str] = Counter()
    for r in mine:
        by_package[r[3].split(".")[0]] += r[0]
    return {
        "ms_by_package": {k: round(v / 1000.0, 1) for k, v in by_package.most_common(8)},
        "import_ms": sum(r[0] for r in mine) / 1000.0,
        "process_imports_ms": sum(r[0] for r in rows) / 1000.0,
        "modules": len(mine),
        "heavy": sorted(n for n in HEAVY if n in names),
        "kubernetes": "kubernetes" in names,
    }


def _run(python: list[str], code: str, env: dict[str, str], cwd: Path, importtime: bool) -> tuple[float, str]:
    cmd = [*python, *(["-X", "importtime"] if importtime else []), "-c", code]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return wall, p.stderr


def measure(python: list[str], code: str, env: dict[str, str], cwd: Path, repeat: int) -> dict[str, Any]:
    _run(python, code, env, cwd, True)  # warm the OS file cache (and, in the venv, the .pyc files)
    parsed = [parse_importtime(_run(python, code, env, cwd, True)[1]) for _ in range(repeat)]
    base = statistics.median(_run(python, "pass", env, cwd, False)[0] for _ in range(repeat))
    walls = [_run(python, code, env, cwd, False)[0] for _ in range(repeat)]
    return {
        "import_ms_median": statistics.median(p["import_ms"] for p in parsed),
        "import_ms_runs": [round(p["import_ms"], 1) for p in parsed],
        "wall_ms_over_python_median": 1000 * (statistics.median(walls) - base),
        "python_pass_ms": 1000 * base,
        "modules": parsed[-1]["modules"], "heavy": parsed[-1]["heavy"], "kubernetes": parsed[-1]["kubernetes"],
        "ms_by_package": parsed[len(parsed) // 2]["ms_by_package"],
    }


# What the Lambda Python runtime provides besides the asset (docs/facts.md, "Lambda"): the SDK and its dependencies,
# installed into the host layout at the venv's versions.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six")
# Only for the row that shows what Powertools' Tracer cost before albgate dropped it: never in an asset.
TRACER_EXTRA = ("aws-xray-sdk", "wrapt")


def _pinned(names: tuple[str, ...]) -> list[str]:
    from importlib import metadata

    return [f"{n}=={metadata.version(n)}" for n in names]


def host_layout(tmp: Path) -> Path:
    """The core asset's layout for this host's Python: its lock with --no-deps, what the runtime provides, the
    package copied; plus the X-Ray SDK, which only the Tracer row imports."""
    from stacks.constructs.lambda_asset import copy_package

    out = tmp / "host-asset"
    common = ["-t", str(out), "--only-binary=:all:", "--no-compile", "--disable-pip-version-check", "--quiet"]
    pip = [sys.executable, "-m", "pip", "install"]
    subprocess.run([*pip, "--no-deps", "-r", str(ROOT / "lambdas" / "requirements.txt"), *common], check=True,
                   capture_output=True, text=True)
    subprocess.run([*pip, "--no-deps", *_pinned(RUNTIME_PROVIDED), *_pinned(TRACER_EXTRA), *common], check=True,
                   capture_output=True, text=True)
    copy_package(ROOT / "lambdas", out)
    return out


def compiled_layout(host: Path, tmp: Path) -> Path:
    """``host_layout`` plus bytecode for this host's Python, compiled the way the bundler compiles the asset."""
    from stacks.constructs.bytecode import RUNTIME_DIR

    out = tmp / "host-asset-compiled"
    shutil.copytree(host, out)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-d", RUNTIME_DIR, "--invalidation-mode",
                    "unchecked-hash", str(out)], check=True, capture_output=True, text=True)
    return out


def _measure_tree(out: Path, tmp: Path, name: str) -> dict[str, Any]:
    files = [p for p in out.rglob("*") if p.is_file()]
    per_top: Counter[str] = Counter()
    for p in files:
        top = p.relative_to(out).parts[0]
        per_top[re.sub(r"-[\d.]+(\.post\d+)?\.dist-info$", ".dist-info", top)] += p.stat().st_size
    zpath = tmp / f"{name}.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(files):
            z.write(p, p.relative_to(out))
    return {
        "files": len(files), "unpacked_mb": sum(p.stat().st_size for p in files) / 1e6,
        "zipped_mb": zpath.stat().st_size / 1e6, "pyc_files": sum(1 for p in files if p.suffix == ".pyc"),
        "largest_mb": {k: round(v / 1e6, 2) for k, v in per_top.most_common(8)},
    }


def bundle_asset(tmp: Path) -> dict[str, Any]:
    """Bundle each family with the stack's own local bundler (no cache), then measure it and the helm layer."""
    from stacks.constructs.helm_binary import helm_layer_dir
    from stacks.constructs.lambda_asset import FAMILIES, PipLocalBundling

    result: dict[str, Any] = {"families": {}}
    for family in FAMILIES:
        out = tmp / f"lambda-asset-{family.name}"
        out.mkdir()
        t0 = time.perf_counter()
        if not PipLocalBundling(family, cache_dir=None).try_bundle(str(out), None):
            raise RuntimeError("the local bundler refused (pip not usable here)")
        seconds = time.perf_counter() - t0
        result["families"][family.name] = {"bundle_seconds": round(seconds, 1), **_measure_tree(out, tmp, family.name)}
    result["helm_layer"] = _measure_tree(helm_layer_dir(cache_dir=tmp / "helm-layer"), tmp, "helm-layer")
    return result


LAYOUTS = ("venv", "asset layout with bytecode", "asset layout, no .pyc")  # the table's column order


def render(rows: list[dict[str, Any]], asset: dict[str, Any] | None) -> str:
    layouts = sorted({r["layout"] for r in rows}, key=LAYOUTS.index)
    table_rows = []
    for label in dict.fromkeys(r["label"] for r in rows):
        by = {r["layout"]: r for r in rows if r["label"] == label}
        first = next(iter(by.values()))
        cells = [label]
        for lay in layouts:
            r = by.get(lay)
            cells += ["-", "-"] if r is None else [fmt(r["import_ms_median"], 0), fmt(r["wall_ms_over_python_median"], 0)]
        cells += ["yes" if first["kubernetes"] else "no", ", ".join(first["heavy"])]
        table_rows.append(cells)
    headers = ["import"]
    for lay in layouts:
        headers += [f"{lay}: import ms (median)", f"{lay}: process ms over `python -c pass`"]
    headers += ["kubernetes imported", "heavy packages imported"]
    parts = [markdown_table(headers, table_rows, "l" + "r" * (2 * len(layouts)) + "ll")]
    if asset:
        for name, a in [*asset["families"].items(), ("helm layer", asset["helm_layer"])]:
            parts.append(f"{name}: {a['unpacked_mb']:.1f} MB unpacked in {a['files']} files "
                         f"({a['pyc_files']} .pyc), {a['zipped_mb']:.1f} MB zipped (deflate); largest: "
                         + ", ".join(f"{k} {v} MB" for k, v in a["largest_mb"].items()))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--modules", nargs="*", default=None, help="handler modules (default: every deployed one)")
    ap.add_argument("--skip-bundle", action="store_true",
                    help="no pip: measure the venv only and leave the asset size out")
    ap.add_argument("--client-row", action="store_true",
                    help="also time the health check's first invocation over the kubernetes client (the path "
                         "before kube_http, and a write's first call today)")
    ap.add_argument("--out", type=Path, default=None)
    add_write_docs(ap, "startup")
    args = ap.parse_args(argv)
    info = machine()
    mods = [(m, n) for m, n in handler_modules() if args.modules is None or m in args.modules]
    core = core_modules()
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    asset = None
    with tempfile.TemporaryDirectory(prefix="albgate-bench-startup-") as tmpname:
        tmp = Path(tmpname)
        layouts: list[tuple[str, list[str], Path]] = [("venv", [sys.executable], ROOT)]
        if not args.skip_bundle:
            asset = bundle_asset(tmp)
            host = host_layout(tmp)
            layouts.append(("asset layout, no .pyc", [sys.executable, "-S", "-B"], host))
            layouts.append(("asset layout with bytecode", [sys.executable, "-S", "-B"], compiled_layout(host, tmp)))
        for layout, python, cwd in layouts:
            for module, name in mods:
                if layout != "venv" and module not in core:
                    continue  # the host layouts are the core asset's; the bootstrap's run on the kubernetes one
                env = lambda_environment(module, name)
                jobs = [(f"lambdas.handlers.{module}", f"import lambdas.handlers.{module}")]
                if module in FIRST_CALL_MODULES:
                    jobs.append((f"{module} + first invocation's adapters",
                                 f"import lambdas.handlers.{module}; import " + ", ".join(FIRST_CALL_IMPORTS)))
                if module == HEALTH_MODULE and layout != "venv":
                    # What Powertools' Tracer added to every cold start before albgate dropped it (its X-Ray SDK
                    # is installed in the host layouts for this row only), measured beside the row without it.
                    jobs.append((f"{module} + Powertools Tracer (dropped)",
                                 f"import lambdas.handlers.{module}; from aws_lambda_powertools import Tracer; "
                                 "Tracer(service='albgate')"))
                if module == HEALTH_MODULE and args.client_row and layout == "venv":
                    jobs.append((f"{module} + adapters over the kubernetes client",
                                 f"import lambdas.handlers.{module}; import " + ", ".join(CLIENT_CALL_IMPORTS)))
                for label, code in jobs:
                    r = measure(python, code, env, cwd, args.repeat)
                    rows.append({"label": label, "module": module, "layout": layout, **r})
                    print(f"  {layout:>22}  {label:<60} {r['import_ms_median']:7.1f} ms  kubernetes={r['kubernetes']}",
                          file=sys.stderr)
    text = render(rows, asset)
    health = [r for r in rows if r["label"] == f"lambdas.handlers.{HEALTH_MODULE}"]
    first = [r for r in rows if r["label"] == f"{HEALTH_MODULE} + first invocation's adapters"]
    verdict = {
        "health_check_imports_kubernetes": any(r["kubernetes"] for r in health),
        "health_check_import_ms": {r["layout"]: round(r["import_ms_median"], 1) for r in health},
        "health_check_first_invocation_imports_kubernetes": any(r["kubernetes"] for r in first),
        "health_check_first_invocation_import_ms": {r["layout"]: round(r["import_ms_median"], 1) for r in first},
        "target_ms": TARGET_MS,
    }
    text += (f"\n\nHealth-check path (lambdas.handlers.{HEALTH_MODULE}): imports kubernetes at import time: "
             f"{'YES' if verdict['health_check_imports_kubernetes'] else 'no'}; import "
             + ", ".join(f"{k} {v} ms" for k, v in verdict["health_check_import_ms"].items())
             + f" (target < {TARGET_MS:.0f} ms); where the time goes ({health[0]['layout']}, self ms by "
             f"top-level package): {health[0]['ms_by_package']}" if health else "")
    text += (f"\nIts first invocation: imports kubernetes: "
             f"{'YES' if verdict['health_check_first_invocation_imports_kubernetes'] else 'no'}; import "
             + ", ".join(f"{k} {v} ms" for k, v in verdict["health_check_first_invocation_import_ms"].items())
             if first else "")
    print(text)
    path = write_result("startup", {
        "benchmark": "startup", "command": command_line(), "machine": info,
        "wall_seconds": round(time.perf_counter() - t0, 1), "repeat": args.repeat, "rows": rows, "asset": asset,
        "verdict": verdict, "table": text,
    }, args.out)
    print(f"wrote {path}")
    if args.write_docs:
        sample = (f"median of {args.repeat} runs of {len(mods)} handler modules"
                  + ("" if asset else ", venv only (--skip-bundle)"))
        header = docs_header(info, sample=sample, template_key=pinned_template()[0])
        print(f"wrote {write_docs(args.write_docs, 'startup', 'Start-up: handler import times', header, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
