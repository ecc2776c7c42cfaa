"""Benchmark (not a test): how long `python app.py` takes cold and warm, bundling included, side by side.

Method: three kinds of synth of the example config, each in a fresh process (as `cdk synth` runs the app),
measured as wall time, ``--repeat`` rounds interleaved so that the machine's load hits every kind alike:
- ``cold``: an empty bundle cache (``ALBGATE_CACHE_DIR`` pointed at a new folder) and a new output folder: pip
  installs both locks and Pyodide compiles their bytecode;
- ``warm, new outdir``: the cache filled by the cold run, a new output folder: the bundles are copied from it;
- ``warm, same outdir``: the output folder of the previous synth: CDK finds the staged assets and copies nothing.
The medians and the ratio of each warm kind to cold go to ``out/bench/synth.json`` (the table measured so far is
in docs/foundation.md, "Measured").

Run: .venv/bin/python bench/bench_synth.py [--repeat 3] [--write-docs]   (the table also goes to docs/results/synth.md)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ROOT,
    add_write_docs,
    command_line,
    docs_header,
    machine,
    markdown_table,
    write_docs,
    write_result,
)

KINDS = ("cold", "warm, new outdir", "warm, same outdir")


def synth(outdir: Path, cache: Path) -> float:
    env = {**os.environ, "ALBGATE_CACHE_DIR": str(cache), "CDK_OUTDIR": str(outdir),
           "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "app.py", "-q"], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"python app.py failed:\n{done.stderr[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    add_write_docs(ap, "synth")
    args = ap.parse_args(argv)
    info = machine()
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory(prefix="albgate-bench-synth-") as tmpname:
        tmp = Path(tmpname)
        for r in range(args.repeat):
            cache = tmp / f"cache-{r}"
            times["cold"].append(synth(tmp / f"cold-{r}", cache))
            times["warm, new outdir"].append(synth(tmp / f"warm-{r}", cache))
            times["warm, same outdir"].append(synth(tmp / f"warm-{r}", cache))
            print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [[k, f"{med[k]:.1f}", f"{min(times[k]):.1f}-{max(times[k]):.1f}", f"{med[k] / med['cold']:.2f}"]
            for k in KINDS]
    table = markdown_table(["synth (`python app.py`, bundling on)", "median s", "range s", "x cold"], rows, "lrrr")
    print(table)
    path = write_result("synth", {"benchmark": "synth", "command": command_line(), "machine": info,
                                  "repeat": args.repeat, "seconds": times, "median": med, "table": table}, args.out)
    print(f"wrote {path}")
    if args.write_docs:
        header = docs_header(info, sample=f"{args.repeat} rounds of the three kinds, interleaved")
        print(f"wrote {write_docs(args.write_docs, 'synth', 'Synth: cold and warm', header, table)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
