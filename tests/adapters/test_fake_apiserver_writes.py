"""The fake API server's create, replace, delete and server-side apply answers, over HTTP, as the API server
documents them (https://kubernetes.io/docs/reference/using-api/api-concepts/ and
https://kubernetes.io/docs/reference/using-api/server-side-apply/). The helm tests rely on these answers; the
cases here are the ones the helm runs do not reach."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.adapters.fake_apiserver import APPLY_PATCH, FakeApiServer

CONFIGMAPS = "/api/v1/namespaces/apps/configmaps"


def call(server: FakeApiServer, method: str, path: str, body: Any = None,
         content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def config_map(data: dict[str, str], name: str = "settings") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


@pytest.fixture
def server(apiserver: FakeApiServer) -> FakeApiServer:
    apiserver.put("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}})
    return apiserver


CREATES = [
    pytest.param("/api/v1/namespaces/apps/configmaps", config_map({"a": "1"}), True, 409, "AlreadyExists",
                 id="same-name-twice"),
    pytest.param("/api/v1/namespaces/missing/configmaps", config_map({"a": "1"}), False, 404, "NotFound",
                 id="namespace-missing"),
    pytest.param("/api/v1/namespaces/apps/configmaps?fieldValidation=Strict", {**config_map({}), "spec": {}}, False,
                 400, "BadRequest", id="strict-unknown-field"),
]


@pytest.mark.parametrize(("path", "body", "exists", "code", "reason"), CREATES)
def test_a_create_the_server_refuses(
    server: FakeApiServer, path: str, body: dict[str, Any], exists: bool, code: int, reason: str
) -> None:
    # Given the object already there, or not
    if exists:
        assert call(server, "POST", CONFIGMAPS, config_map({"a": "0"}))[0] == 201
    # When it is created / Then the answer is a Status with the documented code and reason
    status, answer = call(server, "POST", path, body)
    assert (status, answer["kind"], answer["reason"]) == (code, "Status", reason)


def test_create_replace_delete(server: FakeApiServer) -> None:
    # Given a created object
    status, created = call(server, "POST", CONFIGMAPS + "?fieldManager=writer", config_map({"a": "1"}))
    assert status == 201 and created["metadata"]["namespace"] == "apps"
    # When it is replaced with a stale resourceVersion / Then 409; with the current one / Then stored
    stale = {**config_map({"a": "2"}), "metadata": {"name": "settings", "resourceVersion": "1"}}
    assert call(server, "PUT", f"{CONFIGMAPS}/settings", stale)[0] == 409
    current = {**config_map({"a": "2"}),
               "metadata": {"name": "settings", "resourceVersion": created["metadata"]["resourceVersion"]}}
    status, replaced = call(server, "PUT", f"{CONFIGMAPS}/settings", current)
    assert (status, replaced["data"], replaced["metadata"]["uid"]) == (200, {"a": "2"}, created["metadata"]["uid"])
    # When it is deleted / Then it is gone
    assert call(server, "DELETE", f"{CONFIGMAPS}/settings")[0] == 200
    assert call(server, "GET", f"{CONFIGMAPS}/settings")[0] == 404


def test_apply_owns_fields_prunes_its_own_and_conflicts_on_others(server: FakeApiServer) -> None:
    apply = f"{CONFIGMAPS}/settings?fieldManager=tool"
    # Given an object applied by "tool" with two keys, and "editor" changed one of them
    assert call(server, "PATCH", apply, config_map({"a": "1", "b": "1"}), APPLY_PATCH)[0] == 201
    assert call(server, "PATCH", f"{CONFIGMAPS}/settings?fieldManager=editor", {"data": {"b": "9"}},
                "application/merge-patch+json")[0] == 200
    assert server.managers("configmaps", "apps", "settings") == {".data.a": "tool (Apply)",
                                                                 ".data.b": "editor (Update)"}
    # When "tool" applies its value of that key again / Then 409 names the other manager and the field
    status, answer = call(server, "PATCH", apply, config_map({"a": "1", "b": "1"}), APPLY_PATCH)
    assert (status, answer["reason"]) == (409, "Conflict")
    assert answer["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "editor" using v1', "field": ".data.b"}]
    # When it forces, leaving out key a / Then b is taken back and a, which only "tool" owned, is removed
    status, answer = call(server, "PATCH", apply + "&force=true", config_map({"b": "1"}), APPLY_PATCH)
    assert (status, answer["data"]) == (200, {"b": "1"})
    assert server.managers("configmaps", "apps", "settings") == {".data.b": "tool (Apply)"}
