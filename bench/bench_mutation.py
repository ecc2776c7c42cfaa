"""Benchmark (not a test): the mutation score of the pure domain code (lambdas/domain) under the fast test layers.

Job: say how much of lambdas/domain the fast tests pin down. mutmut (3.x) makes small changes to every function
of the scope (an operator, a constant, a dropped argument, a flipped condition: one "mutant" each) and runs the
tests that reach the changed function against each; a mutant the tests still pass "survived". Two phases:
1. mutmut, on a copy of the checkout under out/mutation/<label>/ (git-ignored), with the fast layers
   (``TEST_LAYERS``) minus the files written against survivors (``MUTANT_TESTS``): the score before them;
2. every survivor of phase 1 again, against the ``MUTANT_TESTS`` files only: the tests that reach its function
   (recorded once with mutmut's "stats" switch), in a fork of a process that collected them, the mutant switched
   on through mutmut's own ``MUTANT_UNDER_TEST``: which test now kills it.
A survivor still alive after phase 2 is either in ``EQUIVALENT`` (no caller can tell it from the original, with
a one-line reason) or counted as a gap. Score = killed (timeouts count as killed) / (all mutants - equivalent).
Invariant: the checkout never carries a mutant: mutmut reads a copy and writes its mutants into the copy's
mutants/ folder; after the run the script fails if a module under lambdas/ carries mutmut's code.
Run: .venv/bin/python bench/bench_mutation.py [--only 'lambdas/domain/gate.py' ...] [--reuse] [--write-docs]
(under ``nice -n 19``: phase 1 keeps ``--max-children`` (2) processes busy). Method: docs/benchmarks.md,
"Mutation score"; results: docs/results/mutation.md (with --write-docs).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ROOT, add_write_docs, docs_header, machine, markdown_table, write_docs, write_result,
)

SCOPE = "lambdas/domain"  # every module of it; the gate keeper (gatekeeper.py) and the trigger's use case included
# The fast layers that import lambdas.domain: no CDK synth and no state machine run (moto), in-process only.
# (tests/bootstrap/test_end_to_end_sim.py is left out: after the layers above in one session it picks up the real
# EKS adapter that an earlier test left in place, and fails without AWS credentials.)
TEST_LAYERS = (
    "tests/unit",
    "tests/trigger/test_domain.py",
    "tests/trigger/test_use_case.py",
    "tests/bootstrap/test_bootstrap_domain.py",
    "tests/bootstrap/test_manifests.py",
    "tests/bootstrap/test_manifests_service_annotations.py",
    "tests/bootstrap/test_preflight_report.py",
    "tests/bootstrap/test_check_network.py",
    "tests/bootstrap/test_label_and_restart.py",
    "tests/handlers",
)
# Two tests of tests/unit run the synthesized state machine in the local runner: left out (seconds each).
DESELECTED = (
    "tests/unit/test_rollout_budget.py::test_one_rollout_of_the_seed_app_never_waits_for_the_default_budget",
    "tests/unit/test_rollout_budget.py::test_a_rollout_started_in_a_crowded_account_waits_its_turns_in_the_state_machine",
)
MUTANT_TESTS = "tests/unit/test_domain_mutants_*.py"  # the tests written against phase 1's survivors
HYPOTHESIS_SEED = "0"  # property tests draw the same examples in every run, so a kill is reproducible
PHASE2_TIMEOUT_S = 120  # one survivor against the MUTANT_TESTS files; past this the mutant counts as a timeout
COPIED_TOP = ("albgate", "lambdas", "stacks", "tests", "scenarios", "config", "docs", "app.py", "cdk.json",
              "pyproject.toml")
KILLED, TIMEOUT, SURVIVED, NO_TESTS, OTHER = "killed", "timeout", "survived", "no tests", "other"

# Survivors judged equivalent, each read in its context: one JSON file per module under ``EQUIVALENT_DIR``
# (rollout/gate.py -> rollout.gate.json), a list of {function, removed, added, why}: the lines are mutmut's diff,
# stripped, joined with " / "; the function is ``Class.method`` for a method; "why" says why no caller can tell the
# mutant from the original. A key that matches no survivor any more is reported (stale).
EQUIVALENT_DIR = Path(__file__).resolve().parent / "mutation_equivalent"


def load_equivalent(folder: Path = EQUIVALENT_DIR) -> dict[tuple[str, str, str, str], str]:
    out: dict[tuple[str, str, str, str], str] = {}
    for path in sorted(folder.glob("*.json")):
        module = path.stem.replace(".", "/") + ".py"
        for row in json.loads(path.read_text()):
            key = (module, row["function"], row["removed"], row["added"])
            if key in out:
                raise SystemExit(f"{path}: {row['function']}: the same mutation is judged twice")
            if not row.get("why", "").strip():
                raise SystemExit(f"{path}: {row['function']}: an entry without its reason ('why')")
            out[key] = row["why"]
    return out


EQUIVALENT = load_equivalent()


@dataclass
class Mutant:
    name: str
    module: str  # lambdas/domain/....py
    function: str
    status: str  # after phase 1: KILLED, TIMEOUT, SURVIVED, NO_TESTS or OTHER
    removed: str = ""
    added: str = ""
    killed_by: str = ""  # phase 2: the first MUTANT_TESTS test that fails on it
    phase2: str = ""  # phase 2: KILLED, TIMEOUT, SURVIVED ("" when phase 2 did not run it)
    equivalent: str = ""  # the reason, when EQUIVALENT holds it

    @property
    def killed_before(self) -> bool:
        return self.status in (KILLED, TIMEOUT)

    @property
    def killed_after(self) -> bool:
        return self.killed_before or self.phase2 in (KILLED, TIMEOUT)


# ---------------------------------------------------------------------------------------------------------
# The copy mutmut works in
# ---------------------------------------------------------------------------------------------------------
def repo_files() -> list[str]:
    """The checkout's files as git lists them (tracked and new, ignored ones left out) under ``COPIED_TOP``."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    return sorted(f for f in out if f.split("/", 1)[0] in COPIED_TOP and (ROOT / f).is_file())


def source_digest(commit: str | None) -> str:
    """What phase 1 depends on: the scope and the test layers (the MUTANT_TESTS files left out), in ``commit`` or
    in the working tree. ``--reuse`` keeps phase 1 only while this is unchanged (it trusts albgate/ to be)."""
    skip = re.compile(fnmatch.translate(MUTANT_TESTS))
    paths = [SCOPE, *TEST_LAYERS, *sorted({str(Path(t).parent / "conftest.py") for t in TEST_LAYERS}),
             "tests/conftest.py"]
    if commit:
        listing = subprocess.run(["git", "ls-tree", "-r", commit, "--", *paths], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout.splitlines()
        kept = [line for line in listing if not skip.match(line.split("\t", 1)[1])]
        return "commit:" + hashlib.sha256("\n".join(kept).encode()).hexdigest()
    h = hashlib.sha256()
    for top in paths:
        for p in sorted((ROOT / top).rglob("*.py")) if (ROOT / top).is_dir() else [ROOT / top]:
            if not p.is_file():
                continue
            rel = str(p.relative_to(ROOT))
            if "__pycache__" not in p.parts and not skip.match(rel):
                h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return "worktree:" + h.hexdigest()


def leftovers() -> list[str]:
    """Files of the checkout a mutation run would have left behind: a mutants/ folder at the top, or a module
    under lambdas/ carrying mutmut's trampolines. The run works in a copy, so this is empty; it is checked after
    every run (a hash of lambdas/ would not do: other work may edit it meanwhile)."""
    found = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "lambdas").rglob("*.py"))
             if "__pycache__" not in p.parts and "mutmut" in p.read_text(errors="replace")]
    return found + (["mutants/"] if (ROOT / "mutants").exists() else [])


def setup_cfg(only: list[str], deselect: list[str]) -> str:
    """mutmut's configuration (it reads setup.cfg of its working folder; the checkout has none)."""
    selection = [*TEST_LAYERS, f"--ignore-glob={MUTANT_TESTS}",
                 *(f"--deselect={t}" for t in (*DESELECTED, *deselect))]
    # forkserver: the stats run, the clean run and every mutant run in a fork of a process that has only
    # collected the tests, so a test that changes module state (its own parameters) cannot leak into the next run.
    # No git change detection: the copy sits inside the checkout's work tree, whose git state is not the copy's.
    lines = ["[mutmut]", "process_isolation = forkserver", "use_git_change_detection = false",
             "source_paths = lambdas", "only_mutate ="]
    lines += [f"    {p}" for p in only]
    lines += ["do_not_mutate =", "    */__init__.py"]
    lines += ["also_copy ="] + [f"    {p}" for p in COPIED_TOP if p not in ("lambdas", "tests", "pyproject.toml")]
    lines += ["pytest_add_cli_args_test_selection ="] + [f"    {a}" for a in selection]
    # no:unraisableexception: that plugin's clean-up runs gc.collect() five times over the heap the fork
    # inherited (every test module imported), about 0.8 s of each mutant's 0.9 s
    lines += ["pytest_add_cli_args =", f"    --hypothesis-seed={HYPOTHESIS_SEED}", "    -p", "    no:cacheprovider",
              "    -p", "    no:unraisableexception"]
    return "\n".join(lines) + "\n"


def prepare(work: Path, only: list[str], deselect: list[str], commit: str | None) -> None:
    """A fresh copy in ``work`` of the checkout's files (or of ``commit``'s) with mutmut's setup.cfg."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    if commit:
        archive = subprocess.run(["git", "archive", "--format=tar", commit, *COPIED_TOP], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(work, filter="data")
    else:
        for f in repo_files():
            dst = work / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst)
    (work / "setup.cfg").write_text(setup_cfg(only, deselect))


def resolve_commit(rev: str) -> str:
    r = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True,
                       text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"--from-commit {rev}: not a commit of this repository")
    return r.stdout.strip()


def mutmut_bin() -> str:
    exe = Path(sys.executable).parent / "mutmut"
    if not exe.exists():
        raise SystemExit("mutmut is not installed in this environment: .venv/bin/pip install -r requirements.txt")
    return str(exe)


def mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


SPINNER = tuple("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")  # mutmut's progress lines start with one of these


def run_mutmut(work: Path, max_children: int) -> float:
    """Phase 1: ``mutmut run`` in ``work``; its output goes to work/mutmut.log. Returns the wall seconds."""
    t0 = time.perf_counter()
    log = work / "mutmut.log"
    env = {k: v for k, v in os.environ.items() if k != "MUTANT_UNDER_TEST"}
    env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    with log.open("w") as fh:
        rc = subprocess.run([mutmut_bin(), "run", "--max-children", str(max_children)], cwd=work, env=env,
                            stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        lines = log.read_text(errors="replace").replace("\r", "\n").splitlines()
        tail = "\n".join(line for line in lines if line.strip() and not line.startswith(SPINNER))[-3000:]
        raise SystemExit(f"mutmut run failed (exit {rc}); the end of {log}:\n{tail}\n(a test that fails on "
                         "the unmutated copy stops mutmut: run the layers with pytest in the copy to see it)")
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------------------
# Reading mutmut's results
# ---------------------------------------------------------------------------------------------------------
@contextmanager
def inside(folder: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def function_of(name: str) -> str:
    """``lambdas.domain.gate.xǁGateǁcheck__mutmut_3`` -> ``Gate.check``; ``...x_evaluate__mutmut_1`` -> ``evaluate``."""
    tail = name.rsplit(".", 1)[-1].rsplit("__mutmut_", 1)[0]
    if tail.startswith("xǁ"):
        _, cls, meth = tail.split("ǁ")
        return f"{cls}.{meth}"
    return tail[2:] if tail.startswith("x_") else tail


def status_of(code: int | None) -> str:
    from mutmut.stats import status_by_exit_code

    s = status_by_exit_code[code]
    return s if s in (KILLED, TIMEOUT, SURVIVED, NO_TESTS) else OTHER


def _natural(name: str) -> tuple[str, int]:
    head, _, n = name.rpartition("__mutmut_")
    return head, int(n) if n.isdigit() else 0


def read_mutants(work: Path) -> list[Mutant]:
    out = []
    for meta in sorted((work / "mutants" / SCOPE).rglob("*.py.meta")):
        module = str(meta.relative_to(work / "mutants"))[: -len(".meta")]
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        for name, code in sorted(codes.items(), key=lambda kv: _natural(kv[0])):
            out.append(Mutant(name=name, module=module, function=function_of(name), status=status_of(code)))
    return out


def add_diffs(work: Path, mutants: list[Mutant]) -> None:
    """The changed lines of each mutant, from mutmut's own diff of the mutant against the original function."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    with inside(work):
        for m in mutants:
            diff = get_diff_for_mutant(m.name, path=m.module).splitlines()
            body = [line for line in diff if not line.startswith(("---", "+++", "@@"))]
            m.removed = " / ".join(" ".join(line[1:].split()) for line in body if line.startswith("-"))
            m.added = " / ".join(" ".join(line[1:].split()) for line in body if line.startswith("+"))


def mutant_test_files() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(MUTANT_TESTS))


def refresh_mutant_tests(work: Path) -> list[str]:
    """Copy the checkout's ``MUTANT_TESTS`` files into the copy mutmut ran in (they may be newer than phase 1)."""
    folder = work / "mutants" / Path(MUTANT_TESTS).parent
    files = mutant_test_files()
    for old in folder.glob(Path(MUTANT_TESTS).name):
        if str(old.relative_to(work / "mutants")) not in files:
            old.unlink()
    for f in files:
        if not (work / "mutants" / f).exists() or (work / "mutants" / f).read_bytes() != (ROOT / f).read_bytes():
            shutil.copy2(ROOT / f, work / "mutants" / f)
    return files


# Phase 2's driver, run by this interpreter inside the copy's mutants/ folder. It first runs the MUTANT_TESTS files
# once with mutmut's "stats" switch on, recording which test reaches which function (as mutmut's own phase does);
# then, for each survivor, forks a child that switches the mutant on and runs only the tests that reach its
# function, fastest first, with -x; the child reports the first failing test through a file. A survivor no such
# test reaches survives without a run. argv: result file, test files...; stdin: one mutant name per line. Exit 3:
# a test fails on the unmutated code.
PHASE2_DRIVER = r"""
import json, os, signal, sys, time
from collections import defaultdict
import pytest
from mutmut.state import state

out_path, files = sys.argv[1], sys.argv[2:]
common = ["-q", "--tb=no", "--rootdir=.", "-p", "no:cacheprovider", "-p", "no:unraisableexception",
          "--hypothesis-seed=%(seed)s"]
sys.stdout = open(os.devnull, "w")
pytest.main([*files, "--collect-only", "-qqq", "--rootdir=.", "-p", "no:cacheprovider"])


class Recorder:
    failed = ""
    hits = defaultdict(set)
    seconds = defaultdict(float)

    def pytest_runtest_logreport(self, report):
        if report.failed and not Recorder.failed:
            Recorder.failed = report.nodeid
        Recorder.seconds[report.nodeid] += report.duration

    def pytest_runtest_teardown(self, item, nextitem):
        for function in state()._stats:
            Recorder.hits[function].add(item.nodeid)
        state()._stats.clear()


def in_child(mutant, args, result, timeout):
    pid = os.fork()
    if pid == 0:
        os.environ["MUTANT_UNDER_TEST"] = mutant
        code = int(pytest.main([*args, *common], plugins=[Recorder()]))
        with open(result, "w") as fh:
            json.dump({"code": code, "failed": Recorder.failed, "seconds": dict(Recorder.seconds),
                       "hits": {k: sorted(v) for k, v in Recorder.hits.items()}}, fh)
        os._exit(0)
    deadline = time.monotonic() + timeout
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.01)
    if not os.path.exists(result):
        return {"code": -1, "failed": ""}
    with open(result) as fh:
        r = json.load(fh)
    os.unlink(result)
    return r


result = os.path.join(os.getcwd(), ".phase2-" + str(os.getpid()))
stats = in_child("stats", files, result, 20 * %(timeout)s)
if stats is None or stats["code"] != 0:
    sys.stderr.write("the mutant tests fail (or hang) with mutmut's stats switch on\n")
    sys.exit(3)
hits, seconds = stats["hits"], stats["seconds"]
with open(out_path, "a") as out:
    for name in sys.stdin.read().split():
        tests = sorted(hits.get(name.partition("__mutmut_")[0], ()), key=lambda t: seconds.get(t, 0.0))
        if not tests:
            row = {"name": name, "verdict": "survived", "test": ""}
        else:
            r = in_child(name, ["-x", *tests], result, %(timeout)s)
            if r is None:
                row = {"name": name, "verdict": "timeout", "test": ""}
            else:
                verdict = {0: "survived", 1: "killed"}.get(r["code"], "error:" + str(r["code"]))
                row = {"name": name, "verdict": verdict, "test": r["failed"]}
        out.write(json.dumps(row) + "\n")
        out.flush()
""" % {"seed": HYPOTHESIS_SEED, "timeout": PHASE2_TIMEOUT_S}


def phase2_batch(work: Path, files: list[str], names: list[str], part: int) -> list[dict]:
    """One driver process over ``names``: a row per mutant (name, verdict, first failing test)."""
    driver, results = work / f"phase2_driver-{part}.py", work / f"phase2-{part}.jsonl"
    driver.write_text(PHASE2_DRIVER)
    results.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MUTANT_UNDER_TEST"}
    env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    r = subprocess.run([sys.executable, str(driver), str(results), *files], cwd=work / "mutants", env=env,
                       input="\n".join(names), capture_output=True, text=True, check=False)
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    if r.returncode == 3:
        raise SystemExit(f"{MUTANT_TESTS} fail on the unmutated copy in {work / 'mutants'}: run them there with pytest")
    if r.returncode != 0 or len(rows) != len(names):
        raise SystemExit(f"phase 2 driver failed (exit {r.returncode}, {len(rows)}/{len(names)} done):\n"
                         f"{r.stderr[-3000:]}")
    return rows


def tests_digest(files: list[str]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.encode() + b"\0" + (ROOT / f).read_bytes() + b"\0")
    return h.hexdigest()


def run_phase2(work: Path, mutants: list[Mutant], workers: int) -> float:
    """Phase 2 over phase 1's survivors; its rows are kept in work/phase2.json with the digest of the MUTANT_TESTS
    files, and reused while those files and the survivors are the same (a change to EQUIVALENT alone reruns
    nothing). Returns the wall seconds of the run that produced the rows."""
    t0 = time.perf_counter()
    files = refresh_mutant_tests(work)
    todo = [m for m in mutants if not m.killed_before]
    if not files or not todo:
        return time.perf_counter() - t0
    kept_path, digest = work / "phase2.json", tests_digest(files)
    if kept_path.exists():
        kept = json.loads(kept_path.read_text())
        if kept["tests"] == digest and sorted(kept["rows"]) == sorted(m.name for m in todo):
            for m in todo:
                m.phase2, m.killed_by = kept["rows"][m.name]
            print(f"phase 2: reusing {kept_path} ({kept['seconds'] / 60:.1f} min when it ran)", file=sys.stderr)
            return kept["seconds"]
    # (each driver first runs every MUTANT_TESTS test on the unmutated code, and stops if one fails there: such a
    # test would "kill" every survivor)
    n = max(1, workers)
    parts = [[m.name for m in todo[i::n]] for i in range(n)]
    with ThreadPoolExecutor(max_workers=n) as ex:
        rows = [row for part in ex.map(lambda ip: phase2_batch(work, files, ip[1], ip[0] + 1), enumerate(parts))
                for row in part]
    by_name = {row["name"]: row for row in rows}
    for m in todo:
        row = by_name[m.name]
        if row["verdict"].startswith("error"):
            raise SystemExit(f"phase 2: pytest could not run the mutant tests on {m.name} ({row['verdict']})")
        m.phase2, m.killed_by = row["verdict"], row["test"]
    seconds = time.perf_counter() - t0
    kept_path.write_text(json.dumps({"tests": digest, "seconds": seconds,
                                     "rows": {m.name: [m.phase2, m.killed_by] for m in todo}}))
    print(f"phase 2: {len(todo)} survivors in {seconds:.0f} s", file=sys.stderr)
    return seconds


def equivalence_key(m: Mutant) -> tuple[str, str, str, str]:
    return m.module.removeprefix(SCOPE + "/"), m.function, m.removed, m.added


def judge(mutants: list[Mutant]) -> None:
    for m in mutants:
        if not m.killed_after:
            m.equivalent = EQUIVALENT.get(equivalence_key(m), "")


# ---------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------
def pct(killed: int, total: int) -> str:
    return "-" if total == 0 else f"{100.0 * killed / total:.1f} %"


def totals(ms: list[Mutant]) -> dict[str, int]:
    c = Counter(m.status for m in ms)
    return {"mutants": len(ms), "killed": c[KILLED], "timeout": c[TIMEOUT], "survived": c[SURVIVED],
            "no_tests": c[NO_TESTS], "other": c[OTHER],
            "killed_by_new": sum(1 for m in ms if m.phase2 in (KILLED, TIMEOUT)),
            "equivalent": sum(1 for m in ms if m.equivalent),
            "still_alive": sum(1 for m in ms if not m.killed_after and not m.equivalent),
            "killed_before": sum(1 for m in ms if m.killed_before),
            "killed_after": sum(1 for m in ms if m.killed_after)}


def score_before(t: dict[str, int]) -> str:
    return pct(t["killed_before"], t["mutants"] - t["equivalent"])


def score_after(t: dict[str, int]) -> str:
    return pct(t["killed_after"], t["mutants"] - t["equivalent"])


def module_table(mutants: list[Mutant]) -> str:
    by_module: dict[str, list[Mutant]] = defaultdict(list)
    for m in mutants:
        by_module[m.module].append(m)
    rows = []
    for module in sorted(by_module):
        t = totals(by_module[module])
        rows.append([f"`{module.removeprefix(SCOPE + '/')}`", t["mutants"], t["killed"], t["timeout"],
                     t["survived"], t["no_tests"], t["killed_by_new"], t["equivalent"], t["still_alive"],
                     score_before(t), score_after(t)])
    t = totals(mutants)
    rows.append(["**all**", t["mutants"], t["killed"], t["timeout"], t["survived"], t["no_tests"],
                 t["killed_by_new"], t["equivalent"], t["still_alive"], f"**{score_before(t)}**",
                 f"**{score_after(t)}**"])
    return markdown_table(["module", "mutants", "killed", "timeout", "survived", "no test reaches it",
                           "killed by the mutant tests", "equivalent", "still alive", "score before",
                           "score after"], rows)


def code(text: str) -> str:
    text = text.replace("|", "\\|").replace("`", "'")
    return f"`{text}`" if text else "(line removed)"


def short(module: str) -> str:
    return module.removeprefix(SCOPE + "/")


def killed_table(mutants: list[Mutant]) -> str:
    """Phase 1's survivors that a mutant test now kills, one row per module and killing test (the first test that
    fails on the mutant), with how many and in which functions; each mutant is in out/bench/mutation.json."""
    groups: dict[tuple[str, str], list[Mutant]] = defaultdict(list)
    for m in mutants:
        if not m.killed_before and m.phase2 in (KILLED, TIMEOUT):
            groups[(short(m.module), m.killed_by or "(a timeout)")].append(m)
    rows = []
    for (module, test), ms in sorted(groups.items()):
        functions = sorted({m.function for m in ms})
        listed = ", ".join(f"`{f}`" for f in functions[:4]) + (f" and {len(functions) - 4} more" if len(functions) > 4 else "")
        rows.append([f"`{module}`", f"`{test.removeprefix('tests/unit/')}`", len(ms), listed])
    if not rows:
        return "No mutant test kills a survivor."
    return markdown_table(["module", "killed by", "mutants", "in"], rows, "llrl")


def equivalent_table(mutants: list[Mutant]) -> str:
    rows = [[f"`{short(m.module)}`", f"`{m.function}`", m.name.rsplit("__mutmut_", 1)[1],
             f"{code(m.removed)} → {code(m.added)}", m.equivalent] for m in mutants if m.equivalent]
    if not rows:
        return "None judged equivalent."
    return markdown_table(["module", "function", "#", "mutation", "why it is equivalent"], rows, "llrll")


def alive_table(mutants: list[Mutant]) -> str:
    """The survivors neither killed nor judged equivalent, one row per function: how many, and the first two."""
    groups: dict[tuple[str, str], list[Mutant]] = defaultdict(list)
    for m in mutants:
        if not m.killed_after and not m.equivalent:
            groups[(short(m.module), m.function)].append(m)
    rows = []
    for (module, function), ms in sorted(groups.items()):
        examples = "; ".join(f"#{m.name.rsplit('__mutmut_', 1)[1]} {code(m.removed[:90])} → {code(m.added[:90])}"
                             for m in ms[:2])
        rows.append([f"`{module}`", f"`{function}`", len(ms), examples])
    if not rows:
        return "Every survivor is killed or judged equivalent."
    return markdown_table(["module", "function", "mutants", "for example"], rows, "llrl")


def summary_lines(mutants: list[Mutant], t1: float, t2: float) -> str:
    t = totals(mutants)
    return "\n".join([
        f"{t['mutants']} mutants of {SCOPE}: {t['killed_before']} killed by the fast layers "
        f"({t['timeout']} of them by a timeout), {t['survived']} survived, {t['no_tests']} in functions no "
        f"selected test calls, {t['other']} other.",
        f"The mutant tests kill {t['killed_by_new']} of the {t['mutants'] - t['killed_before']} left; "
        f"{t['equivalent']} are judged equivalent; {t['still_alive']} still survive unjudged.",
        f"Score (killed / non-equivalent): before {score_before(t)}, after {score_after(t)}.",
        f"Wall time: phase 1 (mutmut) {t1 / 60:.1f} min, phase 2 (survivors against the mutant tests) "
        f"{t2 / 60:.1f} min.",
    ])


# ---------------------------------------------------------------------------------------------------------
def check(work: Path, globs: list[str], workers: int) -> int:
    """``--check``: phase 2 on the survivors of some modules, printed; 1 when some are still alive."""
    if not (work / "phase1.json").exists():
        raise SystemExit(f"{work}: no phase 1 here; run the benchmark once first")
    mutants = [m for m in read_mutants(work) if not m.killed_before
               and any(fnmatch.fnmatch(m.module.removeprefix(SCOPE + "/"), g) for g in globs)]
    if not mutants:
        raise SystemExit(f"no survivor of phase 1 in {', '.join(globs)}")
    add_diffs(work, mutants)
    files = refresh_mutant_tests(work)  # (several --check runs at once: each copies the same files)
    n = max(1, min(workers, len(mutants)))
    parts = [[m.name for m in mutants[i::n]] for i in range(n)]
    with ThreadPoolExecutor(max_workers=n) as ex:
        rows = {row["name"]: row for part in ex.map(
            lambda ip: phase2_batch(work, files, ip[1], os.getpid() * 10 + ip[0]), enumerate(parts)) for row in part}
    for m in mutants:
        m.phase2, m.killed_by = rows[m.name]["verdict"], rows[m.name]["test"]
    judge(mutants)
    alive = [m for m in mutants if not m.killed_after and not m.equivalent]
    for m in alive:
        print(f"{m.name}\n  - {m.removed}\n  + {m.added}")
    killed = sum(m.killed_after for m in mutants)
    print(f"{len(mutants)} survivors of phase 1 in {', '.join(globs)}: {killed} killed by the mutant tests, "
          f"{sum(bool(m.equivalent) for m in mutants)} judged equivalent, {len(alive)} still alive")
    return 1 if alive else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", default=[f"{SCOPE}/*"], metavar="GLOB",
                    help=f"mutate only these files (fnmatch on the path; default: all of {SCOPE})")
    ap.add_argument("--max-children", type=int, default=2, help="mutmut's worker processes (the machine has 2 cores)")
    ap.add_argument("--workdir", type=Path, default=ROOT / "out" / "mutation", help="where the copy goes")
    ap.add_argument("--label", default="", help="sub-folder of --workdir (default: 'all', or 'subset' with --only)")
    ap.add_argument("--deselect", nargs="+", default=[], metavar="NODEID",
                    help="leave these tests out of phase 1 too (a test that fails on the unmutated copy stops mutmut)")
    ap.add_argument("--from-commit", metavar="REV",
                    help="copy the files of this commit instead of the working tree (edits in progress left "
                         f"out); the {MUTANT_TESTS} files still come from the working tree")
    ap.add_argument("--reuse", action="store_true",
                    help="keep phase 1's results in the work folder (same source, scope and tests); phase 2 runs "
                         "again only when the mutant tests changed")
    ap.add_argument("--check", nargs="+", metavar="GLOB",
                    help="while writing tests or judging survivors: run phase 2 again on phase 1's survivors in "
                         f"these modules only (fnmatch on the path under {SCOPE}/, e.g. 'rollout/gate.py'), "
                         "against the mutant tests as they are now, and list those neither killed nor judged "
                         "equivalent; reads the work folder of an earlier run, writes nothing")
    add_write_docs(ap, "mutation")
    args = ap.parse_args(argv)
    if args.check:
        return check(args.workdir.resolve() / (args.label or "all"), args.check, args.max_children)
    for pattern in args.only:
        if not pattern.startswith(SCOPE + "/"):
            raise SystemExit(f"--only {pattern!r}: the scope is {SCOPE}/")
    info = machine()
    whole = args.only == [f"{SCOPE}/*"]
    label = args.label or ("all" if whole else "subset")
    work = args.workdir.resolve() / label

    commit = resolve_commit(args.from_commit) if args.from_commit else None
    source = source_digest(commit)
    record = work / "phase1.json"
    if args.reuse and record.exists():
        kept = json.loads(record.read_text())
        if (kept["source"], kept["only"], kept["deselect"]) != (source, args.only, args.deselect):
            raise SystemExit(f"{work}: phase 1 ran on another scope, source or test selection; run without --reuse")
        t1 = kept["seconds"]
        print(f"phase 1: reusing {work} ({t1 / 60:.1f} min when it ran)", file=sys.stderr)
    else:
        prepare(work, args.only, args.deselect, commit)
        print(f"phase 1: mutmut {mutmut_version()} in {work} (log: {work / 'mutmut.log'})", file=sys.stderr)
        t1 = run_mutmut(work, args.max_children)
        record.write_text(json.dumps({"source": source, "only": args.only, "deselect": args.deselect, "seconds": t1}))

    mutants = read_mutants(work)
    if not mutants:
        raise SystemExit(f"mutmut produced no mutant under {work / 'mutants' / SCOPE}")
    add_diffs(work, [m for m in mutants if not m.killed_before])
    t2 = run_phase2(work, mutants, args.max_children)
    judge(mutants)

    if leftovers():
        raise SystemExit(f"the checkout carries mutmut's changes: {', '.join(leftovers())}")

    text = "\n\n".join([summary_lines(mutants, t1, t2), module_table(mutants), "### Killed by the mutant tests",
                        killed_table(mutants), "### Equivalent", equivalent_table(mutants), "### Still alive",
                        alive_table(mutants)])
    print(text)
    used = {equivalence_key(m) for m in mutants if m.equivalent}
    stale = sorted(set(EQUIVALENT) - used)
    if stale and whole:
        print(f"\n{len(stale)} EQUIVALENT entries match no surviving mutant (stale):", file=sys.stderr)
        for key in stale:
            print(f"  {key}", file=sys.stderr)
    payload = {"machine": info, "mutmut": mutmut_version(), "scope": SCOPE, "only": args.only, "commit": commit,
               "test_layers": TEST_LAYERS, "deselected": [*DESELECTED, *args.deselect],
               "mutant_tests": mutant_test_files(), "phase1_seconds": t1, "phase2_seconds": t2,
               "totals": totals(mutants), "mutants": [asdict(m) for m in mutants]}
    print(f"wrote {write_result('mutation' if label == 'all' else f'mutation-{label}', payload)}", file=sys.stderr)
    if args.write_docs:
        scope = SCOPE if whole else ", ".join(args.only)
        scope += f" at commit `{commit[:7]}`" if commit else ""
        sample = (f"mutmut {mutmut_version()}, every mutant of {scope}, against the fast test layers; "
                  f"phase 1 {t1 / 60:.0f} min, phase 2 {t2 / 60:.0f} min")
        body = "\n\n".join([
            summary_lines(mutants, t1, t2),
            "Method, scope and test layers: [docs/benchmarks.md, Mutation score](../benchmarks.md#mutation-score). "
            "\"score before\": killed by the fast layers; \"score after\": also by the mutant tests "
            f"(`{MUTANT_TESTS}`); both over the mutants not judged equivalent.",
            "## Per module", module_table(mutants),
            "## Survivors of the fast layers",
            "Every mutant the fast layers let live is in one of the three tables below; `out/bench/mutation.json` "
            "has each with its diff and verdict. \"#\" is mutmut's number of the mutant in its function "
            "(`.venv/bin/mutmut show <module>.<x_function>__mutmut_<#>` in out/mutation/all prints it).",
            "### Killed by the mutant tests",
            "Per module and killing test (the first that fails on the mutant): how many survivors it kills, in "
            "which functions.", killed_table(mutants),
            "### Equivalent",
            "Read in context: no caller can tell the mutant from the original.", equivalent_table(mutants),
            "### Still alive",
            "Neither killed nor judged equivalent yet (counted as not killed in the score), per function.",
            alive_table(mutants)])
        path = write_docs(args.write_docs, "mutation" if label == "all" else f"mutation-{label}",
                          "Mutation score of lambdas/domain" + ("" if whole else f" ({', '.join(args.only)})"),
                          docs_header(info, sample=sample), body)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
