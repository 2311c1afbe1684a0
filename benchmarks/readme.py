#!/usr/bin/env python3
"""Fill the figures of benchmarks/README.md and of the project's README from the runs' own results
files, so that none is retyped.

A block in the README

    <!-- include results/latest/results.md "## Goals" -->
    (replaced)
    <!-- end include -->

receives the section of that file that starts with the heading given (up to the next heading of the
same or a higher level). A block

    <!-- ratio results/features/results.json ours ours-no-metrics / 64 -->
    (replaced)
    <!-- end ratio -->

receives the ratio of the two servers' median requests/s at that path and concurrency, with its
paired bootstrap interval (benchmarks/intervals.py). Run it after the runs:

    .venv/bin/python benchmarks/readme.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The benchmarks' README, and the project's front page with its few headline ratios.
READMES = (HERE / "README.md", HERE.parent / "README.md")
BLOCK = re.compile(r'(<!-- include (\S+) "([^"]+)" -->\n)(.*?)(<!-- end include -->)', re.DOTALL)
RATIO = re.compile(r"(<!-- ratio (\S+) (\S+) (\S+) (\S+) (\d+) -->\n)(.*?)(<!-- end ratio -->)", re.DOTALL)


def section(text: str, heading: str) -> str:
    lines = text.splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    starts = [index for index, line in enumerate(lines) if line.startswith(heading)]
    if not starts:
        raise LookupError(heading)
    start = starts[0]
    end = len(lines)
    for index in range(start + 1, len(lines)):
        hashes = len(lines[index]) - len(lines[index].lstrip("#"))
        if lines[index].startswith("#") and hashes <= level and lines[index][hashes : hashes + 1] == " ":
            end = index
            break
    body = lines[start + 1 : end]
    return "\n".join(body).strip("\n") + "\n"


def requests_ratio(results: dict, server: str, reference: str, path: str, level: str) -> str:
    import intervals

    def per_round(name: str) -> list[float | None]:
        return [
            r["paths"].get(path, {}).get(level, {}).get("requests_per_s") for r in results["rounds"][name]
        ]

    found = intervals.ratio(per_round(server), per_round(reference))
    if found is None:
        raise LookupError(f"{server} / {reference} at {path} c={level}")
    return (
        f"- `{server}` / `{reference}`, requests/s at `{path}` c={level}: {found['ratio']:.2f}x "
        f"[{found['low']:.2f}, {found['high']:.2f}] (95 % interval, {found['rounds']} rounds; per round "
        f"{found['min']:.2f} to {found['max']:.2f})\n"
    )


def fill(readme: str, base: Path | None = None) -> str:
    """The blocks of a README filled; their paths are relative to ``base``, the README's directory."""
    base = base or HERE

    def include(match: re.Match) -> str:
        source = base / match.group(2)
        body = section(source.read_text(), match.group(3))
        # A chart linked from the results' own directory, linked from here.
        folder = Path(match.group(2)).parent.as_posix()
        body = re.sub(r"\]\((?![a-z]+:|/)([^)]+)\)", lambda link: f"]({folder}/{link.group(1)})", body)
        return match.group(1) + body + match.group(5)

    def ratio(match: re.Match) -> str:
        results = json.loads((base / match.group(2)).read_text())
        line = requests_ratio(results, match.group(3), match.group(4), match.group(5), match.group(6))
        return match.group(1) + line + match.group(8)

    return RATIO.sub(ratio, BLOCK.sub(include, readme))


def main() -> int:
    for readme in READMES:
        try:
            readme.write_text(fill(readme.read_text(), readme.parent))
        except (OSError, LookupError) as error:
            print(f"cannot fill {readme}: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
