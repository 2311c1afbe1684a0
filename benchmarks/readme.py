#!/usr/bin/env python3
"""Fill benchmarks/README.md's figures from the runs' own results.md files, so that none is retyped.

A block in the README

    <!-- include results/latest/results.md "## Goals" -->
    (replaced)
    <!-- end include -->

receives the section of that file that starts with the heading given (up to the next heading of the
same or a higher level). Run it after the runs:

    .venv/bin/python benchmarks/readme.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
BLOCK = re.compile(r'(<!-- include (\S+) "([^"]+)" -->\n)(.*?)(<!-- end include -->)', re.DOTALL)


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


def fill(readme: str) -> str:
    def replace(match: re.Match) -> str:
        source = HERE / match.group(2)
        return match.group(1) + section(source.read_text(), match.group(3)) + match.group(5)

    return BLOCK.sub(replace, readme)


def main() -> int:
    try:
        README.write_text(fill(README.read_text()))
    except (OSError, LookupError) as error:
        print(f"cannot fill benchmarks/README.md: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
