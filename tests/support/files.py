"""Files a test writes: apps, configs, fake /proc and cgroup trees."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write(path: Path, text: str, mode: int | None = None) -> Path:
    """``text``, dedented, at ``path``, its folders made first; ``mode`` if given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    if mode is not None:
        path.chmod(mode)
    return path
