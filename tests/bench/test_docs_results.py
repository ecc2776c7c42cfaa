"""The result tables have one home each: docs/results/*.md, written by the benchmark scripts (``--write-docs``).

Every results file names the command that wrote it and is linked from at least one other Markdown file, and no
other Markdown file of the repository carries one of its table rows (a copy would go stale the next time the
command runs). Fast: reads files only, runs no simulation.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.bench.conftest import ROOT

RESULTS = ROOT / "docs" / "results"
# Folders that hold no Markdown of the repository's own (git-ignored output, installed packages, caches)
SKIPPED = {"node_modules", "out", "build", "cdk.out", "__pycache__"}
SEPARATOR = re.compile(r"^\|(\s*:?-{3,}:?\s*\|)+$")
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADER = re.compile(r"^> (Generated|Measured) .*by `(\.venv/bin/python (bench/\S+\.py)[^`]*)`.*"
                    + re.escape("Do not edit: re-run the command.") + "$")


def results_files() -> list[Path]:
    return sorted(RESULTS.glob("*.md"))


def other_markdown() -> list[Path]:
    """Every Markdown file of the repository outside docs/results/ (hidden and git-ignored folders left out)."""
    out = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if not (d.startswith(".") or d in SKIPPED or d.endswith(".egg-info")
                                                 or d.startswith("cdk.out")))
        if Path(folder) != RESULTS:
            out += [Path(folder) / f for f in sorted(files) if f.endswith(".md")]
    return out


def data_rows(text: str) -> set[str]:
    """The table rows of a Markdown text, without the header row and the separator row of each table."""
    lines = [line.strip() for line in text.splitlines()]
    rows = set()
    for i, line in enumerate(lines):
        if not (line.startswith("|") and line.endswith("|")) or SEPARATOR.match(line):
            continue
        if i + 1 < len(lines) and SEPARATOR.match(lines[i + 1]):
            continue  # a header row: the same column names may head a table elsewhere
        rows.add(line)
    return rows


def linked_files(md: Path) -> set[Path]:
    """The local files a Markdown file links to, resolved (anchors dropped)."""
    out = set()
    for target in LINK.findall(md.read_text()):
        if "://" in target or target.startswith("#"):
            continue
        out.add((md.parent / target.split("#", 1)[0]).resolve())
    return out


def test_there_are_results_files():
    assert results_files(), "docs/results/ has no results file"


@pytest.mark.parametrize("path", results_files(), ids=lambda p: p.name)
def test_each_results_file_names_the_command_that_writes_it(path):
    # Given a results file / Then under its title, one line says which bench script wrote it and not to edit it
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# "), f"{path.name}: no title"
    match = HEADER.match(lines[2])
    assert match, f"{path.name}: line 3 is not the generated-file header: {lines[2][:120]!r}"
    assert (ROOT / match.group(3)).is_file(), f"{path.name}: {match.group(3)} does not exist"
    assert "add_write_docs(ap" in (ROOT / match.group(3)).read_text(), f"{match.group(3)} has no --write-docs"
    assert data_rows(path.read_text()), f"{path.name}: no table"


@pytest.mark.parametrize("path", results_files(), ids=lambda p: p.name)
def test_each_results_file_is_linked_from_a_doc(path):
    linking = [md.relative_to(ROOT) for md in other_markdown() if path.resolve() in linked_files(md)]
    assert linking, f"docs/results/{path.name} is linked from no Markdown file"


def test_no_other_markdown_file_copies_a_row_of_a_results_file():
    # Given every data row of every results file
    generated = {row: path.name for path in results_files() for row in data_rows(path.read_text())}
    # When every other Markdown file is read line by line / Then none of its lines is one of those rows
    copies = [f"{md.relative_to(ROOT)}:{n}: {line.strip()[:100]} (from docs/results/{generated[line.strip()]})"
              for md in other_markdown() for n, line in enumerate(md.read_text().splitlines(), 1)
              if line.strip() in generated]
    assert not copies, "rows copied from generated results files:\n" + "\n".join(copies)


def test_the_row_reader_skips_headers_and_separators():
    # The row reader the checks above rely on must see data rows, and only them
    text = "| a | b |\n|---|---:|\n| x | 1 |\n\n| a | b |\n| :--- | ---: |\n| y | 2 |\nnot | a row"
    assert data_rows(text) == {"| x | 1 |", "| y | 2 |"}
