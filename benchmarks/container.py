"""Container figures for this project's image (target `app`): size, builds, run to healthy, load, stop.

After the builds, one container is run to healthy and loaded with wrk; then ``repeats`` containers
are run to their first 200 and stopped idle with `docker stop`, and as many containers of an image
derived from it with benchmarks/payload_app.py as its app are stopped while they stream an answer,
which must arrive whole.

Everything it creates (images, containers, a temporary build context) is removed before it returns.
It never prunes the builder cache: that would disturb other work on the machine.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import intervals
import load
from servers import HOST, REPO, InFlight, free_port, status_of
from support.dockercli import (
    PYTHON_IMAGES,
    build_env,
    builder,
    docker,
    engine_error,
    first_image,
    rebuilt_steps,
)

HEALTHY_DEADLINE = 120  # the image's start period is 60 s
FIRST_200_DEADLINE = 60
INFLIGHT_HOLD_MS = 300


def python_image(requested: str | None) -> str | None:
    return first_image([requested] if requested else PYTHON_IMAGES)


def build(context: Path, tag: str, base: str, log: Path, extra: tuple[str, ...] = ()) -> tuple[float, str]:
    argv = [*builder(), "--progress=plain", "--target", "app", "--build-arg", f"PYTHON_IMAGE={base}"]
    argv += ["-t", tag, *extra, str(context)]
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1800, env=build_env())
    seconds = time.perf_counter() - started
    output = result.stdout + result.stderr
    log.write_text(f"$ {' '.join(argv)}\n{output}")
    if result.returncode != 0:
        raise RuntimeError(f"build of {tag} failed ({result.returncode}); see {log}")
    return seconds, output


def pip_cache(output: str) -> str:
    """Whether the pip cache mount was warm, read from pip's own lines in the build output."""
    cached = len(re.findall(r"Using cached ", output))
    downloaded = len(re.findall(r"Downloading ", output))
    if cached and not downloaded:
        return f"warm ({cached} packages from the cache)"
    if downloaded and not cached:
        return f"cold ({downloaded} packages downloaded)"
    return f"partly warm ({cached} from the cache, {downloaded} downloaded)"


def size(image: str) -> int:
    return int(docker("image", "inspect", "-f", "{{.Size}}", image).stdout)


def health(container: str) -> str | None:
    out = docker("inspect", "-f", "{{json .State.Health}}", container).stdout
    state = json.loads(out)
    return state["Status"] if state else None


def first_200(port: int, started: float, container: str) -> float:
    while True:
        elapsed = time.perf_counter() - started
        if status_of(port, timeout=0.5) == 200:
            return elapsed
        if elapsed > FIRST_200_DEADLINE:
            raise RuntimeError(f"{container}: no 200 within {FIRST_200_DEADLINE} s")
        time.sleep(0.01)


def stop(container: str) -> tuple[float, float, int]:
    """`docker stop`: (seconds, perf_counter when it was sent, the container's exit code)."""
    sent = time.perf_counter()
    docker("stop", container, timeout=60)
    seconds = time.perf_counter() - sent
    code = json.loads(docker("inspect", "-f", "{{json .State.ExitCode}}", container).stdout)
    return seconds, sent, code


def measure(
    base_requested: str | None,
    raw: Path,
    warmup: int,
    duration: int,
    repeats: int = 1,
    payload: Path | None = None,
) -> dict:
    error = engine_error()
    if error:
        return {"skipped": error}
    base = python_image(base_requested)
    if base is None:
        wanted = base_requested or "python:3.13-slim or local/python:3.13-slim"
        return {"skipped": f"no base image {wanted} (scripts/build-base-image.sh builds the local one)"}

    name = f"asgi-bench-{uuid.uuid4().hex[:8]}"
    cold_tag, rebuild_tag, payload_tag = f"{name}:cold", f"{name}:rebuild", f"{name}:payload"
    result: dict = {"engine": docker("info", "-f", "{{.ServerVersion}}").stdout.strip(), "python_image": base}
    made_images: list[str] = []
    containers: list[str] = []
    context = Path(tempfile.mkdtemp(prefix="asgi-bench-context-"))

    def run(image: str, suffix: str) -> tuple[str, int, float]:
        container, port = f"{name}-{suffix}", free_port()
        containers.append(container)
        started = time.perf_counter()
        docker("run", "-d", "--name", container, "-p", f"{HOST}:{port}:80", image)
        return container, port, started

    try:
        # Both builds use one snapshot of the repository, so that an edit made meanwhile in the work
        # tree cannot change what the rebuild has to redo.
        ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*_cache", "*.egg-info", "results")
        shutil.copytree(REPO, context, dirs_exist_ok=True, ignore=ignore)
        print("   cold build (--no-cache)", flush=True)
        made_images.append(cold_tag)
        seconds, output = build(context, cold_tag, base, raw / "build-cold.log", ("--no-cache",))
        result["cold_build_s"] = seconds
        result["pip_cache"] = pip_cache(output)
        result["image_bytes"], result["base_bytes"] = size(cold_tag), size(base)
        result["above_base_bytes"] = result["image_bytes"] - result["base_bytes"]

        print("   rebuild after an app/ change", flush=True)
        with (context / "app" / "main.py").open("a") as main:
            main.write(f"\n# changed by the benchmark ({name})\n")
        made_images.append(rebuild_tag)
        seconds, output = build(context, rebuild_tag, base, raw / "build-rebuild.log")
        result["rebuild_s"] = seconds
        result["rebuild_vs_cold"] = seconds / result["cold_build_s"]
        result["rebuild_ran"] = rebuilt_steps(output)

        print("   docker run to healthy", flush=True)
        container, port, started = run(cold_tag, "healthy")
        first_200_s = healthy = None
        while first_200_s is None or healthy is None:
            elapsed = time.perf_counter() - started
            if first_200_s is None and status_of(port, timeout=0.5) == 200:
                first_200_s = elapsed
            if healthy is None:
                status = health(container)
                if status == "healthy":
                    healthy = elapsed
                elif status == "unhealthy" or elapsed > HEALTHY_DEADLINE:
                    raise RuntimeError(f"container not healthy after {elapsed:.0f} s ({status})")
            time.sleep(0.05)
        result["run_to_healthy_s"] = healthy
        first_200s = [first_200_s]
        logs = docker("logs", container).stdout
        startup = [line for line in logs.splitlines() if line.startswith('{"loglevel"')]
        result["workers"] = json.loads(startup[-1])["workers"] if startup else None

        print("   wrk -c64 against the container", flush=True)
        url = f"http://{HOST}:{port}/"
        if warmup:
            load.wrk(url, 64, warmup)
        result["wrk_c64"] = load.wrk(url, 64, duration, raw / "wrk-container-c64.txt")

        time.sleep(1)  # idle
        stops, codes = [], []
        seconds, _, code = stop(container)
        stops.append(seconds)
        codes.append(code)
        for number in range(2, repeats + 1):
            container, port, started = run(cold_tag, f"r{number}")
            first_200s.append(first_200(port, started, container))
            time.sleep(1)  # idle
            seconds, _, code = stop(container)
            stops.append(seconds)
            codes.append(code)
        print(f"   docker stop, idle: {', '.join(f'{s:.3f}' for s in stops)} s", flush=True)
        result["run_to_first_200"] = intervals.value(first_200s)
        result["run_to_first_200_s"] = result["run_to_first_200"]["median"]
        result["stop"] = intervals.value(stops)
        result["stop_s"], result["stop_all_s"], result["exit_codes"] = result["stop"]["median"], stops, codes
        result["exit_code"] = codes[0]

        if payload is not None:
            print("   docker stop with a request in flight", flush=True)
            derived = context / "payload-image"
            derived.mkdir()
            shutil.copyfile(payload / "app" / "main.py", derived / "main.py")
            (derived / "Dockerfile").write_text(f"FROM {cold_tag}\nCOPY main.py /app/app/main.py\n")
            made_images.append(payload_tag)
            argv = [*builder(), "-t", payload_tag, str(derived)]
            built = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=build_env())
            if built.returncode != 0:
                raise RuntimeError(f"build of {payload_tag} failed: {built.stderr.strip()[-500:]}")
            outcomes = []
            for number in range(1, repeats + 1):
                container, port, started = run(payload_tag, f"inflight{number}")
                first_200(port, started, container)
                request = InFlight(port, INFLIGHT_HOLD_MS)
                if not request.wait_started():
                    request.finish(1)
                    outcomes.append({"answered": False, "failure": f"never started: {request.error}"})
                    continue
                seconds, sent, code = stop(container)
                request.finish(30)
                outcome = request.outcome(sent, sent + seconds)
                outcome.update(stop_s=seconds, exit_code=code)
                outcomes.append(outcome)
            answered = [o for o in outcomes if o["answered"]]
            result["inflight"] = outcomes
            result["inflight_rounds"], result["inflight_answered"] = len(outcomes), len(answered)
            # Docker kills what has not exited 10 s after `docker stop`: exit code 137.
            result["inflight_killed"] = sum(1 for o in outcomes if o.get("exit_code") == 137)
            result["inflight_failures"] = sorted({o["failure"] for o in outcomes if not o["answered"]})
            result["inflight_stop"] = intervals.value([o["stop_s"] for o in answered])
            result["inflight_exit_after_answer"] = intervals.value(
                [o["exit_after_answer_s"] for o in answered]
            )
            print(f"   answered {len(answered)} of {len(outcomes)}", flush=True)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as failure:
        result["error"] = str(failure)
    finally:
        if containers:
            logs = docker("logs", containers[0], check=False)
            (raw / "container.log").write_text(logs.stdout + logs.stderr)
        for container in containers:
            docker("rm", "-f", "-v", container, check=False)
        for image in made_images:
            docker("image", "rm", image, check=False)
        shutil.rmtree(context, ignore_errors=True)
    return result
