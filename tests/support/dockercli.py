"""The Docker CLI calls the test suite and the benchmarks share (the benchmarks reach this package
through the symlink benchmarks/support). Nothing here imports another local module.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable

# The official image where a registry is reachable, else the one scripts/build-base-image.sh makes.
PYTHON_IMAGES = ("python:3.13-slim", "local/python:3.13-slim")


def docker(*args: str, check: bool = True, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr.strip()}")
    return result


def engine_error() -> str | None:
    if not shutil.which("docker"):
        return "the docker CLI is not installed"
    try:
        result = docker("info", "-f", "{{.ServerVersion}}", check=False, timeout=30)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    return None if result.returncode == 0 else f"no Docker engine answers ({result.stderr.strip()})"


def builder() -> list[str]:
    """A build command with BuildKit, which the Dockerfile's cache mounts need.

    `docker buildx` where it exists; else Debian's docker.io client (/usr/bin/docker, 20.10), which
    has BuildKit built in while a newer client without the buildx plugin would fall back to the
    legacy builder.
    """
    if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode == 0:
        return ["docker", "buildx", "build", "--load"]
    return ["/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker", "build"]


def build_env() -> dict[str, str]:
    return {**os.environ, "DOCKER_BUILDKIT": "1"}


def first_image(candidates: Iterable[str]) -> str | None:
    for candidate in candidates:
        if docker("image", "inspect", candidate, check=False).returncode == 0:
            return candidate
    return None


def rebuilt_steps(output: str) -> list[str]:
    """The Dockerfile instructions that ran rather than came from the layer cache."""
    names, cached = {}, set()
    for line in output.splitlines():
        if match := re.match(r"#(\d+) (\[[^\]]+\] .*)", line):
            names.setdefault(match[1], " ".join(match[2].split()))
        elif match := re.match(r"#(\d+) CACHED", line):
            cached.add(match[1])
    return [
        name
        for step, name in names.items()
        if step not in cached and not name.startswith("[internal]") and " FROM " not in name
    ]
