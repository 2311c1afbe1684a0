"""Benchmark this project's launcher against the usual ways of serving the same FastAPI app.

    .venv/bin/python benchmarks/run.py                              full run, about 40 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --quick --no-container       smoke run, about 2 minutes
    .venv/bin/python benchmarks/run.py --servers ours,uvicorn --concurrency 1 --paths / --no-container
    .venv/bin/python benchmarks/run.py --servers ours,ours-stock-worker,ours-pinned,tiangolo,uvicorn

Run it on an otherwise idle machine: the servers and wrk share its cores, so any other load shows up
in the figures (results.md records the load average, the other processes' CPU share per run, and a
host-speed probe before each server).

Needs the packages of requirements-test.txt (benchmarks/requirements.in is part of it) in the Python
that runs this script, `wrk` (Debian: apt-get install wrk), and for the container part a Docker
engine with BuildKit and a Python base image (python:3.13-slim, or local/python:3.13-slim from
scripts/build-base-image.sh; --python-image picks another).

Servers, all serving app.main:app (the repo's app/) with the same worker count N on 127.0.0.1, each
started from the repository root in its own process group, from a clean environment:

    ours            scripts/start.sh with APP_ROOT, BASE_GUNICORN_CONF, BIND, WEB_CONCURRENCY=N (and
                    APP_USER=root) set and nothing else: the launcher's defaults (access log and
                    metrics on), its settings check and the pre-start script are what is measured
    ours-preload    the same with PRELOAD_APP=true (the app imported once in the master)
    tiangolo        benchmarks/tiangolo_start.sh: a stand-in for tiangolo's start.sh (module
                    detection, pre-start script, exec gunicorn -k uvicorn.workers.UvicornWorker -c
                    benchmarks/tiangolo_conf.py: his settings, access log on)
    uvicorn-worker  gunicorn -k uvicorn_worker.UvicornWorker -c benchmarks/tiangolo_conf.py: the stock
                    worker of the uvicorn-worker package, access log on
    uvicorn         uvicorn --workers N --no-access-log
    fastapi-run     fastapi run app/main.py --workers N, as it ships (access log on)
    granian         granian --interface asgi --workers N, as it ships (no access log)

Only when named with --servers: ours-no-metrics (METRICS=off), ours-no-access-log (ACCESS_LOG=''),
ours-bare (both off), ours-json (LOG_FORMAT=json), to price each feature; ours-stock-worker
(WORKER_CLASS=uvicorn.workers.UvicornWorker) and ours-pinned (our start.sh in a venv under /tmp where
uvicorn is pinned to 0.35, below what our worker needs, so that the launcher falls back to the stock
worker by itself; the venv is made with pip on first use, about a minute, and kept; if it cannot be
made the server is skipped with the reason), to price the compatibility fallback; tiangolo-gunicorn
(his Gunicorn command without the start script).

Each round measures every server, one after the other; --rounds (5) rounds interleave them (the
order rotates). Per server and round: spawn to the first 200 on `/`; for each path (--paths, default
`/` and `/items/5?q=somequery`) and each concurrency a warm-up, then `wrk -t2 -c<C> -d<D>s --latency`
(-t1 at C=1) for requests/s, p50, p99, socket errors and non-2xx; RSS (and PSS) of the whole process
tree after the load; SIGTERM to exit when idle; then the server once more on
benchmarks/payload_app.py, stopped with SIGTERM while it streams an answer, which must arrive whole.
The medians are reported with their per-round range, and every ratio (to the best peer, to uvicorn,
to tiangolo's start) with a paired bootstrap 95 % interval (benchmarks/intervals.py); the goals of
the performance issue get a verdict: met, within noise, not met. Container (our image only): size,
a --no-cache build, a rebuild after an app/ change, one wrk run at -c64, then --rounds times `docker
run` to first 200 and an idle `docker stop`, and as many stops with a request in flight. Everything
it starts or builds is removed at the end, also on failure or Ctrl-C.

Output (--out, default benchmarks/results/latest/): results.json (every round's figures under
"rounds", the medians, intervals and verdicts, machine, versions, command, the host probes),
results.md (the goals, then a table per path and concurrency), chart.png (requests/s and p99 against
concurrency, a row per path, bars from the lowest to the highest round), raw/ (each server's log per
round, with its access log, and wrk's output; git ignores it).
The exit status is 1 if any server or the container part failed (the files are still written).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
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
PATHS = ("/", "/items/5?q=somequery")
INFLIGHT_HOLD_MS = 300
PACKAGES = {
    **{name: ("gunicorn", "uvicorn", "uvicorn-worker") for name in servers.OURS},
    "tiangolo": ("gunicorn", "uvicorn"),
    "tiangolo-gunicorn": ("gunicorn", "uvicorn"),
    "uvicorn-worker": ("gunicorn", "uvicorn", "uvicorn-worker"),
    "uvicorn": ("uvicorn",),
    "fastapi-run": ("fastapi-cli", "uvicorn"),
    "granian": ("granian",),
    "granian-worker": ("gunicorn", "granian"),
}


def levels(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected concurrencies >= 1, e.g. 1,16,64")
    return values


def request_paths(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values or not all(value.startswith("/") for value in values):
        raise argparse.ArgumentTypeError("expected paths starting with /, e.g. /,/items/5?q=somequery")
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
    parser.add_argument(
        "--paths",
        type=request_paths,
        default=list(PATHS),
        help=f"comma-separated request paths, each measured at every level (default: {','.join(PATHS)})",
    )
    parser.add_argument("--duration", type=int, help="seconds of each measured wrk run (default: 5)")
    parser.add_argument(
        "--rounds",
        type=int,
        help="measure every server this many times, interleaved, and keep the medians (default: 5)",
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
    args.rounds = args.rounds or (1 if args.quick else 5)
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


def slug(path: str) -> str:
    """A request path as a file-name part: / -> root, /items/5?q=x -> items-5-q-x."""
    return re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-") or "root"


def versions(name: str) -> str:
    if name == "ours-pinned":
        return servers.PINNED.versions()
    return ", ".join(f"{package} {version(package)}" for package in PACKAGES[name])


def load_levels(server: servers.Running, name: str, args: argparse.Namespace, raw: Path, tag: str) -> dict:
    """Every path at every concurrency: a warm-up, then the measured wrk run."""
    measured: dict = {}
    for path in args.paths:
        url = f"http://{servers.HOST}:{server.port}{path}"
        measured[path] = {}
        for level in args.concurrency:
            if args.warmup:
                load.wrk(url, level, args.warmup)
            before = servers.other_cpu(), server.cpu_seconds()
            record = raw / f"wrk-{name}-{slug(path)}-c{level}-{tag}.txt"
            figures = load.wrk(url, level, args.duration, record)
            figures["other_cpu_percent"] = other_cpu_percent(
                before, (servers.other_cpu(), server.cpu_seconds())
            )
            measured[path][str(level)] = figures
            print(
                f"   {path} c={level}: {figures['requests_per_s']:,.0f} requests/s,"
                f" p99 {figures['p99_ms']:.2f} ms, {figures['socket_errors_total']} socket errors,"
                f" {figures['non_2xx']} non-2xx, other CPU {figures['other_cpu_percent']:.0f} %",
                flush=True,
            )
    return measured


def inflight_stop(name: str, args: argparse.Namespace, log: Path, app_root: Path) -> dict:
    """SIGTERM while the server streams an answer; whether the answer arrives whole, and when."""
    with servers.Running(name, args.workers, log, app_root=app_root) as server:
        server.wait_first_200(START_DEADLINE)
        # Every worker up and idle, as for the idle stop: a stop while a worker still boots is
        # another case (granian did not stop a worker that started after SIGTERM, in a trial).
        server.wait_workers(args.workers, START_DEADLINE)
        time.sleep(args.idle)
        request = servers.InFlight(server.port, INFLIGHT_HOLD_MS)
        if not request.wait_started():
            request.finish(1)
            return {"answered": False, "failure": f"the request never started: {request.error}"}
        stop_s, stopped = server.stop(STOP_DEADLINE)
        request.finish(STOP_DEADLINE)
        result = request.outcome(server.stop_sent, server.stop_sent + stop_s)
        result.update(stop_s=stop_s, stop_ok=stopped)
        return result


def measure(name: str, args: argparse.Namespace, raw: Path, tag: str, payload: Path) -> dict:
    description, access_log = servers.SERVERS[name]
    result: dict = {"description": description, "access_log": access_log, "log": f"raw/{name}-{tag}.log"}
    try:
        result["version"] = versions(name)
        with servers.Running(name, args.workers, raw / f"{name}-{tag}.log") as server:
            result["command"] = shlex.join(server.argv)
            result["variables"] = server.variables
            result["start_s"] = server.wait_first_200(START_DEADLINE)
            print(f"   first 200 after {result['start_s']:.2f} s", flush=True)
            server.wait_workers(args.workers, START_DEADLINE)  # the load meets every worker
            result["paths"] = load_levels(server, name, args, raw, tag)
            result["memory"] = server.memory()
            time.sleep(args.idle)
            result["stop_s"], result["stop_ok"] = server.stop(STOP_DEADLINE)
            print(
                f"   {result['memory']['rss_bytes'] / 2**20:.0f} MiB RSS,"
                f" stopped in {result['stop_s']:.3f} s",
                flush=True,
            )
            if not result["stop_ok"]:
                raise RuntimeError(f"{name} did not exit within {STOP_DEADLINE:.0f} s of SIGTERM; killed")
        inflight = result["inflight"] = inflight_stop(name, args, raw / f"{name}-inflight-{tag}.log", payload)
        if inflight["answered"]:
            print(
                f"   in flight at SIGTERM: answered {inflight['answer_after_stop_s']:.3f} s after it,"
                f" exit {inflight['exit_after_answer_s']:.3f} s after the answer",
                flush=True,
            )
        else:
            print(f"   in flight at SIGTERM: NOT ANSWERED ({inflight['failure']})", flush=True)
        if inflight.get("stop_ok") is False:
            print(f"   in flight at SIGTERM: NOT STOPPED within {STOP_DEADLINE:.0f} s; killed", flush=True)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
        result["error"] = str(error)
        print(f"   FAILED: {error}", flush=True)
    return result


def median_of(measured: list[dict]) -> dict:
    """One server's rounds folded into one result: medians of the figures, sums of the errors (a
    figure that only some rounds have, such as an in-flight failure's reason, is kept from the first)."""
    failed = [m for m in measured if m.get("error")]
    if failed:
        return failed[0]
    first = measured[0]
    folded: dict = {}
    for key, value in first.items():
        values = [m[key] for m in measured if key in m]
        if len(values) < len(measured):
            folded[key] = value
            continue
        if isinstance(value, dict):
            folded[key] = median_of(values) if all(isinstance(v, dict) for v in values) else value
        elif isinstance(value, bool) or not isinstance(value, int | float):
            folded[key] = value
        elif "error" in key or key == "non_2xx":
            folded[key] = sum(values)  # an error in any round is reported, not hidden by a median
        else:
            folded[key] = statistics.median(values)
    if "paths" in first:
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
            "paths": args.paths,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "warmup_s": args.warmup,
            "idle_before_stop_s": args.idle,
            "inflight_hold_ms": INFLIGHT_HOLD_MS,
            "stop_deadline_s": STOP_DEADLINE,
            "quick": args.quick,
        },
        "versions": {
            package: version(package) for package in ("fastapi", "starlette", "uvloop", "httptools")
        },
        "servers": {},
        "skipped": {},
        "host_probe_ms": [],  # before each server of each round: the host's speed over the run
    }
    names = list(args.servers)
    if "ours-pinned" in names:
        print(f"== preparing ours-pinned's venv ({servers.PINNED.root})", flush=True)
        reason = servers.PINNED.prepare(raw / "pinned-venv.log")
        if reason:
            print(f"   ours-pinned skipped: {reason}", flush=True)
            results["skipped"]["ours-pinned"] = reason
            names.remove("ours-pinned")
        else:
            results["pinned_fallback"] = servers.PINNED.reason
            print(f"   ready; the launcher there says: {servers.PINNED.reason}", flush=True)
    print(
        f"{len(names)} servers, {args.workers} workers each, paths {args.paths}, concurrency"
        f" {args.concurrency}, {args.rounds} round(s)",
        flush=True,
    )
    prime()
    scratch = Path(tempfile.mkdtemp(prefix="asgi-bench-"))
    try:
        payload = servers.payload_app(scratch)
        # Rounds interleave the servers, so that a slow spell of this shared machine hits one round of
        # every server rather than all of one server's figures; the medians are kept.
        rounds: dict[str, list[dict]] = {name: [] for name in names}
        for number in range(args.rounds):
            # Each round starts with a different server: the first of a round measured lower, whichever
            # it was, so that place is shared out.
            shift = number % len(names)
            for name in names[shift:] + names[:shift]:
                print(f"== {name} (round {number + 1} of {args.rounds})", flush=True)
                results["host_probe_ms"].append(round(servers.host_probe_ms(), 1))
                rounds[name].append(measure(name, args, raw, f"r{number + 1}", payload))
        results["rounds"] = rounds
        for name, measured in rounds.items():
            results["servers"][name] = median_of(measured)
        if args.no_container:
            results["container"] = {"skipped": "--no-container"}
        else:
            print("== container", flush=True)
            results["container"] = container.measure(
                args.python_image, raw, args.warmup, args.duration, args.rounds, payload
            )
            if "skipped" in results["container"]:
                print(f"   skipped: {results['container']['skipped']}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    report.add_comparisons(results)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(report.markdown(results))
    report.chart(results, out / "chart.png")
    print_goals(results)
    print(f"results: {out}/results.md, results.json, chart.png; logs in {raw}")
    failed = [name for name, server in results["servers"].items() if server.get("error")]
    failed += ["container"] if results["container"].get("error") else []
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def print_goals(results: dict) -> None:
    if not results.get("goals"):
        return
    print(f"== goals for {report.GOAL_SERVER} (ratio [95 % interval] / per-round range: verdict)")
    for row in report.goal_rows(results):
        goal, against, measured, spread, verdict = row
        against = f" ({against})" if against else ""
        print(f"   {goal}{against}: {measured} / {spread or '-'}: {verdict.strip('*')}")
    if any(goal["verdict"] == "within noise" for goal in results["goals"]):
        print(f"   {report.NARROWING}")


if __name__ == "__main__":
    sys.exit(main())
