"""Host directories mounted into /app, the most common compose pattern for small apps (`./data:/app/data`
with SQLite or uploads): the start says when the app's user cannot write one, and never chowns it."""

from __future__ import annotations

import os

import pytest
from support.proc import wait_for


def host_directory(tmp_path, uid: int):
    """A host directory with a file in it (the host user's data), owned by ``uid``."""
    data = tmp_path / f"data-{uid}"
    data.mkdir()
    (data / "app.db").write_text("")
    for path in (data, data / "app.db"):
        os.chown(path, uid, uid)
    data.chmod(0o755)
    return data


@pytest.mark.parametrize(
    ("owner", "mode", "warned"),
    [(1000, "rw", True), (1000, "ro", False), (10001, "rw", False)],
    ids=["host user's", "read-only", "the app user's"],
)
def test_a_mount_the_app_cannot_write_is_said_at_start(images, run_container, tmp_path, owner, mode, warned):
    data = host_directory(tmp_path, owner)
    c = run_container(images["app"], args=["-v", f"{data}:/app/data:{mode}"])
    c.wait_ready()
    line = (
        "WARNING: /app/data is mounted owned by UID 1000 (GID 1000, mode 755) and the app runs as UID 10001"
    )
    wait_for(lambda: "Application startup complete" in c.logs(), 30, "the workers to start")
    assert (line in c.logs()) is warned, c.logs()
    if warned:
        assert 'compose user: "1000:1000"' in c.logs()
    assert os.stat(data).st_uid == owner  # never chowned: it holds the host user's files
