"""The upstream projects' own test suites, run against our classes or against their own (stock).

tests/process/test_upstream.py runs them at the installed (pinned) versions and fails on any failure
the plugin does not expect. ``python -m support.upstream`` (what scripts/upstream.sh runs, in a venv with
the newest releases) runs each suite twice, against ours and against stock, and prints where the two
differ as a Markdown table (``--write FILE`` keeps it, with the date and the versions); then the
launcher's own unit and process tests on those versions.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import psutil

TESTS = Path(__file__).resolve().parent.parent  # on the suites' path: this package, with the plugin
REPO = TESTS.parent


@dataclass(frozen=True)
class Suite:
    package: str  # the distribution whose sdist holds the tests
    module: str  # its import package, removed from the unpacked tree so that the installed one runs
    target: str  # what the plugin swaps in (support/upstream_plugin.py)
    files: tuple[str, ...]


SUITES = {
    "uvicorn": Suite(
        "uvicorn", "uvicorn", "protocol",
        ("tests/protocols/test_http.py", "tests/protocols/test_websocket.py", "tests/test_server.py",
         "tests/middleware/test_logging.py", "tests/middleware/test_proxy_headers.py"),
    ),
    "uvicorn-worker": Suite("uvicorn-worker", "uvicorn_worker", "worker", ("tests/test_workers.py",)),
    "gunicorn": Suite("gunicorn", "gunicorn", "arbiter", ("tests/test_arbiter.py",)),
}  # fmt: skip


@dataclass
class Outcomes:
    by_test: dict[str, str] = field(default_factory=dict)  # test name -> passed/failed/xfailed/skipped
    returncode: int = 0
    output: str = ""

    def named(self, outcome: str) -> list[str]:
        return [name for name, got in self.by_test.items() if got == outcome]

    def counts(self) -> dict[str, int]:
        return {kind: len(self.named(kind)) for kind in ("passed", "failed", "xfailed", "skipped")}


def installed(package: str) -> str:
    return importlib.metadata.version(package)


def unpack_sdist(suite: Suite, tmp: Path) -> Path:
    """The installed version's source distribution, with its tests, without its own package."""
    version = installed(suite.package)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         f"{suite.package}=={version}", "--dest", str(tmp)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"cannot download the {suite.package} {version} sources: {done.stderr[-2000:]}")
    (archive,) = tmp.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    (root,) = (p for p in tmp.iterdir() if p.is_dir())
    shutil.rmtree(root / suite.module)
    missing = [name for name in suite.files if not (root / name).is_file()]
    if missing:
        raise RuntimeError(f"{root.name} no longer has {missing}")
    return root


def kill_left_behind(root: Path) -> None:
    """Servers an upstream test started and left running in its directory: uvicorn-worker's USR2 test
    makes Gunicorn fork a new master, which its fixture never stops."""
    for process in psutil.process_iter(["cwd"]):
        with contextlib.suppress(psutil.Error):
            if process.info["cwd"] and Path(process.info["cwd"]).is_relative_to(root):
                process.kill()


def run_suite(suite: Suite, root: Path, against: str = "ours") -> Outcomes:
    """One run of the suite's files in ``root``; ``against`` is ``ours`` or ``stock``."""
    report = root / f"report-{against}.xml"
    env = {
        **os.environ,
        "ASGI_LAUNCHER_TARGET": suite.target,
        "ASGI_LAUNCHER_AGAINST": against,
        "PYTHONPATH": str(TESTS),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # their `gunicorn`
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "support.upstream_plugin", "-p", "no:cacheprovider",
             "-o", "addopts=", "-rfEX", f"--junitxml={report}", *suite.files],
            cwd=root, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
    finally:
        kill_left_behind(root)
    outcomes = Outcomes(returncode=done.returncode, output=done.stdout[-6000:] + done.stderr[-3000:])
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - our own pytest's report
            name = f"{case.get('classname')}::{case.get('name')}"
            if case.find("failure") is not None or case.find("error") is not None:
                outcomes.by_test[name] = "failed"
            elif (skipped := case.find("skipped")) is not None:
                outcomes.by_test[name] = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
            else:
                outcomes.by_test[name] = "passed"
    return outcomes


def _same_test(name: str) -> str:
    return re.sub(r"\b(ours|stock)\b", "*", name)


def divergences(ours: Outcomes, stock: Outcomes) -> list[tuple[str, str, str]]:
    """(test, outcome against ours, against stock) wherever they differ."""
    theirs = {_same_test(name): got for name, got in stock.by_test.items()}
    mine = {_same_test(name): got for name, got in ours.by_test.items()}
    return [
        (name, mine.get(name, "not run"), theirs.get(name, "not run"))
        for name in sorted(mine.keys() | theirs.keys())
        if mine.get(name) != theirs.get(name)
    ]


def judge(name: str, mine: str, theirs: str, reasons: dict[str, str]) -> tuple[str, bool]:
    """One divergence as a table entry, and whether it is one we expect: a strict xfail with its reason,
    or a test that skips for the stock class (by its name) and passes against ours."""
    why = reasons.get(re.sub(r"\[.*", "", name.split("::")[-1]))
    if mine == "xfailed" and why:
        return f"`{name}`: {mine} vs {theirs} (expected: {why})", True
    if mine == "passed" and theirs == "skipped":
        return f"`{name}`: {mine} vs {theirs} (it skips for the stock class; ours runs it and passes)", True
    return f"`{name}`: {mine} vs {theirs}", False


def launcher_tests() -> tuple[str, list[str]]:
    """The launcher's unit and process tests on the installed versions (the upstream suites aside):
    where a Starlette or FastAPI release meets our code. Their summary line, and what failed."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", "-k", "not _suite_against_",
         "tests/unit", "tests/process"],
        cwd=REPO, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    failed = [line.split()[1] for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return (lines[-1].strip("= ") if lines else f"no output (exit status {done.returncode})"), failed


def report(chosen: list[str], ours_too: bool = True) -> tuple[str, bool]:
    """The Markdown table of every chosen suite, and whether ours diverged only where expected."""
    from support.upstream_plugin import EXPECTED_FAILURES

    names = ("uvicorn", "uvicorn-worker", "gunicorn", "starlette", "fastapi", "httptools", "websockets")
    versions = ", ".join(f"{name} {installed(name)}" for name in names)
    lines = [
        f"Run on {datetime.date.today().isoformat()} with {versions}, Python {sys.version.split()[0]}.",
        "",
        "| suite | against ours | against stock | where they differ |",
        "|---|---|---|---|",
    ]
    expected_only = True
    for key in chosen:
        suite = SUITES[key]
        with tempfile.TemporaryDirectory(prefix=f"upstream-{key}-") as tmp:
            root = unpack_sdist(suite, Path(tmp))
            ours, stock = run_suite(suite, root, "ours"), run_suite(suite, root, "stock")
        differ = []
        for name, mine, theirs in divergences(ours, stock):
            line, expected = judge(name, mine, theirs, EXPECTED_FAILURES[suite.target])
            differ.append(line)
            expected_only = expected_only and expected
        counts = [", ".join(f"{n} {k}" for k, n in o.counts().items() if n) for o in (ours, stock)]
        lines.append(
            f"| {suite.package} {installed(suite.package)} | {counts[0]} | {counts[1]} | "
            f"{'<br>'.join(differ) or 'none'} |"
        )
        print(lines[-1], flush=True)
    if ours_too:
        summary, failed = launcher_tests()
        expected_only = expected_only and not failed
        failures = "<br>".join(failed) or "none"
        lines.append(f"| the launcher's tests/unit and tests/process | {summary} | | {failures} |")
        print(lines[-1], flush=True)
    return "\n".join(lines) + "\n", expected_only


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/upstream.sh", description=__doc__)
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"of {', '.join(SUITES)} (default: all)")
    parser.add_argument("--write", metavar="FILE", help="also write the table into FILE, replacing its table")
    parser.add_argument("--suites-only", action="store_true", help="without the launcher's own tests")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.suites) - SUITES.keys())
    if unknown:
        parser.error(f"unknown suite {unknown}: the suites are {', '.join(SUITES)}")
    table, expected_only = report(args.suites or list(SUITES), ours_too=not args.suites_only)
    print(table)
    if args.write:
        path = Path(args.write)
        text = path.read_text() if path.exists() else ""
        begin, end = "<!-- upstream.sh: begin -->\n", "<!-- upstream.sh: end -->\n"
        if begin in text and end in text:
            text = text[: text.index(begin) + len(begin)] + table + text[text.index(end) :]
        else:
            text += f"\n{begin}{table}{end}"
        path.write_text(text)
    if not expected_only:
        print("ours diverges from stock beyond the expected failures: see the table", file=sys.stderr)
    return 0 if expected_only else 1


if __name__ == "__main__":
    sys.exit(main())
