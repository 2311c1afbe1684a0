"""Soak: the image under a memory limit at a moderate fixed rate for a long time; is RSS bounded?

    .venv/bin/python benchmarks/soak.py                      # 10 minutes, 200 requests/s
    .venv/bin/python benchmarks/soak.py --minutes 2 --rate 100

Builds the image (target app), runs it with --memory and MEMORY_PER_WORKER (so the worker count comes
from the memory budget), drives it with wrk at a fixed rate (wrk's Lua delay() paces each connection),
samples the container's memory every 10 s, and reports the first and last minute, the peak, worker
restarts and errors. Not part of the test suite: it takes minutes. Writes benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from container import build, python_image
from servers import HOST, REPO, free_port, status_of
from support.dockercli import docker, engine_error

CONNECTIONS = 10
SAMPLE_EVERY = 10.0


def memory_bytes(container: str) -> int:
    usage = (
        docker("stats", "--no-stream", "--format", "{{.MemUsage}}", container).stdout.split("/")[0].strip()
    )
    number, unit = re.fullmatch(r"([\d.]+)\s*([KMG]?i?B)", usage).groups()
    return int(float(number) * {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit])


def worker_pids(container: str) -> set[int]:
    rows = [line.split() for line in docker("top", container, "-eo", "pid,ppid").stdout.splitlines()[1:]]
    pids = {int(pid) for pid, _ in rows}
    return {int(pid) for pid, ppid in rows if int(ppid) in pids}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=int, default=200, help="requests per second (approximate)")
    parser.add_argument("--memory", default="512m", help="the container's --memory")
    parser.add_argument("--memory-per-worker", default="150M")
    parser.add_argument("--python-image")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "soak.json")
    args = parser.parse_args()
    if error := engine_error():
        sys.exit(f"soak: {error}")
    base = python_image(args.python_image)
    if base is None:
        sys.exit("soak: no base image; run scripts/build-base-image.sh or pass --python-image")

    tag = f"asgi-server-soak:{uuid.uuid4().hex[:8]}"
    name = f"asgi-server-soak-{uuid.uuid4().hex[:8]}"
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        try:
            build(REPO, tag, base, tmp / "build.log")
            docker(
                "run",
                "-d",
                "--name",
                name,
                "-p",
                f"{HOST}:{port}:80",
                "--memory",
                args.memory,
                "-e",
                f"MEMORY_PER_WORKER={args.memory_per_worker}",
                "-e",
                "WORKERS_PER_CORE=4",
                tag,
            )
            deadline = time.monotonic() + 60
            while status_of(port) != 200:
                if time.monotonic() > deadline:
                    sys.exit("soak: the container did not answer")
                time.sleep(0.2)
            workers = worker_pids(name)
            pace = tmp / "pace.lua"
            pace.write_text(f"function delay() return {CONNECTIONS * 1000 // args.rate} end\n")
            seconds = int(args.minutes * 60)
            wrk = subprocess.Popen(
                [
                    "wrk",
                    "-t1",
                    f"-c{CONNECTIONS}",
                    f"-d{seconds}s",
                    "-s",
                    str(pace),
                    f"http://{HOST}:{port}/",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            samples = []
            started = time.monotonic()
            while wrk.poll() is None:
                samples.append((round(time.monotonic() - started, 1), memory_bytes(name)))
                time.sleep(SAMPLE_EVERY)
            output = wrk.stdout.read()
            state = json.loads(docker("inspect", name).stdout)[0]["State"]
        finally:
            docker("rm", "-f", name, check=False)
            docker("rmi", "-f", tag, check=False)

    per_minute = max(1, int(60 / SAMPLE_EVERY))
    first = [m for _, m in samples[:per_minute]]
    last = [m for _, m in samples[-per_minute:]]
    result = {
        "minutes": args.minutes,
        "target_rate": args.rate,
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
        "errors": sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output)),
        "non_2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", output)) else 0,
        "memory_limit": args.memory,
        "memory_per_worker": args.memory_per_worker,
        "workers": len(workers),
        "first_minute_mib": round(sum(first) / len(first) / (1 << 20), 1),
        "last_minute_mib": round(sum(last) / len(last) / (1 << 20), 1),
        "peak_mib": round(max(m for _, m in samples) / (1 << 20), 1),
        "oom_killed": state["OOMKilled"],
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    bounded = result["last_minute_mib"] <= result["first_minute_mib"] * 1.10 and not result["oom_killed"]
    print("RSS bounded" if bounded else "RSS grew by more than 10 % between the first and last minute")
    return 0 if bounded and result["errors"] == 0 and result["non_2xx"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
