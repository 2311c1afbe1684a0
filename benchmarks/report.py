"""results.md and chart.png from the results dictionary that run.py also writes as results.json."""

from __future__ import annotations

import statistics
from pathlib import Path

REFERENCE = "uvicorn"
MB = 1024 * 1024


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference


def add_ratios(results: dict) -> None:
    """Every figure of every server divided by the same figure of uvicorn from the same run."""
    reference = results["servers"].get(REFERENCE)
    for server in results["servers"].values():
        if reference is None:
            server["vs_uvicorn"] = None
            continue
        vs = {key: ratio(server.get(key), reference.get(key)) for key in ("start_s", "stop_s")}
        for key in ("rss_bytes", "pss_bytes"):
            vs[key] = ratio(server.get("memory", {}).get(key), reference.get("memory", {}).get(key))
        vs["levels"] = {}
        for level, figures in server.get("levels", {}).items():
            ref = reference.get("levels", {}).get(level, {})
            vs["levels"][level] = {
                k: ratio(figures.get(k), ref.get(k)) for k in ("requests_per_s", "p50_ms", "p99_ms")
            }
        server["vs_uvicorn"] = vs


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


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
        " on a slower host, and its figures compare with each other, not with that run's."
    ]


def markdown(results: dict) -> str:
    machine, settings, servers = results["machine"], results["settings"], results["servers"]
    load_average = f"load average at the start {machine['loadavg_start']}"
    out = [
        f"# Benchmark, {results['date']}",
        "",
        f"- Machine: {machine['cpus']} CPUs usable ({machine['cpu_model']}), {machine['memory_gib']:.0f} GiB,"
        f" kernel {machine['kernel']}, Python {machine['python']}; {load_average}.",
        f"- Command: `{results['command']}` (repository at {results['git']}).",
        f"- Every server: `app.main:app`, {settings['workers']} workers, on 127.0.0.1; measured one after"
        f" the other, in {settings.get('rounds', 1)} interleaved round(s); each figure is the median of"
        " the rounds (socket errors and non-2xx: their sum)."
        f" wrk runs on the same {machine['cpus']} cores as the servers, so the figures compare"
        " servers on this machine; they are not a server's capacity.",
        f"- Load: `wrk -t2 -c<C> -d{settings['duration_s']}s --latency` (-t1 at C=1) on `GET /`, after a "
        f"{settings['warmup_s']} s warm-up at the same concurrency. Socket errors are wrk's connect, read, "
        'write and timeout errors; non-2xx is wrk\'s "Non-2xx or 3xx responses" (status >= 400).',
        "- Each server's output goes to a log file in `raw/` (the same for all); access logs are written"
        " by ours, tiangolo and fastapi-run; uvicorn runs with `--no-access-log`, granian logs no access"
        " by default.",
        "- Ratios are the server's figure divided by uvicorn's from this run: above 1 means more requests/s, "
        "or more latency, time or memory.",
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
    for name, server in servers.items():
        if server.get("error"):
            out += [f"**{name} failed**: {server['error']}", ""]

    for level in settings["concurrency"]:
        rows = []
        for name, server in servers.items():
            figures = server.get("levels", {}).get(str(level))
            if not figures:
                rows.append([name] + ["n/a"] * 9)
                continue
            vs = (server.get("vs_uvicorn") or {}).get("levels", {}).get(str(level), {})
            rows.append(
                [
                    name,
                    _num(figures["requests_per_s"], 0),
                    _x(vs.get("requests_per_s")),
                    _num(figures["p50_ms"]),
                    _x(vs.get("p50_ms")),
                    _num(figures["p99_ms"]),
                    _x(vs.get("p99_ms")),
                    str(figures["socket_errors_total"]),
                    str(figures["non_2xx"]),
                    _num(figures.get("other_cpu_percent"), 0),
                ]
            )
        out += [f"## Concurrency {level}", ""]
        header = ["server", "requests/s", "vs uvicorn", "p50 ms", "vs uvicorn", "p99 ms", "vs uvicorn"]
        out += _table([*header, "socket errors", "non-2xx", "other CPU %"], rows)

    rows = []
    for name, server in servers.items():
        vs = server.get("vs_uvicorn") or {}
        memory = server.get("memory", {})
        stop = _num(server.get("stop_s"))
        if server.get("stop_ok") is False:
            stop += " (killed)"
        rows.append(
            [
                name,
                _num(server.get("start_s")),
                _x(vs.get("start_s")),
                stop,
                _x(vs.get("stop_s")),
                _num(memory["rss_bytes"] / MB, 1) if memory else "n/a",
                _x(vs.get("rss_bytes")),
                _num(memory["pss_bytes"] / MB, 1) if memory else "n/a",
                str(memory.get("processes", "n/a")),
            ]
        )
    out += ["## Start, stop, memory", ""]
    out += [
        "Start: spawn to the first 200 on `/`. Stop: SIGTERM to the leader, idle, until it and all its "
        "descendants are gone. Memory: the whole process tree after the load; RSS counts pages shared by "
        "forked workers once per process, PSS splits them.",
        "",
    ]
    header = ["server", "start s", "vs uvicorn", "stop s", "vs uvicorn", "RSS MiB", "vs uvicorn", "PSS MiB"]
    out += _table([*header, "processes"], rows)
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
    if "run_to_healthy_s" in container:
        rows.append(["`docker run` to first 200", f"{container['run_to_first_200_s']:.2f} s"])
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
    if "stop_s" in container:
        rows.append(
            ["`docker stop`, idle", f"{container['stop_s']:.2f} s (exit code {container['exit_code']})"]
        )
    return out + _table(["what", "figure"], rows)


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = results["settings"]["concurrency"]
    figure, (throughput, p99) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, server in results["servers"].items():
        measured = [level for level in levels if str(level) in server.get("levels", {})]
        figures = [server["levels"][str(level)] for level in measured]
        throughput.plot(measured, [f["requests_per_s"] for f in figures], marker="o", label=name)
        p99.plot(measured, [f["p99_ms"] for f in figures], marker="o", label=name)
    for axes, title, unit in ((throughput, "Requests/s", "requests/s"), (p99, "p99 latency", "ms")):
        axes.set_xscale("log", base=2)
        axes.set_xticks(levels, [str(level) for level in levels])
        axes.set_xlabel("concurrent connections (wrk -c)")
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
    p99.set_yscale("log")
    throughput.set_ylim(bottom=0)
    throughput.legend()
    machine = results["machine"]
    figure.suptitle(
        f"GET / of app.main:app, {results['settings']['workers']} workers each, "
        f"{machine['cpus']} CPUs shared with wrk ({results['date']})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
