#!/usr/bin/env python3
"""Rewrite the table of docs/reliability.md from build/reliability.json, the figures the last test
run measured (tests/support/clients.py `record`), so that no figure is retyped.

    .venv/bin/python scripts/reliability_table.py      after a full `scripts/test.sh`
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIGURES = REPO / "build" / "reliability.json"
DOC = REPO / "docs" / "reliability.md"
START, END = "<!-- reliability table: scripts/reliability_table.py -->", "<!-- end of reliability table -->"


def value(figure) -> str:
    if isinstance(figure, bool):
        return "yes" if figure else "no"
    if isinstance(figure, int):
        return f"{figure:,}"
    return str(figure)


def table(data: dict) -> str:
    latest = max(entry["run"] for entry in data.values() if "run" in entry)
    rows = [f"Run of {latest}.", "", "| fault | load | requests | measured |", "|---|---|---|---|"]
    for name, entry in sorted(data.items()):
        if entry.get("run") != latest:
            continue
        figures = {key: val for key, val in entry.items() if key not in ("run", "load", "requests")}
        measured = ", ".join(f"{key.replace('_', ' ')} {value(val)}" for key, val in figures.items())
        rows.append(f"| {name} | {entry.get('load', '')} | {value(entry.get('requests', ''))} | {measured} |")
    return "\n".join(rows) + "\n"


def main() -> int:
    if not FIGURES.exists():
        print(f"no {FIGURES.relative_to(REPO)}: run the tests first", file=sys.stderr)
        return 1
    doc = DOC.read_text()
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{table(json.loads(FIGURES.read_text()))}{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
