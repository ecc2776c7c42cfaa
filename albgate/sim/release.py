"""A release in the simulation: one image rolled through ordered waves of clusters, each cluster its own world.

Job: read a release scenario (``scenarios/release/*.yaml``: clusters built from one base scenario, each with its
own overrides, and the release's waves), build one ``Simulation`` per cluster and advance them in lockstep
(``World``), then run the synthesized release state machine and the synthesized rollout state machine in moto
(``albgate.sfn_local``): the release's Lambdas start and read their children through ``SimChildExecutions``,
which starts each child as an execution of the local rollout state machine, interleaved on the common clock,
and every rollout's handlers reach the world of the cluster its input names. ``run_release`` lets every world
settle and reports the release and every cluster (executions, requests, the image it ends on).

Invariants:
  * Nothing here decides anything about the release or a rollout: the state machines and their handlers do;
    this module wires them to the worlds and reads the outcome back.
  * The worlds interact only through the Describe* bucket the clusters of one account and Region share, and
    all of them are always at the same simulated instant: only ``World`` moves time, every world's events in one
    time order, to the same ``t`` (a throttled ELB call's back-off, too, goes through the interleaver's clock,
    never through one world's own ``advance``).
  * The same scenario and seed give the same run: each world draws from a seed derived from (seed, cluster name).
"""

from __future__ import annotations

import copy
import json
import hashlib
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, PrivateAttr, ValidationError, field_validator

from albgate.sim.albgate_strategy import LAMBDA_SECONDS, _outcome, quiet_powertools
from albgate.sim.engine import EPOCH
from albgate.sim.scenario import (
    Scenario,
    ScenarioError,
    _Strict,
    load_scenario,
    read_scenario_yaml,
)
from albgate.sim.simulation import Simulation
from albgate.sim.strategies import get_strategy
from lambdas.domain.documents import quote
from lambdas.domain.errors import InvalidInputError, NotFoundError
from lambdas.domain.models import validation_message
from lambdas.domain.ports import ChildExecution, Ports
from lambdas.domain.release import ReleaseSpec, ReleaseTarget, WaveSpec, release_image
from lambdas.domain.trigger import execution_arn
from lambdas.domain.validators import AccountId, AwsRegion, ClusterName, KubernetesName

SCENARIOS_DIR = Path(__file__).resolve().parents[2] / "scenarios"
DEFAULT_BASE = "seed-app-hardened.yaml"
# The config's limits on a release's waves (stacks/config.py: MAX_WAVES, DEFAULT_WAVE_BAKE_SECONDS,
# MAX_WAVE_BAKE_SECONDS), and a bound on the worlds: each cluster is a whole simulation, so a release scenario
# stays small enough to run in seconds to minutes.
MAX_WAVES = 20
DEFAULT_BAKE_SECONDS = 300
MAX_BAKE_SECONDS = 86_400
MAX_CLUSTERS = 50
# What a cluster's overrides may not set: the release decides them (its cluster entry names the cluster, the
# release its image, policy and start; a world holds one app, the one the release rolls).
RELEASE_OWNED = {
    "name": "the world is named after the release and the cluster",
    "seed": "each world's seed derives from the release scenario's seed and the cluster's name",
    "cluster": "give the cluster's name, account and region in its clusters entry",
    "rollout": "the release rolls release.image with the base scenario's policy, from its rollout.start_at_seconds",
    "fleet": "a release rolls one Deployment per cluster",
}
# The rollout state machine every environment's stack names (locally every child runs on the one rollout state
# machine of the synthesized template; the ARN only says where the child would run on AWS).
ROLLOUT_STATE_MACHINE_NAME = "Albgate-Rollout"
RELEASE_ROLE_NAME = "Albgate-Release"
SUCCEEDED, STOPPED, FAILED = "succeeded", "stopped", "failed"
ROLLOUT, ROLLBACK = "rollout", "rollback"


# --- the scenario file --------------------------------------------------------------------------------------
Overrides = Annotated[dict[str, Any], Field(description="a mapping merged over the base scenario (mappings merge "
                                                         "key by key, anything else is replaced)")]


def _owned_keys(v: dict[str, Any]) -> dict[str, Any]:
    for key in v:
        if key in RELEASE_OWNED:
            raise ValueError(f"{quote(key)} cannot be overridden: {RELEASE_OWNED[key]}")
    return v


class ReleaseClusterSpec(_Strict):
    name: ClusterName
    account: AccountId
    region: AwsRegion
    overrides: Overrides = Field(default_factory=dict)

    @field_validator("overrides")
    @classmethod
    def _owned(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _owned_keys(v)


class ReleaseWaveSpec(_Strict):
    name: KubernetesName
    clusters: list[ClusterName] = Field(min_length=1)
    max_concurrency: int | None = Field(default=None, ge=1, description="rollouts at once; default all of them")
    bake_seconds: int = Field(default=DEFAULT_BAKE_SECONDS, ge=0, le=MAX_BAKE_SECONDS,
                              description="the wait after the wave passed, before the next one starts")
    approval: bool = Field(default=False, description="a person approves before the wave starts (answered at once)")


class ReleaseSection(_Strict):
    name: KubernetesName
    image: str = Field(description="the image every cluster gets, by digest: '<repository>@sha256:<64 hex>'")
    rollback_completed_waves: bool = False
    waves: list[ReleaseWaveSpec] = Field(min_length=1, max_length=MAX_WAVES)

    @field_validator("image")
    @classmethod
    def _digest(cls, v: str) -> str:
        try:
            return release_image(v)
        except InvalidInputError as exc:
            raise ValueError(str(exc).removeprefix("image: ")) from None


class ReleaseScenario(_Strict):
    """A release scenario file. ``cluster_scenarios`` (built by ``parse_release_scenario``) is each cluster's
    world: the base scenario, the common ``overrides``, the cluster's own, then its name, account and Region and
    the release's image as its rollout's image."""

    name: str = Field(min_length=1)
    description: str = ""
    seed: int = 1
    base: str = Field(default=DEFAULT_BASE, min_length=1, description="a scenario file, relative to scenarios/")
    overrides: Overrides = Field(default_factory=dict, description="merged over the base for every cluster")
    clusters: list[ReleaseClusterSpec] = Field(min_length=1, max_length=MAX_CLUSTERS)
    release: ReleaseSection
    _base: Scenario | None = PrivateAttr(default=None)
    _scenarios: dict[str, Scenario] | None = PrivateAttr(default=None)

    @field_validator("overrides")
    @classmethod
    def _owned(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _owned_keys(v)

    @property
    def cluster_scenarios(self) -> dict[str, Scenario]:
        """Cluster name -> its world's scenario (resolved once; ScenarioError names what does not validate)."""
        if self._scenarios is None:
            self._base, self._scenarios = _cluster_scenarios(self, "release scenario")
        return self._scenarios

    @property
    def base_scenario(self) -> Scenario:
        """The base scenario every cluster starts from (its rollout's policy and start are the release's)."""
        if self._base is None:
            self.cluster_scenarios  # noqa: B018 - resolves both
        assert self._base is not None
        return self._base

    def cluster(self, name: str) -> ReleaseClusterSpec:
        return next(c for c in self.clusters if c.name == name)

    def wave_of(self, cluster: str) -> str | None:
        return next((w.name for w in self.release.waves if cluster in w.clusters), None)

    @property
    def home_account(self) -> str:
        """The account the release state machine runs in: the first cluster's (config's ``release_home``)."""
        return self.clusters[0].account

    def release_spec(self) -> ReleaseSpec:
        """The release as the release functions read it (stacks/release_stack.py builds the same from config)."""
        policy = self.base_scenario.rollout.policy.model_dump(mode="json")
        waves = []
        for w in self.release.waves:
            targets = [self._target(name) for name in w.clusters]
            waves.append(WaveSpec(name=w.name, targets=targets, max_concurrency=w.max_concurrency or len(targets),
                                  bake_seconds=w.bake_seconds, approval=w.approval))
        return ReleaseSpec(name=self.release.name, waves=waves,
                           rollback_completed_waves=self.release.rollback_completed_waves, policy=policy)

    def _target(self, name: str) -> ReleaseTarget:
        c, sc = self.cluster(name), self.cluster_scenarios[name]
        role = None if c.account == self.home_account else f"arn:aws:iam::{c.account}:role/{RELEASE_ROLE_NAME}"
        return ReleaseTarget(
            cluster=name, namespace=sc.namespace.name, deployment=sc.app.deployment, container=sc.rollout_container,
            account=c.account, region=c.region, role_arn=role,
            state_machine_arn=f"arn:aws:states:{c.region}:{c.account}:stateMachine:{ROLLOUT_STATE_MACHINE_NAME}",
        )


def _problems(rs: ReleaseScenario) -> list[str]:
    """What the schema alone cannot say: names given twice, waves naming unknown clusters or one twice."""
    out: list[str] = []
    names = [c.name for c in rs.clusters]
    for i, name in enumerate(names):
        if name in names[:i]:
            out.append(f"clusters.{i}.name: {quote(name)} is listed twice; give each cluster once")
    seen_waves: set[str] = set()
    placed: dict[str, str] = {}
    for w, wave in enumerate(rs.release.waves):
        if wave.name in seen_waves:
            out.append(f"release.waves.{w}.name: {quote(wave.name)} is listed twice; give each wave its own name")
        seen_waves.add(wave.name)
        for k, cluster in enumerate(wave.clusters):
            at = f"release.waves.{w}.clusters.{k}"
            if cluster not in names:
                out.append(f"{at}: {quote(cluster)} is not one of the clusters ({', '.join(dict.fromkeys(names))})")
            elif cluster in placed:
                out.append(f"{at}: {quote(cluster)} is already in wave {quote(placed[cluster])}; a release rolls a "
                           "cluster once")
            else:
                placed[cluster] = wave.name
    return out


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` over ``base``: mappings merge key by key, anything else (lists included) is replaced."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def cluster_seed(seed: int, cluster: str) -> int:
    """The seed of one cluster's world: its own stream, derived from (seed, cluster name), stable across runs."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{cluster}".encode()).digest()[:4], "big")


def _validated(data: dict[str, Any], where: str) -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{where}: {validation_message(exc)}") from None


def _cluster_scenarios(rs: ReleaseScenario, source: str) -> tuple[Scenario, dict[str, Scenario]]:
    path = SCENARIOS_DIR / rs.base
    if Path(rs.base).is_absolute() or ".." in Path(rs.base).parts or not path.is_file():
        raise ScenarioError(f"{source}: base: {quote(rs.base)} is not a scenario file under scenarios/; write e.g. "
                            f"{DEFAULT_BASE!r}")
    try:
        base = load_scenario(path)
    except ScenarioError as exc:
        raise ScenarioError(f"{source}: base: {exc}") from None
    if base.fleet.deployments != 1:
        raise ScenarioError(f"{source}: base: {rs.base} is a fleet of {base.fleet.deployments} deployments; a "
                            "release rolls one Deployment per cluster: use a single-app scenario")
    common = merged(base.model_dump(mode="json"), rs.overrides)
    _validated(common, f"{source}: overrides")  # a problem of the common overrides is named once, there
    out: dict[str, Scenario] = {}
    for i, c in enumerate(rs.clusters):
        data = merged(common, c.overrides)
        data.update(name=f"{rs.name}/{c.name}", seed=cluster_seed(rs.seed, c.name),
                    description=f"cluster {c.name} of release scenario {rs.name}")
        data["cluster"] = {**data["cluster"], "name": c.name, "account_id": c.account, "region": c.region}
        data["rollout"] = {**data["rollout"], "image": rs.release.image}
        out[c.name] = _validated(data, f"{source}: clusters.{i} ({c.name}): overrides")
    return base, out


def parse_release_scenario(data: Any, source: str = "release scenario") -> ReleaseScenario:
    """Validate a release scenario mapping and build every cluster's world; ScenarioError names every bad field."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a release scenario is a YAML mapping (name:, clusters:, release:, ...)")
    try:
        rs = ReleaseScenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {validation_message(exc)}") from None
    problems = _problems(rs)
    if problems:
        raise ScenarioError(f"{source}: {'; '.join(problems)}")
    rs._base, rs._scenarios = _cluster_scenarios(rs, source)
    return rs


def load_release_scenario(path: str | Path) -> ReleaseScenario:
    """Read and validate a release scenario YAML file; every problem is one ScenarioError line naming the file."""
    return parse_release_scenario(read_scenario_yaml(path, "release scenario"), str(path))


# --- the worlds ---------------------------------------------------------------------------------------------
class World:
    """Every cluster's ``Simulation``, advanced in lockstep. It is the clock of the local runner and the world of
    the interleaver (``now``/``sleep``/``run_until``), and the ports provider of the handlers (``ports``)."""

    def __init__(self, scenario: ReleaseScenario, seed: int | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        strategy = get_strategy("albgate")  # the world as albgate's bootstrap leaves it (albgate_strategy.py)
        self.sims: dict[str, Simulation] = {
            name: Simulation(strategy.prepare(sc), cluster_seed(self.seed, name))
            for name, sc in scenario.cluster_scenarios.items()
        }
        self.release_start = EPOCH + scenario.base_scenario.rollout.start_at_seconds
        # One Describe* bucket per account and Region (docs/facts.md, "ELB API throttling"): the clusters of one
        # account and Region spend the bucket of the first of them, controllers and albgate alike.
        self.buckets: dict[tuple[str, str], Any] = {}
        for c in scenario.clusters:
            sim = self.sims[c.name]
            sim.alb.bucket = self.buckets.setdefault((c.account, c.region), sim.alb.bucket)

    def now(self) -> float:
        return next(iter(self.sims.values())).clock.now()

    def run_until(self, t: float) -> None:
        """Every world's events up to ``t`` in one time order (the earliest event of any world first), so the
        worlds that share a bucket spend it in the order their calls come; then every clock at ``t``."""
        loops = [sim.loop for sim in self.sims.values()]
        while True:
            due = [(at, i) for i, loop in enumerate(loops) if (at := loop.next_time()) is not None and at <= t]
            if not due:
                break
            loops[min(due)[1]].step(t)
        for sim in self.sims.values():
            sim.run_until(t)

    def sleep(self, seconds: float) -> None:
        self.run_until(self.now() + seconds)

    @property
    def elapsed(self) -> float:
        return self.now() - EPOCH

    def ports(self, cluster: str) -> Ports:
        if cluster not in self.sims:
            raise NotFoundError(f"cluster {quote(cluster)} is not in this release's worlds ({', '.join(self.sims)})")
        return self.sims[cluster].ports

    def settle(self) -> None:
        """Let each world's effects settle as a single run does (no pod terminating, no target draining, then
        ``traffic.settle_seconds``), then bring every world to the latest of those instants."""
        start = self.now()
        for sim in self.sims.values():
            limit = start + sim.scenario.horizon_seconds
            sim.run_until(limit, stop=sim.quiescent)
            sim.run_until(min(limit, sim.clock.t + sim.scenario.traffic.settle_seconds))
        self.run_until(max(sim.clock.now() for sim in self.sims.values()))

    @contextmanager
    def backoff_on(self, sleep: Any) -> Iterator[None]:
        """A throttled ELB call backs off, and a watch of the cluster waits, on ``sleep`` (the interleaver's clock)
        instead of its world's own ``advance``, which would move that world alone."""
        for sim in self.sims.values():
            sim.handlers_sleep_on(sleep)
        try:
            yield
        finally:
            for sim in self.sims.values():
                sim.handlers_sleep_on(None)


# --- the children -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StartedChild:
    index: int  # the interleaver's
    arn: str
    name: str
    cluster: str
    image: str
    input: dict[str, Any]


class SimChildExecutions:
    """``ChildExecutions`` on the local runner: every child is an execution of the local rollout state machine
    (``rollout_state_machine``, a logical id), started on the interleaver at the current simulated instant.
    The ARN it answers is the one StartExecution gives on AWS (the target's Region and account); ``index_of``
    maps it back to the interleaver's index. Bind the interleaver before the release runs."""

    def __init__(self, rollout_state_machine: str) -> None:
        self.rollout_state_machine = rollout_state_machine
        self.interleaver: Any = None
        self.started: list[StartedChild] = []
        self._by_arn: dict[str, StartedChild] = {}

    def bind(self, interleaver: Any) -> None:
        self.interleaver = interleaver

    def start(self, state_machine_arn: str, role_arn: str | None, name: str, input: dict) -> str:
        from albgate.sfn_local.interleave import Start

        arn = execution_arn(state_machine_arn, name)
        known = self._by_arn.get(arn)
        if known is not None:
            if known.input != input:  # StartExecution: ExecutionAlreadyExists for another input
                raise InvalidInputError(f"execution {name} exists with another input; a retried start repeats it")
            return arn  # a retried start starts nothing new
        if self.interleaver is None:
            raise RuntimeError("SimChildExecutions: bind the interleaver before the release starts children")
        index = self.interleaver.start(Start(self.interleaver.world.now(), input, name,
                                             state_machine=self.rollout_state_machine))
        child = StartedChild(index, arn, name, str(input.get("cluster", "")), str(input.get("image", "")),
                             copy.deepcopy(input))
        self.started.append(child)
        self._by_arn[arn] = child
        return arn

    def index_of(self, execution_arn: str) -> int:
        child = self._by_arn.get(execution_arn)
        if child is None:
            raise NotFoundError(f"execution {execution_arn} does not exist (ExecutionDoesNotExist)")
        return child.index

    def describe(self, execution_arn: str, role_arn: str | None) -> ChildExecution:
        result = self.interleaver.result_of(self.index_of(execution_arn))
        if result is None:
            return ChildExecution("RUNNING")
        return ChildExecution(result.status, result.output, result.error, result.cause)


# --- the report ---------------------------------------------------------------------------------------------
@dataclass
class ChildRun:
    """One child execution of the release in one cluster."""

    name: str
    kind: str  # rollout (to the release's image) | rollback (back to the image it replaced)
    image: str
    status: str  # the execution's: SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    outcome: str  # succeeded | rolled_back | failed | timed_out (as `albgate simulate` names a rollout's end)
    started_at: float  # seconds since t=0
    seconds: float
    error: str | None = None
    cause: str | None = None


@dataclass
class ClusterOutcome:
    cluster: str
    account: str
    region: str
    wave: str | None
    executions: list[ChildRun]
    requests: int
    failed_requests: int
    failed_by_cause: dict[str, int]
    final_image: str
    rollout_seconds: float | None  # the rollout child's time; None when none ran

    def outcome_of(self, kind: str) -> str | None:
        return next((c.outcome for c in self.executions if c.kind == kind), None)


@dataclass
class ReleaseResult:
    scenario: str
    release: str
    image: str
    seed: int
    outcome: str  # succeeded | stopped (the release's `Release Stopped`) | failed (anything else)
    status: str  # the release execution's
    error: str | None
    cause: str | None
    clusters: list[ClusterOutcome]
    waves_started: list[str]
    requests: int
    failed_requests: int
    release_seconds: float
    state_transitions: int  # the release execution's
    simulated_seconds: float
    wall_seconds: float
    approved_at: list[float] = field(default_factory=list)  # seconds since t=0 of each wave approval
    visited: list[str] = field(default_factory=list, repr=False)
    # (detail-type, detail) of every event the release put on its bus, in order, as its history records them
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list, repr=False)

    def cluster(self, name: str) -> ClusterOutcome:
        return next(c for c in self.clusters if c.cluster == name)

    def render(self) -> str:
        """The release for a person: its end, then one line per cluster (wave, executions, requests, image)."""
        lines = [f"release {self.release} -> {self.image} ({self.scenario}, seed {self.seed}): {self.outcome} after "
                 f"{self.release_seconds:.1f} s, {self.state_transitions} state transitions"]
        if self.cause or self.error:
            lines.append(f"  {self.error or self.status}: {self.cause or ''}".rstrip(": "))
        lines.append(f"  waves started: {', '.join(self.waves_started) or 'none'}; requests {self.requests}, failed "
                     f"{self.failed_requests}")
        for c in self.clusters:
            runs = "; ".join(f"{r.kind} {r.outcome} in {r.seconds:.1f} s" for r in c.executions) or "not started"
            failed = f", failed {c.failed_requests} ({', '.join(f'{k} {v}' for k, v in c.failed_by_cause.items())})" \
                if c.failed_requests else ""
            lines.append(f"  {c.wave or '-':<12} {c.cluster} ({c.account}, {c.region}): {runs}; requests "
                         f"{c.requests}{failed}; runs {c.final_image}")
        lines.append(f"  simulated {self.simulated_seconds:.1f} s in {self.wall_seconds:.1f} s of wall time")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("visited")
        # the event types, in order; their details carry task tokens, which differ from run to run
        out["events"] = [t for t, _ in self.events]
        return out


def run_release(scenario: ReleaseScenario, seed: int | None = None, *,
                task_seconds: float = LAMBDA_SECONDS) -> ReleaseResult:
    """Build every cluster's world, let traffic flow until the release starts (the base scenario's
    ``rollout.start_at_seconds``), run one release execution with its children to their ends, settle, report."""
    if task_seconds < 0:
        raise ValueError(f"task_seconds must be 0 or more, not {task_seconds}")
    wall = time.perf_counter()
    world = World(scenario, seed)
    world.run_until(world.release_start)
    spec = scenario.release_spec()
    with quiet_powertools():  # before the handlers' modules are imported: they configure Powertools then
        release, children, results, approved_at = _execute(world, spec, task_seconds)
    world.settle()
    result = _report(scenario, world, release, children, results, wall)
    result.approved_at = [round(t - EPOCH, 3) for t in approved_at]
    return result


def _execute(world: World, spec: ReleaseSpec, task_seconds: float) -> tuple[Any, SimChildExecutions, dict, list]:
    from albgate.sfn_local.extract import extract_state_machine
    from albgate.sfn_local.interleave import Interleaver, Start, TurnClock
    from albgate.sfn_local.runner import LocalStateMachine, TaskTokenRequest
    from albgate.template import (
        RELEASE_STATE_MACHINE_PREFIX,
        ROLLOUT_STATE_MACHINE_PREFIX,
        state_machine_id,
        synthesized_release_template,
    )
    from lambdas.handlers import _runtime
    from lambdas.handlers._release import ReleaseDeps, use_release_deps

    template = synthesized_release_template()
    release_id = state_machine_id(template, RELEASE_STATE_MACHINE_PREFIX)
    release_machine = extract_state_machine(template, release_id)
    rollout_machine = extract_state_machine(template, state_machine_id(template, ROLLOUT_STATE_MACHINE_PREFIX))
    children = SimChildExecutions(rollout_machine.state_machine_logical_id)

    approved_at: list[float] = []

    def approve(token: TaskTokenRequest) -> None:
        # a simulated release engineer approves every wave (its token came in an event) and every step at once
        if token.state_machine == release_id:
            approved_at.append(world.now())
        token.succeed({})

    def charged(clock: TurnClock):  # noqa: ANN202 - the runner's Invoke
        def invoke(logical_id: str, handler: str, event: Any) -> Any:
            clock.sleep(task_seconds)  # the Lambda's own time, during which the other executions go on
            return machine.invoke_handler(logical_id, handler, event)
        return invoke

    name = _execution_name(f"{spec.name}-{world.seed}")
    use_release_deps(ReleaseDeps(specs={spec.name: spec}, executions=children))
    _runtime.use_ports(world.ports)
    try:
        with LocalStateMachine(release_machine, world, on_task_token=approve,
                               companions=[rollout_machine]) as machine:
            interleaver = Interleaver(machine, world, invoke=charged, on_task_token=approve,
                                      real_timeout_seconds=300)
            children.bind(interleaver)
            with world.backoff_on(interleaver.clock.sleep):
                interleaver.run([Start(world.now(), {"release": spec.name, "image": world.scenario.release.image},
                                       name, state_machine=release_id)])
            release = interleaver.result_of(0)  # the first execution registered; its children come after it
            results = {c.index: interleaver.result_of(c.index) for c in children.started}
    finally:
        _runtime.use_ports(None)
        use_release_deps(None)
    return release, children, results, approved_at


def _execution_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)[:80]


def _report(rs: ReleaseScenario, world: World, release: Any, children: SimChildExecutions, results: dict,
            wall: float) -> ReleaseResult:
    from lambdas.domain.contract import RELEASE_STOPPED_ERROR

    runs: dict[str, list[ChildRun]] = {c.name: [] for c in rs.clusters}
    for child in children.started:
        r = results[child.index]
        kind = ROLLOUT if child.image == rs.release.image else ROLLBACK
        runs.setdefault(child.cluster, []).append(ChildRun(
            name=child.name, kind=kind, image=child.image, status=r.status, outcome=_outcome(r.status, r.error),
            started_at=round(r.started_at - EPOCH, 3), seconds=round(r.stopped_at - r.started_at, 3),
            error=r.error, cause=r.cause,
        ))
    clusters = []
    for c in rs.clusters:
        sim = world.sims[c.name]
        rollout = next((r for r in runs[c.name] if r.kind == ROLLOUT), None)
        clusters.append(ClusterOutcome(
            cluster=c.name, account=c.account, region=c.region, wave=rs.wave_of(c.name), executions=runs[c.name],
            requests=sim.traffic.requests, failed_requests=sim.traffic.failed_requests,
            failed_by_cause=dict(sorted(sim.traffic.failed.items())), final_image=sim.current_image(),
            rollout_seconds=rollout.seconds if rollout else None,
        ))
    started = {rs.wave_of(ch.cluster) for ch in children.started if ch.image == rs.release.image}
    if release.status == "SUCCEEDED":
        outcome = SUCCEEDED
    elif release.error == RELEASE_STOPPED_ERROR:
        outcome = STOPPED
    else:
        outcome = FAILED
    return ReleaseResult(
        scenario=rs.name, release=rs.release.name, image=rs.release.image, seed=world.seed, outcome=outcome,
        status=release.status, error=release.error, cause=release.cause, clusters=clusters,
        waves_started=[w.name for w in rs.release.waves if w.name in started],
        requests=sum(c.requests for c in clusters), failed_requests=sum(c.failed_requests for c in clusters),
        release_seconds=round(release.stopped_at - release.started_at, 3),
        state_transitions=release.state_transitions, simulated_seconds=round(world.elapsed, 3),
        wall_seconds=round(time.perf_counter() - wall, 3), visited=list(release.visited),
        events=published_events(release.history),
    )


def published_events(history: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The entries of every PutEvents task of the execution that put them on the bus (the task was submitted, for
    a ``.waitForTaskToken`` one, or succeeded), in order, read from its history: what the release told the teams'
    event rules. The release's tasks run one at a time, so a put belongs to the last PutEvents scheduled."""
    pending: list[tuple[str, dict[str, Any]]] | None = None
    out: list[tuple[str, dict[str, Any]]] = []
    for event in history:
        kind = event["type"]
        details = next((v for k, v in event.items() if k.endswith("EventDetails")), None) or {}
        if details.get("resourceType") != "events":
            continue
        if kind == "TaskScheduled":
            entries = json.loads(details.get("parameters") or "{}").get("Entries", [])
            pending = [(e.get("DetailType", ""),
                        json.loads(e["Detail"]) if isinstance(e.get("Detail"), str) else dict(e.get("Detail") or {}))
                       for e in entries]
        elif kind in ("TaskSubmitted", "TaskSucceeded") and pending is not None:
            out.extend(pending)
            pending = None
    return out
