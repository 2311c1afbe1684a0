"""Log output read as entries: a LOG_FORMAT=json run's lines, and its access entries."""

from __future__ import annotations

import json


def json_lines(output: str) -> list[dict]:
    """Every line as a JSON object; fails on the first line that is not one, naming it."""
    parsed = []
    for number, line in enumerate(output.splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}\n{output}") from None
        assert isinstance(entry, dict), line
        parsed.append(entry)
    return parsed


def json_entries(output: str) -> list[dict]:
    """The lines that are JSON objects, any other line passed over (what a program other than the
    server wrote to the same output)."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def access_entries(output: str) -> list[dict]:
    """The access log's entries in a JSON-logging server's output."""
    return [entry for entry in json_entries(output) if entry.get("logger") == "access"]
