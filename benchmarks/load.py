"""Load with wrk: one fixed-duration run at one concurrency, summed up by wrk_summary.lua."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().with_name("wrk_summary.lua")
SOCKET_ERRORS = ("connect", "read", "write", "timeout")


def wrk(url: str, connections: int, seconds: int, record: Path | None = None) -> dict:
    """``wrk -t2 -c<connections> -d<seconds>s --latency`` (-t1 for one connection)."""
    threads = 1 if connections == 1 else 2
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(SCRIPT), url]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if record is not None:
        record.write_text(f"$ {shlex.join(argv)}\n{result.stdout}{result.stderr}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("WRK_JSON ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(
            f"wrk failed ({result.returncode}): {result.stderr.strip() or result.stdout[-500:]}"
        )
    summary = json.loads(lines[-1].removeprefix("WRK_JSON "))
    errors = {kind: summary[kind] for kind in SOCKET_ERRORS}
    return {
        "requests_per_s": summary["requests"] / (summary["duration_us"] / 1e6),
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "mean_ms": summary["mean_us"] / 1000,
        "max_ms": summary["max_us"] / 1000,
        "requests": summary["requests"],
        "seconds": summary["duration_us"] / 1e6,
        "socket_errors": errors,
        "socket_errors_total": sum(errors.values()),
        "non_2xx": summary["status"],
        "command": shlex.join(argv),
    }
