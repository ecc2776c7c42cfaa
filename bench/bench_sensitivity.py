"""Benchmark (not a test): how far each assumption of the simulation moves what it measures.

Job: every timing the model assumes rather than takes from a documented rule (docs/simulation.md, "What each part
models, and from where") is halved and doubled, one at a time, all else as shipped. For each setting it measures:
the controller's gate alone on the example app (median rollout seconds); albgate on the example app and on Auto
Mode (median rollout seconds, median time over the lower bound, DescribeTargetHealth calls per rollout, failed
requests); and the four figures of the calibration (albgate/sim/calibration.py) as ratios to their public
reports. An assumption that cannot apply to a run (a flag the controller version in a calibration scenario lacks; the
health-check interval of an app albgate's bootstrap hardens to the ALB's 5 s minimum) is shown as n/a.

Run: .venv/bin/python bench/bench_sensitivity.py [--seeds 10] [--assumptions NAME ...] [--factors 0.5 2] [--workers 2]
     [--write-docs]
Method: docs/simulation.md, "Calibration against public reports"; results: docs/results/sensitivity.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ALBGATE,
    SCENARIO_DIR,
    add_write_docs,
    docs_header,
    fmt,
    machine,
    markdown_table,
    pinned_template,
    run_parallel,
    write_docs,
    write_result,
)

FACTORS = (0.5, 2.0)
SEED_APP = SCENARIO_DIR / "seed-app.yaml"
AUTO_MODE = SCENARIO_DIR / "auto-mode.yaml"


def _pair(values: tuple[float, float], f: float) -> list[float]:
    return [round(v * f, 3) for v in values]


def _container_start(sc: Any, f: float) -> Any:
    startup = sc.app.startup.model_dump()
    return sc.with_changes(app={"startup": {**startup, "container_start_seconds": _pair(
        sc.app.startup.container_start_seconds, f)}})


def _registration(sc: Any, f: float) -> Any:
    """The load balancer's registration time, and each Ingress's own where one sets it."""
    def ingress(spec: Any) -> dict[str, Any]:
        d = spec.model_dump()
        if spec.registration_seconds is not None:
            d["registration_seconds"] = _pair(spec.registration_seconds, f)
        return d

    return sc.with_changes(alb={"registration_seconds": _pair(sc.alb.registration_seconds, f)},
                           ingress=ingress(sc.ingress), extra_ingresses=[ingress(i) for i in sc.extra_ingresses])


def _interval(sc: Any, f: float) -> Any:
    """The Ingress's health-check interval, a whole number of seconds no shorter than the ALB allows and longer
    than the check's timeout."""
    from albgate.sim.scenario import A_HC_INTERVAL
    from lambdas.domain.health_check import HARDENED, INTERVAL

    interval, timeout, _, _ = sc.ingress.health_check()
    # the interval albgate's hardening writes is the ALB's shortest (lambdas/domain/health_check.py)
    new = max(HARDENED[INTERVAL], timeout + 1, round(interval * f))
    return sc.with_changes(ingress={"annotations": {**sc.ingress.annotations, A_HC_INTERVAL: str(new)}})


def _controller(field: str) -> Callable[[Any, float], Any]:
    def change(sc: Any, f: float) -> Any:
        return sc.with_changes(controller={field: round(getattr(sc.controller, field) * f, 3)})
    return change


def _deregistration_lag(sc: Any, f: float) -> Any:
    return sc.with_changes(alb={"deregistration_lag_seconds": round(sc.alb.deregistration_lag_seconds * f, 3)})


@dataclass(frozen=True)
class Assumption:
    name: str
    what: str  # what is scaled, and where the model's value comes from
    change: Callable[[Any, float], Any]
    value: Callable[[Any], str]  # the value in a scenario, for the table
    albgate: bool = True  # False: albgate's bootstrap sets it, so it is no assumption of albgate's runs


def _seconds(x: float) -> str:
    return f"{x:g}"


ASSUMPTIONS = {a.name: a for a in (
    Assumption("container-start", "scheduled -> container running, uniform (app.startup)", _container_start,
               lambda sc: "-".join(_seconds(v) for v in sc.app.startup.container_start_seconds)),
    Assumption("registration", "RegisterTargets -> first health check, uniform (alb.registration_seconds)",
               _registration, lambda sc: "-".join(_seconds(v) for v in sc.alb.registration_seconds)),
    Assumption("health-check-interval", "the Ingress's interval (the app as written)", _interval,
               lambda sc: _seconds(sc.ingress.health_check()[0]), albgate=False),
    Assumption("requeue", "--targetgroupbinding-requeue-duration (v3.2.0 and later)", _controller("requeue_seconds"),
               lambda sc: _seconds(sc.controller.requeue_seconds)),
    Assumption("reconcile-latency", "pod change -> controller reconcile", _controller("reconcile_latency_seconds"),
               lambda sc: _seconds(sc.controller.reconcile_latency_seconds)),
    Assumption("request-time", "each request of a reconcile (ELB call, pod condition patch)",
               _controller("request_seconds"), lambda sc: _seconds(sc.controller.request_seconds)),
    Assumption("max-back-off", "--targetgroupbinding-max-exponential-backoff-delay", _controller("max_backoff_seconds"),
               lambda sc: _seconds(sc.controller.max_backoff_seconds)),
    Assumption("deregistration-lag", "new requests the ALB still sends after deregistration starts",
               _deregistration_lag, lambda sc: _seconds(sc.alb.deregistration_lag_seconds)),
)}

# What each task measures: the controller's gate on the example app, albgate on it and on Auto Mode, the reports
JOBS = ("readiness-gate seed-app", "albgate seed-app", "albgate auto-mode", "reports")


def _changed(name: str | None, f: float) -> Callable[[Any], Any]:
    """The scenario change of ``name`` at factor ``f`` (None: the shipped model), returning None where it does not
    apply (the scenario refuses it: a flag its controller version lacks)."""
    from pydantic import ValidationError

    def change(sc: Any) -> Any:
        if name is None:
            return sc
        try:
            return ASSUMPTIONS[name].change(sc, f)
        except ValidationError:
            return None
    return change


def run_task(task: tuple[str | None, float, str, list[int]]) -> dict[str, Any]:
    """Worker: one setting (assumption and factor, or the shipped model) and one job -> its numbers."""
    from albgate.sim import load_scenario, simulate
    from albgate.sim.calibration import measure_reports

    name, f, job, seeds = task
    change = _changed(name, f)
    out: dict[str, Any] = {"assumption": name, "factor": f, "job": job}
    if job == "reports":
        measured = measure_reports(change)
        out["reports"] = {k: None if m is None else {"seconds": m.seconds, "ratio": m.ratio, "what": m.what}
                          for k, m in measured.items()}
        return out
    strategy, _, scenario = job.partition(" ")
    sc = change(load_scenario(SEED_APP if scenario == "seed-app" else AUTO_MODE))
    if sc is None:
        out["na"] = True
        return out
    bound = strategy == ALBGATE
    runs = [simulate(sc, strategy, seed, lower_bound=bound) for seed in seeds]
    done = [r for r in runs if r.outcome == "succeeded" and r.rollout_seconds is not None]
    out.update(
        runs=len(runs), succeeded=len(done), failed_requests=sum(r.failed_requests for r in runs),
        requests=sum(r.requests for r in runs),
        rollout_seconds=statistics.median(r.rollout_seconds for r in done) if done else None,
        calls=statistics.median(r.describe_target_health_calls for r in runs),
    )
    ratios = [r.rollout_seconds / r.lower_bound_seconds for r in done if r.lower_bound_seconds]
    out["ratio"] = statistics.median(ratios) if ratios else None
    return out


def tasks(names: list[str], seeds: list[int], factors: tuple[float, ...] = FACTORS
          ) -> list[tuple[str | None, float, str, list[int]]]:
    """The shipped model once, then each assumption at each factor; albgate's runs first (the long ones). A job the
    assumption is no assumption of (the interval under albgate's bootstrap) is left out."""
    settings: list[tuple[str | None, float]] = [(None, 1.0)] + [(n, f) for n in names for f in factors]
    out = []
    for job in sorted(JOBS, key=lambda j: not j.startswith(ALBGATE)):
        for name, f in settings:
            if name is not None and job.startswith(ALBGATE) and not ASSUMPTIONS[name].albgate:
                continue
            out.append((name, f, job, seeds))
    return out


def run(names: list[str], seeds: list[int], workers: int, factors: tuple[float, ...] = FACTORS) -> dict[str, Any]:
    from albgate.sim import load_scenario

    results = run_parallel(run_task, tasks(names, seeds, factors), workers, "sensitivity")
    app = load_scenario(SEED_APP)
    values = {n: " / ".join(ASSUMPTIONS[n].value(sc) if sc is not None else "n/a"
                            for sc in (_changed(n, f)(app) for f in sorted({1.0, *factors})))
              for n in names}
    return {"seeds": seeds, "assumptions": names, "factors": list(factors), "values": values, "results": results}


def _cell(payload: dict[str, Any], name: str | None, job: str, get: Callable[[dict[str, Any]], Any],
          digits: int) -> str:
    """One assumption's value at each factor, "a / b", for one job (or the shipped value, ``name`` None); one "n/a"
    where none applies."""
    def one(f: float) -> str:
        hit = [r for r in payload["results"] if r["assumption"] == name and r["factor"] == f and r["job"] == job]
        if not hit or hit[0].get("na"):
            return "n/a"
        v = get(hit[0])
        return "n/a" if v is None else fmt(v, digits)

    if name is None:
        return one(1.0)
    cells = [one(f) for f in payload.get("factors", FACTORS)]
    return "n/a" if set(cells) == {"n/a"} else " / ".join(cells)


def tables(payload: dict[str, Any]) -> str:
    from albgate.sim.calibration import REPORT_KEYS

    names: list[str] = payload["assumptions"]
    seeds = payload["seeds"]
    rows_of = [None, *names]

    def label(n: str | None) -> str:
        return "shipped model (x1)" if n is None else n

    def rollouts(n: str | None) -> list[str]:
        cells = [label(n), "" if n is None else ASSUMPTIONS[n].what,
                 "" if n is None else payload["values"][n],
                 _cell(payload, n, "readiness-gate seed-app", lambda r: r["rollout_seconds"], 0)]
        for job in ("albgate seed-app", "albgate auto-mode"):
            cells += [_cell(payload, n, job, lambda r: r["rollout_seconds"], 0),
                      _cell(payload, n, job, lambda r: r["ratio"], 2),
                      _cell(payload, n, job, lambda r: r["calls"], 1)]
        cells.append(_failed(payload, n))
        return cells

    def reports(n: str | None) -> list[str]:
        return [label(n), *(_cell(payload, n, "reports",
                                  lambda r, k=k: (r["reports"][k] or {}).get("ratio"), 2) for k in REPORT_KEYS)]

    measured = next(r for r in payload["results"] if r["assumption"] is None and r["job"] == "reports")["reports"]
    what = "; ".join(f"{k}: {v['what']}" for k, v in measured.items() if v)
    factors = payload.get("factors", FACTORS)
    at = " / ".join(f"x{f:g}" for f in factors)
    shown = " / ".join(f"x{f:g}" for f in sorted({1.0, *factors}))
    return "\n".join([
        f"Each assumption at {at} of its shipped value, one at a time; {_seeds(seeds)} of each rollout "
        f"(medians over the seeds). `values` are the example app's at {shown}. `/ bound`: rollout "
        "time over the lower bound (the oracle on the same world and seed). `calls`: albgate's "
        "DescribeTargetHealth calls per rollout. `albgate failed requests`: at each factor, of all albgate's "
        "requests in the row. albgate runs on the app as its bootstrap leaves it, so the "
        "health-check interval is 5 s (the ALB's minimum) whatever the app wrote: n/a.",
        "",
        markdown_table(
            ["assumption", "what is scaled", "values", "readiness-gate seed-app s",
             "albgate seed-app s", "/ bound", "calls", "albgate auto-mode s", "/ bound", "calls",
             "albgate failed requests"],
            [rollouts(n) for n in rows_of], align="lll" + "r" * 8),
        "",
        "The calibration's figures (docs/simulation.md, \"Calibration against public reports\") as ratios of the "
        f"model's number to the report's; n/a: the scenario's controller version has no such flag ({what}).",
        "",
        markdown_table(["assumption", *(f"#{k}" for k in REPORT_KEYS)],
                       [reports(n) for n in rows_of], align="l" + "r" * len(REPORT_KEYS)),
    ])


def _seeds(seeds: list[int]) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"


def _failed(payload: dict[str, Any], name: str | None) -> str:
    """albgate's failed requests at each factor of the row (both scenarios together), then "of" all its requests in
    the row."""
    rows = [r for r in payload["results"] if r["assumption"] == name and r["job"].startswith(ALBGATE)
            and not r.get("na")]
    if not rows:
        return "n/a"
    factors = [1.0] if name is None else payload.get("factors", FACTORS)
    failed = " / ".join(str(sum(r["failed_requests"] for r in rows if r["factor"] == f)) for f in factors)
    return f"{failed} of {sum(r['requests'] for r in rows)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10, help="seeds 1-N of each rollout (default %(default)s)")
    ap.add_argument("--assumptions", nargs="+", choices=list(ASSUMPTIONS), default=list(ASSUMPTIONS),
                    metavar="NAME", help=f"the assumptions to vary (default: all of {', '.join(ASSUMPTIONS)})")
    ap.add_argument("--factors", type=float, nargs="+", default=list(FACTORS), metavar="F",
                    help="what each assumption is multiplied by (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="directory for sensitivity.json (default out/bench)")
    add_write_docs(ap, "sensitivity")
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error("--seeds: give 1 or more")
    if any(f <= 0 or f == 1 for f in args.factors):
        ap.error("--factors: give positive factors other than 1 (the shipped model is always run)")
    info = machine()
    key, _ = pinned_template()
    factors = tuple(sorted(set(args.factors)))
    payload = run(args.assumptions, list(range(1, args.seeds + 1)), args.workers, factors)
    payload["machine"] = info
    write_result("sensitivity", payload, args.out)
    text = tables(payload)
    print(text)
    if args.write_docs:
        scaled = " / ".join(f"{f:g}" for f in factors)
        sample = f"{len(args.assumptions)} assumption(s) x {scaled}, {_seeds(payload['seeds'])}"
        header = docs_header(info, sample=sample, template_key=key)
        write_docs(args.write_docs, "sensitivity", "How far each assumption moves the model", header, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
