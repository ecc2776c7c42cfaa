"""Settings a handler reads from its function's environment, validated once at cold start.

Invariant: a missing or malformed variable is one ``InvalidInputError`` naming it (Step Functions sees the class
name, a permanent error), never a traceback from deep inside a call.
"""

from __future__ import annotations

import os
from typing import Self

from pydantic import BaseModel, ValidationError

from lambdas.domain.errors import InvalidInputError
from lambdas.domain.models import validation_message


class EnvironmentSettings(BaseModel):
    """A pydantic model whose fields name environment variables by alias."""

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> Self:
        env = dict(os.environ if environ is None else environ)
        try:
            return cls.model_validate(env)
        except ValidationError as exc:
            raise InvalidInputError(f"handler environment: {validation_message(exc)}") from exc
