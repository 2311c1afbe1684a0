"""Leaving tiangolo's image: projects written for it build and serve with only their FROM line changed.

Every tag of his maps to a tag here through the README's table ("Leaving tiangolo's image"), which
this module reads: each corpus project (tests/corpus/) builds on the tag the table names for its
FROM line, and on the default tag too where its pins allow. Every tested tag (VARIANTS) also runs
the commands derived Dockerfiles run as root, and the doctor names the right tag when a project is
built on the wrong one. The version matrix pins the oldest supported server packages into derived
images, as an app's requirements would.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

import httpx
import pytest
from support.apps import CORPUS, TIANGOLO_FROM
from support.dockerutil import (
    APP_UID,
    DEFAULT_TAG,
    Container,
    build,
    docker,
    remove_image,
    unique,
)
from support.files import write
from support.proc import REPO, startup_json, wait_for


def tag_table() -> dict[str, str]:
    """The README's table: each of tiangolo's tags -> the tag to use here."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Leaving tiangolo's image", 1)[1].split("\n## ", 1)[0]
    table = {}
    for row in re.findall(r"^\| (`[^|]+`) \| `([^`]+)` \|", section, re.MULTILINE):
        for his in re.findall(r"`([^`]+)`", row[0]):
            table[his] = row[1]
    return table


TABLE = tag_table()


def his_tag(directory) -> str:
    return TIANGOLO_FROM.search((directory / "Dockerfile").read_text())[1]


@pytest.fixture
def volumes():
    """Named volumes, removed after the containers that use them (request it before run_container)."""
    made = []

    def _volume() -> str:
        made.append(unique("vol"))
        return made[-1]

    yield _volume
    for name in made:
        docker("volume", "rm", "-f", name, check=False)


# ---- the corpus: what each project must do beyond answering /whoami from the expected UID -----------

Check = Callable[[Container], None]
EXPECTED: dict[str, tuple[Check, dict]] = {}


def project(name: str, uid: str = "app user", default: bool = True, args=(), path="/whoami"):
    """Register the checks of tests/corpus/<name>; ``uid``: "app user" (10001) or "own" (its USER);
    ``default``: its pins allow the default tag too (besides the one the README's table names)."""

    def register(check: Check) -> Check:
        EXPECTED[name] = (check, {"uid": uid, "default": default, "args": args, "path": path})
        return check

    return register


@project("01-single-file")
def _(c):
    assert c.get("/").json() == {"Hello": "World"}
    assert c.get("/items/5?q=somequery").json() == {"item_id": 5, "q": "somequery"}


@project("02-package-requirements")
def _(c):
    assert c.get("/").json() == {"size": "1.0 MB"}


@project("03-apt-tool")
def _(c):
    assert c.get("/").json()["sqlite3"].startswith("3.")


@project("04-apt-curl-healthcheck")
def _(c):
    c.wait_healthy()  # its own HEALTHCHECK, with the curl it installed


@project("05-own-user", uid="own")
def _(c):
    assert c.get("/").json() == {"user": "app"}  # a user named "app" does not clash with the image's


@project("06-entrypoint")
def _(c):
    assert c.get("/").json() == {"prepared": True}
    assert "entrypoint: preparing 0" in c.logs()  # its ENTRYPOINT ran as root, then /start.sh switched


@project("07-rm-sample-app")
def _(c):
    assert c.get("/").json() == {"layout": "package"}


@project("08-fastapi-all")
def _(c):
    url = c.url
    assert httpx.post(url + "/login", data={"username": "ann"}).json() == {"username": "ann"}
    upload = httpx.post(url + "/upload", files={"file": ("a.txt", b"x" * 1000)})
    assert upload.json() == {"filename": "a.txt", "size": 1000}
    assert "<h1>Hello derived</h1>" in c.get("/page").text
    assert httpx.post(url + "/subscribe", json={"email": "ann@example.com"}).status_code == 200
    assert httpx.post(url + "/subscribe", json={"email": "not an address"}).status_code == 422
    assert c.get("/u").json() == {"ujson": True}


@project("09-sqlite-in-app-dir")
def _(c):
    for text in ("one", "two"):
        assert httpx.post(c.url + "/notes", params={"text": text}).json() == {"added": text}
    assert c.get("/notes").json() == {"notes": ["one", "two"]}
    assert docker("exec", c.name, "stat", "-c", "%u", "/app/app.db").stdout.strip() == str(APP_UID)


@project("10-pinned-old-uvicorn")
def _(c):
    assert c.get("/").json() == {"uvicorn": "0.31.0"}
    logs = c.logs()
    assert startup_json(logs)["worker_class"] == "uvicorn.workers.UvicornWorker"
    assert "WARNING: the installed uvicorn 0.31.0 (this image's worker needs >= 0.36)" in logs
    assert "Traceback" not in logs


@project("11-gunicorn-conf-cpu-count")
def _(c):
    cores = int(docker("exec", c.name, "python", "-c", "import os; print(os.cpu_count())").stdout)
    assert len(c.wait_workers(cores * 2 + 1)) == cores * 2 + 1
    assert "Using worker: asgi_launcher.workers.UvicornWorker" in c.logs()  # no worker_class: ours


@project("12-prestart-migrations")
def _(c):
    first, second = c.get("/").json(), c.get("/").json()
    assert first == {"visits": 1, "migrated_by": APP_UID, "release": "2024.1"}
    assert second["visits"] == 2  # the app writes to the database the pre-start script created
    assert f"migrations applied by UID {APP_UID}" in c.logs()


@project("13-env-app-module")
def _(c):
    assert c.get("/").json() == {"module": "myapi.server"}


@project("14-module-variable-name")
def _(c):
    assert c.get("/").json() == {"variable": "application"}


@project("15-start-reload")
def _(c):
    assert c.get("/").json() == {"reload": True}
    assert startup_json(c.logs())["workers_rule"] == "reload"


@project("16-volume-writer", args=("VOLUME:/data",))
def _(c):
    assert httpx.post(c.url + "/visit").json() == {"visits": 1}
    assert httpx.post(c.url + "/visit").json() == {"visits": 2}
    assert "gave the empty volume /data to UID 10001" in c.logs()


@project("17-pip-user")
def _(c):
    answer = c.get("/").json()
    assert answer == {"where": answer["where"], "text": "1,234,567"}
    assert answer["where"].startswith("/root/.local/lib/python3")


@project("18-adduser-bookworm", uid="own")  # trixie's slim image dropped adduser; the base adds it back
def _(c):
    assert c.get("/").json() == {"user": "appuser"}


@project("19-pins-from-python3.10", default=False)  # numpy 1.24.4, pydantic-core 2.4.0: no cp313 wheels
def _(c):
    answer = httpx.post(c.url + "/stats", json={"values": [1, 2, 6]}, timeout=30).json()
    assert answer == {"mean": 3.0, "numpy": "1.24.4", "pydantic": "2.1.1"}


@project("20-make-c-extension", default=False)  # make, gcc and Python's headers: the full image
def _(c):
    assert c.get("/compute/7").json() == {"triple": 21, "bits": 3}


@project("21-pydantic-v1", default=False)  # pydantic 1.10.2 fails on Python 3.13
def _(c):
    answer = httpx.post(c.url + "/pets", json={"name": "rex", "owner": {"name": "ann"}}, timeout=30)
    assert answer.json() == {"name": "rex", "owner": "ann"}


def test_every_corpus_project_has_expectations():
    on_disk = {path.name for path in CORPUS.iterdir() if path.is_dir()}
    assert on_disk == set(EXPECTED), on_disk ^ set(EXPECTED)
    assert len(on_disk) >= 12


def test_the_table_maps_every_tag_of_his_to_a_tag_here():
    his = {f"python3.{minor}{slim}" for minor in range(7, 12) for slim in ("", "-slim")} | {"latest"}
    assert his <= set(TABLE), his - set(TABLE)
    for tag, here in TABLE.items():
        assert re.fullmatch(r"python3\.1[1-4](-slim)?", here), (tag, here)
        assert here.endswith("-slim") == ("-slim" in tag or "alpine" in tag), (tag, here)
    assert {his_tag(CORPUS / name) for name in EXPECTED} <= set(TABLE)


def corpus_cases():
    for name, (_, options) in EXPECTED.items():
        named = TABLE[his_tag(CORPUS / name)]
        yield name, named
        if options["default"] and named != DEFAULT_TAG:
            yield name, DEFAULT_TAG


CASES = list(corpus_cases())


@pytest.mark.parametrize(("name", "tag"), CASES, ids=[f"{name}-{tag}" for name, tag in CASES])
def test_corpus_project_builds_and_serves(derived, volumes, run_container, name, tag):
    check, options = EXPECTED[name]
    image = derived(CORPUS / name, tag)
    args = []
    for arg in options["args"]:
        if arg.startswith("VOLUME:"):
            args += ["-v", f"{volumes()}:{arg.split(':', 1)[1]}"]
    c = run_container(image, args=args)
    c.wait_ready(options["path"], timeout=90)
    uid = c.get("/whoami").json()["uid"]
    if options["uid"] == "own":
        own = int(docker("exec", c.name, "id", "-u").stdout)  # the image's USER
        assert uid == own != 0
    else:
        assert uid == APP_UID
    check(c)


# ---- the version matrix: the oldest supported pins, and the floors of this image's own pieces --------

MATRIX_APP = """\
import os

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float


@app.post("/items")
def create(item: Item):
    return {"name": item.name, "price": item.price}


@app.get("/slow")
async def slow():
    import asyncio

    print("slow request started", flush=True)
    await asyncio.sleep(1)
    return {"slept": 1}


@app.get("/whoami")
def whoami():
    return {"uid": os.getuid()}
"""
STOCK = "uvicorn.workers.UvicornWorker"
OURS = "asgi_launcher.workers.UvicornWorker"
MATRIX = {
    # The oldest supported: pydantic v1, and every server piece below what this image's own need.
    "oldest": ("fastapi==0.95.2\npydantic==1.10.13\nuvicorn==0.20.0\ngunicorn==20.1.0\n"
               "prometheus-client==0.14.1\n", STOCK, False),
    # The first pydantic 2 FastAPI, with the pinned server.
    "pydantic-2.0": ("fastapi==0.100.0\npydantic==2.0.3\n", OURS, True),
    # The floors of this image's worker (uvicorn 0.36, gunicorn 21) and metrics (prometheus-client 0.20).
    "worker-floor": ("uvicorn==0.36.0\ngunicorn==21.2.0\nprometheus-client==0.20.0\n", OURS, True),
    "below-worker-floor": ("uvicorn==0.35.0\nprometheus-client==0.19.0\n", STOCK, False),
}  # fmt: skip


@pytest.mark.parametrize("name", MATRIX)
def test_version_matrix_serves_with_what_the_pins_allow(bases, run_container, tmp_path, name):
    requirements, worker, metrics = MATRIX[name]
    context = tmp_path / name
    write(context / "requirements.txt", requirements)
    write(context / "app" / "main.py", MATRIX_APP)
    write(
        context / "Dockerfile",
        f"FROM {bases('python3.11-slim')}\nCOPY requirements.txt /tmp/requirements.txt\n"
        "RUN pip install --no-cache-dir -r /tmp/requirements.txt\nCOPY ./app /app\n",
    )
    image = build(f"{unique('matrix')}:latest", context=context, variant="python3.11-slim")
    try:
        c = run_container(image, also_publish=[9100])
        c.wait_ready("/whoami", timeout=90)
        assert c.get("/whoami").json() == {"uid": APP_UID}
        answer = httpx.post(c.url + "/items", json={"name": "pen", "price": "1.5"})
        assert answer.json() == {"name": "pen", "price": 1.5}
        assert httpx.post(c.url + "/items", json={"name": "pen"}).status_code == 422
        logs = c.logs()
        data = startup_json(logs)
        assert data["worker_class"] == worker
        assert f"Using worker: {worker}" in logs
        assert ("serving with " + STOCK in logs) == (worker == STOCK)
        assert "Traceback" not in logs
        # Metrics on where prometheus-client allows them: the port answers, else it is closed.
        metrics_url = f"http://127.0.0.1:{c.ports[9100]}/metrics"
        if metrics:
            assert data["metrics_port"] == 9100
            text = wait_for(lambda: _scrape(metrics_url), 20, "the metrics")
            assert (
                'http_request_duration_seconds_count{method="POST",route="/items",status="200"} 1.0' in text
            )
        else:
            assert data["metrics_port"] is None
            assert "metrics are off" in logs
            assert _scrape(metrics_url) is None
        _stops_gracefully_with_a_request_in_flight(c)
    finally:
        remove_image(image)


def _scrape(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.TransportError:
        return None


def _stops_gracefully_with_a_request_in_flight(c: Container) -> None:
    result = {}
    client = threading.Thread(target=lambda: result.update(r=c.get("/slow", timeout=30)))
    client.start()
    wait_for(lambda: "slow request started" in c.logs(), 20, "the slow request")
    c.stop(timeout=20)
    client.join(30)
    assert result["r"].json() == {"slept": 1}
    assert c.inspect()["State"]["ExitCode"] == 0
