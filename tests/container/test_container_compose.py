"""docker compose with this repo's file, and the build cache, for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from support.dockercli import rebuilt_steps
from support.dockerutil import (
    COMPOSE,
    Container,
    build,
    compose,
    docker,
    layers,
    python_image,
    remove_image,
    unique,
)
from support.proc import REPO, free_port


@pytest.fixture
def project(engine):
    name = unique("compose")
    image = f"{name}:latest"
    port = free_port()
    env = {
        **os.environ,
        "PYTHON_IMAGE": python_image(),
        "IMAGE": image,
        "HOST_BIND": "127.0.0.1",
        "HOST_PORT": str(port),
        "WEB_CONCURRENCY": "3",
        "DOCKER_BUILDKIT": "1",
    }
    yield name, env, port
    subprocess.run(
        [COMPOSE, "-p", name, "-f", str(REPO / "docker-compose.yml"), "down", "-v", "--remove-orphans"],
        capture_output=True,
        env=env,
        timeout=120,
    )
    remove_image(image)


def test_compose_up_wait_serves_healthy_and_downs_promptly(project):
    name, env, port = project
    compose(name, "up", "-d", "--wait", "--build", env=env)
    container = Container.attach(compose(name, "ps", "-q", "app", env=env).stdout.strip(), port)
    assert container.inspect()["State"]["Health"]["Status"] == "healthy"
    assert container.get("/").json() == {"Hello": "World"}
    assert container.get("/items/5?q=somequery").json() == {"item_id": 5, "q": "somequery"}
    assert len(container.wait_workers(3)) == 3  # WEB_CONCURRENCY from the environment
    assert container.inspect()["HostConfig"]["ReadonlyRootfs"] is True
    started = time.monotonic()
    compose(name, "down", env=env)
    assert time.monotonic() - started < 10


def test_rebuild_after_an_app_change_reuses_the_dependency_layers(engine, tmp_path):
    context = tmp_path / "context"
    shutil.copytree(
        REPO, context, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info")
    )
    tag = f"{unique('cache')}:latest"
    first_image = tag
    try:
        build(tag, context=context)  # warm: the layer cache of this run or an earlier one
        before = layers(tag)
        first_image = docker("image", "inspect", "-f", "{{.Id}}", tag).stdout.strip()
        main = context / "app" / "main.py"
        changed = f"changed {tag}"  # unique, so that no earlier run has this app in the cache
        main.write_text(main.read_text().replace('{"Hello": "World"}', f'{{"Hello": "{changed}"}}'))
        build(tag, context=context)
        output = build.last_output
        # Only the app's COPY ran; every step below it, the venv included, came from the cache. (Not
        # compared by layer digest: after a --no-cache build, such as the benchmark's, the cache holds
        # two results of the same RUN step, and BuildKit may serve either.)
        assert rebuilt_steps(output) == ["[app 2/2] COPY app /app/app"], output
        after = layers(tag)
        assert len(after) == len(before)
        assert after[-1] != before[-1]
        c = Container(tag).start()
        try:
            assert c.wait_ready().json() == {"Hello": changed}
        finally:
            c.remove()
    finally:
        remove_image(tag)
        # Untagged by the rebuild, unless it is also another tag's image (the session's own build of
        # this context gives the same image), which must stay.
        tags = docker("image", "inspect", "-f", "{{len .RepoTags}}", first_image, check=False).stdout.strip()
        if tags == "0":
            remove_image(first_image)
