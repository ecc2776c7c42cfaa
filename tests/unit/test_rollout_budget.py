"""The Describe* budget in the rollout's use cases: the gate, the drain check, Preflight and the gate keeper.

The harness is the simulated cluster and ALB (a fake that behaves) with the real use cases of
``lambdas/domain/rollout/``; only the budget is replaced, by one that says "wait N s" on demand and records
what it was asked. ELB calls are counted by the simulated ALB per caller, so "no DescribeTargetHealth call"
means the load balancer saw none from albgate. The last test runs a whole rollout of the example app through
the synthesized state machine with the default budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

import albgate.sim.albgate_strategy  # noqa: F401  registers the "albgate" strategy
from albgate.sim import Simulation, load_scenario
from albgate.sim import simulation as simulation_module
from albgate.sim.runner import run_strategy
from albgate.sim.manifests import without_serving_label
from albgate.sim.strategies import SUCCEEDED, bootstrap_hardened
from albgate.template import use_template
from lambdas.domain.budget import LocalBudget
from lambdas.domain.errors import ThrottledError
from lambdas.domain.gatekeeper import keep_gates
from lambdas.domain.ports import ALBGATE_GATE, DeploymentPatch, Ports
from lambdas.domain.models import parse_request
from lambdas.domain.rollout import drain, gate, step
from lambdas.domain.rollout import preflight as preflight_use_case
from lambdas.domain.rollout.observe import STALE_SLOT_SECONDS
from lambdas.domain.rollout.pods import ROLLOUT_ANNOTATION
from lambdas.domain.rollout.preflight import MAX_PREFLIGHT_TURNS, PREFLIGHT_WAITING, PreflightWaiting
from lambdas.domain.state import RolloutState


# The use cases as their handlers call them: the state parsed at the boundary, the new state dumped.
def _as_handler(use_case):
    return lambda ports, state: use_case(ports, RolloutState.model_validate(state)).dump()


start_step = _as_handler(step.start_step)
check_target_health = _as_handler(gate.check_target_health)
release_old_pods = _as_handler(drain.release_old_pods)
verify_drain = _as_handler(drain.verify_drain)


def preflight(ports: Ports, request: dict, name: str, turn: dict | None = None) -> dict:
    return preflight_use_case.preflight(ports, parse_request(request), name, PreflightWaiting.parse(turn)).dump()

SEED_APP = Path(__file__).resolve().parents[2] / "scenarios" / "seed-app.yaml"
NS, DEPLOYMENT = "readiness", "nginx-app"
SPENT = "Describe* calls is spent"  # what the gate says while it waits for its booked look
FIRST_POD_READY = 20  # seconds after Start Step: the first new pod is ContainersReady, its target registering


class ScriptedBudget:
    """A DescribeBudget that answers each ask with the next of ``waits`` (0 once they run out), and records
    every ask as (tokens, reserve)."""

    def __init__(self, *waits: float) -> None:
        self.waits = list(waits)
        self.asks: list[tuple[int, bool]] = []
        self.throttles = 0  # throttled calls reported (each may cut albgate's share)

    def say(self, *waits: float) -> None:
        self.waits = list(waits)
        self.asks.clear()

    def acquire(self, tokens: int, *, reserve: bool) -> float:
        self.asks.append((tokens, reserve))
        return self.waits.pop(0) if self.waits else 0.0

    def throttled(self) -> None:
        self.throttles += 1

    def short(self) -> bool:
        return bool(getattr(self, "is_short", False))

    def controller_late(self) -> None:
        self.lates = getattr(self, "lates", 0) + 1


@dataclasses.dataclass
class World:
    sim: Simulation
    budget: ScriptedBudget
    ports: Ports

    @property
    def now(self) -> float:
        return self.sim.clock.now()

    @property
    def health_calls(self) -> int:
        """DescribeTargetHealth calls albgate made (the controller's are counted apart)."""
        return self.sim.alb.describe_calls["albgate"]

    def old_pods_live(self) -> int:
        """Pods still running the app's first image and not terminating."""
        old = self.sim.scenario.app.image
        return sum(1 for p in self.sim.cluster.pods.values()
                   if p.namespace == NS and not p.terminating and p.template.containers[0].image == old)

    @property
    def group_calls(self) -> int:
        return self.sim.alb.describe_tg_calls["albgate"]

    def request(self, **policy: int) -> dict:
        req = self.sim.rollout_request()
        return req.model_copy(update={"policy": req.policy.model_copy(update=policy)}).model_dump(mode="json")

    def started(self, **policy: int) -> dict:
        """Preflight and Start Step with room in the budget; the budget's record starts empty afterwards."""
        state = start_step(self.ports, preflight(self.ports, self.request(**policy), "t1"))
        self.budget.say()
        return state


def _world(label_namespace: bool) -> World:
    # The drains looked at, budgeted and deregistered here are those of an app whose Service does not select the
    # serving label: with it, a step's old pods leave the pool before their release and its drain has nothing to ask
    # (tests/unit/test_out_of_service.py, tests/handlers/test_handlers_on_sim.py)
    sim = Simulation(without_serving_label(bootstrap_hardened(load_scenario(SEED_APP),
                                                              label_namespace=label_namespace)))
    sim.run_until(sim.rollout_start)
    budget = ScriptedBudget()
    return World(sim, budget, dataclasses.replace(sim.ports, budget=budget))


@pytest.fixture
def world() -> Iterator[World]:
    # The namespace as the example ships it, unlabelled: the new pods carry albgate's gate but not the controller's,
    # so the gate learns their targets' health from ELB alone (with the controller's gate it reads the controller's
    # conditions first and calls ELB later: tests/unit/test_conditions.py, tests/workflow)
    yield _world(label_namespace=False)


@pytest.fixture
def labelled_world() -> Iterator[World]:
    """The namespace labelled as the bootstrap leaves it: the controller registers a gated pod as it turns ready."""
    yield _world(label_namespace=True)


def gate_waiting_for_the_budget(state: dict) -> bool:
    return state["gate"]["status"] == "WAITING" and SPENT in state["gate"]["reason"]


# ---------------------------------------------------------------------------------------------------------
# Preflight
# ---------------------------------------------------------------------------------------------------------
PREFLIGHT_CASES = [
    # id, budget's answer, whole seconds Preflight must wait for its booked turn (0: it looks now)
    ("room-in-the-budget", 0.0, 0),
    ("budget-spent", 2.2, 3),
]


@pytest.mark.parametrize("wait,wait_seconds", [c[1:] for c in PREFLIGHT_CASES], ids=[c[0] for c in PREFLIGHT_CASES])
def test_preflight_books_its_turn_for_two_calls_per_target_group(world, wait, wait_seconds):
    # Given the example app behind one TargetGroupBinding, and a budget that answers ``wait``
    world.budget.say(wait)
    now = world.ports.clock.now()
    # When Preflight runs
    state = preflight(world.ports, world.request(), "t1")
    # Then it asked once, for DescribeTargetGroups + DescribeTargetGroupAttributes, booking its turn
    assert world.budget.asks == [(2, True)]
    if wait_seconds:
        # and, told to wait, it answers when (the state machine's Wait brings it back) and calls nothing
        assert state["preflight"] == PREFLIGHT_WAITING and state["wait_seconds"] == wait_seconds
        assert state["describe_slot_at"] == pytest.approx(now + wait, abs=1e-6) and state["turns"] == 1
        assert SPENT in state["reason"]
        assert world.group_calls == 0 and world.health_calls == 0
    else:
        assert len(state["target_groups"]) == 1 and world.group_calls == 1


def test_preflight_back_for_its_booked_turn_looks_without_asking_again(world):
    # Given a Preflight that was told to wait 4 s for its turn
    world.budget.say(4.0)
    waiting = preflight(world.ports, world.request(), "t1")
    # When it comes back at the booked time (the Wait state waits whole seconds)
    world.sim.run_until(world.now + waiting["wait_seconds"])
    state = preflight(world.ports, world.request(), "t1", waiting)
    # Then it reads the target groups without asking the budget again
    assert world.budget.asks == [(2, True)]
    assert len(state["target_groups"]) == 1 and world.group_calls == 1


def test_preflight_gives_up_after_ten_turns_that_never_came(world):
    # Given a Preflight whose every booking went stale (it came back more than 10 s late, ten times)
    world.budget.say(*[5.0] * 12)
    turn = None
    for _ in range(MAX_PREFLIGHT_TURNS):
        turn = preflight(world.ports, world.request(), "t1", turn)
        world.sim.run_until(world.now + turn["wait_seconds"] + STALE_SLOT_SECONDS + 1)
    # Then the next booking raises the retryable ThrottledError (the state machine's Retry, then the Catch)
    with pytest.raises(ThrottledError, match="no turn after 10 bookings"):
        preflight(world.ports, world.request(), "t1", turn)
    assert world.group_calls == 0


# ---------------------------------------------------------------------------------------------------------
# The gate (Check Target Health)
# ---------------------------------------------------------------------------------------------------------
BOOKED = [
    # id, booked wait the budget answers, whole seconds the gate must wait for it
    ("under-the-shortest-look-wait-waits-that", 0.2, 3),
    ("fraction-rounds-up", 7.5, 8),
    ("whole-seconds-as-is", 30.0, 30),
]


@pytest.mark.parametrize("booked,wait_seconds", [b[1:] for b in BOOKED], ids=[b[0] for b in BOOKED])
def test_the_gate_waits_for_its_booked_look_and_then_looks_without_asking_again(world, booked, wait_seconds):
    # Given a step whose first new pod is ContainersReady (the gate would call DescribeTargetHealth), and a
    # budget that is spent: it books this look ``booked`` seconds ahead
    state = world.started()
    world.sim.advance(FIRST_POD_READY)
    world.budget.say(booked)
    now = world.now
    # When the gate looks
    state = check_target_health(world.ports, state)
    # Then it waits for the booked slot, having booked one look's worth (one call per target group)
    assert gate_waiting_for_the_budget(state), state["gate"]
    assert state["wait_seconds"] == wait_seconds
    assert state["describe_slot_at"] == now + booked
    assert world.budget.asks == [(1, True)]
    # And it made no DescribeTargetHealth call
    assert world.health_calls == 0 and state["describe_target_health_calls"] == 0
    # When it comes back after the wait it asked for
    world.sim.advance(state["wait_seconds"])
    state = check_target_health(world.ports, state)
    # Then the look goes without asking the budget again (the slot was paid for), and the booking is used up
    assert world.budget.asks == [(1, True)]
    assert world.health_calls == 1 and state["describe_target_health_calls"] == 1
    assert state["describe_slot_at"] is None and not gate_waiting_for_the_budget(state)


COME_BACK = [
    # id, seconds after the booked slot the gate comes back, budget asked again, look made
    ("on-time", 0, False, True),
    ("late-within-the-tolerance", STALE_SLOT_SECONDS - 1, False, True),
    ("stale-booked-again", STALE_SLOT_SECONDS + 1, True, False),
]


@pytest.mark.parametrize("late,asked,looked", [c[1:] for c in COME_BACK], ids=[c[0] for c in COME_BACK])
def test_a_stale_booking_is_booked_again(world, late, asked, looked):
    # Given a gate that booked its look 5 s ahead
    state = world.started()
    world.sim.advance(FIRST_POD_READY)
    world.budget.say(5.0, 3.0)  # the first booking, then (if asked again) a new one 3 s ahead
    state = check_target_health(world.ports, state)
    slot = state["describe_slot_at"]
    # When the gate comes back ``late`` seconds after its slot
    world.sim.advance(5.0 + late)
    state = check_target_health(world.ports, state)
    # Then a booking stale by more than STALE_SLOT_SECONDS is booked again (the budget says wait 3 s), while a
    # fresh one is used without asking
    assert len(world.budget.asks) == (2 if asked else 1)
    assert world.health_calls == (1 if looked else 0)
    if asked:
        assert gate_waiting_for_the_budget(state) and state["wait_seconds"] == 3
        assert state["describe_slot_at"] == world.now + 3.0 and state["describe_slot_at"] > slot
    else:
        assert state["describe_slot_at"] is None


DEADLINE = [
    # id, seconds after Start Step the gate looks (step deadline: 60 s), expected gate status
    ("before-the-deadline", FIRST_POD_READY, "WAITING"),
    ("past-the-deadline", 61, "FAILED"),
]


@pytest.mark.parametrize("after,status", [d[1:] for d in DEADLINE], ids=[d[0] for d in DEADLINE])
def test_the_step_deadline_passing_while_the_budget_says_wait_fails_the_gate(world, after, status):
    # Given a step with a 60 s deadline whose gate has not seen its targets yet, and a spent budget
    state = world.started(step_deadline_seconds=60)
    world.sim.advance(after)
    world.budget.say(10.0)
    # When the gate looks
    state = check_target_health(world.ports, state)
    # Then before the deadline it waits; past it the step fails, naming the budget, without a look at ELB
    assert state["gate"]["status"] == status
    assert world.health_calls == 0
    if status == "FAILED":
        assert "step deadline passed while albgate waited" in state["gate"]["reason"]
        # And as with throttling, albgate never saw this step's targets: no automatic (blind) rollback
        assert state["rollback_allowed"] is False
    else:
        assert state["rollback_allowed"] is True


# ---------------------------------------------------------------------------------------------------------
# The drain check (Verify Drain)
# ---------------------------------------------------------------------------------------------------------
def gate_passed(world: World) -> dict:
    state = world.started()
    for _ in range(20):
        state = check_target_health(world.ports, state)
        if state["gate"]["status"] != "WAITING":
            break
        world.sim.advance(state["wait_seconds"])
    assert state["gate"]["status"] == "PASSED"
    return state


@pytest.mark.parametrize("booked,wait_seconds", [(0.5, 3), (12.25, 13)], ids=["under-the-shortest-look-wait", "fraction-rounds-up"])
def test_the_drain_check_waits_its_booked_time_without_calling_elb(world, booked, wait_seconds):
    # Given a step whose gate passed and whose old pod was released and scaled down (the drain check would now
    # call DescribeTargetHealth), and a budget that books that look ``booked`` seconds ahead
    state = release_old_pods(world.ports, gate_passed(world))
    state["more_steps"] = False  # the last step: its drain is seen leaving (an earlier one is handed over unseen)
    scaled_down = world.sim.run_until(world.now + 60, stop=lambda: world.old_pods_live() <= 2)
    assert scaled_down  # the Deployment controller removed one old pod for the released new one
    calls = world.health_calls
    asks = list(world.budget.asks)
    state = verify_drain(world.ports, state)  # names the released target at once, and waits the lag unseen
    assert world.budget.asks == asks and world.health_calls == calls and state["wait_seconds"] >= 10
    world.sim.advance(state["wait_seconds"])
    world.budget.say(booked)
    now = world.now
    # (had the group not shown its targets on several ports, the call's success would have proven the drain)
    for g in state["target_groups"]:
        g["ports_mixed"], g["target_port"] = True, None
    # When the drain is checked
    state = verify_drain(world.ports, state)
    # Then it waits the booked time, with no DescribeTargetHealth call
    assert state["drain"]["status"] == "WAITING"
    assert state["wait_seconds"] == wait_seconds
    assert state["describe_slot_at"] == now + booked
    assert world.budget.asks == [(1, True)] and world.health_calls == calls
    # When it comes back then / Then it looks without asking again
    world.sim.advance(state["wait_seconds"])
    state = verify_drain(world.ports, state)
    assert world.budget.asks == [(1, True)] and world.health_calls == calls + 1
    assert state["describe_slot_at"] is None


def test_a_scaled_down_drain_the_controller_keeps_up_with_is_left_to_it_and_handed_over(labelled_world):
    # Given a step (not the last) whose old pod was released and is terminating, a gate that passed on the
    # controller's conditions alone
    world = labelled_world
    state = release_old_pods(world.ports, gate_passed(world))
    assert state["more_steps"] and state["steps"][-1]["opened_by_controller"]
    world.sim.run_until(world.now + 60, stop=lambda: world.old_pods_live() <= 2)
    before, looks = world.sim.alb.mutating_calls["albgate"], world.health_calls
    # When the drain is checked
    state = verify_drain(world.ports, state)
    # Then albgate neither deregisters nor looks: it hands the drain over unseen, carrying the released target
    assert world.sim.alb.mutating_calls["albgate"] == before and world.health_calls == looks
    assert state["drain"]["status"] == "DRAINING" and len(state["carried_ips"]) == 1
    assert state["drain"]["reason"].startswith("the Load Balancer Controller deregisters the 1 released target(s)")
    # And the controller deregisters it in its next reconcile (a second after the pod's change): draining in the
    # simulated ALB
    world.sim.advance(3)
    (arn,) = world.sim.alb.tgs
    assert world.sim.alb.tgs[arn].targets[state["carried_ips"][0]].state == "draining"


def test_a_scaled_down_drain_deregisters_on_the_binding_port_and_is_handed_over_without_a_look(labelled_world):
    # Given a step (not the last) whose old pod was released and is terminating, a gate that passed on the
    # controller's conditions alone (albgate never saw a target on ELB, so it does not know the group's target port),
    # while the rollout's DescribeTargetHealth calls are being throttled (so the drain is not left to the controller)
    world = labelled_world
    state = release_old_pods(world.ports, gate_passed(world))
    assert state["more_steps"]
    state["throttles"] = 1
    ports_seen = [g["target_port"] for g in state["target_groups"]]
    for g in state["target_groups"]:
        g["target_port"] = None
    world.sim.run_until(world.now + 60, stop=lambda: world.old_pods_live() <= 2)
    before, looks = world.sim.alb.deregister_calls["albgate"], world.health_calls
    # When the drain is checked
    state = verify_drain(world.ports, state)
    # Then albgate deregistered the released target itself, on the port the group's TargetGroupBinding and Service
    # give (neither the controller nor the next look is waited for), and handed the drain over to the next step's
    # gate without a DescribeTargetHealth call: the target is known draining from DeregisterTargets' success
    assert world.sim.alb.deregister_calls["albgate"] == before + 1
    assert ports_seen == [None] and [g["target_port"] for g in state["target_groups"]] == [80]
    assert "albgate deregistered the 1 released target(s) itself" in state["drain"]["reason"]
    assert state["drain"]["status"] == "DRAINING" and world.health_calls == looks
    assert state["pending_drain_step"] is None and len(state["carried_ips"]) == 1
    assert state["wait_seconds"] == 0


def test_the_last_drain_throttled_deregisters_once_and_waits_to_see_the_targets_leave(labelled_world):
    # Given the last step, its old pod released and terminating, and ELB throttling the drain's looks as it throttled
    # the rollout's last call (so the drain is not left to the controller)
    world = labelled_world
    state = release_old_pods(world.ports, gate_passed(world))
    state["more_steps"] = False
    state["throttles"] = 1
    world.sim.run_until(world.now + 60, stop=lambda: world.old_pods_live() <= 2)
    before = world.sim.alb.deregister_calls["albgate"]
    # When the drain is checked, throttled
    state = verify_drain(dataclasses.replace(world.ports, elb=ThrottlingElb(world.ports.elb, times=1)), state)
    # Then albgate deregistered the released target itself and waits to see it leave (the last drain is seen)
    assert world.sim.alb.deregister_calls["albgate"] == before + 1
    assert state["drain"]["status"] == "WAITING" and state["wait_seconds"] > 0
    # When it looks again, throttled again, Then it does not deregister the same target twice
    world.sim.advance(state["wait_seconds"])
    state = verify_drain(dataclasses.replace(world.ports, elb=ThrottlingElb(world.ports.elb, times=1)), state)
    assert world.sim.alb.deregister_calls["albgate"] == before + 1
    # When it looks unthrottled once the target has left, Then the drain passed
    world.sim.advance(60)
    state = verify_drain(world.ports, state)
    assert state["drain"]["status"] == "PASSED"


class ThrottlingElb:
    """The simulated ELB, but DescribeTargetHealth answers ThrottledError ``times`` times first (after the client's
    own retries, as the adapter raises it)."""

    def __init__(self, inner, times: int) -> None:  # noqa: ANN001
        self.inner, self.times = inner, times

    def describe_target_health(self, arn: str):  # noqa: ANN201
        if self.times > 0:
            self.times -= 1
            raise ThrottledError("Rate exceeded")
        return self.inner.describe_target_health(arn)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.inner, name)


def test_a_throttled_look_tells_the_budget_so_albgates_share_steps_back(world):
    # Given a started step whose gate's first DescribeTargetHealth is throttled
    state = world.started()
    ports = dataclasses.replace(world.ports, elb=ThrottlingElb(world.ports.elb, times=1))
    for _ in range(20):
        state = check_target_health(ports, state)
        if world.budget.throttles or state["gate"]["status"] != "WAITING":
            break
        world.sim.advance(state["wait_seconds"])
    # Then the gate backs off and reports the throttled call to the budget, once
    assert world.budget.throttles == 1
    assert "throttled" in state["gate"]["reason"]


# ---------------------------------------------------------------------------------------------------------
# The gate keeper
# ---------------------------------------------------------------------------------------------------------
def pod_born_outside_a_rollout(world: World) -> None:
    """A Deployment whose template carries albgate's gate and that no rollout holds, with one ContainersReady
    pod whose gate is closed (as a scale-up after an albgate rollout leaves it)."""
    world.started()
    world.sim.advance(40)  # the new pod is ContainersReady and its target healthy
    world.ports.kube.patch_deployment(NS, DEPLOYMENT, DeploymentPatch(annotations={ROLLOUT_ANNOTATION: ""}))
    world.budget.say()


def open_gates(world: World) -> int:
    return sum(1 for p in world.ports.kube.list_pods(NS, {"app": "nginx"}) if p.condition(ALBGATE_GATE) == "True")


KEEPER = [
    # budget's answer to the run's one ask, skip expected, gates opened
    pytest.param(0.0, False, 1, id="room-in-the-budget"),
    pytest.param(5.0, True, 0, id="spent"),
]


@pytest.mark.parametrize("answer,skipped,opened", KEEPER)
def test_the_gate_keeper_skips_a_run_when_the_budget_says_wait(labelled_world, answer, skipped, opened):
    world = labelled_world
    # Given a pod born outside a rollout, its albgate gate closed and its target healthy
    pod_born_outside_a_rollout(world)
    world.budget.say(answer)
    calls, group_calls = world.health_calls, world.group_calls
    # When the gate keeper runs
    report = keep_gates(world.ports, NS, DEPLOYMENT)
    # Then with the budget spent it skips the run, saying why, with no DescribeTargetHealth call and no gate
    # opened; with room it looks and opens the healthy pod's gate
    assert report.closed == 1
    assert bool(report.skipped_reason) is skipped
    # (it asked once, for the target group's two Describe* calls and its health look's one, booking nothing)
    assert world.budget.asks == [(3, False)]
    if skipped:
        assert "spent" in report.skipped_reason
    assert world.health_calls == calls + (0 if skipped else 1)
    assert world.group_calls == group_calls + (0 if skipped else 1)
    assert len(report.opened) == opened and open_gates(world) == opened


# ---------------------------------------------------------------------------------------------------------
# One whole rollout with the default budget
# ---------------------------------------------------------------------------------------------------------
class CountingBudget(LocalBudget):
    """The simulation's default budget, counting the calls it let go."""

    def __init__(self, clock: object, spec=None) -> None:
        super().__init__(clock, spec)
        self.granted = 0

    def acquire(self, tokens: int, *, reserve: bool) -> float:
        wait = super().acquire(tokens, reserve=reserve)
        self.granted += tokens if wait == 0 else 0
        return wait


@pytest.mark.parametrize("path", [SEED_APP, SEED_APP.with_name("seed-app-elb-looks.yaml")], ids=lambda p: p.stem)
def test_one_rollout_of_the_seed_app_never_waits_for_the_default_budget(template, monkeypatch, path):
    # Given albgate's synthesized state machine (this session's synth) and the simulation's default budget
    use_template(template)
    monkeypatch.setattr(simulation_module, "LocalBudget", CountingBudget)
    # When it rolls the example app alone, its gate reading the controller's conditions or asking ELB
    sim, run = run_strategy(load_scenario(path), "albgate")
    # Then it succeeds without ever being told to wait
    assert run.outcome == SUCCEEDED, run.detail
    budget = sim.budget
    assert isinstance(budget, CountingBudget) and budget.waits == 0
    # And every Describe* call it made was counted in the budget: two per target group in Preflight, one per
    # DescribeTargetHealth
    elb_calls = 2 * sim.alb.describe_tg_calls["albgate"] + sim.alb.describe_calls["albgate"]
    assert sim.alb.describe_tg_calls["albgate"] > 0 and budget.granted == elb_calls
    # (reading the conditions, the last drain passes on the controller's checkpoint: no DescribeTargetHealth at all)
    assert (sim.alb.describe_calls["albgate"] > 0) is (path != SEED_APP)


class CrowdedBudget(CountingBudget):
    """The default share, which other rollouts in the account have booked for the next ``busy`` seconds when
    this one starts: every look of the first seconds waits for its turn."""

    busy = 40.0

    def acquire(self, tokens: int, *, reserve: bool) -> float:
        if self.tat is None:
            self.tat = self._clock.now() + self.busy  # type: ignore[attr-defined]
        return super().acquire(tokens, reserve=reserve)


def test_a_rollout_started_in_a_crowded_account_waits_its_turns_in_the_state_machine(template, monkeypatch):
    # Given the synthesized state machine, and albgate's share booked by others for 40 s when the rollout starts
    use_template(template)
    monkeypatch.setattr(simulation_module, "LocalBudget", CrowdedBudget)
    # When it rolls the example app
    sim, run = run_strategy(load_scenario(SEED_APP), "albgate")
    # Then Preflight went through `Wait For Describe Turn` (its payload carries the execution input back in),
    # and the rollout succeeded, dropping nothing
    assert run.outcome == SUCCEEDED, run.detail
    assert sim.traffic.failed_requests == 0
    assert sim.budget.waits >= 1
    assert "Wait For Describe Turn" in run.extra["visited"]
