"""Where the time and the memory go: the profile behind the benchmark's figures.

    .venv/bin/python benchmarks/breakdown.py                            about 3 minutes
    .venv/bin/python benchmarks/breakdown.py --parts cpu --connections 1 where one connection's time goes
    .venv/bin/python benchmarks/breakdown.py --parts stop                who waits how long on SIGTERM

Four parts (--parts, default all), each comparing this launcher (defaults) with tiangolo's
configuration and `uvicorn --workers N --no-access-log`, on the same app as benchmarks/run.py:

- cpu: py-spy samples every process of the tree (--subprocesses, 100 Hz, --gil: only the thread holding
  the GIL, the work a worker can do on one core) while wrk holds --connections (64) connections on
  --path (/); each sample is charged to the package of its innermost Python frame (C code such as the
  httptools parser or uvloop's socket write is charged to the Python line that called it); with
  wrk's requests/s meanwhile, the GIL-holding time per request. At one connection the request is
  latency-bound: what the samples show there is each request's own path.
- start: spawn to first 200, median of interleaved repeats, for our start.sh, for the Gunicorn command
  it ends in run directly (same configuration, no start script), for tiangolo's start script
  (benchmarks/tiangolo_start.sh) and his Gunicorn command alone; plus the parts that only ours runs:
  the Python steps of start.sh (`python -m asgi_launcher start`: the switch from root, every check
  and the plan; APP_USER=root here) and the import of our worker modules.
- stop: SIGTERM to an idle server, then each process's exit time polled every millisecond, median of
  the repeats: when the workers are gone, and how long the master (or supervisor) takes after its
  last worker; also for granian, the quickest to stop.
- memory: per-process RSS and USS (the pages only that process holds) after a short load, for ours,
  ours with METRICS=off and tiangolo's; plus what importing each worker module adds to a fresh
  interpreter's RSS.

Output (--out, default benchmarks/results/breakdown/): results.md, results.json, and raw/ (git ignores
it) with the servers' logs and, for the cpu part, stacks-<server>.txt in the collapsed format that
flamegraph.pl and speedscope read.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import load
import servers
from support import spawn

SERVERS = ("ours", "tiangolo", "uvicorn")
STOP_SERVERS = ("ours", "tiangolo", "uvicorn", "granian")
WORKERS = 2
# Packages shown on their own; every other frame is the standard library's (asyncio, threading, ...).
PACKAGES = {"asgi_launcher", "anyio", "app", "fastapi", "gunicorn", "prometheus_client", "pydantic"}
PACKAGES |= {"starlette", "uvicorn", "uvicorn_worker"}
# Work counted with everything it calls (any frame of the stack matches), to price a feature.
INCLUSIVE = {
    "metrics": re.compile(r"RequestMetrics\.|\(prometheus_client/"),
    "our access log": re.compile(r"AccessLog\.|_line \(asgi_launcher/|_line\.<locals>"),
    "Python's logging": re.compile(r"\(logging/"),
}
# What a worker imports beyond the app: ours (plus prometheus_client when METRICS is on), tiangolo's.
WORKER_MODULES = ("asgi_launcher.workers", "prometheus_client", "uvicorn.workers")


def package_of(frame: str) -> str:
    """`func (uvicorn/protocols/http/httptools_impl.py:422)` -> uvicorn; the standard library grouped."""
    location = frame.rsplit(" (", 1)[-1].rstrip(")")
    top = location.rsplit(":", 1)[0].split("/", 1)[0].removesuffix(".py")
    return top if top in PACKAGES else "standard library"


def cpu_profile(name: str, seconds: int, raw: Path, connections: int = 64, path: str = "/") -> dict:
    with servers.Running(name, WORKERS, raw / f"breakdown-{name}.log") as server:
        server.wait_first_200(60)
        url = f"http://{servers.HOST}:{server.port}{path}"
        load.wrk(url, connections, 2)
        stacks = raw / f"stacks-{name}.txt"
        threads = "-t1" if connections == 1 else "-t2"
        wrk = subprocess.Popen(  # the load outlasts the sampling on both sides
            ["wrk", threads, f"-c{connections}", f"-d{seconds + 3}s", url], stdout=subprocess.PIPE, text=True
        )
        time.sleep(1)
        py_spy = [str(spawn.VENV_BIN / "py-spy"), "record", "--pid", str(server.proc.pid), "--subprocesses"]
        py_spy += ["--gil", "--rate", "100", "--duration", str(seconds), "--format", "raw"]
        spy = subprocess.run(
            [*py_spy, "--output", str(stacks)],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
        output, _ = wrk.communicate(timeout=seconds + 60)
        if spy.returncode != 0:
            raise RuntimeError(f"py-spy failed: {spy.stderr.strip()}")
    summary = summarize(stacks.read_text())
    # The samples' share says where the time goes; per request says how much there is: at 100 Hz a
    # sample stands for 10 ms of a thread holding the GIL.
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    summary["requests_per_s"] = float(rate[1]) if rate else None
    if rate and float(rate[1]) > 0:
        summary["gil_ms_per_request"] = summary["samples"] * 10 / (float(rate[1]) * seconds)
    return summary


def summarize(collapsed: str) -> dict:
    """Shares of the samples in py-spy's collapsed format (`process A;process B;frame;...;leaf N`)."""
    by_package: collections.Counter = collections.Counter()
    by_line: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    master = total = 0
    for line in collapsed.splitlines():
        trace, count = line.rsplit(" ", 1)
        frames = trace.split(";")
        samples = int(count)
        total += samples
        if sum(frame.startswith("process ") for frame in frames) == 1:  # the leader: the master
            master += samples
        by_package[package_of(frames[-1])] += samples
        by_line[frames[-1]] += samples
        for label, pattern in INCLUSIVE.items():
            if pattern.search(trace):
                inclusive[label] += samples

    def share(n: int) -> float:
        return round(100 * n / total, 2)

    return {
        "samples": total,
        "master_percent": share(master),
        "packages": {package: share(n) for package, n in by_package.most_common()},
        "top_lines": {line: share(n) for line, n in by_line.most_common(8)},
        "inclusive": {label: share(inclusive[label]) for label in INCLUSIVE},
        "launcher_lines": {
            line: share(n) for line, n in by_line.most_common() if package_of(line) == "asgi_launcher"
        },
    }


# label -> (server, argv instead of the server's own or None, variables added to the server's)
DIRECT = ["gunicorn", "-c", str(spawn.REPO / "gunicorn_conf.py"), "app.main:app"]  # what start.sh execs
START_VARIANTS = {
    "ours": ("ours", None, {}),
    "ours, gunicorn run directly (no start.sh)": ("ours", DIRECT, {}),
    "ours, gunicorn run directly, METRICS=off": ("ours", DIRECT, {"METRICS": "off"}),
    "tiangolo (his start script)": ("tiangolo", None, {}),
    "tiangolo's Gunicorn command alone": ("tiangolo-gunicorn", None, {}),
}
MEMORY_VARIANTS = {
    "ours": ("ours", None, {}),
    "ours, METRICS=off": ("ours", None, {"METRICS": "off"}),
    "tiangolo": ("tiangolo", None, {}),
}


def variant(label: str, spec: tuple, raw: Path) -> servers.Running:
    name, argv, extra = spec
    slug = "".join(c if c.isalnum() else "-" for c in label)
    running = servers.Running(name, WORKERS, raw / f"breakdown-{slug}.log")
    running.argv = argv or running.argv
    running.variables = {**running.variables, **extra}
    return running


def start_profile(repeats: int, raw: Path) -> dict:
    starts: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(repeats):
        for label, spec in START_VARIANTS.items():
            with variant(label, spec, raw) as server:
                starts[label].append(server.wait_first_200(60))
    # What start.sh passes to its Python steps: our server's variables.
    check_env = spawn.clean_env(servers.command("ours", WORKERS, 1)[1])
    bare = timed([sys.executable, "-c", "pass"], check_env, repeats)
    imports = {
        module: timed([sys.executable, "-c", f"import {module}"], check_env, repeats) - bare
        for module in WORKER_MODULES
    }
    return {
        "first_200_s": {label: statistics.median(values) for label, values in starts.items()},
        "first_200_all_s": starts,
        "python_steps_s": python_steps(check_env, repeats),
        "interpreter_s": bare,
        "import_s": imports,
    }


def stop_profile(repeats: int, raw: Path) -> dict:
    """Per server, the median over ``repeats`` idle stops of: the first and the last worker's exit and
    the leader's exit, in seconds after SIGTERM."""
    timelines: dict[str, list[dict]] = collections.defaultdict(list)
    for _ in range(repeats):
        for name in STOP_SERVERS:
            with servers.Running(name, WORKERS, raw / f"breakdown-stop-{name}.log") as server:
                server.wait_first_200(60)
                time.sleep(1)
                timelines[name].append(exit_timeline(server))
    return {
        name: {key: statistics.median(t[key] for t in runs) for key in runs[0]}
        for name, runs in timelines.items()
    }


def exit_timeline(server: servers.Running) -> dict:
    processes = server.processes()
    leader, others = processes[0], processes[1:]
    gone: dict[int, float] = {}
    started = time.perf_counter()
    server.signal(signal.SIGTERM)
    while len(gone) < len(processes) and time.perf_counter() - started < 30:
        for process in processes:
            if process.pid in gone:
                continue
            exited = server.proc.poll() is not None if process is leader else not spawn.alive(process)
            if exited:
                gone[process.pid] = time.perf_counter() - started
        time.sleep(0.001)
    workers = sorted(gone.get(p.pid, 30.0) for p in others) or [0.0]
    leader_exit = gone.get(leader.pid, 30.0)
    return {
        "first_worker_s": workers[0],
        "last_worker_s": workers[-1],
        "leader_s": leader_exit,
        "leader_after_last_worker_s": leader_exit - workers[-1],
    }


def python_steps(env: dict, repeats: int) -> dict[str, float]:
    """The Python that start.sh runs before the server, timed alone: ``start --prestart-only`` (the
    switch from root, every check, the plan, and the pre-start script sourced in bash), which stops
    where the start would exec Gunicorn."""
    python = [sys.executable, "-m", "asgi_launcher"]
    with_prestart = {**env, "PRE_START_PATH": str(spawn.REPO / "prestart.sh")}
    return {"start": timed([*python, "start", "--prestart-only"], with_prestart, repeats)}


def timed(argv: list[str], env: dict, repeats: int) -> float:
    """Median wall time of a short command."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, env=env, cwd=spawn.REPO, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


IMPORT_RSS = """
import sys
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096
before = rss()
__import__(sys.argv[1])
print(rss() - before)
"""


def memory_profile(raw: Path) -> dict:
    trees = {}
    for label, spec in MEMORY_VARIANTS.items():
        with variant(label, spec, raw) as server:
            server.wait_first_200(60)
            load.wrk(server.url, 16, 2)
            processes = []
            for process in server.processes():
                info = process.memory_full_info()
                role = "master" if process.pid == server.proc.pid else "worker"
                processes.append({"role": role, "rss_mib": info.rss / 2**20, "uss_mib": info.uss / 2**20})
            trees[label] = processes
    imports = {}
    with tempfile.NamedTemporaryFile("w", suffix=".py") as script:
        script.write(IMPORT_RSS)
        script.flush()
        for module in WORKER_MODULES:
            argv = [sys.executable, script.name, module]
            output = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=spawn.REPO).stdout
            imports[module] = int(output) / 2**20
    return {"processes": trees, "import_rss": imports}


def markdown(results: dict) -> str:
    out = [f"# Profile, {results['date']}", "", f"`{results['command']}` at commit {results['commit']}.", ""]
    if "cpu" in results:
        out += cpu_markdown(results)
    if "start" in results:
        out += start_markdown(results["start"])
    if "stop" in results:
        out += stop_markdown(results["stop"])
    if "memory" in results:
        out += memory_markdown(results["memory"])
    return "\n".join(out) + "\n"


def cpu_markdown(results: dict) -> list[str]:
    cpu = results["cpu"]
    load_ = f"wrk -c{results['connections']} on `{results['path']}`"
    packages = sorted({p for r in cpu.values() for p, share in r["packages"].items() if share >= 0.5})
    out = [
        f"## CPU under {load_}: samples of the thread holding the GIL, by its innermost frame's package",
        "",
    ]
    out += ["| package | " + " | ".join(cpu) + " |", "|---|" + "---|" * len(cpu)]
    rows = [(p, [f"{r['packages'].get(p, 0):.1f} %" for r in cpu.values()]) for p in packages]
    rows.append(("(in the master process)", [f"{r['master_percent']:.1f} %" for r in cpu.values()]))
    out += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    out.append("| samples | " + " | ".join(str(r["samples"]) for r in cpu.values()) + " |")
    out.append(
        "| requests/s under py-spy | "
        + " | ".join(f"{r.get('requests_per_s') or 0:,.0f}" for r in cpu.values())
        + " |"
    )
    out.append(
        "| GIL-holding ms per request | "
        + " | ".join(
            f"{r['gil_ms_per_request']:.3f}" if r.get("gil_ms_per_request") else "n/a" for r in cpu.values()
        )
        + " |"
    )
    out += ["", "Counting every frame below them (a feature's whole price):", ""]
    out += ["| work | " + " | ".join(cpu) + " |", "|---|" + "---|" * len(cpu)]
    out += [
        f"| {label} | " + " | ".join(f"{r['inclusive'][label]:.1f} %" for r in cpu.values()) + " |"
        for label in INCLUSIVE
    ]
    for name, figures in cpu.items():
        out += ["", f"The lines where `{name}` spent most, share of its samples:", ""]
        out += [f"- `{line}`: {share:.1f} %" for line, share in figures["top_lines"].items()]
    launcher = cpu["ours"]["launcher_lines"]
    out += [
        "",
        f"`asgi_launcher` in all: {sum(launcher.values()):.1f} % of `ours`'s samples, over"
        f" {len(launcher)} lines; those with at least 0.25 %:",
        "",
    ]
    out += [f"- `{line}`: {share:.2f} %" for line, share in launcher.items() if share >= 0.25]
    return [*out, ""]


def start_markdown(start: dict) -> list[str]:
    out = ["## Start", "", "| | spawn to first 200 (median) |", "|---|---|"]
    out += [f"| {label} | {seconds:.3f} s |" for label, seconds in start["first_200_s"].items()]
    steps = ", ".join(
        f"`python -m asgi_launcher {step}` {seconds * 1000:.0f} ms"
        for step, seconds in start["python_steps_s"].items()
    )
    out += [
        "",
        f"The Python steps of our start.sh, each alone: {steps}"
        f" (an empty interpreter: {start['interpreter_s'] * 1000:.0f} ms).",
        "Import time in a fresh interpreter, beyond an empty one: "
        + ", ".join(f"`{module}` {s * 1000:.0f} ms" for module, s in start["import_s"].items())
        + ".",
        "",
    ]
    return out


def stop_markdown(stop: dict) -> list[str]:
    out = [
        "## Idle stop: seconds after SIGTERM (median of the repeats)",
        "",
        "| server | first worker gone | last worker gone | leader gone | leader after its last worker |",
        "|---|---|---|---|---|",
    ]
    for name, t in stop.items():
        cells = [t["first_worker_s"], t["last_worker_s"], t["leader_s"], t["leader_after_last_worker_s"]]
        out.append(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return [*out, ""]


def memory_markdown(memory: dict) -> list[str]:
    out = ["## Memory after a short load", "", "| | process | RSS | USS |", "|---|---|---|---|"]
    for label, processes in memory["processes"].items():
        for p in processes:
            out.append(f"| {label} | {p['role']} | {p['rss_mib']:.1f} MiB | {p['uss_mib']:.1f} MiB |")
    out += ["", "What importing a module adds to a fresh interpreter's RSS:", ""]
    out += [f"- `{module}`: {mib:.1f} MiB" for module, mib in memory["import_rss"].items()]
    return out


def which(program: str) -> bool:
    return bool(shutil.which(program, path=spawn.clean_env({})["PATH"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="py-spy sampling time per server")
    parser.add_argument("--repeats", type=int, default=7, help="starts (and stops) per server")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c for the cpu part (default 64)")
    parser.add_argument("--path", default="/", help="request path for the cpu part (default /)")
    parser.add_argument(
        "--parts",
        default="cpu,start,stop,memory",
        help="comma-separated, from cpu,start,stop,memory (default: all)",
    )
    parser.add_argument("--out", type=Path, default=spawn.REPO / "benchmarks" / "results" / "breakdown")
    args = parser.parse_args()
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    if unknown := set(parts) - {"cpu", "start", "stop", "memory"}:
        parser.error(f"unknown part(s) {sorted(unknown)}; choose from cpu,start,stop,memory")
    if missing := servers.missing_programs(list(SERVERS)) + [p for p in ("wrk", "py-spy") if not which(p)]:
        print(f"missing programs: {', '.join(missing)}", file=sys.stderr)
        return 1
    raw = args.out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "benchmarks/breakdown.py " + " ".join(sys.argv[1:]),
        "commit": commit.strip(),
        "connections": args.connections,
        "path": args.path,
    }
    if "cpu" in parts:
        results["cpu"] = {}
        for name in SERVERS:
            print(f"cpu: {name}", flush=True)
            results["cpu"][name] = cpu_profile(name, args.seconds, raw, args.connections, args.path)
    if "start" in parts:
        print("start", flush=True)
        results["start"] = start_profile(args.repeats, raw)
    if "stop" in parts:
        print("stop", flush=True)
        results["stop"] = stop_profile(args.repeats, raw)
    if "memory" in parts:
        print("memory", flush=True)
        results["memory"] = memory_profile(raw)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
