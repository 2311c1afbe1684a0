"""How the cost grows with the work: response size, request body size, worker count, memory per worker.

    .venv/bin/python benchmarks/curves.py                   every curve, about 25 minutes on 2 cores
    .venv/bin/python benchmarks/curves.py --quick           smoke run, tiny settings, about 1.5 minutes
    .venv/bin/python benchmarks/curves.py --curves memory --servers ours,tiangolo --rounds 5

Curves (--curves, default all), each measured for every server of --servers (default ours, uvicorn,
tiangolo: the same servers as benchmarks/run.py, started the same way):

    response  GET /bytes/<N> of benchmarks/payload_app.py, N = 100 B, 10 kB, 100 kB, 1 MB, 8 MB
              (--sizes), at -c<C> (--concurrency, 16) with --workers (2) workers
    body      POST /upload with a body of N bytes, N = 1 kB, 10 kB, 100 kB, 1 MB, 10 MB (--bodies),
              which the app reads whole; wrk sends it (wrk_summary.lua, WRK_BODY_BYTES)
    workers   GET / of the seed app (app.main) with 1, 2 and 4 workers (--worker-counts) on the
              machine's cores
    memory    RSS and PSS of the whole process tree after a short load, for 1 to 4 workers
              (--memory-workers), for the seed app and for payload_app holding --model-mb MB from
              its import on (a model, say); ours also with PRELOAD_APP=true (ours-preload), which
              imports the app once in the master; the cost of an added worker is the slope from
              the fewest to the most workers

The payload app's endpoints are `async` (the seed app's are `def`: a thread-pool hop per request,
the same at every size). wrk's per-request timeout is raised to 30 s, so a slow 8 MB answer counts in
the latency, not as an error.

Like run.py: --rounds (3) interleaved rounds (the server order rotates), medians with the per-round
range, and every ratio of ours to a peer with a paired bootstrap 95 % interval
(benchmarks/intervals.py). Output (--out, default benchmarks/results/curves/): results.json (every
round's figures), results.md (a table per curve), chart-<curve>.png, raw/ (server logs, wrk output).
The exit status is 1 if any measurement failed (the files are still written).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import intervals
import load
import servers
from run import git_state, machine, other_cpu_percent, prime, version

CURVES = ("response", "body", "workers", "memory")
SERVERS = ("ours", "uvicorn", "tiangolo")
RESPONSE_SIZES = (100, 10_000, 100_000, 1_000_000, 8_000_000)
BODY_SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
WORKER_COUNTS = (1, 2, 4)
MEMORY_WORKERS = (1, 2, 3, 4)
APPS = ("seed", "model")
START_DEADLINE = 60.0
WRK_TIMEOUT_S = 30
MB = 2**20


def numbers(text: str) -> list[int]:
    values = [int(float(part)) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected numbers >= 1, e.g. 100,10000")
    return values


def names(choices: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        picked = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [name for name in picked if name not in choices]
        if unknown or not picked:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {','.join(choices)}")
        return picked

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--curves", type=names(CURVES), default=list(CURVES), help=f"from {','.join(CURVES)} (default: all)")
    peers = tuple(name for name in servers.SERVERS if name != "ours-pinned")
    add("--servers", type=names(peers), default=list(SERVERS), help=f"default: {','.join(SERVERS)}")
    add("--workers", type=int, default=2, help="workers for the response and body curves (default: 2)")
    add("--concurrency", type=int, default=16, help="wrk -c for the load curves (default: 16)")
    add("--sizes", type=numbers, help="response sizes in bytes (default: 100,10e3,100e3,1e6,8e6)")
    add("--bodies", type=numbers, help="request body sizes in bytes (default: 1e3,10e3,100e3,1e6,10e6)")
    add("--worker-counts", type=numbers, help="worker counts of the workers curve (default: 1,2,4)")
    add("--memory-workers", type=numbers, help="worker counts of the memory curve (default: 1,2,3,4)")
    add("--model-mb", type=float, help="MB the memory curve's second app holds (default: 64)")
    add("--duration", type=int, help="seconds of each measured wrk run (default: 5)")
    add("--warmup", type=int, help="seconds of wrk before each measured run (default: 2)")
    add("--rounds", type=int, help="interleaved rounds; medians are kept (default: 3)")
    add("--quick", action="store_true", help="smoke run: two points per curve, 1 s runs, one round")
    add(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results" / "curves",
        help="results folder (default: benchmarks/results/curves)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = args.sizes or ([100, 100_000] if quick else list(RESPONSE_SIZES))
    args.bodies = args.bodies or ([1_000, 100_000] if quick else list(BODY_SIZES))
    args.worker_counts = args.worker_counts or ([1, 2] if quick else list(WORKER_COUNTS))
    args.memory_workers = args.memory_workers or ([1, 2] if quick else list(MEMORY_WORKERS))
    args.model_mb = args.model_mb if args.model_mb is not None else (8 if quick else 64)
    args.duration = args.duration or (1 if quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (0 if quick else 2)
    args.rounds = args.rounds or (1 if quick else 3)
    if min(args.workers, args.concurrency, args.rounds) < 1:
        parser.error("--workers, --concurrency and --rounds must be >= 1")
    return args


def size_text(size: int) -> str:
    for unit, factor in (("MB", 1_000_000), ("kB", 1_000)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} B"


class Curves:
    def __init__(self, args: argparse.Namespace, raw: Path, payload: Path):
        self.args, self.raw, self.payload = args, raw, payload
        self.data: dict = {curve: {} for curve in args.curves}
        self.errors: list[str] = []

    def record(self, curve: str, server: str, key: str, figures: dict | None) -> None:
        self.data[curve].setdefault(server, {}).setdefault(key, []).append(figures)

    def wrk(self, server: servers.Running, path: str, tag: str, body: int | None = None) -> dict:
        url = f"http://{servers.HOST}:{server.port}{path}"
        args = self.args
        if args.warmup:
            load.wrk(url, args.concurrency, args.warmup, body_bytes=body, timeout=WRK_TIMEOUT_S)
        before = servers.other_cpu(), server.cpu_seconds()
        record = self.raw / f"wrk-{tag}.txt"
        figures = load.wrk(url, args.concurrency, args.duration, record, body, WRK_TIMEOUT_S)
        figures["other_cpu_percent"] = other_cpu_percent(before, (servers.other_cpu(), server.cpu_seconds()))
        return figures

    def failed(self, what: str, error: Exception) -> None:
        self.errors.append(f"{what}: {error}")
        print(f"   FAILED {what}: {error}", flush=True)

    def payload_curves(self, name: str, tag: str) -> None:
        """The response and body curves share one start of the server on the payload app."""
        points = [("response", size, f"/bytes/{size}", None) for size in self.args.sizes]
        points += [("body", size, "/upload", size) for size in self.args.bodies]
        points = [point for point in points if point[0] in self.args.curves]
        if not points:
            return
        done = 0
        try:
            log = self.raw / f"{name}-payload-{tag}.log"
            with servers.Running(name, self.args.workers, log, app_root=self.payload) as server:
                server.wait_first_200(START_DEADLINE)
                for curve, size, path, body in points:
                    figures = self.wrk(server, path, f"{name}-{curve}-{size}-{tag}", body)
                    self.record(curve, name, str(size), figures)
                    done += 1
                    print(f"   {curve} {size_text(size)}: {summary(figures)}", flush=True)
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
            self.failed(f"{name} payload curves ({tag})", error)
            for curve, size, _, _ in points[done:]:
                self.record(curve, name, str(size), None)

    def workers_curve(self, name: str, tag: str) -> None:
        for count in self.args.worker_counts:
            try:
                log = self.raw / f"{name}-workers{count}-{tag}.log"
                with servers.Running(name, count, log) as server:
                    server.wait_first_200(START_DEADLINE)
                    figures = self.wrk(server, "/", f"{name}-workers{count}-{tag}")
                self.record("workers", name, str(count), figures)
                print(f"   {count} worker(s): {summary(figures)}", flush=True)
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
                self.failed(f"{name} with {count} worker(s) ({tag})", error)
                self.record("workers", name, str(count), None)

    def memory_curve(self, name: str, tag: str) -> None:
        for app in APPS:
            root = servers.REPO if app == "seed" else self.payload
            extra = {} if app == "seed" else {"BENCH_MODEL_MB": str(self.args.model_mb)}
            for count in self.args.memory_workers:
                key = f"{app}/{count}"
                try:
                    log = self.raw / f"{name}-memory-{app}{count}-{tag}.log"
                    with servers.Running(name, count, log, app_root=root, extra=extra) as server:
                        server.wait_first_200(START_DEADLINE)
                        server.wait_workers(count, START_DEADLINE)
                        load.wrk(server.url, 16, max(1, self.args.warmup))
                        time.sleep(0.5)
                        memory = server.memory()
                    self.record("memory", name, key, memory)
                    print(
                        f"   {app} app, {count} worker(s): RSS {memory['rss_bytes'] / MB:.1f} MiB,"
                        f" PSS {memory['pss_bytes'] / MB:.1f} MiB, {memory['processes']} processes",
                        flush=True,
                    )
                except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
                    self.failed(f"{name} memory, {app} app, {count} worker(s) ({tag})", error)
                    self.record("memory", name, key, None)


def summary(figures: dict) -> str:
    return (
        f"{figures['requests_per_s']:,.0f} requests/s, {figures['read_mib_per_s']:,.1f} MiB/s read,"
        f" p99 {figures['p99_ms']:.2f} ms, {figures['socket_errors_total']} socket errors,"
        f" {figures['non_2xx']} non-2xx, other CPU {figures['other_cpu_percent']:.0f} %"
    )


def memory_servers(chosen: list[str]) -> list[str]:
    """The memory curve adds ours with PRELOAD_APP=true next to ours."""
    out = list(chosen)
    if "ours" in out and "ours-preload" not in out:
        out.insert(out.index("ours") + 1, "ours-preload")
    return out


# ---- summary: medians, intervals, ratios


def column(rounds: list[dict | None], key: str) -> list[float | None]:
    return [None if figures is None else figures.get(key) for figures in rounds]


def summarize(results: dict) -> None:
    """Per curve, server and point: each figure's median with its interval; ratios of each of ours to
    each peer with paired bootstrap intervals; for memory, the slope per added worker."""
    for curve, per_server in results["curves"].items():
        summary_: dict = {}
        if curve == "memory":
            for name, points in per_server.items():
                summary_[name] = memory_summary(points)
        else:
            for name, points in per_server.items():
                summary_[name] = {}
                for x, rounds in points.items():
                    figures = {
                        key: intervals.value(column(rounds, key))
                        for key in ("requests_per_s", "read_mib_per_s", "p50_ms", "p99_ms")
                    }
                    if curve == "body":  # what moved is the body wrk sent, not the short answer
                        sent = [None if f is None else f["requests_per_s"] * int(x) / MB for f in rounds]
                        figures["read_mib_per_s"] = intervals.value(sent)
                    figures["errors"] = sum(
                        f["socket_errors_total"] + f["non_2xx"] for f in rounds if f is not None
                    )
                    figures["failed_rounds"] = sum(1 for f in rounds if f is None)
                    ours = [n for n in per_server if not servers.is_peer(n)]
                    figures["ours_vs"] = {
                        own: {
                            key: intervals.ratio(column(per_server[own].get(x, []), key), column(rounds, key))
                            for key in ("requests_per_s", "p99_ms")
                        }
                        for own in ours
                        if own != name
                    }
                    summary_[name][x] = figures
        results["summary"][curve] = summary_


def memory_summary(points: dict) -> dict:
    out: dict = {"points": {}, "per_worker": {}}
    for key, rounds in points.items():
        out["points"][key] = {k: intervals.value(column(rounds, k)) for k in ("rss_bytes", "pss_bytes")}
    for app in APPS:
        counts = sorted(int(key.split("/")[1]) for key in points if key.startswith(f"{app}/"))
        if len(counts) < 2:
            continue
        low, high = points[f"{app}/{counts[0]}"], points[f"{app}/{counts[-1]}"]
        out["per_worker"][app] = {}
        for k in ("rss_bytes", "pss_bytes"):
            slopes = [
                None if a is None or b is None else (b[k] - a[k]) / (counts[-1] - counts[0])
                for a, b in zip(low, high, strict=True)
            ]
            out["per_worker"][app][k] = intervals.value(slopes)
    return out


# ---- output


def _cell(interval: dict | None, digits: int = 0, scale: float = 1.0) -> str:
    if interval is None:
        return "n/a"
    median = f"{interval['median'] / scale:,.{digits}f}"
    if interval["rounds"] < 2:
        return median
    return f"{median} ({interval['min'] / scale:,.{digits}f}-{interval['max'] / scale:,.{digits}f})"


def _ratio(interval: dict | None) -> str:
    if interval is None:
        return "n/a"
    if interval["rounds"] < 2:
        return f"{interval['ratio']:.2f}x"
    return f"{interval['ratio']:.2f}x [{interval['low']:.2f}, {interval['high']:.2f}]"


LOAD_TITLES = {
    "response": ("Response size", "`GET /bytes/<N>` of benchmarks/payload_app.py", "size"),
    "body": ("Request body size", "`POST /upload` of benchmarks/payload_app.py, the body read whole", "body"),
    "workers": ("Worker count", "`GET /` of the seed app (app.main)", "workers"),
}


def markdown(results: dict) -> str:
    settings, machine_ = results["settings"], results["machine"]
    out = [
        f"# Cost curves, {results['date']}",
        "",
        f"- Machine: {machine_['cpus']} CPUs usable ({machine_['cpu_model']}), kernel {machine_['kernel']},"
        f" Python {machine_['python']}; load average at the start {machine_['loadavg_start']}, at the end"
        f" {machine_.get('loadavg_end')}.",
        f"- Command: `{results['command']}` (repository at {results['git']}).",
        f"- {settings['rounds']} interleaved round(s); values are medians (lowest-highest round); `ours vs`"
        " columns are ours' median divided by this server's, with the paired bootstrap 95 % interval of"
        " the rounds in brackets (benchmarks/intervals.py). wrk shares the cores with the servers.",
        f"- Load curves: `wrk -c{settings['concurrency']} -d{settings['duration_s']}s --timeout"
        f" {WRK_TIMEOUT_S}s` after a {settings['warmup_s']} s warm-up; response and body curves with"
        f" {settings['workers']} workers.",
        "",
    ]
    for error in results.get("errors", []):
        out += [f"**Failed**: {error}", ""]
    for curve, (title, what, label) in LOAD_TITLES.items():
        summary_ = results["summary"].get(curve)
        if not summary_:
            continue
        ours = [name for name in summary_ if not servers.is_peer(name)]
        out += [f"## {title}: {what}", "", f"![{title}](chart-{curve}.png)", ""]
        moved = "MiB/s of bodies sent" if curve == "body" else "MiB/s read"
        header = [label, "server", "requests/s", moved, "p50 ms", "p99 ms"]
        header += [f"{own} vs it, requests/s" for own in ours] + [f"{own} vs it, p99" for own in ours]
        header += ["errors"]
        rows = []
        xs = sorted({int(x) for points in summary_.values() for x in points})
        for x in xs:
            for name, points in summary_.items():
                figures = points.get(str(x))
                if figures is None:
                    continue
                vs = figures["ours_vs"]
                row = [
                    size_text(x) if curve != "workers" else str(x),
                    name,
                    _cell(figures["requests_per_s"]),
                    _cell(figures["read_mib_per_s"], 1),
                    _cell(figures["p50_ms"], 2),
                    _cell(figures["p99_ms"], 2),
                ]
                row += ["" if own == name else _ratio(vs.get(own, {}).get("requests_per_s")) for own in ours]
                row += ["" if own == name else _ratio(vs.get(own, {}).get("p99_ms")) for own in ours]
                failed = f", {figures['failed_rounds']} round(s) failed" if figures["failed_rounds"] else ""
                rows.append([*row, f"{figures['errors']}{failed}"])
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in rows] + [""]
    memory = results["summary"].get("memory")
    if memory:
        out += [
            "## Memory per worker",
            "",
            "![Memory](chart-memory.png)",
            "",
            "RSS and PSS summed over the whole process tree (master or supervisor and workers) after a short"
            " load (`wrk -c16` on `/`). The seed app is app.main; the model app is benchmarks/payload_app.py"
            f" holding {settings['model_mb']:g} MB from its import on. RSS counts a page shared by forked"
            " processes once per process; PSS splits it between them, which is where preloading shows.",
            "",
        ]
        counts = settings["memory_workers"]
        header = ["server", "app"] + [f"{count} worker(s): RSS / PSS MiB" for count in counts]
        header += ["per added worker: RSS MiB", "PSS MiB"]
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, summary_ in memory.items():
            for app in APPS:
                cells = []
                for count in counts:
                    point = summary_["points"].get(f"{app}/{count}", {})
                    cells.append(
                        f"{_cell(point.get('rss_bytes'), 1, MB)} / {_cell(point.get('pss_bytes'), 1, MB)}"
                    )
                slope = summary_["per_worker"].get(app, {})
                cells += [_cell(slope.get("rss_bytes"), 1, MB), _cell(slope.get("pss_bytes"), 1, MB)]
                out.append("| " + " | ".join([name, app, *cells]) + " |")
        out.append("")
    return "\n".join(out)


def charts(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for curve, (title, _, label) in LOAD_TITLES.items():
        summary_ = results["summary"].get(curve)
        if not summary_:
            continue
        figure, (throughput, p99) = plt.subplots(1, 2, figsize=(12, 4.6))
        for name, points in summary_.items():
            xs = sorted(int(x) for x, f in points.items() if f["requests_per_s"])
            for axis, key in ((throughput, "requests_per_s"), (p99, "p99_ms")):
                values = [points[str(x)][key] for x in xs]
                medians = [v["median"] for v in values]
                errors = [
                    [m - v["min"] for m, v in zip(medians, values, strict=True)],
                    [v["max"] - m for m, v in zip(medians, values, strict=True)],
                ]
                axis.errorbar(xs, medians, yerr=errors, marker="o", capsize=3, label=name)
        for axis, name, unit in ((throughput, "Requests/s", "requests/s"), (p99, "p99 latency", "ms")):
            axis.set_xlabel(label if curve == "workers" else f"{label} (bytes)")
            if curve != "workers":
                axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_ylabel(unit)
            axis.set_title(f"{name} by {label}")
            axis.grid(True, which="both", alpha=0.3)
        throughput.legend(fontsize="small")
        figure.suptitle(
            f"{title}: medians of {results['settings']['rounds']} rounds, bars: range ({results['date']})"
        )
        figure.tight_layout()
        figure.savefig(out / f"chart-{curve}.png", dpi=100)
        plt.close(figure)
        written.append(f"chart-{curve}.png")
    memory = results["summary"].get("memory")
    if memory:
        figure, axes = plt.subplots(1, 2, figsize=(12, 4.6))
        for axis, key, name in ((axes[0], "rss_bytes", "RSS"), (axes[1], "pss_bytes", "PSS")):
            for server, summary_ in memory.items():
                for app, style in zip(APPS, ("-", "--"), strict=True):
                    counts = sorted(
                        int(k.split("/")[1])
                        for k, v in summary_["points"].items()
                        if k.startswith(f"{app}/") and v[key]
                    )
                    values = [summary_["points"][f"{app}/{c}"][key]["median"] / MB for c in counts]
                    axis.plot(counts, values, style, marker="o", label=f"{server}, {app} app")
            axis.set_xlabel("workers")
            axis.set_ylabel("MiB, whole process tree")
            axis.set_title(f"{name} by worker count")
            axis.grid(True, alpha=0.3)
        axes[0].legend(fontsize="small")
        figure.suptitle(f"Memory: medians of {results['settings']['rounds']} rounds ({results['date']})")
        figure.tight_layout()
        figure.savefig(out / "chart-memory.png", dpi=100)
        plt.close(figure)
        written.append("chart-memory.png")
    return written


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    chosen = memory_servers(args.servers) if "memory" in args.curves else args.servers
    missing = [] if shutil.which("wrk") else ["wrk (Debian: apt-get install wrk)"]
    missing += servers.missing_programs(chosen)
    if missing:
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(sys.orig_argv),
        "git": git_state(),
        "machine": machine(),
        "settings": {
            "curves": args.curves,
            "servers": args.servers,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "sizes": args.sizes,
            "bodies": args.bodies,
            "worker_counts": args.worker_counts,
            "memory_workers": args.memory_workers,
            "model_mb": args.model_mb,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
        },
        "versions": {p: version(p) for p in ("gunicorn", "uvicorn", "uvicorn-worker", "fastapi", "granian")},
        "curves": {},
        "summary": {},
        "host_probe_ms": [],
    }
    print(f"curves {args.curves}, servers {args.servers}, {args.rounds} round(s)", flush=True)
    prime()
    scratch = Path(tempfile.mkdtemp(prefix="asgi-bench-curves-"))
    try:
        curves = Curves(args, raw, servers.payload_app(scratch))
        for number in range(args.rounds):
            tag = f"r{number + 1}"
            shift = number % len(args.servers)
            order = args.servers[shift:] + args.servers[:shift]
            for name in order:
                print(f"== {name} (round {number + 1} of {args.rounds})", flush=True)
                results["host_probe_ms"].append(round(servers.host_probe_ms(), 1))
                curves.payload_curves(name, tag)
                if "workers" in args.curves:
                    curves.workers_curve(name, tag)
            if "memory" in args.curves:
                chosen = memory_servers(order)
                for name in chosen:
                    print(f"== {name}, memory (round {number + 1} of {args.rounds})", flush=True)
                    curves.memory_curve(name, tag)
        results["curves"] = curves.data
        results["errors"] = curves.errors
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    summarize(results)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    written = charts(results, out)
    print(f"results: {out}/results.md, results.json, {', '.join(written)}; logs in {raw}")
    if curves.errors:
        print(f"FAILED: {len(curves.errors)} measurement(s); see results.md", file=sys.stderr)
    return 1 if curves.errors else 0


if __name__ == "__main__":
    sys.exit(main())
