"""Guards against upstream changes: what we override or read of Uvicorn, uvicorn-worker, Gunicorn and
prometheus_client still exists (canaries that name what went missing), and the upstream projects'
own test suites, downloaded at test time for the pinned versions, pass against our classes.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest
from support.proc import REPO

from asgi_launcher import protocol, workers

TESTS = REPO / "tests"  # on the upstream run's path: the support package, with our plugin


def pinned(package: str) -> str:
    for line in (REPO / "requirements.txt").read_text().splitlines():
        match = re.match(rf"^{re.escape(package)}(?:\[[^\]]*\])?==([^\s;#]+)", line.strip(), re.IGNORECASE)
        if match:
            return match.group(1)
    raise AssertionError(f"{package} is not pinned in requirements.txt")


def missing(obj, names) -> list[str]:
    return [name for name in names if not hasattr(obj, name)]


# ---- canaries: Uvicorn's protocol --------------------------------------------------------------------

# Methods of HttpToolsProtocol we override (and call through super()).
PROTOCOL_OVERRIDES = {
    "connection_made",
    "connection_lost",
    "data_received",
    "handle_websocket_upgrade",
    "on_url",
    "on_header",
    "on_headers_complete",
    "on_message_complete",
    "on_response_complete",
    "send_400_response",
    "shutdown",
}
# Methods of HttpToolsProtocol we call.
PROTOCOL_CALLS = {"timeout_keep_alive_handler"}
# Attributes we read on a connected protocol, its request cycle, its ServerState and Uvicorn's Config.
PROTOCOL_READS = {
    "url",
    "headers",
    "cycle",
    "transport",
    "loop",
    "logger",
    "config",
    "server_state",
    "connections",
    "tasks",
    "timeout_keep_alive_task",
    "scope",
}
CYCLE_READS = {"keep_alive", "response_complete", "scope"}
SERVER_STATE_READS = {"total_requests", "connections", "tasks", "default_headers"}
CONFIG_READS = {"limit_max_requests", "timeout_graceful_shutdown", "http", "callback_notify"}


def test_our_protocol_overrides_are_all_listed():
    """A new override must join the canary list above."""
    ours = {
        name
        for name, value in vars(protocol.LimitedHttpToolsProtocol).items()
        if callable(value) and not name.startswith("_")
    }
    assert ours - {"with_limits"} == PROTOCOL_OVERRIDES


def test_uvicorn_protocol_still_has_what_we_override_and_call():
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    gone = missing(HttpToolsProtocol, sorted(PROTOCOL_OVERRIDES | PROTOCOL_CALLS))
    assert not gone, (
        f"uvicorn's HttpToolsProtocol no longer has {gone}: asgi_launcher/protocol.py overrides them"
    )


def test_uvicorn_protocol_still_has_what_we_read():
    from support.asgifakes import FakeLoop, FakeTransport, plain
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    config = Config(app=plain(), log_config=None)
    stock = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={}, _loop=FakeLoop())
    stock.connection_made(FakeTransport())
    stock.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    gone = {
        "protocol": missing(stock, sorted(PROTOCOL_READS)),
        "request cycle": missing(stock.cycle, sorted(CYCLE_READS)),
        "ServerState": missing(stock.server_state, sorted(SERVER_STATE_READS)),
        "Config": missing(config, sorted(CONFIG_READS)),
    }
    assert not any(gone.values()), f"uvicorn no longer has what asgi_launcher/protocol.py reads: {gone}"
    stock.loop.tasks[0].coroutine.close()


# ---- canaries: the worker ------------------------------------------------------------------------------

WORKER_OVERRIDES = {"init_signals", "load_wsgi", "run", "notify"}  # Gunicorn's documented worker API


def test_our_worker_overrides_are_all_listed():
    ours = {
        name
        for name, value in vars(workers.UvicornWorker).items()
        if callable(value) and not name.startswith("_")
    }
    assert ours == WORKER_OVERRIDES


def test_gunicorn_and_uvicorn_worker_still_have_what_we_use(tmp_path):
    from gunicorn.config import Config as GunicornConfig
    from gunicorn.glogging import Logger
    from gunicorn.workers.base import Worker

    assert workers.UNAVAILABLE is None, workers.UNAVAILABLE
    gone = missing(Worker, sorted(WORKER_OVERRIDES | {"handle_exit"}))
    assert not gone, f"Gunicorn's Worker no longer has {gone}: asgi_launcher/workers.py overrides them"
    cfg = GunicornConfig()
    cfg.set("worker_tmp_dir", str(tmp_path))
    worker = workers.UvicornWorker(0, os.getpid(), [], None, 30, cfg, Logger(cfg))
    try:
        # uvicorn-worker builds Uvicorn's Config in __init__, with the heartbeat as callback_notify:
        # the first heartbeat is how our worker knows its boot is over.
        config = getattr(worker, "config", None)
        assert config is not None, "uvicorn_worker.UvicornWorker no longer sets .config in __init__"
        assert getattr(config.callback_notify, "__func__", None) is type(worker).callback_notify, (
            "uvicorn-worker no longer passes its callback_notify (the heartbeat) to Uvicorn's Config"
        )
        assert issubclass(config.http, protocol.LimitedHttpToolsProtocol)
        assert config.timeout_graceful_shutdown == cfg.graceful_timeout
        assert "alive" in vars(worker) or hasattr(worker, "alive")
    finally:
        worker.tmp.close()


def test_gunicorn_still_has_the_arbiter_we_subclass():
    """asgi_launcher/master.py puts its arbiter in place of gunicorn.app.base.Arbiter and relies on
    Arbiter.stop reaping through reap_workers while WORKERS is not empty."""
    import inspect

    import gunicorn.app.base
    from gunicorn.arbiter import Arbiter

    assert getattr(gunicorn.app.base, "Arbiter", None) is Arbiter, (
        "gunicorn.app.base no longer imports Arbiter: asgi_launcher/master.py replaces that name"
    )
    assert "Arbiter(self).run()" in inspect.getsource(gunicorn.app.base.BaseApplication.run), (
        "BaseApplication.run no longer builds the arbiter from that name"
    )
    stop = inspect.getsource(Arbiter.stop)
    message = (
        "Arbiter.stop no longer waits for the workers through reap_workers: asgi_launcher/master.py "
        "ends that wait early"
    )
    assert "self.reap_workers()" in stop, message
    assert "self.WORKERS" in stop, message


def test_the_quick_arbiter_ends_the_stop_with_the_last_worker():
    from asgi_launcher.master import _AllGone, arbiter_class

    quick = arbiter_class()
    arbiter = quick.__new__(quick)  # no __init__: Gunicorn's needs an application
    arbiter.WORKERS = {}
    arbiter._stopping = True
    with pytest.raises(_AllGone):
        arbiter.reap_workers()  # nothing left to wait for: out of Gunicorn's loop before its sleep
    arbiter._stopping = False
    arbiter.reap_workers()  # outside a stop: Gunicorn's own, nothing raised


def test_the_worker_finds_uvicorns_server_from_its_heartbeat():
    """Our worker's boot ends at the first heartbeat, which Uvicorn's server sends from its tick; from
    that call the worker finds the server, and uses its listeners and its request limit."""
    import threading

    from support.asgifakes import plain
    from support.proc import free_port, wait_for
    from uvicorn.config import Config
    from uvicorn.server import Server

    found = {}

    async def heartbeat():
        found["server"] = workers.calling_server()
        server.should_exit = True

    server = Server(
        Config(
            plain(), port=free_port(), lifespan="off", log_config=None, callback_notify=heartbeat,
            limit_max_requests=7,
        )
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: "server" in found, 10, "uvicorn's server to send its first heartbeat")
    thread.join(10)
    assert found["server"] is server, "the worker no longer finds uvicorn's Server from its heartbeat"
    assert server.limit_max_requests == 7, "uvicorn's Server.limit_max_requests is gone"
    assert all(callable(getattr(s, "close", None)) for s in server.servers), (
        "uvicorn's Server.servers is gone"
    )


@pytest.mark.parametrize("blocked", ["uvicorn_worker", "httptools"])
def test_our_modules_import_without_an_optional_upstream(blocked):
    """A derived image may pin versions without uvicorn-worker or httptools: importing our modules must
    not fail, so that the launcher can choose another worker class."""
    script = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "from asgi_launcher import protocol, workers\n"
        "print(workers.UNAVAILABLE, protocol.has_httptools())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    unavailable, httptools = done.stdout.split(" ", 1)[0], done.stdout.split()[-1]
    if blocked == "uvicorn_worker":
        assert done.stdout.startswith("uvicorn-worker cannot be imported")
    else:
        assert (unavailable, httptools) == ("None", "False")


# ---- canaries: prometheus_client's private names (asgi_launcher/observe.py, metrics.py) ---------------


def test_prometheus_client_names_we_use(tmp_path):
    """Run in a fresh process: the multiprocess mode is chosen when prometheus_client is imported."""
    script = """
import os, sys
from prometheus_client import Counter, Gauge, Histogram, multiprocess, start_http_server, start_wsgi_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector
gone = []
h = Histogram("h", "h", ["a"], registry=None)
if not hasattr(h, "_upper_bounds"): gone.append("Histogram._upper_bounds")
child = h.labels("x")
if not hasattr(getattr(child, "_sum", None), "inc"): gone.append("Histogram child._sum.inc")
buckets = getattr(child, "_buckets", [])
if len(buckets) != len(getattr(h, "_upper_bounds", ())) or not all(hasattr(b, "inc") for b in buckets):
    gone.append("Histogram child._buckets (one value with .inc per bound)")
Counter("c", "c", registry=None).inc()
Gauge("g", "g", multiprocess_mode="livesum", registry=None).set(1)
d = os.environ["PROMETHEUS_MULTIPROC_DIR"]
for kind in ("counter", "histogram"):
    path = os.path.join(d, f"{kind}_{os.getpid()}.db")
    if not os.path.exists(path): gone.append(f"multiprocess file name {kind}_<pid>.db")
    else:
        rows = list(MmapedDict.read_all_values_from_file(path))
        if not rows or len(rows[0]) != 4:
            gone.append("MmapedDict.read_all_values_from_file rows (key, value, timestamp, position)")
os.makedirs(os.path.join(d, "scratch"))
m = MmapedDict(os.path.join(d, "scratch", "t.db"))
try: m.write_value("k", 1.0, 0.0)
except TypeError: gone.append("MmapedDict.write_value(key, value, timestamp)")
m.close()
multiprocess.mark_process_dead(os.getpid(), d)
list(MultiProcessCollector(None, path=d).collect())
server, thread = start_wsgi_server(0, addr="127.0.0.1")
if not hasattr(server, "socket"): gone.append("start_wsgi_server() -> (server with .socket, thread)")
server.shutdown()
print(gone)
sys.exit(1 if gone else 0)
"""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (
        "prometheus_client no longer has what asgi_launcher/observe.py and metrics.py use: "
        f"{done.stdout.strip()} {done.stderr.strip()[-2000:]}"
    )


# ---- the upstream suites against our classes -------------------------------------------------------------


def unpack_sdist(package: str, tmp: Path, drop: str) -> Path:
    """The pinned version's source distribution, with its tests; its own package removed so that the
    installed one is imported."""
    version = pinned(package)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         f"{package}=={version}", "--dest", str(tmp)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, f"cannot download the {package} {version} sources: {done.stderr[-2000:]}"
    (archive,) = tmp.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    (root,) = (p for p in tmp.iterdir() if p.is_dir())
    import shutil

    shutil.rmtree(root / drop)
    return root


def kill_left_behind(root: Path) -> None:
    """Servers an upstream test started and left running in its directory: uvicorn-worker's USR2 test
    makes Gunicorn fork a new master, which its fixture never stops."""
    for process in psutil.process_iter(["cwd"]):
        with contextlib.suppress(psutil.Error):
            if process.info["cwd"] and Path(process.info["cwd"]).is_relative_to(root):
                process.kill()


def run_upstream(root: Path, target: str, files: list[str], tmp: Path) -> dict[str, list[str]]:
    for name in files:
        assert (root / name).is_file(), f"{root.name} no longer has {name}"
    report = tmp / "report.xml"
    env = {
        **os.environ,
        "ASGI_LAUNCHER_TARGET": target,
        "PYTHONPATH": str(TESTS),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # their `gunicorn`
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "support.upstream_plugin", "-p", "no:cacheprovider",
             "-o", "addopts=", "-rfEX", f"--junitxml={report}", *files],
            cwd=root, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
    finally:
        kill_left_behind(root)
    outcomes: dict[str, list[str]] = {"passed": [], "failed": [], "xfailed": [], "skipped": []}
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - our own pytest's report
            name = case.get("name")
            if case.find("failure") is not None or case.find("error") is not None:
                outcomes["failed"].append(name)
            elif (skipped := case.find("skipped")) is not None:
                outcomes["xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"].append(name)
            else:
                outcomes["passed"].append(name)
    summary = {k: len(v) for k, v in outcomes.items()}
    print(f"{root.name} against our {target}: {summary}")
    assert not outcomes["failed"], f"upstream tests failed against our {target}: {outcomes['failed']}"
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    return outcomes


def test_uvicorn_suite_against_our_protocol(tmp_path):
    """Uvicorn's own protocol tests (HTTP, WebSockets, server, middleware) with our protocol class."""
    from support.upstream_plugin import EXPECTED_FAILURES

    root = unpack_sdist("uvicorn", tmp_path, drop="uvicorn")
    outcomes = run_upstream(
        root,
        "protocol",
        [
            "tests/protocols/test_http.py",
            "tests/protocols/test_websocket.py",
            "tests/test_server.py",
            "tests/middleware/test_logging.py",
            "tests/middleware/test_proxy_headers.py",
        ],
        tmp_path,
    )
    assert {re.sub(r"\[.*", "", name) for name in outcomes["xfailed"]} == set(EXPECTED_FAILURES["protocol"])
    assert len(outcomes["passed"]) >= 200, outcomes  # our class really ran (88 HTTP tests alone)
    assert all("ours" in name or "[" not in name for name in outcomes["passed"])


def test_uvicorn_worker_suite_against_our_worker(tmp_path):
    """uvicorn-worker's tests (real Gunicorn, TLS on and off, every arbiter signal) with our worker."""
    root = unpack_sdist("uvicorn-worker", tmp_path, drop="uvicorn_worker")
    outcomes = run_upstream(root, "worker", ["tests/test_workers.py"], tmp_path)
    assert outcomes["xfailed"] == []
    assert len(outcomes["passed"]) >= 20, outcomes
    assert all("ours" in name for name in outcomes["passed"])


def test_gunicorn_arbiter_suite_against_our_arbiter(tmp_path):
    """Gunicorn's own arbiter and worker lifecycle tests (spawning, reaping, signals, reload, stop)
    with the launcher's arbiter in place of Gunicorn's."""
    root = unpack_sdist("gunicorn", tmp_path, drop="gunicorn")
    outcomes = run_upstream(root, "arbiter", ["tests/test_arbiter.py"], tmp_path)
    assert outcomes["xfailed"] == []
    assert len(outcomes["passed"]) >= 50, outcomes  # 58 in Gunicorn 27.0.1
