"""Guards against upstream changes: what we override or read of Uvicorn, uvicorn-worker, Gunicorn and
prometheus_client still exists (canaries that name what went missing), and the upstream projects'
own test suites, downloaded at test time for the pinned versions, pass against our classes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import upstream

from asgi_launcher import protocol, workers


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


def test_uvicorn_worker_builds_its_server_in_serve(tmp_path):
    """Our worker's ``_serve`` (with AwakeServer, the quick idle stop) is what uvicorn-worker's ``run``
    runs."""
    import uvicorn_worker
    from gunicorn.config import Config as GunicornConfig
    from gunicorn.glogging import Logger

    cfg = GunicornConfig()
    cfg.set("worker_tmp_dir", str(tmp_path))
    worker = uvicorn_worker.UvicornWorker(0, os.getpid(), [], None, 30, cfg, Logger(cfg))
    served = []

    async def serve():
        served.append(True)

    worker._serve = serve
    try:
        worker.run()
    finally:
        worker.tmp.close()
    assert served == [True], (
        "uvicorn_worker.UvicornWorker.run no longer runs self._serve(): asgi_launcher/workers.py's "
        "_serve (AwakeServer: the quick idle stop) is not used"
    )


class _Recorder:
    """Stands for a listener, a socket and the lifespan of a Uvicorn server: records what is done to it."""

    def __init__(self, events: list, name: str):
        self.events, self.name = events, name

    def close(self):
        self.events.append(f"{self.name}.close")

    async def wait_closed(self):
        self.events.append(f"{self.name}.wait_closed")

    async def shutdown(self):
        self.events.append(f"{self.name}.shutdown")


def _run_recorded(server, method: str, monkeypatch, *args) -> list:
    """What ``server.<method>(*args)`` does on an idle server, Uvicorn's sleeps included."""
    import asyncio

    events: list = []
    server.servers = [_Recorder(events, "listener")]
    server.lifespan = _Recorder(events, "lifespan")

    async def sleep(seconds, result=None):
        events.append(f"sleep {seconds}")
        return result

    ticks = []

    async def on_tick(counter):
        ticks.append(counter)
        events.append(f"tick {counter}")
        return counter >= 3

    server.on_tick = on_tick
    sockets = [_Recorder(events, "socket")]
    with monkeypatch.context() as patch:
        patch.setattr(asyncio, "sleep", sleep)
        patch.setattr(type(server), "tick", 0.0, raising=False)  # AwakeServer: no real wait
        asyncio.run(getattr(server, method)(*([sockets] if method == "shutdown" else [])))
    return events


def test_uvicorn_main_loop_is_what_awake_server_mirrors(monkeypatch):
    """AwakeServer.main_loop is Uvicorn's, with a sleep a stop signal can end: the same ticks, at
    Uvicorn's interval."""
    from uvicorn.config import Config
    from uvicorn.server import Server

    stock = _run_recorded(Server(Config(app=None)), "main_loop", monkeypatch)
    assert stock == ["tick 0", "sleep 0.1", "tick 1", "sleep 0.1", "tick 2", "sleep 0.1", "tick 3"], (
        f"Uvicorn's Server.main_loop changed ({stock}): asgi_launcher/workers.py's AwakeServer.main_loop "
        "mirrors it"
    )
    ours = _run_recorded(workers.AwakeServer(Config(app=None)), "main_loop", monkeypatch)
    assert ours == [event for event in stock if not event.startswith("sleep")]
    assert workers.AwakeServer.tick == 0.1


@pytest.mark.parametrize(
    "signals", [[signal.SIGTERM], [signal.SIGINT, signal.SIGINT], [signal.SIGTERM, signal.SIGINT]]
)
def test_uvicorn_handle_exit_is_what_awake_server_mirrors(signals):
    """AwakeServer.handle_exit sets what Uvicorn's sets, except the signal it would raise again."""
    from uvicorn.config import Config
    from uvicorn.server import Server

    stock, ours = Server(Config(app=None)), workers.AwakeServer(Config(app=None))
    before = dict(vars(stock))
    for sig in signals:
        stock.handle_exit(sig, None)
        ours.handle_exit(sig, None)
    changed = {name for name, value in vars(stock).items() if before.get(name, object()) != value}
    assert changed - {"_captured_signals"} <= {"should_exit", "force_exit"}, (
        f"Uvicorn's Server.handle_exit now changes {sorted(changed)}: asgi_launcher/workers.py's "
        "AwakeServer.handle_exit mirrors it"
    )
    assert (ours.should_exit, ours.force_exit) == (stock.should_exit, stock.force_exit)
    assert not getattr(ours, "_captured_signals", []), "the worker would be killed by its stop signal"


def test_uvicorn_idle_shutdown_is_what_awake_server_mirrors(monkeypatch):
    """With no connection open, AwakeServer.shutdown does Uvicorn's steps without its pause."""
    from uvicorn.config import Config
    from uvicorn.server import Server

    stock = _run_recorded(Server(Config(app=None)), "shutdown", monkeypatch)
    expected = ["listener.close", "socket.close", "sleep 0.1", "listener.wait_closed", "lifespan.shutdown"]
    assert stock == expected, (
        f"Uvicorn's Server.shutdown changed ({stock}): asgi_launcher/workers.py's AwakeServer.shutdown "
        "mirrors it when no connection is open"
    )
    ours = _run_recorded(workers.AwakeServer(Config(app=None)), "shutdown", monkeypatch)
    assert ours == [event for event in expected if not event.startswith("sleep")]
    # With a connection open, it is Uvicorn's own, pause included.
    busy = workers.AwakeServer(Config(app=None))

    class Connection:
        def shutdown(self):
            busy.server_state.connections.discard(self)

    busy.server_state.connections.add(Connection())
    assert "sleep 0.1" in _run_recorded(busy, "shutdown", monkeypatch)


# ---- canaries: Gunicorn's arbiter, by what it does (asgi_launcher/master.py, recycling.py) -------------


class _BareApplication:
    """A Gunicorn application with nothing to serve: enough to construct the real Arbiter."""

    @staticmethod
    def make(**options):
        from gunicorn.app.base import BaseApplication

        class Bare(BaseApplication):
            def load_config(self):
                for key, value in options.items():
                    self.cfg.set(key, value)

            def load(self):
                return lambda environ, start_response: []

        return Bare()


class _FakeWorker:
    def __init__(self, age: int = 1):
        self.age = age
        self.aborted = False


def test_gunicorn_builds_its_arbiter_from_the_name_we_replace(monkeypatch):
    """asgi_launcher/master.py puts its arbiter in place of gunicorn.app.base.Arbiter."""
    import gunicorn.app.base

    built = []

    class Recorder:
        def __init__(self, app):
            built.append(app)

        def run(self):
            built.append("ran")

    application = _BareApplication.make()
    monkeypatch.setattr(gunicorn.app.base, "Arbiter", Recorder)
    application.run()
    assert built == [application, "ran"], (
        "BaseApplication.run no longer builds the arbiter from gunicorn.app.base.Arbiter: "
        "asgi_launcher/master.py's arbiter would not run"
    )


def test_gunicorn_stop_drops_the_listeners_then_reaps_until_no_worker_is_left():
    """What QuickArbiter (asgi_launcher/master.py) and the recycling reasons rely on: Arbiter.stop
    closes the listeners before it signals the workers (an exit at shutdown is not a recycle), and waits
    for them by calling reap_workers while WORKERS is not empty, and no longer."""
    from gunicorn.arbiter import Arbiter

    arbiter = Arbiter(_BareApplication.make(graceful_timeout=60))
    listener = socket.create_server(("127.0.0.1", 0))
    arbiter.LISTENERS = [listener]
    arbiter.WORKERS = {101: _FakeWorker(), 102: _FakeWorker()}
    seen = {"listeners_at_kill": None, "reaps_with_workers": 0}

    def kill_workers(sig):
        if seen["listeners_at_kill"] is None:
            seen["listeners_at_kill"] = list(arbiter.LISTENERS)

    def reap_workers():
        if arbiter.WORKERS:
            seen["reaps_with_workers"] += 1
            arbiter.WORKERS.popitem()  # one exits per round

    arbiter.kill_workers = kill_workers
    arbiter.reap_workers = reap_workers
    started = time.monotonic()
    arbiter.stop(graceful=True)
    assert listener.fileno() == -1, "Arbiter.stop no longer closes its listeners"
    assert seen["listeners_at_kill"] == [], (
        "Arbiter.stop no longer drops its listeners before stopping workers: exits at shutdown would "
        "count as recycles (asgi_launcher/recycling.py)"
    )
    assert seen["reaps_with_workers"] == 2, (
        "Arbiter.stop no longer waits for the workers through reap_workers: asgi_launcher/master.py "
        "ends that wait early"
    )
    assert time.monotonic() - started < 30, "Arbiter.stop kept waiting after the last worker left"


def test_gunicorn_marks_a_timed_out_worker_aborted():
    """The recycling reason "timeout" is read from worker.aborted, which a new worker has as False and
    the arbiter sets before its SIGABRT."""
    from gunicorn.arbiter import Arbiter
    from gunicorn.config import Config as GunicornConfig
    from gunicorn.glogging import Logger
    from gunicorn.workers.base import Worker

    cfg = GunicornConfig()
    worker = Worker(1, os.getpid(), [], None, 30, cfg, Logger(cfg))
    try:
        assert worker.aborted is False, "a new Gunicorn Worker no longer has aborted = False"
        arbiter = Arbiter(_BareApplication.make(timeout=5))
        killed = []
        arbiter.kill_worker = lambda pid, sig: killed.append((pid, sig))
        arbiter.WORKERS = {4242: worker}
        worker.tmp.last_update = lambda: time.monotonic() - 60  # no heartbeat for a minute
        arbiter.murder_workers()
        assert killed == [(4242, signal.SIGABRT)], "the arbiter no longer aborts a silent worker"
        assert worker.aborted is True, "TIMEOUT no longer marks the worker aborted"
    finally:
        worker.tmp.close()


def test_gunicorn_keeps_its_workers_by_pid_and_tops_them_up(monkeypatch):
    """The memory guard and the slots read server.WORKERS (pid -> worker) and server.num_workers."""
    import gunicorn.arbiter
    from gunicorn.arbiter import Arbiter

    arbiter = Arbiter(_BareApplication.make(workers=3))
    arbiter.pid = os.getpid()  # what Arbiter.start sets
    pids = iter(range(4243, 4250))
    monkeypatch.setattr(gunicorn.arbiter.os, "fork", lambda: next(pids))  # the parent's side only
    monkeypatch.setattr(gunicorn.arbiter.time, "sleep", lambda seconds: None)
    arbiter.manage_workers()
    try:
        assert arbiter.num_workers == 3
        assert sorted(arbiter.WORKERS) == [4243, 4244, 4245], (
            "the arbiter no longer tops its workers up to num_workers, recorded by pid in WORKERS"
        )
        assert all(worker.pid == pid for pid, worker in arbiter.WORKERS.items())
    finally:
        for worker in arbiter.WORKERS.values():
            worker.tmp.close()


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


def test_the_quick_arbiter_reaps_each_worker_as_it_exits():
    """Gunicorn's stop loop reaps, then sleeps 0.1 s: a worker that exits during that sleep was reaped
    after it. The quick arbiter spends the interval reaping each worker as it exits. In a child
    process: reap_workers reaps any child, and pytest's own are not ours to take."""
    script = """
import os, sys, threading
from gunicorn.app.base import BaseApplication
from asgi_launcher import master

class Bare(BaseApplication):
    def load_config(self): pass
    def load(self): return None

class Worker:
    class tmp:
        @staticmethod
        def close(): pass

master.REAP_INTERVAL = 60  # the interval, long: no bound on the machine's speed
arbiter = master.arbiter_class()(Bare())
first = os.fork()
if first == 0:
    os._exit(0)
read, write = os.pipe()
second = os.fork()
if second == 0:
    os.read(read, 1)  # exits when told, after the first
    os._exit(0)
os.waitid(os.P_PID, first, os.WEXITED | os.WNOWAIT)
arbiter.WORKERS = {first: Worker(), second: Worker()}
arbiter._stopping = True
threading.Timer(0.3, os.write, (write, b"x")).start()
try:
    arbiter.reap_workers()
except master._AllGone:
    sys.exit(0)
print("reap_workers returned with workers", sorted(arbiter.WORKERS) == [second] and "[the second]")
sys.exit(1)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


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


def run_against_ours(key: str, tmp: Path) -> upstream.Outcomes:
    """The installed (pinned) version's suite against our class: no failure beyond those expected."""
    suite = upstream.SUITES[key]
    outcomes = upstream.run_suite(suite, upstream.unpack_sdist(suite, tmp), "ours")
    version = upstream.installed(suite.package)
    print(f"{suite.package} {version} against our {suite.target}: {outcomes.counts()}")
    failed = outcomes.named("failed")
    assert not failed, f"upstream tests failed against our {suite.target}: {failed}"
    assert outcomes.returncode == 0, outcomes.output
    return outcomes


def test_uvicorn_suite_against_our_protocol(tmp_path):
    """Uvicorn's own protocol tests (HTTP, WebSockets, server, middleware) with our protocol class."""
    from support.upstream_plugin import EXPECTED_FAILURES

    outcomes = run_against_ours("uvicorn", tmp_path)
    xfailed = {re.sub(r"\[.*", "", name.split("::")[-1]) for name in outcomes.named("xfailed")}
    assert xfailed == set(EXPECTED_FAILURES["protocol"])
    passed = outcomes.named("passed")
    assert len(passed) >= 200, outcomes.counts()  # our class really ran (88 HTTP tests alone)
    assert all("ours" in name or "[" not in name for name in passed)


def test_uvicorn_worker_suite_against_our_worker(tmp_path):
    """uvicorn-worker's tests (real Gunicorn, TLS on and off, every arbiter signal) with our worker."""
    outcomes = run_against_ours("uvicorn-worker", tmp_path)
    assert outcomes.named("xfailed") == []
    assert len(outcomes.named("passed")) >= 20, outcomes.counts()
    assert all("ours" in name for name in outcomes.named("passed"))


def test_gunicorn_arbiter_suite_against_our_arbiter(tmp_path):
    """Gunicorn's own arbiter and worker lifecycle tests (spawning, reaping, signals, reload, stop)
    with the launcher's arbiter in place of Gunicorn's."""
    outcomes = run_against_ours("gunicorn", tmp_path)
    assert outcomes.named("xfailed") == []
    assert len(outcomes.named("passed")) >= 50, outcomes.counts()  # 58 in Gunicorn 27.0.1


def test_the_divergence_report_names_what_differs():
    """scripts/upstream.sh's comparison, on outcomes made up for it: a test that differs is named with both
    outcomes, whatever the parameter id; equal ones are not."""
    ours = upstream.Outcomes({"t::a[ours]": "passed", "t::b[ours-x]": "xfailed", "t::c": "passed"})
    stock = upstream.Outcomes({"t::a[stock]": "passed", "t::b[stock-x]": "passed", "t::d": "passed"})
    assert upstream.divergences(ours, stock) == [
        ("t::b[*-x]", "xfailed", "passed"),
        ("t::c", "passed", "not run"),
        ("t::d", "not run", "passed"),
    ]


@pytest.mark.parametrize(
    ("mine", "theirs", "expected"),
    [("xfailed", "passed", True), ("passed", "skipped", True), ("failed", "passed", False),
     ("not run", "passed", False), ("skipped", "passed", False)],
)  # fmt: skip
def test_the_divergence_report_accepts_only_the_expected(mine, theirs, expected):
    reasons = {"test_b": "our limits"}
    line, accepted = upstream.judge("t::test_b[*]", mine, theirs, reasons)
    assert accepted is expected
    assert line.startswith(f"`t::test_b[*]`: {mine} vs {theirs}")
    assert ("our limits" in line) is (mine == "xfailed")
    assert upstream.judge("t::test_c", "xfailed", "passed", reasons)[1] is False  # no reason given
