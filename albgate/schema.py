"""The rollout execution input as a JSON Schema, generated from the model the Lambdas validate with.

Invariant: docs/rollout-input.schema.json is exactly what this prints (a test checks), so the published schema
can never drift from ``lambdas.domain.models.RolloutRequest``. Regenerate with ``python -m albgate.schema``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lambdas.domain.models import RolloutRequest

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "docs" / "rollout-input.schema.json"


def rollout_input_schema() -> dict:
    schema = RolloutRequest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "albgate rollout execution input"
    return schema


def render() -> str:
    return json.dumps(rollout_input_schema(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    if "--write" in sys.argv:
        SCHEMA_PATH.write_text(render())
        print(f"wrote {SCHEMA_PATH.relative_to(ROOT)}")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
