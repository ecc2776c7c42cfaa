"""The CloudWatch adapter (lambdas/adapters/cloudwatch.py): the requests it sends, checked against botocore's model
of the API (Stubber validates every parameter: AlarmNames at most 100, MaxRecords 1-100, the enums), and what it
makes of the answers."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber

from lambdas.adapters.cloudwatch import CloudWatchAdapter, state_change
from lambdas.domain.errors import AccessDeniedError, ThrottledError
from lambdas.domain.ports import ALARM, INSUFFICIENT_DATA, OK, Alarm, StateChange

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def client():
    return boto3.client("cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")


def metric_alarm(name: str, state: str, transitioned: datetime, **extra) -> dict:
    updated = datetime(2026, 1, 2, tzinfo=timezone.utc)  # later: EvaluationState moved, not StateValue
    return {"AlarmName": name, "StateValue": state, "StateReason": f"{name} is {state}",
            "StateTransitionedTimestamp": transitioned, "StateUpdatedTimestamp": updated, **extra}


def test_exact_names_are_asked_in_one_request_for_metric_alarms_one_page_of_100():
    cw = client()
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms",
                          {"MetricAlarms": [metric_alarm("app-5xx", ALARM, T0)], "NextToken": "more"},
                          {"AlarmNames": ["app-5xx", "app-lat"], "AlarmTypes": ["MetricAlarm"], "MaxRecords": 100})
        page = CloudWatchAdapter(cw).describe_alarms(names=("app-5xx", "app-lat"))
    # StateTransitionedTimestamp is when the state changed; StateUpdatedTimestamp (later) is not used
    assert page.alarms == (Alarm("app-5xx", ALARM, T0.timestamp(), "app-5xx is ALARM"),) and page.more is True


def test_a_prefix_and_a_state_are_sent_as_such_and_a_last_page_says_no_more():
    cw = client()
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", {"MetricAlarms": []},
                          {"AlarmNamePrefix": "app-", "StateValue": INSUFFICIENT_DATA, "AlarmTypes": ["MetricAlarm"],
                           "MaxRecords": 100})
        page = CloudWatchAdapter(cw).describe_alarms(prefix="app-", state=INSUFFICIENT_DATA)
    assert page.alarms == () and page.more is False


def test_an_answer_without_a_transition_time_falls_back_to_the_update_time():
    cw = client()
    answer = {"AlarmName": "old", "StateValue": OK, "StateUpdatedTimestamp": T0}
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", {"MetricAlarms": [answer]}, None)
        assert CloudWatchAdapter(cw).describe_alarms(names=("old",)).alarms[0].state_since == T0.timestamp()


def test_names_and_a_prefix_together_or_more_than_100_names_are_refused_before_any_request():
    adapter = CloudWatchAdapter(client())
    with pytest.raises(ValueError, match="not both"):
        adapter.describe_alarms(names=("a",), prefix="b")
    with pytest.raises(ValueError, match="at most 100"):
        adapter.describe_alarms(names=tuple(f"a{i}" for i in range(101)))


def history_item(at: datetime, old: str, new: str, *, data: bool = True) -> dict:
    item = {"AlarmName": "app-5xx", "Timestamp": at, "HistoryItemType": "StateUpdate",
            "HistorySummary": f"Alarm updated from {old} to {new}"}
    if data:
        item["HistoryData"] = json.dumps({"version": "1.0", "oldState": {"stateValue": old},
                                          "newState": {"stateValue": new}})
    return item


def test_the_history_of_one_alarm_in_a_window_is_asked_newest_first_state_changes_only():
    cw = client()
    later = datetime(2026, 1, 1, 12, 5, tzinfo=timezone.utc)
    with Stubber(cw) as stub:
        stub.add_response(
            "describe_alarm_history",
            {"AlarmHistoryItems": [history_item(T0, OK, ALARM), history_item(later, ALARM, OK, data=False)]},
            {"AlarmName": "app-5xx", "AlarmTypes": ["MetricAlarm"], "HistoryItemType": "StateUpdate",
             "StartDate": T0, "EndDate": later, "MaxRecords": 100, "ScanBy": "TimestampDescending"})
        changes = CloudWatchAdapter(cw).state_changes("app-5xx", T0.timestamp(), later.timestamp())
    # HistoryData read first; HistorySummary when there is none
    assert changes.changes == (StateChange(later.timestamp(), ALARM, OK), StateChange(T0.timestamp(), OK, ALARM))
    assert changes.more is False


def test_a_history_item_that_names_no_states_is_left_out():
    assert state_change({"Timestamp": T0, "HistoryData": "{}", "HistorySummary": "Alarm updated"}) is None


@pytest.mark.parametrize("code,error", [("Throttling", ThrottledError), ("AccessDenied", AccessDeniedError)])
def test_aws_errors_become_domain_errors_naming_the_call(code, error):
    cw = client()
    with Stubber(cw) as stub:
        stub.add_client_error("describe_alarms", service_error_code=code, service_message="Rate exceeded"
                              if code == "Throttling" else "not allowed", http_status_code=400 if code == "Throttling"
                              else 403)
        with pytest.raises(error, match=r"cloudwatch:DescribeAlarms \(prefix 'app-'\)"):
            CloudWatchAdapter(cw).describe_alarms(prefix="app-")


def test_the_client_is_made_on_the_first_call_only():
    adapter = CloudWatchAdapter.for_region("eu-west-1")
    assert adapter._client is None
    assert adapter.client().meta.region_name == "eu-west-1" and adapter.client() is adapter.client()
