"""Strict inputs: what the rollout model refuses from the input alone, what Preflight refuses once it knows the
Deployment (``plan.step_problems``, ``rollout.check_request_against``), booleans that are JSON booleans in every
input model, and messages that quote a bad value short.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdas.domain.bootstrap import parse_bootstrap
from lambdas.domain.documents import MAX_QUOTED
from lambdas.domain.errors import InvalidInputError
from lambdas.domain.models import RolloutPolicy, RolloutRequest, parse_request
from lambdas.domain.plan import resolve_step, step_problems, step_targets
from lambdas.domain.ports import Container, Deployment, PodTemplate
from lambdas.domain.rollout.preflight import check_request_against
from lambdas.domain.state import RolloutState, TargetGroupInfo

RUNNING = "ikubernetes/myapp:v1"
GOOD = {"cluster": "prod-eks", "namespace": "shop", "deployment": "web", "container": "app", "image": "repo/app:v2"}


def refusal(data: Any) -> str:
    with pytest.raises(InvalidInputError) as err:
        parse_request(data)
    return str(err.value)


# ---------------------------------------------------------------------------------------------------------
# The model: the shape, whatever the replicas
# ---------------------------------------------------------------------------------------------------------
SHAPE_REFUSED = [
    # id, policy, words of the message (the field path first)
    ("counts-unsorted", {"steps": [3, 1, "100%"]}, "policy.steps: step 2 (1 pod) must be larger than step 1 (3 pods)"),
    ("counts-repeated", {"steps": [2, 2, "100%"]}, "policy.steps: step 2 (2 pods) must be larger than step 1"),
    ("counts-unsorted-around-a-percentage", {"steps": [5, "10%", 4, "100%"]}, "step 3 (4 pods) must be larger than step 1"),
    ("percentages-unsorted", {"steps": ["50%", "25%", "100%"]}, "policy.steps: step 2 (25%) must be larger than step 1 (50%)"),
    ("percentage-repeated", {"steps": ["50%", "50%", "100%"]}, "step 2 (50%) must be larger"),
    ("one-pod-after-a-percentage", {"steps": ["10%", 1, "100%"]}, "step 2 is 1 pod, which step 1 already reaches"),
    ("not-ending-at-100", {"steps": [1, "50%"]}, "policy.steps: the last step must be '100%'"),
    ("count-as-string", {"steps": ["2", "100%"]}, "step 1 is '2'; write the pod count as a number (2), not a string"),
    ("boolean-step", {"steps": [True, "100%"]}, "policy.steps: item 1 is true, a boolean"),
    ("percentage-over-100", {"steps": ["150%"]}, "step 1 is '150%'; write a pod count or a percentage from '1%'"),
    ("batch-and-steps", {"batch_size": 2, "steps": [1, "100%"]}, "policy: batch_size (2) and steps ([1, '100%']) are both given"),
    ("batch-and-default-steps-written-out", {"batch_size": 2, "steps": [1, "25%", "50%", "100%"]}, "are both given"),
    ("approval-zero", {"approval_before_steps": [0]}, "policy.approval_before_steps: has 0; steps are numbered from 1"),
    ("approval-twice", {"approval_before_steps": [2, 3, 2]}, "policy.approval_before_steps: names step 2 twice"),
    ("approval-beyond-the-list", {"steps": [1, "100%"], "approval_before_steps": [3]}, "names step 3, but steps lists 2"),
    ("approval-boolean", {"approval_before_steps": [True]}, "policy.approval_before_steps: item 1 is true, a boolean"),
]  # fmt: skip


@pytest.mark.parametrize(("policy", "words"), [c[1:] for c in SHAPE_REFUSED], ids=[c[0] for c in SHAPE_REFUSED])
def test_the_model_refuses_a_policy_whose_shape_is_wrong_for_any_replicas(policy, words):
    # Given an input whose policy is wrong whatever the Deployment / When parsed / Then refused, naming field and fix
    assert words in refusal({**GOOD, "policy": policy})


@pytest.mark.parametrize("image", ["repo/app:v2", RUNNING], ids=["another-image", "the-running-image"])
def test_a_restart_names_no_image(image):
    # Given a restart that names an image, even the one the pods run / Then the model refuses it, saying what to do
    words = refusal({**GOOD, "kind": "restart", "image": image})
    assert "given with kind 'restart'" in words and "leave image out to restart" in words


SHAPE_ACCEPTED = [
    # id, input changes: the model cannot tell these are wrong (or they are not)
    ("mixed-counts-and-percentages", {"policy": {"steps": [1, "25%", 3, "100%"]}}),
    ("count-after-the-percentages", {"policy": {"steps": ["10%", 5, "100%"]}}),
    ("batch-size-alone", {"policy": {"batch_size": 3, "approval_before_steps": [9]}}),
    ("approvals-within-the-list", {"policy": {"approval_before_steps": [4, 2]}}),
    ("restart-without-image", {"kind": "restart", "image": None}),
]


@pytest.mark.parametrize("change", [c[1] for c in SHAPE_ACCEPTED], ids=[c[0] for c in SHAPE_ACCEPTED])
def test_the_model_leaves_to_preflight_what_needs_the_deployment(change):
    data = {**GOOD, **change}
    if "image" in change and change["image"] is None:
        del data["image"]
    assert parse_request(data).model_dump(exclude_unset=True)["deployment"] == "web"


def test_a_rollout_names_its_image_and_null_is_no_image():
    # Given a rollout without an image, or with null / Then refused, saying how to restart instead
    without = {k: v for k, v in GOOD.items() if k != "image"}
    assert "image: required for kind 'rollout'" in refusal(without)
    assert "use kind 'restart' without an image" in refusal({**GOOD, "image": None})


# ---------------------------------------------------------------------------------------------------------
# Preflight: the numbers, once the replicas are known
# ---------------------------------------------------------------------------------------------------------
STEP_PROBLEMS = [
    # id, replicas, policy, expected (field, words) or None
    ("mixed-grows-on-8", 8, {"steps": [1, "25%", 3, "100%"]}, None),
    ("mixed-shrinks-on-20", 20, {"steps": [1, "25%", 3, "100%"]},
     ("steps", "step 3 (3 pods) asks for fewer new pods than step 2 ('25%' of 20 replicas = 5 pods)")),
    ("count-then-smaller-percentage", 20, {"steps": [10, "25%", "100%"]},
     ("steps", "step 2 ('25%' of 20 replicas = 5 pods) asks for fewer new pods than step 1 (10 pods)")),
    ("capped-count-then-percentage", 3, {"steps": [5, "50%", "100%"]},
     ("steps", "than step 1 (5 pods, capped at 3)")),
    ("equal-counts-merge", 12, {"steps": [1, "25%", 3, "100%"]}, None),
    ("default-on-3-replicas-merges", 3, {}, None),
    ("default-on-1-replica", 1, {}, None),
    ("approval-on-the-last-step", 3, {"approval_before_steps": [3]}, None),
    ("approval-beyond-the-merged-plan", 3, {"approval_before_steps": [2, 4]},
     ("approval_before_steps", "names step 4, but on the Deployment's 3 replicas the plan has 3 step(s), [1, 2, 3]")),
    ("approval-beyond-the-batches", 7, {"batch_size": 3, "approval_before_steps": [4, 5]},
     ("approval_before_steps", "names step 4, 5, but on the Deployment's 7 replicas the plan has 3 step(s), [3, 6, 7] "
      "new pods after each (batches of 3); name steps 1 to 3")),
]  # fmt: skip


@pytest.mark.parametrize(("replicas", "policy", "expected"), [c[1:] for c in STEP_PROBLEMS], ids=[c[0] for c in STEP_PROBLEMS])
def test_step_problems_need_the_replicas(replicas, policy, expected):
    # Given a policy the model accepts and a replica count / When checked
    problems = step_problems(replicas, RolloutPolicy(**policy))
    # Then it names the field and the fix, or finds nothing
    if expected is None:
        assert problems == []
    else:
        [(field, message)] = problems
        assert field == expected[0] and expected[1] in message, message


@st.composite
def mixed_steps(draw) -> list[int | str]:
    """Counts growing among themselves and percentages growing to 100%, interleaved at random: the shapes the
    model accepts, and the ones whose growth depends on the replicas."""
    counts = sorted(set(draw(st.lists(st.integers(2, 60), max_size=3))))
    pcts = [f"{p}%" for p in sorted(set(draw(st.lists(st.integers(1, 99), max_size=3))))]
    merged: list[int | str] = []
    while counts or pcts:
        take_count = bool(counts) and (not pcts or draw(st.booleans()))
        merged.append(counts.pop(0) if take_count else pcts.pop(0))
    return merged + ["100%"]


@settings(max_examples=400, deadline=None)
@given(replicas=st.integers(1, 200), steps=mixed_steps())
def test_a_plan_without_step_problems_drops_no_step(replicas, steps):
    # Given any step list the model accepts and any replica count
    policy = RolloutPolicy(steps=steps)
    resolved = [resolve_step(s, replicas) for s in policy.steps]
    shrinks = any(n < max(resolved[:i]) for i, n in enumerate(resolved) if i)
    # Then a step that resolves to fewer pods than one before it is named, and only then
    assert bool(step_problems(replicas, policy)) == shrinks
    # And without one, the plan is every step's count, equal ones merged: nothing is silently skipped
    if not shrinks:
        assert step_targets(replicas, policy) == sorted(set(resolved))


def deployment(replicas: int, image: str = RUNNING) -> Deployment:
    return Deployment(namespace="shop", name="web", uid="u", replicas=replicas, selector={"app": "web"},
                      template=PodTemplate(containers=(Container("app", image),)), max_surge=1, max_unavailable=0)


AGAINST = [
    # id, input changes, replicas, words of the refusal or None
    ("zero-replicas", {}, 0, "deployment: shop/web has 0 replicas (spec.replicas), so no pod serves"),
    ("steps-shrink", {"policy": {"steps": [1, "25%", 3, "100%"]}}, 20, "policy.steps: step 3 (3 pods)"),
    ("approval-beyond-the-plan", {"policy": {"approval_before_steps": [4]}}, 3, "policy.approval_before_steps: names step 4"),
    ("restart-no-image", {"kind": "restart", "image": None}, 3, None),
    ("rollout", {}, 3, None),
]  # fmt: skip


@pytest.mark.parametrize(("change", "replicas", "words"), [c[1:] for c in AGAINST], ids=[c[0] for c in AGAINST])
def test_preflight_refuses_what_the_deployment_cannot_be_asked(change, replicas, words):
    data = {**GOOD, **change}
    if "image" in change and change["image"] is None:
        del data["image"]
    request = parse_request(data)
    # Given a request the model accepts and the Deployment as Preflight read it
    if words is None:
        check_request_against(request, deployment(replicas), running_image=RUNNING)
        return
    # When checked / Then refused (InvalidInputError: Rollout Refused), naming the field and the fix
    with pytest.raises(InvalidInputError) as err:
        check_request_against(request, deployment(replicas), running_image=RUNNING)
    assert words in str(err.value), str(err.value)


# ---------------------------------------------------------------------------------------------------------
# A policy with batch_size, or a restart without an image, survives the state's round trips
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        pytest.param({**GOOD, "policy": {"batch_size": 2}}, id="batch-size"),
        pytest.param({**{k: v for k, v in GOOD.items() if k != "image"}, "kind": "restart"}, id="restart-no-image"),
    ],
)
def test_a_dumped_request_validates_again(data):
    request = parse_request(data)
    # When dumped as the state machine carries it (JSON), and inside a rollout state
    again = parse_request(request.model_dump(mode="json"))
    state = RolloutState(
        request=request, execution_name="e", started_at=0.0, replicas=3, plan=[2, 3], target_image=RUNNING,
        previous_image=RUNNING, previous_revision=1, original_max_surge=1, original_max_unavailable=0,
        target_groups=[TargetGroupInfo(arn="arn:tg", service="s", health_check_interval_seconds=5,
                                       healthy_threshold=2, deregistration_delay_seconds=30)],
    )  # fmt: skip
    # Then each validates again to the same request
    assert again == request
    assert RolloutState.model_validate(state.dump()).request == request
    # And a batch_size policy is dumped without the unused steps
    if request.policy.batch_size is not None:
        assert "steps" not in request.policy.model_dump()


# ---------------------------------------------------------------------------------------------------------
# Booleans are JSON booleans, in the rollout input and the bootstrap input (the CDK config: test_config.py)
# ---------------------------------------------------------------------------------------------------------
NOT_BOOLEANS = ["true", "yes", "1", "on", 1, 0, 1.0]
BOOLEAN_FIELDS = [
    # id, parse function, input built around the value, field path in the message
    ("rollout-harden", parse_request, lambda v: {**GOOD, "policy": {"harden": v}}, "policy.harden"),
    ("rollout-rollback", parse_request, lambda v: {**GOOD, "policy": {"rollback_on_failure": v}},
     "policy.rollback_on_failure"),
    ("bootstrap-install", parse_bootstrap, lambda v: {"cluster": "c", "controller": {"install": v}},
     "controller.install"),
    ("bootstrap-gate-injection", parse_bootstrap, lambda v: {"cluster": "c", "controller": {"require_gate_injection": v}},
     "controller.require_gate_injection"),
    ("bootstrap-app-gated", parse_bootstrap,
     lambda v: {"cluster": "c", "applications": [{"namespace": "shop", "deployment": "web", "container": "app",
                                                  "gated": v}]}, "applications.0.gated"),
    ("bootstrap-app-harden", parse_bootstrap,
     lambda v: {"cluster": "c", "applications": [{"namespace": "shop", "deployment": "web", "container": "app",
                                                  "harden": v}]}, "applications.0.harden"),
    ("bootstrap-restart", parse_bootstrap, lambda v: {"cluster": "c", "restart_pods_born_before_label": v},
     "restart_pods_born_before_label"),
    ("bootstrap-policy-harden", parse_bootstrap, lambda v: {"cluster": "c", "policy": {"harden": v}}, "policy.harden"),
]  # fmt: skip


@pytest.mark.parametrize("value", NOT_BOOLEANS, ids=[f"{type(v).__name__}-{v}" for v in NOT_BOOLEANS])
@pytest.mark.parametrize(("parse", "build", "field"), [c[1:] for c in BOOLEAN_FIELDS], ids=[c[0] for c in BOOLEAN_FIELDS])
def test_a_boolean_given_as_a_string_or_number_is_refused(parse, build, field, value):
    # Given a boolean field given a value a lax parser would read as a boolean / When parsed
    with pytest.raises(InvalidInputError) as err:
        parse(build(value))
    # Then the field is named, the value quoted, and the fix given
    assert f"{field}: {value!r} is not a boolean; write true or false" in str(err.value), str(err.value)


@pytest.mark.parametrize(("parse", "build", "field"), [c[1:] for c in BOOLEAN_FIELDS], ids=[c[0] for c in BOOLEAN_FIELDS])
def test_json_booleans_are_accepted(parse, build, field):
    for value in (True, False):
        parsed = parse(build(value))
        node: Any = parsed
        for part in field.split("."):
            node = node[int(part)] if part.isdigit() else getattr(node, part)
        assert node is value


# ---------------------------------------------------------------------------------------------------------
# A message quotes at most MAX_QUOTED characters of a bad value
# ---------------------------------------------------------------------------------------------------------
HUGE = "z" * 5000
LONG_VALUES = [
    ("unknown-field", {**GOOD, "note": HUGE}, "note: no such field"),
    ("namespace", {**GOOD, "namespace": HUGE}, "namespace: 'zzz"),
    ("deployment", {**GOOD, "deployment": HUGE + "/"}, "deployment: 'zzz"),
    ("image", {**GOOD, "image": HUGE + ":v1"}, "image: 'zzz"),
    ("step", {**GOOD, "policy": {"steps": [HUGE]}}, "policy.steps: step 1 is 'zzz"),
    ("harden", {**GOOD, "policy": {"harden": HUGE}}, "policy.harden: 'zzz"),
]


@pytest.mark.parametrize(("data", "words"), [c[1:] for c in LONG_VALUES], ids=[c[0] for c in LONG_VALUES])
def test_a_long_bad_value_is_quoted_short(data, words):
    # Given a bad value of 5000 characters / When refused
    message = refusal(data)
    # Then the field is named and the value is cut to the quote's limit, with an ellipsis
    assert words in message
    assert "z" * MAX_QUOTED not in message and "z" * (MAX_QUOTED - 3) + "…" in message

