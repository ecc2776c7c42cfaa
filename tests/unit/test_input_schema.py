"""The published JSON Schema of the execution input matches the model, and the shipped examples validate."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from albgate.schema import SCHEMA_PATH, render
from lambdas.domain.models import parse_request

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "docs" / "examples").glob("*.json"))


def test_published_schema_is_generated_from_the_model():
    assert SCHEMA_PATH.read_text() == render(), "regenerate with: python -m albgate.schema --write"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_validate_with_the_schema_and_the_model(path):
    data = json.loads(path.read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    parse_request(data)
