"""Text documents a person writes (a rollout input, the CDK config, a scenario) turned into data, strictly.

Job: decode bytes as UTF-8 and parse JSON so that every mistake becomes one ``DocumentError`` line that names
the file and where in it the problem is, instead of a traceback or a silent guess:
- bytes that are not UTF-8: the byte offset, the line and the offending bytes;
- a key given twice in one JSON object: JSON parsers keep the last value without a word (RFC 8259, section
  4: names "SHOULD be unique"; Python's json module keeps the last one), so a policy written twice would apply
  whichever came last. Refused with the key and the object's path.

Invariant: pure (no file system, no network): callers read the bytes and pass them in.
"""

from __future__ import annotations

import json
from typing import Any

MAX_QUOTED = 100  # characters of a bad value quoted in a message


class DocumentError(ValueError):
    """A document could not be read as data; the message is one line naming the source and the place."""


def quote(value: Any, limit: int = MAX_QUOTED) -> str:
    """``repr(value)``, cut to ``limit`` characters with an ellipsis, so a message never dumps a whole file."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decode_utf8(raw: bytes, source: str) -> str:
    """The text of ``raw``; a ``DocumentError`` naming the line and byte when it is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        bad = raw[exc.start : exc.end + 3]
        raise DocumentError(
            f"{source}: not UTF-8 text (line {line}, byte {exc.start}: {bad!r}); save the file as UTF-8"
        ) from None


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


def parse_json(text: str, source: str) -> Any:
    """JSON with every object's keys unique; ``DocumentError`` with the line and column of a problem."""
    try:
        return json.loads(text, object_pairs_hook=_unique)
    except _Duplicate as exc:
        where = _line_of_key(text, exc.key)
        raise DocumentError(
            f"{source}: key {quote(exc.key)} is given twice in one object{where}; keep one of them"
        ) from None
    except json.JSONDecodeError as exc:
        raise DocumentError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None


def _line_of_key(text: str, key: str) -> str:
    """`` (second at line N)`` for the second occurrence of ``"key":`` in the text, when it can be found."""
    needle = json.dumps(key)
    first = text.find(needle)
    second = text.find(needle, first + len(needle)) if first >= 0 else -1
    return f" (again at line {text.count(chr(10), 0, second) + 1})" if second >= 0 else ""
