"""Load with wrk: one fixed-duration run at one concurrency, summed up by wrk_summary.lua."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().with_name("wrk_summary.lua")
SOCKET_ERRORS = ("connect", "read", "write", "timeout")


def wrk(
    url: str,
    connections: int,
    seconds: int,
    record: Path | None = None,
    body_bytes: int | None = None,
    timeout: int | None = None,
) -> dict:
    """``wrk -t2 -c<connections> -d<seconds>s --latency`` (-t1 for one connection) on ``url``; with
    ``body_bytes``, POSTs of that size. ``timeout``: wrk's per-request timeout in seconds (its own
    default is 2 s; a request slower than that counts as a timeout error)."""
    threads = 1 if connections == 1 else 2
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(SCRIPT)]
    argv += [f"--timeout={timeout}s"] if timeout else []
    env = {**os.environ, "WRK_BODY_BYTES": str(body_bytes)} if body_bytes is not None else None
    result = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 60, env=env)
    shown = ([f"WRK_BODY_BYTES={body_bytes}"] if body_bytes is not None else []) + [*argv, url]
    if record is not None:
        record.write_text(f"$ {shlex.join(shown)}\n{result.stdout}{result.stderr}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("WRK_JSON ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(
            f"wrk failed ({result.returncode}): {result.stderr.strip() or result.stdout[-500:]}"
        )
    summary = json.loads(lines[-1].removeprefix("WRK_JSON "))
    errors = {kind: summary[kind] for kind in SOCKET_ERRORS}
    seconds_run = summary["duration_us"] / 1e6
    return {
        "requests_per_s": summary["requests"] / seconds_run,
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "mean_ms": summary["mean_us"] / 1000,
        "max_ms": summary["max_us"] / 1000,
        "requests": summary["requests"],
        "seconds": seconds_run,
        "bytes_read": summary["bytes"],
        "read_mib_per_s": summary["bytes"] / seconds_run / 2**20,
        "socket_errors": errors,
        "socket_errors_total": sum(errors.values()),
        "non_2xx": summary["status"],
        "command": shlex.join(shown),
    }
