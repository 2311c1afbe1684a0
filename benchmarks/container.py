"""Container figures for this project's image (target `app`): size, builds, run to healthy, load, stop.

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

import load
from dockercli import PYTHON_IMAGES, build_env, builder, docker, engine_error, first_image, rebuilt_steps
from servers import HOST, REPO, free_port, status_of

HEALTHY_DEADLINE = 120  # the image's start period is 60 s


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


def measure(base_requested: str | None, raw: Path, warmup: int, duration: int) -> dict:
    error = engine_error()
    if error:
        return {"skipped": error}
    base = python_image(base_requested)
    if base is None:
        wanted = base_requested or "python:3.13-slim or local/python:3.13-slim"
        return {"skipped": f"no base image {wanted} (scripts/build-base-image.sh builds the local one)"}

    name = f"asgi-bench-{uuid.uuid4().hex[:8]}"
    cold_tag, rebuild_tag = f"{name}:cold", f"{name}:rebuild"
    result: dict = {"engine": docker("info", "-f", "{{.ServerVersion}}").stdout.strip(), "python_image": base}
    made_images: list[str] = []
    started_container = False
    context = Path(tempfile.mkdtemp(prefix="asgi-bench-context-"))
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
        port = free_port()
        started = time.perf_counter()
        started_container = True
        docker("run", "-d", "--name", name, "-p", f"{HOST}:{port}:80", cold_tag)
        first_200 = healthy = None
        while first_200 is None or healthy is None:
            elapsed = time.perf_counter() - started
            if first_200 is None and status_of(port, timeout=0.5) == 200:
                first_200 = elapsed
            if healthy is None:
                status = health(name)
                if status == "healthy":
                    healthy = elapsed
                elif status == "unhealthy" or elapsed > HEALTHY_DEADLINE:
                    raise RuntimeError(f"container not healthy after {elapsed:.0f} s ({status})")
            time.sleep(0.05)
        result["run_to_first_200_s"], result["run_to_healthy_s"] = first_200, healthy
        logs = docker("logs", name).stdout
        startup = [line for line in logs.splitlines() if line.startswith('{"loglevel"')]
        result["workers"] = json.loads(startup[-1])["workers"] if startup else None

        print("   wrk -c64 against the container", flush=True)
        url = f"http://{HOST}:{port}/"
        if warmup:
            load.wrk(url, 64, warmup)
        result["wrk_c64"] = load.wrk(url, 64, duration, raw / "wrk-container-c64.txt")

        time.sleep(1)  # idle
        stop_started = time.perf_counter()
        docker("stop", name, timeout=60)
        result["stop_s"] = time.perf_counter() - stop_started
        result["exit_code"] = json.loads(docker("inspect", "-f", "{{json .State.ExitCode}}", name).stdout)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as failure:
        result["error"] = str(failure)
    finally:
        if started_container:
            logs = docker("logs", name, check=False)
            (raw / "container.log").write_text(logs.stdout + logs.stderr)
            docker("rm", "-f", "-v", name, check=False)
        for image in made_images:
            docker("image", "rm", image, check=False)
        shutil.rmtree(context, ignore_errors=True)
    return result
