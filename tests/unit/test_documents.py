"""Documents a person writes are read strictly: UTF-8 only, no key given twice, one line per problem."""

from __future__ import annotations

import pytest

from lambdas.domain.documents import MAX_QUOTED, DocumentError, decode_utf8, parse_json, quote


@pytest.mark.parametrize(
    "raw,expected",
    [
        pytest.param("{\"a\": \"é\"}".encode(), '{"a": "é"}', id="utf8-accented"),
        pytest.param(b"", "", id="empty"),
    ],
)
def test_utf8_is_decoded(raw, expected):
    assert decode_utf8(raw, "f.json") == expected


@pytest.mark.parametrize(
    "raw,line",
    [
        pytest.param('{"a": "\u00e9"}'.encode("latin-1"), 1, id="latin-1-on-line-1"),
        pytest.param(b'{\n  "a": 1,\n  "b": "\xff\xfe"\n}', 3, id="stray-bytes-on-line-3"),
        pytest.param("\ufeff{}".encode("utf-16"), 1, id="utf-16"),
    ],
)
def test_bytes_that_are_not_utf8_name_the_line_and_the_fix(raw, line):
    with pytest.raises(DocumentError) as caught:
        decode_utf8(raw, "input.json")
    message = str(caught.value)
    assert message.startswith("input.json: not UTF-8 text") and f"line {line}," in message
    assert "save the file as UTF-8" in message and "\n" not in message


@pytest.mark.parametrize(
    "text,key,line",
    [
        pytest.param('{"image": "a:1", "image": "a:2"}', "image", 1, id="top-level"),
        pytest.param('{\n "policy": {\n  "steps": [1],\n  "steps": [2]\n }\n}', "steps", 4, id="nested-policy"),
        pytest.param('[{"x": 1}, {"x": 1, "x": 2}]', "x", 1, id="inside-a-list"),
    ],
)
def test_a_key_given_twice_is_refused_with_where(text, key, line):
    with pytest.raises(DocumentError) as caught:
        parse_json(text, "rollout.json")
    message = str(caught.value)
    assert f"key '{key}' is given twice" in message and f"line {line}" in message and "\n" not in message


def test_the_same_key_in_two_objects_is_fine():
    assert parse_json('[{"x": 1}, {"x": 2}]', "f") == [{"x": 1}, {"x": 2}]


def test_invalid_json_names_line_and_column():
    with pytest.raises(DocumentError, match=r"^f\.json: not valid JSON \(.* at line 2, column \d+\)$"):
        parse_json('{"a": 1,\n  }', "f.json")


def test_a_quoted_value_is_cut_to_the_limit():
    long = "x" * 5000
    assert len(quote(long)) == MAX_QUOTED and quote(long).endswith("…")
    assert quote("short") == "'short'"
