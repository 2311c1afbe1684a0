"""Benchmark this project's launcher against the usual ways of serving the same FastAPI app.

    .venv/bin/python benchmarks/run.py                              full run, about 6 minutes
    .venv/bin/python benchmarks/run.py --quick --no-container       smoke run, about 25 s
    .venv/bin/python benchmarks/run.py --servers ours,uvicorn --concurrency 64 --no-container

Run it on an otherwise idle machine: the servers and wrk share its cores, so any other load shows up
in the figures (results.md records the load average before and after).

Needs the packages of requirements-test.txt (benchmarks/requirements.in is part of it) in the Python
that runs this script, `wrk` (Debian: apt-get install wrk), and for the container part a Docker
engine with BuildKit and a Python base image (python:3.13-slim, or local/python:3.13-slim from
scripts/build-base-image.sh; --python-image picks another).

Servers, all serving app.main:app (the repo's app/) with the same worker count N on 127.0.0.1, each
started from the repository root in its own process group, from a clean environment:

    ours         scripts/start.sh with APP_ROOT, BASE_GUNICORN_CONF, BIND, WEB_CONCURRENCY=N set and
                 nothing else: the launcher's defaults (access log and metrics on) are what is measured
    ours-preload the same with PRELOAD_APP=true (the app imported once in the master, before the fork)

Variants of ours, only when named with --servers, to price each feature against the same launcher:
ours-no-metrics (METRICS=off), ours-no-access-log (ACCESS_LOG=''), ours-bare (both off), ours-json
(LOG_FORMAT=json).
    tiangolo     gunicorn -k uvicorn.workers.UvicornWorker -c benchmarks/tiangolo_conf.py
                 (tiangolo's settings: access log on, keepalive 5, timeouts 120, heartbeat on /dev/shm)
    uvicorn      uvicorn --workers N --no-access-log: the reference that every ratio divides by
    fastapi-run  fastapi run app/main.py --workers N, as it ships (access log on)
    granian      granian --interface asgi --workers N, as it ships (no access log)

Each round measures every server, one after the other; --rounds (3) rounds interleave them, and the
medians are reported (errors are summed). Per server and round: spawn to the first 200 on `/`; for each
concurrency a warm-up, then `wrk -t2 -c<C> -d<D>s --latency` (-t1 at C=1) for requests/s, p50, p99,
socket errors and non-2xx; RSS (and PSS) of the whole process tree after the load; SIGTERM to exit when
idle. Container (our image only): size, a --no-cache build, a rebuild after an app/ change, `docker run`
to first 200 and to healthy, one wrk run at -c64, `docker stop`. Everything it starts or builds is
removed at the end, also on failure or Ctrl-C.

Output (--out, default benchmarks/results/latest/): results.json (raw figures, machine, versions,
command, a host-speed probe before each server), results.md (tables with ratios to uvicorn),
chart.png (requests/s and p99 against concurrency), raw/ (each server's log, with its access log,
and wrk's output; git ignores it).
The exit status is 1 if any server or the container part failed (the files are still written).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import container
import load
import report
import servers

START_DEADLINE = 60.0
STOP_DEADLINE = 30.0
CONCURRENCY = (1, 16, 64, 256)
QUICK_CONCURRENCY = (1, 16)
PACKAGES = {
    **{name: ("gunicorn", "uvicorn", "uvicorn-worker") for name in servers.OURS},
    "tiangolo": ("gunicorn", "uvicorn"),
    "uvicorn": ("uvicorn",),
    "fastapi-run": ("fastapi-cli", "uvicorn"),
    "granian": ("granian",),
}


def levels(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected concurrencies >= 1, e.g. 1,16,64")
    return values


def server_names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in servers.SERVERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown server(s) {unknown}; choose from {','.join(servers.SERVERS)}"
        )
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cpus = len(os.sched_getaffinity(0))
    parser.add_argument(
        "--workers", type=int, default=cpus, help=f"workers per server (default: {cpus}, the CPUs usable)"
    )
    parser.add_argument(
        "--servers",
        type=server_names,
        default=list(servers.DEFAULT),
        help=f"comma-separated, from {','.join(servers.SERVERS)} (default: {','.join(servers.DEFAULT)})",
    )
    parser.add_argument(
        "--concurrency", type=levels, help="comma-separated wrk -c levels (default: 1,16,64,256)"
    )
    parser.add_argument("--duration", type=int, help="seconds of each measured wrk run (default: 5)")
    parser.add_argument(
        "--rounds",
        type=int,
        help="measure every server this many times, interleaved, and keep the medians (default: 3)",
    )
    parser.add_argument("--warmup", type=int, help="seconds of wrk before each measured run (default: 2)")
    parser.add_argument(
        "--quick", action="store_true", help="levels 1,16; 1 s runs without warm-up (smoke test)"
    )
    parser.add_argument("--no-container", action="store_true", help="skip the container part")
    parser.add_argument(
        "--python-image",
        default=os.environ.get("PYTHON_IMAGE") or None,
        help="base of the image build (default: $PYTHON_IMAGE, else python:3.13-slim or local/...)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results" / "latest",
        help="results folder (default: benchmarks/results/latest)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    args.concurrency = args.concurrency or list(QUICK_CONCURRENCY if args.quick else CONCURRENCY)
    args.duration = args.duration or (1 if args.quick else 5)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 2)
    args.idle = 0.5 if args.quick else 1.0
    return args


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": models[0] if models else platform.processor() or "unknown",
        "kernel": platform.release(),
        "os": platform.platform(),
        "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "python": platform.python_version(),
        "wrk": wrk.split(" [")[0],
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def git_state() -> str:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=servers.REPO, capture_output=True, text=True)
        return result.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    return commit + (
        " with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    )


def other_cpu_percent(before: tuple, after: tuple) -> float:
    """Share of the machine's CPU time that other processes used during a run (noise indicator)."""
    (start, busy_start, own_start), server_start = before
    (end, busy_end, own_end), server_end = after
    ours = (own_end - own_start) + (server_end - server_start)
    capacity = (end - start) * (os.cpu_count() or 1)
    return max(0.0, 100 * ((busy_end - busy_start) - ours) / capacity)


def measure(name: str, args: argparse.Namespace, raw: Path) -> dict:
    description, access_log = servers.SERVERS[name]
    result: dict = {"description": description, "access_log": access_log, "log": f"raw/{name}.log"}
    result["version"] = ", ".join(f"{package} {version(package)}" for package in PACKAGES[name])
    try:
        with servers.Running(name, args.workers, raw / f"{name}.log") as server:
            result["command"] = shlex.join(server.argv)
            result["variables"] = server.variables
            result["start_s"] = server.wait_first_200(START_DEADLINE)
            print(f"   first 200 after {result['start_s']:.2f} s", flush=True)
            result["levels"] = {}
            for level in args.concurrency:
                if args.warmup:
                    load.wrk(server.url, level, args.warmup)
                before = servers.other_cpu(), server.cpu_seconds()
                figures = load.wrk(server.url, level, args.duration, raw / f"wrk-{name}-c{level}.txt")
                figures["other_cpu_percent"] = other_cpu_percent(
                    before, (servers.other_cpu(), server.cpu_seconds())
                )
                result["levels"][str(level)] = figures
                print(
                    f"   c={level}: {figures['requests_per_s']:,.0f} requests/s,"
                    f" p99 {figures['p99_ms']:.2f} ms, {figures['socket_errors_total']} socket errors,"
                    f" {figures['non_2xx']} non-2xx, other CPU {figures['other_cpu_percent']:.0f} %",
                    flush=True,
                )
            result["memory"] = server.memory()
            time.sleep(args.idle)
            result["stop_s"], result["stop_ok"] = server.stop(STOP_DEADLINE)
            print(
                f"   {result['memory']['rss_bytes'] / 2**20:.0f} MiB RSS, stopped in {result['stop_s']:.2f} s"
            )
            if not result["stop_ok"]:
                raise RuntimeError(f"{name} did not exit within {STOP_DEADLINE:.0f} s of SIGTERM; killed")
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
        result["error"] = str(error)
        print(f"   FAILED: {error}", flush=True)
    return result


def median_of(measured: list[dict]) -> dict:
    """One server's rounds folded into one result: medians of the figures, sums of the errors."""
    failed = [m for m in measured if m.get("error")]
    if failed:
        return failed[0]
    first = measured[0]
    folded: dict = {}
    for key, value in first.items():
        values = [m[key] for m in measured]
        if isinstance(value, dict):
            folded[key] = median_of(values) if all(isinstance(v, dict) for v in values) else value
        elif isinstance(value, bool) or not isinstance(value, int | float):
            folded[key] = value
        elif "error" in key or key == "non_2xx":
            folded[key] = sum(values)  # an error in any round is reported, not hidden by a median
        else:
            folded[key] = statistics.median(values)
    if "levels" in first:
        folded["rounds"] = len(measured)
    return folded


def prime() -> None:
    """Import every server once, untimed, so that the first one measured pays no cold caches."""
    modules = (
        "app.main, asgi_launcher.workers, gunicorn.app.wsgiapp, uvicorn.main, uvicorn_worker, fastapi_cli.cli"
    )
    subprocess.run(
        [sys.executable, "-c", f"import {modules}, granian"],
        cwd=servers.REPO,
        capture_output=True,
        check=False,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: every server and container is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    missing = [] if shutil.which("wrk") else ["wrk (Debian: apt-get install wrk)"]
    missing += servers.missing_programs(args.servers)
    if missing:
        print(
            f"missing: {', '.join(missing)}; install requirements-test.txt into this Python's venv",
            file=sys.stderr,
        )
        return 2
    out = args.out.resolve()
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(sys.orig_argv),
        "git": git_state(),
        "repo": str(servers.REPO),
        "machine": machine(),
        "settings": {
            "workers": args.workers,
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "warmup_s": args.warmup,
            "idle_before_stop_s": args.idle,
            "quick": args.quick,
        },
        "versions": {
            package: version(package) for package in ("fastapi", "starlette", "uvloop", "httptools")
        },
        "servers": {},
        "host_probe_ms": [],  # before each server of each round: the host's speed over the run
    }
    print(
        f"{len(args.servers)} servers, {args.workers} workers each, concurrency {args.concurrency}",
        flush=True,
    )
    prime()
    # Rounds interleave the servers, so that a slow spell of this shared machine hits one round of
    # every server rather than all of one server's figures; the medians are kept.
    rounds: dict[str, list[dict]] = {name: [] for name in args.servers}
    for number in range(args.rounds):
        # Each round starts with a different server: the first of a round measured lower, whichever
        # it was, so that place is shared out.
        shift = number % len(args.servers)
        for name in args.servers[shift:] + args.servers[:shift]:
            print(f"== {name} (round {number + 1} of {args.rounds})", flush=True)
            results["host_probe_ms"].append(round(servers.host_probe_ms(), 1))
            rounds[name].append(measure(name, args, raw))
    for name, measured in rounds.items():
        results["servers"][name] = median_of(measured)
    if args.no_container:
        results["container"] = {"skipped": "--no-container"}
    else:
        print("== container", flush=True)
        results["container"] = container.measure(args.python_image, raw, args.warmup, args.duration)
        if "skipped" in results["container"]:
            print(f"   skipped: {results['container']['skipped']}", flush=True)
    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    report.add_ratios(results)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(report.markdown(results))
    report.chart(results, out / "chart.png")
    print(f"results: {out}/results.md, results.json, chart.png; logs in {raw}")
    failed = [name for name, server in results["servers"].items() if server.get("error")]
    failed += ["container"] if results["container"].get("error") else []
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
