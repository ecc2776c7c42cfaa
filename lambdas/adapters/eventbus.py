"""Publish albgate's own events (rollout started, queued, succeeded, rolled back, failed) on its event bus.

Job: one ``PutEvents`` entry per event, source ``albgate``, on the configured bus, detail as JSON.

Invariant: an event EventBridge did not accept (``FailedEntryCount`` > 0, or an AWS error) raises a retryable
domain error, so the Lambda is retried and the event is not silently lost; events are therefore at least once
and carry the execution ARN for consumers to de-duplicate.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.exceptions import ClientError

from lambdas.adapters.elbv2 import client_config, map_aws_error
from lambdas.domain.errors import AwsUnavailableError
from lambdas.domain.contract import EVENT_SOURCE


class EventBusPublisher:
    def __init__(self, bus_name: str, client: Any = None, region: str | None = None) -> None:
        self._bus = bus_name
        self._client = client or boto3.client("events", region_name=region, config=client_config())

    def publish(self, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None) -> None:
        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": detail_type,
            "Detail": json.dumps(detail, sort_keys=True),
            "EventBusName": self._bus,
            "Resources": list(resources or []),
        }
        try:
            answer = self._client.put_events(Entries=[entry])
        except ClientError as e:
            raise map_aws_error(e, f"events:PutEvents {self._bus}") from e
        if answer.get("FailedEntryCount"):
            failed = next((x for x in answer.get("Entries", []) if x.get("ErrorCode")), {})
            raise AwsUnavailableError(
                f"events:PutEvents {self._bus}: {detail_type!r} not accepted "
                f"({failed.get('ErrorCode')}: {failed.get('ErrorMessage')}); retried with the Lambda"
            )
