"""examples/poetry-uv: the same image built from pyproject.toml plus poetry.lock or uv.lock."""

from __future__ import annotations

import pytest
from support.dockerutil import build, remove_image, unique
from support.proc import REPO

EXAMPLE = REPO / "examples" / "poetry-uv"


@pytest.mark.parametrize("tool", ["poetry", "uv"])
def test_locked_build_serves_the_seed_app(images, run_container, tool):
    tag = f"{unique(tool)}:latest"
    try:
        build(
            tag,
            context=EXAMPLE,
            dockerfile=str(EXAMPLE / f"Dockerfile.{tool}"),
            extra=["--build-arg", f"BASE_IMAGE={images['base']}"],
        )
        c = run_container(tag)
        assert c.wait_ready().json() == {"Hello": "World"}
        assert c.get("/items/5?q=somequery").json() == {"item_id": 5, "q": "somequery"}
        assert "Using worker: asgi_launcher.workers.UvicornWorker" in c.logs()
    finally:
        remove_image(tag)


def test_the_lock_files_pin_what_pyproject_asks_for():
    pyproject = (EXAMPLE / "pyproject.toml").read_text()
    assert 'dependencies = [\n    "fastapi>=0.163,<0.164",\n]' in pyproject
    for lock in ("poetry.lock", "uv.lock"):
        text = (EXAMPLE / lock).read_text()
        assert 'name = "fastapi"\nversion = "0.163.2"' in text, lock
