"""results.md and chart.png from the results dictionary that run.py also writes as results.json.

``add_comparisons`` reads every round's figures (results["rounds"]) and adds, per server, each
figure's median with its interval and its ratios to the best peer, to uvicorn and (start) to
tiangolo's start, each with a paired bootstrap interval (benchmarks/intervals.py); then the issue's
goals for ``ours`` with a verdict each.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import intervals

REFERENCE = "uvicorn"
START_REFERENCE = "tiangolo"
GOAL_SERVER = "ours"
STOP_GOAL_S = 0.10  # SIGTERM to exit, idle
DOCKER_STOP_GOAL_S = 0.25  # `docker stop` of an idle container: the engine adds its own part
MB = 1024 * 1024
NARROWING = (
    "A goal within noise is neither met nor missed in this run: its interval straddles the target. More"
    " rounds of that level alone narrow it, e.g. `benchmarks/run.py --concurrency 1 --paths / --rounds 15"
    " --no-container` (from 7 rounds on the interval leaves out the extreme rounds, and it shrinks"
    f" roughly with the square root of the rounds); a goal not judged had fewer than {intervals.MIN_ROUNDS}"
    " rounds."
)


def is_peer(name: str) -> bool:
    return not name.startswith("ours")


def series(rounds: list[dict], *keys: str) -> list[float | None]:
    """One figure of one server, round by round (None where the round failed or lacks it)."""
    out: list[float | None] = []
    for measured in rounds:
        value = None if measured.get("error") else measured
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        out.append(value if isinstance(value, int | float) and not isinstance(value, bool) else None)
    return out


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _best(rounds: dict[str, list[dict]], names: list[str], keys: tuple[str, ...], highest: bool):
    medians = {name: _median(series(rounds[name], *keys)) for name in names}
    medians = {name: m for name, m in medians.items() if m is not None}
    if not medians:
        return None
    return (max if highest else min)(medians, key=medians.__getitem__)


def add_comparisons(results: dict) -> None:
    rounds: dict[str, list[dict]] = results["rounds"]
    settings = results["settings"]
    names = [name for name, server in results["servers"].items() if not server.get("error")]
    peers = [name for name in names if is_peer(name)]
    best: dict = {"paths": {}}
    for path in settings["paths"]:
        best["paths"][path] = {
            str(level): {
                "requests_per_s": _best(rounds, peers, ("paths", path, str(level), "requests_per_s"), True),
                "p99_ms": _best(rounds, peers, ("paths", path, str(level), "p99_ms"), False),
            }
            for level in settings["concurrency"]
        }
    for key in ("start_s", "stop_s"):
        best[key] = _best(rounds, peers, (key,), False)
    best["inflight_exit_after_answer_s"] = _best(rounds, peers, ("inflight", "exit_after_answer_s"), False)
    results["best_peer"] = best

    def versus(name: str, reference: str | None, *keys: str) -> dict | None:
        if reference is None or reference not in names:
            return None
        return intervals.ratio(series(rounds[name], *keys), series(rounds[reference], *keys))

    for name in names:
        compare: dict = {"paths": {}}
        for path in settings["paths"]:
            compare["paths"][path] = {}
            for level in map(str, settings["concurrency"]):
                figures = {}
                for key in ("requests_per_s", "p50_ms", "p99_ms"):
                    keys = ("paths", path, level, key)
                    figures[key] = {
                        "value": intervals.value(series(rounds[name], *keys)),
                        "vs_best": versus(name, best["paths"][path][level].get(key), *keys),
                        "vs_uvicorn": versus(name, REFERENCE, *keys),
                    }
                compare["paths"][path][level] = figures
        for key in ("start_s", "stop_s"):
            compare[key] = {
                "value": intervals.value(series(rounds[name], key)),
                "vs_best": versus(name, best[key], key),
                "vs_uvicorn": versus(name, REFERENCE, key),
                "vs_tiangolo": versus(name, START_REFERENCE, key),
            }
        inflight = [m.get("inflight", {}) for m in rounds[name] if not m.get("error")]
        compare["inflight"] = {
            "rounds": len(inflight),
            "failures": sum(1 for i in inflight if not i.get("answered")),
            "killed": sum(1 for i in inflight if i.get("stop_ok") is False),
            "stop_s": intervals.value(series(rounds[name], "inflight", "stop_s")),
            "exit_after_answer_s": intervals.value(series(rounds[name], "inflight", "exit_after_answer_s")),
        }
        for key in ("rss_bytes", "pss_bytes"):
            compare[key] = {
                "value": intervals.value(series(rounds[name], "memory", key)),
                "vs_uvicorn": versus(name, REFERENCE, "memory", key),
            }
        results["servers"][name]["compare"] = compare
    results["goals"] = goals(results)


def goals(results: dict) -> list[dict]:
    """The issue's goals for ``ours``, each with the figure it is judged on and a verdict."""
    server = results["servers"].get(GOAL_SERVER, {})
    compare = server.get("compare")
    if compare is None:
        return []
    best = results["best_peer"]
    rows = []
    for path, levels in compare["paths"].items():
        for level, figures in levels.items():
            peer = best["paths"][path][level]
            rows.append(
                {
                    "goal": f"requests/s `{path}` c={level} >= the best peer's",
                    "against": peer["requests_per_s"],
                    "kind": "ratio",
                    "interval": figures["requests_per_s"]["vs_best"],
                    "verdict": intervals.verdict(figures["requests_per_s"]["vs_best"], 1.0, True),
                }
            )
            rows.append(
                {
                    "goal": f"p99 `{path}` c={level} <= the best peer's",
                    "against": peer["p99_ms"],
                    "kind": "ratio",
                    "interval": figures["p99_ms"]["vs_best"],
                    "verdict": intervals.verdict(figures["p99_ms"]["vs_best"], 1.0, False),
                }
            )
    stop = compare["stop_s"]["value"]
    rows.append(
        {
            "goal": f"idle stop (SIGTERM to exit) <= {STOP_GOAL_S} s",
            "against": None,
            "kind": "seconds",
            "interval": stop,
            "verdict": intervals.verdict(stop, STOP_GOAL_S, False),
        }
    )
    inflight = compare["inflight"]
    lost = inflight["failures"] + inflight.get("killed", 0)
    answered = inflight["rounds"] - inflight["failures"]
    killed = f", {inflight['killed']} not stopped (killed)" if inflight.get("killed") else ""
    rows.append(
        {
            "goal": "a request in flight at SIGTERM is answered, then the server exits",
            "against": None,
            "kind": "count",
            "interval": None,
            "measured": f"{answered} of {inflight['rounds']} answered{killed}",
            "verdict": intervals.UNJUDGED
            if not inflight["rounds"]
            else intervals.NOT_MET
            if lost
            else intervals.MET,
        }
    )
    container = results.get("container", {})
    docker_stop = container.get("stop") if isinstance(container.get("stop"), dict) else None
    rows.append(
        {
            "goal": f"`docker stop`, idle, <= {DOCKER_STOP_GOAL_S} s",
            "against": None,
            "kind": "seconds",
            "interval": docker_stop,
            "verdict": intervals.verdict(docker_stop, DOCKER_STOP_GOAL_S, False),
        }
    )
    if "inflight_answered" in container:
        answered, total = container["inflight_answered"], container["inflight_rounds"]
        killed = container.get("inflight_killed", 0)
        rows.append(
            {
                "goal": "a request in flight at `docker stop` is answered, then the container exits",
                "against": None,
                "kind": "count",
                "interval": None,
                "measured": f"{answered} of {total} answered" + (f", {killed} killed" if killed else ""),
                "verdict": intervals.MET if total and answered == total and not killed else intervals.NOT_MET,
            }
        )
    start = compare["start_s"]["vs_tiangolo"]
    rows.append(
        {
            "goal": "start to first 200 <= tiangolo's start script",
            "against": START_REFERENCE,
            "kind": "ratio",
            "interval": start,
            "verdict": intervals.verdict(start, 1.0, False),
        }
    )
    return rows


# ---- formatting


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def ratio_cell(interval: dict | None) -> str:
    """``1.04x [0.98, 1.10]``: the ratio of the medians and its 95 % bootstrap interval."""
    if interval is None:
        return "n/a"
    if interval["rounds"] < 2:
        return _x(interval["ratio"])
    return f"{interval['ratio']:.2f}x [{interval['low']:.2f}, {interval['high']:.2f}]"


def value_cell(interval: dict | None, digits: int = 2, scale: float = 1.0) -> str:
    """``2,342 (2,300-2,400)``: the median and the per-round range."""
    if interval is None:
        return "n/a"
    median = _num(interval["median"] / scale, digits)
    if interval["rounds"] < 2:
        return median
    return f"{median} ({_num(interval['min'] / scale, digits)}-{_num(interval['max'] / scale, digits)})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def host_probe_line(probes: list[float] | None) -> list[str]:
    """The host's speed over the run, to compare runs: a slower host shows here, not in other CPU %."""
    if not probes:
        return []
    return [
        f"- Host probe (a fixed Python loop, idle, before each server of each round; lower is faster):"
        f" median {statistics.median(probes):.1f} ms, {min(probes):.1f} to {max(probes):.1f} ms over"
        f" {len(probes)} probes. Compare it between runs: a run whose median is well above another's ran"
        " on a slower host, and its figures compare with each other, not with that run's. Within this"
        " run, a probe far above the others marks a slow spell: the rounds measured then move the"
        " intervals, not the medians."
    ]


def goal_rows(results: dict) -> list[list[str]]:
    rows = []
    for goal in results.get("goals", []):
        interval = goal["interval"]
        if goal["kind"] == "ratio":
            measured = ratio_cell(interval)
            spread = "n/a" if interval is None else f"{interval['min']:.2f}-{interval['max']:.2f}"
        elif goal["kind"] == "seconds":
            if interval is None:
                measured = spread = "n/a"
            else:
                measured = f"{interval['median']:.3f} s [{interval['low']:.3f}, {interval['high']:.3f}]"
                spread = f"{interval['min']:.3f}-{interval['max']:.3f} s"
        else:
            measured, spread = goal["measured"], ""
        rows.append([goal["goal"], goal["against"] or "", measured, spread, f"**{goal['verdict']}**"])
    return rows


def host(machine: dict) -> str:
    return (
        f"{machine['cpus']} CPUs usable ({machine['cpu_model']}), {machine['memory_gib']:.0f} GiB,"
        f" kernel {machine['kernel']}, Python {machine['python']}"
    )


def probe_median(probes: list[float] | None) -> str:
    return f" (host probe: median {statistics.median(probes):.1f} ms)" if probes else ""


def markdown(results: dict) -> str:
    machine, settings, servers = results["machine"], results["settings"], results["servers"]
    load_average = (
        f"load average at the start {machine['loadavg_start']}, at the end {machine.get('loadavg_end')}"
    )
    paths = ", ".join(f"`GET {path}`" for path in settings["paths"])
    out = [
        f"# Benchmark, {results['date']}",
        "",
        f"- Machine: {host(machine)}; {load_average}.",
        f"- Command: `{results['command']}` (repository at {results['git']}).",
        f"- Every server: `app.main:app`, {settings['workers']} workers, on 127.0.0.1; measured one after"
        f" the other, in {settings.get('rounds', 1)} interleaved round(s) (each round starts with another"
        " server); each figure is the median of the rounds (socket errors and non-2xx: their sum)."
        f" wrk runs on the same {machine['cpus']} cores as the servers, so the figures compare"
        " servers on this machine; they are not a server's capacity.",
        f"- Load: {paths}, each with `wrk -t2 -c<C> -d{settings['duration_s']}s --latency` (-t1 at C=1) after"
        f" a {settings['warmup_s']} s warm-up at the same concurrency. Socket errors are wrk's connect, read,"
        ' write and timeout errors; non-2xx is wrk\'s "Non-2xx or 3xx responses" (status >= 400).',
        "- Each server's output goes to a log file in `raw/`; access logs are written by ours, tiangolo,"
        " uvicorn-worker and fastapi-run; uvicorn runs with `--no-access-log`, granian logs no access by"
        " default.",
        "- Ratios: the server's median divided by the other's, with `[low, high]` its 95 % bootstrap"
        f" interval ({intervals.RESAMPLES} resamples of the rounds, the same rounds for both servers;"
        " seeded). The best peer of a level is the peer (every server but ours and its variants) with the"
        " highest median requests/s (the lowest median p99, the quickest start or stop) in this run. A"
        f" goal is **met** when its whole interval is on the good side of the target, **within noise**"
        " when the interval straddles it, **not met** otherwise; with fewer than"
        f" {intervals.MIN_ROUNDS} rounds it is not judged. Values: median (lowest-highest round).",
        "- Other CPU %: the share of the machine's CPU time that anything but the server, wrk and this"
        " harness used during the measured run. A few percent (kernel networking, the Docker daemon) is"
        " the idle baseline; much more means another job disturbed that figure: rerun it.",
        *host_probe_line(results.get("host_probe_ms")),
        "",
        "| server | command | version |",
        "|---|---|---|",
    ]
    for name, server in servers.items():
        variables = " ".join(f"{key}={value}" for key, value in server.get("variables", {}).items())
        command = f"{variables} {server.get('command', server['description'])}".strip()
        command = command.replace(results["repo"], "<repo>")
        out.append(f"| {name} | `{command}` | {server['version']} |")
    out.append("")
    for name, reason in results.get("skipped", {}).items():
        out += [f"**{name} skipped**: {reason}", ""]
    if results.get("pinned_fallback"):
        out += [f"ours-pinned: the launcher's own line in that venv: {results['pinned_fallback']}", ""]
    for name, server in servers.items():
        if server.get("error"):
            out += [f"**{name} failed**: {server['error']}", ""]

    if results.get("goals"):
        out += [f"## Goals of the performance issue, for `{GOAL_SERVER}` (access log and metrics on)", ""]
        probe = probe_median(results.get("host_probe_ms"))
        out += [f"Run of {results['date']} on {host(machine)}{probe}.", ""]
        out += _table(
            ["goal", "against", "measured [95 % interval]", "per-round range", "verdict"], goal_rows(results)
        )
        out += [NARROWING, ""]

    for path in settings["paths"]:
        for level in map(str, settings["concurrency"]):
            rows = []
            best = results.get("best_peer", {}).get("paths", {}).get(path, {}).get(level, {})
            for name, server in servers.items():
                figures = server.get("paths", {}).get(path, {}).get(level)
                compare = server.get("compare", {}).get("paths", {}).get(path, {}).get(level)
                if not figures or not compare:
                    rows.append([name] + ["n/a"] * 9)
                    continue
                rps, p50, p99 = compare["requests_per_s"], compare["p50_ms"], compare["p99_ms"]
                rows.append(
                    [
                        name,
                        value_cell(rps["value"], 0),
                        ratio_cell(rps["vs_best"]),
                        ratio_cell(rps["vs_uvicorn"]),
                        _num(p50["value"]["median"]) if p50["value"] else "n/a",
                        value_cell(p99["value"]),
                        ratio_cell(p99["vs_best"]),
                        str(figures["socket_errors_total"]),
                        str(figures["non_2xx"]),
                        _num(figures.get("other_cpu_percent"), 0),
                    ]
                )
            out += [
                f"## `GET {path}`, concurrency {level}",
                "",
                f"Best peer: {best.get('requests_per_s')} (requests/s), {best.get('p99_ms')} (p99).",
                "",
            ]
            header = ["server", "requests/s", "vs best peer", "vs uvicorn", "p50 ms", "p99 ms", "p99 vs best"]
            out += _table([*header, "socket errors", "non-2xx", "other CPU %"], rows)

    rows = []
    for name, server in servers.items():
        compare = server.get("compare")
        if not compare:
            rows.append([name] + ["n/a"] * 8)
            continue
        stop = value_cell(compare["stop_s"]["value"], 3)
        if server.get("stop_ok") is False:
            stop += " (killed)"
        rows.append(
            [
                name,
                value_cell(compare["start_s"]["value"], 3),
                ratio_cell(compare["start_s"]["vs_tiangolo"]),
                stop,
                ratio_cell(compare["stop_s"]["vs_best"]),
                value_cell(compare["rss_bytes"]["value"], 1, MB),
                ratio_cell(compare["rss_bytes"]["vs_uvicorn"]),
                value_cell(compare["pss_bytes"]["value"], 1, MB),
                str(server.get("memory", {}).get("processes", "n/a")),
            ]
        )
    out += ["## Start, stop, memory", ""]
    out += [
        "Start: spawn to the first 200 on `/` (ours through scripts/start.sh, with its settings check and"
        " the pre-start script; tiangolo through benchmarks/tiangolo_start.sh, a stand-in for his"
        " start.sh that sources the same pre-start script). Stop: SIGTERM to the leader, idle (1 s after"
        " the load), until it and all its descendants are gone. Memory: the whole process tree after the"
        " load; RSS counts pages shared by forked workers once per process, PSS splits them.",
        "",
        f"Best peer: start {results.get('best_peer', {}).get('start_s')},"
        f" stop {results.get('best_peer', {}).get('stop_s')}.",
        "",
    ]
    header = ["server", "start s", "vs tiangolo", "idle stop s", "vs best peer", "RSS MiB", "vs uvicorn"]
    out += _table([*header, "PSS MiB", "processes"], rows)

    rows = []
    for name, server in servers.items():
        inflight = server.get("compare", {}).get("inflight")
        if not inflight:
            continue
        failures = [
            m["inflight"].get("failure", "") for m in results["rounds"].get(name, []) if "inflight" in m
        ]
        failures = "; ".join(sorted({f for f in failures if f}))
        rows.append(
            [
                name,
                f"{inflight['rounds'] - inflight['failures']} of {inflight['rounds']}"
                + (f", {inflight['killed']} killed" if inflight.get("killed") else ""),
                value_cell(inflight["stop_s"], 3),
                value_cell(inflight["exit_after_answer_s"], 3),
                failures,
            ]
        )
    out += ["## Stop with a request in flight", ""]
    out += [
        f"Each round starts each server once more, on benchmarks/payload_app.py, opens `GET"
        f" /slow/{results['settings'].get('inflight_hold_ms')}` (a streamed answer: a first chunk at once,"
        " the rest after the hold) once every worker is up and idle, sends SIGTERM as soon as the first"
        " chunk has arrived, and checks that the whole answer arrives and that the server then exits"
        f" by itself (else it is killed after {results['settings'].get('stop_deadline_s', 30):g} s and"
        " counted). Exit after the answer: from the answer's last byte to the exit of the last process,"
        " the part of the stop that is not the request's own time.",
        "",
    ]
    header = ["server", "answered", "SIGTERM to exit s", "exit after the answer s", "failures"]
    out += _table(header, rows)
    out += container_markdown(results["container"])
    return "\n".join(out)


def container_markdown(container: dict) -> list[str]:
    out = ["## Container (this project's image, target `app`)", ""]
    if "skipped" in container:
        return [*out, f"Skipped: {container['skipped']}.", ""]
    if container.get("error"):
        out += [f"**Failed**: {container['error']}", ""]
    rows = [["engine, base image", f"Docker {container['engine']}, `{container['python_image']}`"]]
    if "image_bytes" in container:
        above = container["above_base_bytes"] / 1e6
        rows.append(
            ["image size", f"{container['image_bytes'] / 1e6:.1f} MB total, {above:.1f} MB above the base"]
        )
    if "cold_build_s" in container:
        note = f"`--no-cache`: no layer reused; pip cache mount {container['pip_cache']}"
        rows.append(["cold build", f"{container['cold_build_s']:.1f} s ({note})"])
    if "rebuild_s" in container:
        ran = ", ".join(f"`{step}`" for step in container["rebuild_ran"]) or "nothing"
        share = 100 * container["rebuild_vs_cold"]
        rows.append(
            [
                "rebuild after an `app/` change",
                f"{container['rebuild_s']:.2f} s ({share:.1f} % of the cold build; ran {ran})",
            ]
        )
    if "run_to_first_200" in container:
        rows.append(["`docker run` to first 200", value_cell(container["run_to_first_200"], 2) + " s"])
    if "run_to_healthy_s" in container:
        rows.append(
            [
                "`docker run` to healthy",
                f"{container['run_to_healthy_s']:.2f} s (the image's healthcheck: 5 s interval)",
            ]
        )
    if "wrk_c64" in container:
        w = container["wrk_c64"]
        rows.append(
            [
                "wrk -c64, published on 127.0.0.1",
                f"{w['requests_per_s']:,.0f} requests/s, p50 {w['p50_ms']:.2f} ms, p99 {w['p99_ms']:.2f} ms, "
                f"{w['socket_errors_total']} socket errors, {w['non_2xx']} non-2xx"
                f" ({container['workers']} workers, the image's default count; access log to `docker logs`)",
            ]
        )
    if "stop" in container:
        stop = container["stop"]
        codes = ", ".join(str(code) for code in sorted(set(container.get("exit_codes", []))))
        rows.append(
            [
                "`docker stop`, idle",
                f"{stop['median']:.3f} s [{stop['low']:.3f}, {stop['high']:.3f}], rounds"
                f" {stop['min']:.3f}-{stop['max']:.3f} s ({stop['rounds']} runs; exit codes {codes})",
            ]
        )
    if "inflight_rounds" in container:
        rows.append(
            [
                "`docker stop` with a request in flight",
                f"{container['inflight_answered']} of {container['inflight_rounds']} answered; stop "
                + value_cell(container.get("inflight_stop"), 3)
                + " s; exit after the answer "
                + value_cell(container.get("inflight_exit_after_answer"), 3)
                + " s"
                + (
                    f"; failures: {'; '.join(container['inflight_failures'])}"
                    if container.get("inflight_failures")
                    else ""
                ),
            ]
        )
    return out + _table(["what", "figure"], rows)


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = results["settings"]["concurrency"]
    paths = results["settings"]["paths"]
    figure, axes = plt.subplots(len(paths), 2, figsize=(12, 4.6 * len(paths)), squeeze=False)
    for row, request_path in enumerate(paths):
        throughput, p99 = axes[row]
        for name, server in results["servers"].items():
            compare = server.get("compare", {}).get("paths", {}).get(request_path, {})
            measured = [level for level in levels if compare.get(str(level))]
            for axis, key in ((throughput, "requests_per_s"), (p99, "p99_ms")):
                values = [compare[str(level)][key]["value"] for level in measured]
                medians = [v["median"] for v in values]
                errors = [
                    [m - v["min"] for m, v in zip(medians, values, strict=True)],
                    [v["max"] - m for m, v in zip(medians, values, strict=True)],
                ]
                axis.errorbar(measured, medians, yerr=errors, marker="o", capsize=3, label=name)
        for axis, title, unit in ((throughput, "Requests/s", "requests/s"), (p99, "p99 latency", "ms")):
            axis.set_xscale("log", base=2)
            axis.set_xticks(levels, [str(level) for level in levels])
            axis.set_xlabel("concurrent connections (wrk -c)")
            axis.set_ylabel(unit)
            axis.set_title(f"{title}, GET {request_path}")
            axis.grid(True, alpha=0.3)
        p99.set_yscale("log")
        throughput.set_ylim(bottom=0)
        throughput.legend(fontsize="small")
    machine = results["machine"]
    figure.suptitle(
        f"app.main:app, {results['settings']['workers']} workers each, {machine['cpus']} CPUs shared with"
        f" wrk; medians of {results['settings']['rounds']} rounds, bars: lowest-highest round"
        f" ({results['date']})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
