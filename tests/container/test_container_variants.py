"""Every tag: the Python it names, compilers only in the full ones, the lock whole, the commands that
derived Dockerfiles run as root; the doctor naming the right tag when a project is built on the wrong
one; and the arm64 variant under emulation."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from support.apps import CORPUS, TIANGOLO_FROM
from support.dockerutil import APP_UID, DEFAULT_TAG, build, docker, remove_image, unique, variants
from support.files import write
from support.proc import REPO

# What derived Dockerfiles run as root, each in the form found in projects written for his image.
ROOT_COMMANDS = """\
RUN adduser --system --group --uid 4321 web \\
    && addgroup --system extra && adduser web extra \\
    && useradd --create-home --uid 4322 worker \\
    && apt-get update && apt-get install -y --no-install-recommends jq && rm -rf /var/lib/apt/lists/* \\
    && mkdir -p /srv/data && chown web:extra /srv/data && chmod 2770 /srv/data
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt \\
    && pip install --no-cache-dir --user six==1.17.0
COPY ./app /app
"""
VARIANT_APP = """\
import os
import shutil
import subprocess
import sys

import humanize
import six
from fastapi import FastAPI

app = FastAPI()


@app.get("/info")
def info():
    return {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "uid": os.getuid(),
        "gcc": shutil.which("gcc") is not None,
        "six": six.__file__,
        "size": humanize.naturalsize(2_000_000),
    }
"""


@pytest.mark.parametrize("tag", variants())
def test_every_tag_serves_and_takes_the_commands_derived_images_run(bases, run_container, tmp_path, tag):
    context = tmp_path / tag
    write(context / "requirements.txt", "humanize==4.17.0\n")
    write(context / "app" / "main.py", VARIANT_APP)
    write(context / "Dockerfile", f"FROM {bases(tag)}\n{ROOT_COMMANDS}")
    image = build(f"{unique('variant')}:latest", context=context, variant=tag)
    try:
        c = run_container(image)
        c.wait_ready("/info", timeout=120)
        info = c.get("/info").json()
        full = not tag.endswith("-slim")
        assert info["python"] == tag.removeprefix("python").removesuffix("-slim")
        assert info["uid"] == APP_UID
        assert info["gcc"] is full, "compilers in the full tags only"
        assert info["six"].startswith("/root/.local/lib/python")
        assert info["size"] == "2.0 MB"

        def run(*command: str):
            return docker("exec", "-u", "root", c.name, *command, check=False)

        assert run("id", "-u", "web").stdout.strip() == "4321"
        assert "extra" in run("id", "-nG", "web").stdout.split()
        assert run("id", "-u", "worker").stdout.strip() == "4322"
        assert run("jq", "--version").stdout.startswith("jq-")
        assert run("stat", "-c", "%U:%G %a", "/srv/data").stdout.strip() == "web:extra 2770"
        assert "No broken requirements found" in run("pip", "check").stdout
        make = run("make", "--version")
        if full:
            assert make.returncode == 0
            assert "GNU Make" in make.stdout
        else:
            # The slim tags have no make: the shell's error, then the tag that has it.
            assert make.returncode == 127
            assert "make: not found" in make.stderr
            assert f"python3.{info['python'].split('.')[1]} " in make.stderr.split("make: not found", 1)[1]
    finally:
        remove_image(image)


def build_failure(derived_context, tag: str, bases) -> str:
    """The output of a corpus project's build on a tag where it must fail."""
    dockerfile = (derived_context / "Dockerfile").read_text()
    (derived_context / "Dockerfile").write_text(TIANGOLO_FROM.sub(f"FROM {bases(tag)}", dockerfile, count=1))
    name = f"{unique('wrongtag')}:latest"
    try:
        with pytest.raises(AssertionError) as failed:
            build(name, context=derived_context, variant=tag)
    finally:
        remove_image(name)
    return str(failed.value)


def copy_project(name: str, tmp_path):
    context = tmp_path / name
    shutil.copytree(CORPUS / name, context)
    return context


def after(output: str, error: str) -> str:
    assert error in output, output[-3000:]
    return output[output.index(error) :]


def test_the_doctor_names_python_3_11_for_pins_without_wheels_for_3_13(bases, tmp_path):
    # The same project serves on python3.11 (the table's tag for his python3.10): the compat test.
    output = build_failure(copy_project("19-pins-from-python3.10", tmp_path), DEFAULT_TAG, bases)
    hint = after(output, "error")  # pip's own error comes first
    assert "HINT:" in hint, output[-3000:]
    assert "python3.11-slim" in hint.split("HINT:", 1)[1].splitlines()[0], output[-3000:]


def test_the_doctor_names_the_full_tag_when_make_is_missing(bases, tmp_path):
    # The same project serves on python3.11, the full tag: the compat test.
    output = build_failure(copy_project("20-make-c-extension", tmp_path), "python3.11-slim", bases)
    hint = after(output, "make: not found")
    assert "HINT:" in hint, output[-3000:]
    line = hint.split("HINT:", 1)[1].splitlines()[0]
    assert "python3.11 " in line or line.rstrip().endswith("python3.11"), line


def test_the_doctor_names_python_3_11_for_pydantic_1_on_3_13(derived, run_container):
    # pydantic 1.10.2 installs on 3.13 (pure Python) and fails when the app is imported.
    image = derived(CORPUS / "21-pydantic-v1", DEFAULT_TAG)
    c = run_container(image)
    c.wait_exit(timeout=120)
    logs = c.logs()
    hint = after(logs, "recursive_guard")
    assert "HINT:" in logs
    lines = [line for line in logs.splitlines() if "HINT:" in line]
    assert any("python3.11-slim" in line for line in lines), lines
    assert hint  # the error itself is in the log, not only the advice


ARM64 = os.environ.get("ARM64_VARIANTS", "").split()


@pytest.mark.skipif(
    not ARM64, reason="ARM64_VARIANTS is empty: scripts/test.sh sets it (qemu-user-static from Debian)"
)
@pytest.mark.parametrize("tag", ARM64)
@pytest.mark.timeout(3600)  # the whole build runs under qemu: about a quarter of an hour
def test_the_arm64_variant_builds_and_serves_under_emulation(run_container, tag):
    """`ARCH=arm64 scripts/build.sh TAG`, as the README gives it, then the image started under qemu."""
    repository = unique("arm64")
    image = f"{repository}:{tag}-arm64"
    try:
        built = subprocess.run(
            [str(REPO / "scripts" / "build.sh"), tag],
            env={**os.environ, "ARCH": "arm64", "IMAGE": repository},
            capture_output=True,
            text=True,
            timeout=3600,
        )
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        assert docker("image", "inspect", "-f", "{{.Architecture}}", image).stdout.strip() == "arm64"
        c = run_container(image)
        answer = c.wait_ready("/", timeout=600)
        assert "Using Python 3." in answer.json()["message"]
        assert docker("exec", c.name, "uname", "-m").stdout.strip() == "aarch64"
        # The server's processes (not the healthcheck's, which qemu makes slow enough to be seen).
        server = [row for row in c.processes() if "asgi_launcher gunicorn" in row["args"]]
        assert len(server) >= 2, server  # the master and its workers
        assert {row["uid"] for row in server} == {APP_UID}
    finally:
        remove_image(image)
