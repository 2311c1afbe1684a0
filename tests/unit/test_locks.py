"""Locked installs resolve nothing: every lock installs as listed with the oldest pip of a supported
base (Debian bookworm's 23.0.1) and with today's newest, whatever was released since the lock.

pip before 23.3 resolves a dependency's extras (`uvicorn[standard]>=0.15.0`, asked by fastapi-cli)
against the index even under --require-hashes, picks the newest release, and refuses it as unpinned:
a lock went red the day uvicorn 0.55.0 came out. With --no-deps a complete lock is installed line
by line, and `pip check` proves it complete.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support.proc import REPO

BOOKWORM_PIP = "23.0.1"
PIPS = (BOOKWORM_PIP, "newest")
# Every file that installs a lock (`--require-hashes`), and how many such installs it has.
INSTALLERS = {
    "Dockerfile": 2,
    "scripts/test.sh": 1,
    "scripts/host.sh": 1,
    "examples/poetry-uv/Dockerfile.poetry": 1,
    "examples/poetry-uv/Dockerfile.uv": 1,
    "benchmarks/servers.py": 1,
}


def lock_installs(text: str) -> list[str]:
    """The pip commands of a file that install a lock, each joined onto one line."""
    joined = re.sub(r"\\\n\s*", " ", text)
    commands = [part for line in joined.splitlines() for part in re.split(r"&&|;", line)]
    return [command.strip() for command in commands if "--require-hashes" in command]


def dockerfile_flags() -> list[str]:
    """The flags the image's builder stage installs requirements.txt with."""
    (command,) = [c for c in lock_installs((REPO / "Dockerfile").read_text()) if "requirements.txt" in c]
    return [flag for flag in command.split("pip install", 1)[1].split() if flag.startswith("--")]


@pytest.mark.parametrize("path", INSTALLERS)
def test_every_lock_install_takes_the_list_as_it_is(path):
    installs = lock_installs((REPO / path).read_text())
    assert len(installs) == INSTALLERS[path], installs  # the control: the installs are found at all
    for command in installs:
        assert "--no-deps" in command, f"{path}: a locked install that resolves: {command}"


def venv_with_pip(root: Path, version: str) -> Path:
    """A venv whose pip is Debian bookworm's, or the newest on the index today."""
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    spec = ["--upgrade", "pip"] if version == "newest" else [f"pip=={version}"]
    run_pip(root, "install", "--quiet", *spec)
    return root


def run_pip(venv: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"pip {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def wheel(directory: Path, name: str, version: str, requires=(), extras=()) -> Path:
    """A minimal pure-Python wheel, made here so that the index below holds exactly what we say."""
    dist = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Provides-Extra: {extra}\n" for extra in extras)
    metadata += "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    files = {
        f"{name}/__init__.py": "",
        f"{dist}/METADATA": metadata,
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    path = directory / f"{name}-{version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(path, "w") as archive:
        for member, content in files.items():
            archive.writestr(member, content)
            digest = base64.urlsafe_b64encode(hashlib.sha256(content.encode()).digest()).rstrip(b"=")
            record.append(f"{member},sha256={digest.decode()},{len(content)}")
        archive.writestr(f"{dist}/RECORD", "\n".join([*record, f"{dist}/RECORD,,"]) + "\n")
    return path


@pytest.fixture
def released_since(tmp_path):
    """An index where a dependency was released after the lock: the lock pins extra 1.0, a package
    asks for `extra[x]>=1.0`, and extra 1.1 is out (uvicorn 0.55.0 against fastapi-cli, in small)."""
    index = tmp_path / "index"
    index.mkdir()
    locked = {
        "extra": wheel(index, "extra", "1.0", extras=["x"], requires=['helper ; extra == "x"']),
        "asker": wheel(index, "asker", "1.0", requires=["extra[x]>=1.0"]),
        "helper": wheel(index, "helper", "1.0"),
    }
    wheel(index, "extra", "1.1", extras=["x"], requires=['helper ; extra == "x"'])
    lock = tmp_path / "requirements.txt"
    lines = [
        f"{name}==1.0 --hash=sha256:{hashlib.sha256(p.read_bytes()).hexdigest()}"
        for name, p in locked.items()
    ]
    lock.write_text("\n".join(lines) + "\n")
    return index, lock


@pytest.mark.parametrize("pip", PIPS)
def test_a_release_after_the_lock_changes_nothing(released_since, tmp_path, pip):
    index, lock = released_since
    pip_of = venv_with_pip(tmp_path / "venv", pip)
    target = ["--target", str(tmp_path / "site")]
    offline = ["--no-index", "--find-links", str(index), "--no-cache-dir"]
    run_pip(pip_of, "install", *offline, *target, *dockerfile_flags(), "-r", str(lock))
    installed = sorted(path.name for path in (tmp_path / "site").glob("*.dist-info"))
    assert installed == ["asker-1.0.dist-info", "extra-1.0.dist-info", "helper-1.0.dist-info"]
    if pip == BOOKWORM_PIP:
        # The control: without --no-deps, bookworm's pip fails as the image's build did.
        flags = [flag for flag in dockerfile_flags() if flag != "--no-deps"]
        refused = run_pip(pip_of, "install", *offline, *target, *flags, "-r", str(lock), check=False)
        assert refused.returncode != 0
        assert "all requirements must have their versions pinned with ==" in refused.stderr
        assert "extra[x]>=1.0 from" in refused.stderr


@pytest.mark.parametrize("pip", PIPS)
def test_the_image_lock_installs_whole_with_every_pip(tmp_path, pip):
    """requirements.txt as the builder stage installs it, then `pip check` over the venv it made."""
    venv = venv_with_pip(tmp_path / "venv", pip)
    run_pip(venv, "install", "--quiet", *dockerfile_flags(), "-r", str(REPO / "requirements.txt"))
    assert "No broken requirements found" in run_pip(venv, "check").stdout
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import fastapi, gunicorn, uvicorn, uvicorn_worker, uvloop"],
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0, imported.stderr
