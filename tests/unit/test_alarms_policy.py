"""``policy.alarms`` and its two switches as the execution input takes them: names and prefixes, the limits, and one
clear error naming the field for each way to get them wrong."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.models import MAX_ALARM_PREFIXES, MAX_ALARMS, RolloutPolicy, parse_request
from lambdas.domain.validators import alarm_prefix

REQUEST = {"cluster": "c", "namespace": "ns", "deployment": "d", "container": "app", "image": "r/app:v2"}


def refused(**policy: Any) -> str:
    with pytest.raises(InvalidInputError) as caught:
        parse_request({**REQUEST, "policy": policy})
    return str(caught.value)


def test_by_default_no_alarm_is_watched_no_data_fails_nothing_and_an_alarm_at_the_start_refuses():
    p = RolloutPolicy()
    assert (p.alarms, p.insufficient_data_fails, p.start_despite_alarms) == ([], False, False)


def test_names_and_prefixes_up_to_the_limits_are_accepted_and_round_trip():
    entries = [f"name-{i}" for i in range(MAX_ALARMS - MAX_ALARM_PREFIXES)] + [
        f"prefix-{i}-*" for i in range(MAX_ALARM_PREFIXES)]
    request = parse_request({**REQUEST, "policy": {"alarms": entries, "insufficient_data_fails": True}})
    assert request.policy.alarms == entries
    assert parse_request(request.model_dump(mode="json")) == request


@pytest.mark.parametrize("entry,prefix", [("app-5xx", None), ("app-*", "app-"), ("a**", "a*"), ("x" * 255 + "*",
                                                                                               "x" * 255)])
def test_a_trailing_star_makes_an_entry_a_prefix(entry, prefix):
    assert alarm_prefix(entry) == prefix
    assert RolloutPolicy(alarms=[entry]).alarms == [entry]


@pytest.mark.parametrize("alarms,words", [
    ([f"a{i}" for i in range(MAX_ALARMS + 1)], f"policy.alarms: lists {MAX_ALARMS + 1} alarms; albgate watches at most "
                                               f"{MAX_ALARMS}"),
    ([f"p{i}-*" for i in range(MAX_ALARM_PREFIXES + 1)], f"policy.alarms: has {MAX_ALARM_PREFIXES + 1} prefixes"),
    (["app-5xx", "app-5xx"], "policy.alarms: names 'app-5xx' twice"),
    (["*"], "policy.alarms.0: '*' is not a CloudWatch alarm name or name prefix"),
    ([""], "policy.alarms.0: '' is not a CloudWatch alarm name or name prefix"),
    (["x" * 256], "is not a CloudWatch alarm name or name prefix"),
    (["app\n5xx"], "is not a CloudWatch alarm name or name prefix"),
    ("app-5xx", "policy.alarms: Input should be a valid list"),
    ([5], "policy.alarms.0: Input should be a valid string"),
], ids=["too-many", "too-many-prefixes", "twice", "star-alone", "empty", "too-long", "control-character", "not-a-list",
        "a-number"])
def test_a_bad_alarm_list_is_refused_naming_the_field(alarms, words):
    message = refused(alarms=alarms)
    assert words in message and message.count("policy.alarms") == 1


@pytest.mark.parametrize("field", ["insufficient_data_fails", "start_despite_alarms"])
def test_the_switches_take_json_booleans_only(field):
    assert f"policy.{field}: 'true' is not a boolean" in refused(**{field: "true"})
