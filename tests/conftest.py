"""The fixtures every tier shares: apps laid out as tiangolo's image expects them, started scripts
(tests/process/), and the images and containers of the container suite (tests/container/, every test
of which is marked ``container``). Plain helpers are in the support package."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.apps import OPS_APP, PROBE_APP, SEED_APP, TIANGOLO_FROM
from support.files import write
from support.proc import REPO, START, Launched

CONTAINER_TESTS = Path(__file__).resolve().parent / "container"


@pytest.fixture
def package_app(tmp_path: Path) -> Path:
    """tiangolo's package layout: <root>/app/main.py, plus this repo's prestart.sh."""
    root = tmp_path / "root"
    shutil.copytree(REPO / "app", root / "app")
    shutil.copy(REPO / "prestart.sh", root / "prestart.sh")
    return root


@pytest.fixture
def single_file_app(tmp_path: Path) -> Path:
    """tiangolo's single-module layout: <root>/main.py."""
    root = tmp_path / "root"
    write(root / "main.py", SEED_APP.replace('{"Hello": "World"}', '{"Hello": "single file"}'))
    return root


@pytest.fixture
def probe_app(tmp_path: Path) -> Path:
    """tests/apps/probe.py as <root>/app/main.py: slow, blocking, echo and whoami endpoints."""
    root = tmp_path / "probe"
    write(root / "app" / "__init__.py", "")
    write(root / "app" / "main.py", PROBE_APP)
    return root


@pytest.fixture
def ops_app(tmp_path: Path) -> Path:
    """tests/apps/ops.py as <root>/app/main.py: statuses, slow and blocking requests, a leak."""
    root = tmp_path / "ops"
    write(root / "app" / "__init__.py", "")
    write(root / "app" / "main.py", OPS_APP)
    return root


@pytest.fixture
def launch(tmp_path: Path):
    """Start a script (start.sh by default) against an app root; everything is killed at teardown."""
    started: list[Launched] = []

    def _launch(app_root: Path, script: Path = START, affinity=None, script_args=(), **env: str) -> Launched:
        log = tmp_path / f"output-{len(started)}.log"
        launched = Launched(script, app_root, env, log, affinity=affinity, script_args=script_args)
        started.append(launched)
        return launched

    yield _launch
    for launched in started:
        launched.kill()


# ---- the container suite: one image build per run, shared by every container test ------------------


def pytest_collection_modifyitems(items):
    for item in items:
        if CONTAINER_TESTS in item.path.resolve().parents:
            item.add_marker(pytest.mark.container)


@pytest.fixture(scope="session")
def engine():
    from support.dockercli import engine_error

    error = engine_error()
    if error:
        pytest.fail(f"container tests need a Docker engine ({error}); deselect them with -m 'not container'")


@pytest.fixture(scope="session")
def images(engine):
    """This repo's image (target app) and the drop-in base (target base), built once per run."""
    from support.dockerutil import build, remove_image, unique

    tag = unique("img")
    built = {
        "base": build(f"{tag}:base", target="base"),
        "app": build(f"{tag}:app", target="app"),
    }
    yield built
    for image in built.values():
        remove_image(image)


@pytest.fixture(scope="session")
def derive(images, tmp_path_factory):
    """Build an image FROM the base target with the given files, as a user of the image would."""
    from support.dockerutil import build, remove_image, unique

    made: list[str] = []

    def _derive(files: dict[str, str], dockerfile: str = "COPY ./app /app\n") -> str:
        context = tmp_path_factory.mktemp("derived")
        for name, text in files.items():
            write(context / name, text)
        write(context / "Dockerfile", f"FROM {images['base']}\n" + dockerfile)
        tag = build(f"{unique('derived')}:latest", context=context)
        made.append(tag)
        return tag

    yield _derive
    for tag in made:
        remove_image(tag)


@pytest.fixture
def run_container(engine):
    """docker run -d on a 127.0.0.1 port; every container is removed at teardown, pass or fail."""
    from support.dockerutil import Container

    started: list[Container] = []

    def _run(image: str, **kwargs) -> Container:
        container = Container(image, **kwargs)
        started.append(container)  # before it starts: a failed `docker run` can leave a container
        return container.start()

    yield _run
    for container in started:
        container.remove()


@pytest.fixture(scope="session")
def ops_image(derive):
    """The base image with tests/apps/ops.py as its app (statuses, slow and blocking requests, a leak)."""
    return derive({"app/app/__init__.py": "", "app/app/main.py": OPS_APP})


@pytest.fixture(scope="session")
def probe_image(derive):
    """The base image with tests/apps/probe.py as its app (slow, blocking, echo and whoami endpoints)."""
    return derive({"app/app/__init__.py": "", "app/app/main.py": PROBE_APP})


@pytest.fixture(scope="session")
def bases(images):
    """The base target per tag, built on first use (the default tag is the suite's own build)."""
    from support.dockerutil import DEFAULT_TAG, build, remove_image, unique

    built = {DEFAULT_TAG: images["base"]}

    def _base(tag: str) -> str:
        if tag not in built:
            built[tag] = build(f"{unique('base')}:{tag}", target="base", variant=tag)
        return built[tag]

    yield _base
    for tag, image in built.items():
        if tag != DEFAULT_TAG:
            remove_image(image)


@pytest.fixture
def derived(bases, tmp_path):
    """Build a project with its FROM line pointed at our base of a tag; the image goes at teardown."""
    from support.dockerutil import build, remove_image, unique

    made = []

    def _build(directory, tag: str) -> str:
        context = tmp_path / f"{directory.name}-{tag}"
        shutil.copytree(directory, context)
        dockerfile = (context / "Dockerfile").read_text()
        assert TIANGOLO_FROM.search(dockerfile), "a corpus Dockerfile starts FROM tiangolo's image"
        (context / "Dockerfile").write_text(TIANGOLO_FROM.sub(f"FROM {bases(tag)}", dockerfile, count=1))
        name = f"{unique('corpus')}:latest"
        made.append(name)
        return build(name, context=context, variant=tag)

    yield _build
    for name in made:
        remove_image(name)
