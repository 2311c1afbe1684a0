"""What the installed server packages allow: the app's requirements go into the same environment.

A derived image may pin an older (or newer) Uvicorn, Gunicorn or prometheus_client than the image
ships. Where this image's worker or metrics rely on a version, the start falls back to the stock
piece and says in one line what is off, instead of crashing in a loop. Versions are read from the
packages' metadata, without importing them: the check costs a few milliseconds at start.
"""

from __future__ import annotations

import os
import re
import sys
from typing import NamedTuple

# Below these, this image's worker cannot run: uvicorn-worker needs uvicorn >= 0.36 and gunicorn >= 21.
WORKER_NEEDS = {"uvicorn": (0, 36), "gunicorn": (21, 0)}
# The metrics need the multiprocess files with timestamps (0.18) and start_wsgi_server returning its
# server (0.19), whose socket each forked worker closes.
METRICS_NEED = (0, 19)
STOCK_WORKER = "uvicorn.workers.UvicornWorker"  # tiangolo's; deprecated in uvicorn 0.30, still there
WORKER_FEATURES = "quick stop, request-head limits, keep-alive drain, BOOT_TIMEOUT, the timeout report"

Version = tuple[int, ...]


class Stack(NamedTuple):
    uvicorn: Version | None
    uvicorn_worker: Version | None
    gunicorn: Version | None
    prometheus_client: Version | None


def parse_version(text: str) -> Version:
    """The leading numbers of a version: '0.31.0' -> (0, 31, 0), '1.0.0rc1' -> (1, 0, 0)."""
    numbers = []
    for part in text.split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group()))
        if match.group() != part:
            break
    return tuple(numbers)


def installed(distribution: str) -> Version | None:
    """The installed version, from the ``NAME-VERSION.dist-info`` directory name on sys.path.

    importlib.metadata would parse every METADATA file and costs ~17 ms to import: a start pays
    for this check three times (start.sh, the Gunicorn master, python gunicorn_conf.py).
    """
    prefix = distribution.replace("-", "_").lower() + "-"
    for directory in sys.path:
        try:
            names = os.listdir(directory or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info") and name.lower().startswith(prefix):
                return parse_version(name[len(prefix) : -len(".dist-info")])
    try:  # eggs and other layouts: the slow, general way
        from importlib import metadata

        return parse_version(metadata.version(distribution))
    except metadata.PackageNotFoundError:
        return None


def detect() -> Stack:
    return Stack(
        installed("uvicorn"),
        installed("uvicorn-worker"),
        installed("gunicorn"),
        installed("prometheus-client"),
    )


def _text(version: Version | None) -> str:
    return ".".join(map(str, version)) if version else "none"


def default_worker(stack: Stack) -> tuple[str, str | None]:
    """This image's worker when the installed packages allow it, else the stock one and why."""
    from asgi_launcher.settings import DEFAULT_WORKER_CLASS

    reasons = [
        f"{name} {_text(getattr(stack, name))} (this image's worker needs >= {_text(need)})"
        for name, need in WORKER_NEEDS.items()
        if getattr(stack, name) is None or getattr(stack, name) < need
    ]
    if stack.uvicorn_worker is None:
        reasons.append("uvicorn-worker is not installed")
    if not reasons:
        return DEFAULT_WORKER_CLASS, None
    return STOCK_WORKER, (
        f"the installed {' and '.join(reasons)}: serving with {STOCK_WORKER}; off: {WORKER_FEATURES}"
    )


def ours_supported(stack: Stack | None = None) -> bool:
    """Whether this image's Uvicorn protocol (and worker, under Gunicorn) fit the installed packages."""
    from asgi_launcher.settings import DEFAULT_WORKER_CLASS

    return default_worker(stack or detect())[0] == DEFAULT_WORKER_CLASS


def metrics_unsupported(stack: Stack) -> str | None:
    version = stack.prometheus_client
    if version is not None and version >= METRICS_NEED:
        return None
    if version is None:
        return "prometheus-client is not installed: metrics are off (the access log is not affected)"
    return (
        f"the installed prometheus-client {_text(version)} is older than {_text(METRICS_NEED)}, which "
        "this image's metrics need: metrics are off (the access log is not affected)"
    )
