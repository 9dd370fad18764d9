"""Code blocks of the README and the docs, read from their Markdown, for ``test_docs.py``.

A fenced block whose language is ``python``, ``bash``, ``sh`` or ``console`` is a snippet
the tests run; a ``diff`` block (an edit a how-to asks for) must apply to today's code
(``git apply --check``); any other language (``text`` for output, ``yaml`` ...) is shown
only. Two HTML comments on the line right before a fence change that:

- ``<!-- skip-test: reason -->``: the block is not run (a SLURM script, a GPU job); the
  test reports it as skipped with the reason.
- ``<!-- output-of-previous -->`` before a ``text`` block: the block is what the previous
  snippet prints; every line of it, numbers and column widths aside, must appear in that
  snippet's output, in order (``...`` lines stand for anything).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RUNNABLE = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "console": "console", "diff": "diff"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\s`]*)[^`]*$")
SKIP = re.compile(r"<!--\s*skip-test:\s*(?P<reason>.+?)\s*-->")
OUTPUT_OF_PREVIOUS = re.compile(r"<!--\s*output-of-previous\s*-->")
NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str  # the fence's info string, lower case ("" when none)
    code: str
    skip_reason: str | None = None
    expected_output: str | None = None  # a following ``text`` block marked output-of-previous

    @property
    def kind(self) -> str | None:
        """``python``, ``bash``, ``console`` or ``diff`` when the block is checked, else None."""
        return RUNNABLE.get(self.language)

    def script(self) -> str:
        """The code to run: for ``console`` blocks the ``$ `` lines (and their continuations) only."""
        if self.kind != "console":
            return self.code
        commands, continuing = [], False
        for line in self.code.splitlines():
            if line.startswith("$ ") or continuing:
                command = line[2:] if line.startswith("$ ") and not continuing else line
                commands.append(command)
                continuing = command.endswith("\\")
        return "\n".join(commands) + "\n"


def read_blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path`` with the markers that precede it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        start, body = index, []
        index += 1
        while index < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[index]):
            body.append(lines[index][len(indent):] if lines[index].startswith(indent) else lines[index].lstrip())
            index += 1
        index += 1  # the closing fence
        marker = lines[start - 1] if start > 0 else ""
        skip = SKIP.search(marker)
        block = Block(path, start + 1, opening["info"].lower(), "\n".join(body) + "\n", skip["reason"] if skip else None)
        runnable = [b for b in blocks if b.kind]
        if OUTPUT_OF_PREVIOUS.search(marker) and runnable:
            runnable[-1].expected_output = block.code
        blocks.append(block)
    return blocks


def output_pattern(line: str) -> re.Pattern[str]:
    """A regex for one expected output line: numbers and the width of gaps may differ, the words must match."""
    words = [r"\d+(?:\.\d+)?".join(re.escape(part) for part in NUMBER.split(word)) for word in line.split()]
    return re.compile(r"\s+".join(words))


def missing_output_lines(expected: str, actual: str) -> list[str]:
    """Expected lines (numbers aside) not found in ``actual`` in order; ``...`` lines match anything."""
    actual_lines = [line.strip() for line in actual.splitlines()]
    missing, position = [], 0
    for line in expected.splitlines():
        if not line.strip() or line.strip() == "...":
            continue
        pattern = output_pattern(line)
        found = next((i for i in range(position, len(actual_lines)) if pattern.fullmatch(actual_lines[i])), None)
        if found is None:
            missing.append(line)
        else:
            position = found + 1
    return missing
