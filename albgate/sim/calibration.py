"""The simulated controller against public reports of its timing: the runs behind each reported number.

Job: set each report up as it describes itself (scenarios/calibration/: replicas, start time, controller version)
and measure the model's number for it, with every other parameter from the model's documented rules
(docs/facts.md, "Load Balancer Controller: requeue and back-off by version"). ``tests/sim/test_calibration.py``
checks each number against its report within a tolerance; ``bench/bench_sensitivity.py`` measures how far each
assumption of the model moves them. Both call the functions here, so the two always measure the same runs.

Invariant: nothing here is fitted to a report. A report's own figure appears only as ``Report.seconds``, the
number a measurement is divided by.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from albgate.sim.scenario import Scenario, load_scenario
from albgate.sim.simulation import Simulation
from lambdas.domain.ports import DeploymentPatch

CALIBRATION_DIR = Path(__file__).resolve().parents[2] / "scenarios" / "calibration"
GATED_18 = CALIBRATION_DIR / "gated-rollout-18-pods-v2.2.4.yaml"
GATED_100_V2_1 = CALIBRATION_DIR / "gated-rollout-100-pods-v2.1.3.yaml"
GATED_100_V2_7 = CALIBRATION_DIR / "gated-rollout-100-pods-v2.7.1.yaml"
V2 = "ikubernetes/myapp:v2"

# Each seed is one deploy; the typical one is the median, the slow one the slowest.
DEPLOYS = range(1, 21)
# The figures measure_reports gives, by name
REPORT_KEYS = ("2287 typical", "2287 slow", "1960 longest", "3622 longest", "3622 typical")
# #1960's "100-150 pods", and its "2-4 pods"
LARGE_REPLICAS = (100, 150)
SMALL_REPLICAS = 3


@dataclass(frozen=True)
class Report:
    """One public figure: where it is, what it says, and its number in seconds."""

    url: str
    says: str
    seconds: float


ISSUE_1960 = "https://github.com/kubernetes-sigs/aws-load-balancer-controller/issues/1960"
ISSUE_2287 = "https://github.com/kubernetes-sigs/aws-load-balancer-controller/issues/2287"
ISSUE_3622 = "https://github.com/kubernetes-sigs/aws-load-balancer-controller/issues/3622"
TYPICAL_DEPLOY = Report(ISSUE_2287, "a gated deploy of 18 pods takes about 3 min", 3 * 60)
SLOW_DEPLOY = Report(ISSUE_2287, "the slow deploy takes up to 7-8 min", 7.5 * 60)
# a bound, not a figure: the model's longest wait must reach it
MINUTES_WAIT = Report(ISSUE_1960, "with 100-150 pods the gate's condition sometimes comes after more than 10 min",
                      10 * 60)
STUCK = Report(ISSUE_3622, "the gate's condition comes after about 15-16 min with the default back-off", 15.5 * 60)
STUCK_CAPPED = Report(ISSUE_3622, "the gate's condition comes at the 11th second with the back-off capped at 10 s",
                      11.0)


def deploy(sc: Scenario, seed: int) -> tuple[float | None, list[float]]:
    """One deploy of the controller's gate alone (the app's own rolling update; the namespace is labelled): its
    seconds until every new pod is Ready and no old pod is left but terminating ones (``kubectl rollout status``'s
    end, the progress deadline aside: a deploy that stalls past it still ends), and for each new pod the seconds
    from its turning ContainersReady to the controller's condition appearing on it (the wait the reports see as
    "corresponding condition of pod readiness gate ... does not exist" on a running pod). A deploy still under way
    at the scenario's horizon has no seconds (None), and a wait still open then counts up to the horizon (at least
    that long)."""
    sc = sc.with_changes(seed=seed)
    sim = Simulation(sc)
    sim.run_until(sim.rollout_start)
    gate = sim.lbc_gate_names()[0]
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={sc.rollout_container: V2}))
    waits: dict[str, float] = {}

    def rolled() -> bool:
        ready = 0
        old = False
        for p in sim.cluster.all_pods:
            if p.version != V2:
                old |= not (p.terminating or p.exited)
                continue
            if p.containers_ready and p.name not in waits and gate in p.conditions:
                waits[p.name] = sim.clock.t - p.containers_ready_at
            ready += p.ready and not p.terminating
        return ready >= sc.app.replicas and not old

    if not sim.run_until(sim.rollout_start + sc.horizon_seconds, stop=rolled):
        still = [sim.clock.t - p.containers_ready_at for p in sim.cluster.all_pods
                 if p.version == V2 and p.containers_ready and p.name not in waits and not p.terminating]
        return None, [*waits.values(), *still]
    return sim.clock.t - sim.rollout_start, list(waits.values())


def gated_deploys(sc: Scenario, seeds: Sequence[int] = DEPLOYS) -> list[float]:
    """Each deploy's seconds (``deploy``), one per seed; every one must end within the horizon (a deploy that does
    not is no time to compare)."""
    runs = [(seed, deploy(sc, seed)[0]) for seed in seeds]
    late = [seed for seed, seconds in runs if seconds is None]
    if late:
        raise AssertionError(f"{sc.name}: the deploy did not end within the horizon on seed(s) {late}")
    return [seconds for _, seconds in runs if seconds is not None]


def longest_waits(sc: Scenario, seeds: Sequence[int] = DEPLOYS) -> list[float]:
    """Each deploy's longest gate wait (``deploy``), one per seed."""
    return [max(deploy(sc, seed)[1]) for seed in seeds]


@dataclass(frozen=True)
class Measured:
    """A report's number as the model gives it: the runs' summary, and its ratio to the report."""

    report: Report
    what: str  # how the number is taken from the runs, e.g. "median of 20 deploys"
    seconds: float

    @property
    def ratio(self) -> float:
        return self.seconds / self.report.seconds


def deploy_reports(deploys: Sequence[float]) -> tuple[Measured, Measured]:
    """#2287 from the gated deploys: the typical deploy (median) and the slow one (slowest)."""
    n = len(deploys)
    return (Measured(TYPICAL_DEPLOY, f"median of {n} deploys", statistics.median(deploys)),
            Measured(SLOW_DEPLOY, f"slowest of {n} deploys", max(deploys)))


def minutes_report(sc: Scenario) -> Measured:
    """#1960: the longest gate wait of the deploys at 100 and at 150 replicas."""
    waits = [w for n in LARGE_REPLICAS for w in longest_waits(sc.with_changes(app={"replicas": n}))]
    return Measured(MINUTES_WAIT, f"longest wait of {len(waits)} deploys ({' and '.join(map(str, LARGE_REPLICAS))} "
                    "pods)", max(waits))


def stuck_reports(longest: Sequence[float]) -> tuple[Measured, Measured]:
    """#3622 from each deploy's longest gate wait: the longest of all, and the typical deploy's (median)."""
    n = len(longest)
    return (Measured(STUCK, f"longest wait of {n} deploys", max(longest)),
            Measured(STUCK, f"median of {n} deploys' longest waits", statistics.median(longest)))


def capped_report(longest: Sequence[float]) -> Measured:
    """#3622 with the back-off capped at 10 s: the longest gate wait of the deploys."""
    return Measured(STUCK_CAPPED, f"longest wait of {len(longest)} deploys", max(longest))


def measure_reports(change: Callable[[Scenario], Scenario | None] = lambda sc: sc) -> dict[str, Measured | None]:
    """The figures of the default back-off (#2287 typical and slow, #1960's longest wait, #3622 longest and
    typical), each scenario first passed through ``change`` (None: the change does not apply to that scenario, e.g.
    a flag its controller version lacks, and its figures are None)."""
    gated = change(load_scenario(GATED_18))
    typical, slow = deploy_reports(gated_deploys(gated)) if gated is not None else (None, None)
    old = change(load_scenario(GATED_100_V2_1))
    minutes = minutes_report(old) if old is not None else None
    newer = change(load_scenario(GATED_100_V2_7))
    longest, median = stuck_reports(longest_waits(newer)) if newer is not None else (None, None)
    return dict(zip(REPORT_KEYS, (typical, slow, minutes, longest, median), strict=True))
