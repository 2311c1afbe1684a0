"""Environment parsing, validation and worker sizing, as pure functions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support.fakecgroups import TWO_CORES
from support.proc import BASE_CONF, IMAGE_VARIABLES, REPO
from support.units import MiB

from asgi_launcher.cgroups import Limits
from asgi_launcher.settings import ConfigError, Settings, decide_workers


def sizing(limits=TWO_CORES, web_concurrency=None, workers_per_core=1.0, max_workers=None, per_worker=None):
    return decide_workers(limits, web_concurrency, workers_per_core, max_workers, per_worker)


@pytest.mark.parametrize(
    ("limits", "per_core", "max_workers", "workers", "rule"),
    [
        (TWO_CORES, 1.0, None, 2, "workers_per_core"),
        (TWO_CORES, 3.0, None, 6, "workers_per_core"),
        (Limits(2, 1.0, None), 3.0, None, 3, "workers_per_core"),  # --cpus 1 on a 2-core host
        (Limits(1, None, None), 3.0, None, 3, "workers_per_core"),  # --cpuset-cpus 0
        (Limits(64, 1.0, None), 1.0, None, 2, "minimum"),  # tiangolo's issue #43: 1-CPU pod, 64-core node
        (Limits(8, None, None), 0.5, None, 4, "workers_per_core"),
        (Limits(3, None, None), 1.5, None, 4, "workers_per_core"),  # int() truncates 4.5
        (Limits(1, None, None), 1.0, None, 2, "minimum"),
        (TWO_CORES, 0.1, None, 2, "minimum"),
        (TWO_CORES, 3.0, 4, 4, "max_workers"),
        (TWO_CORES, 1.0, 1, 1, "max_workers"),  # MAX_WORKERS=1 goes below the minimum of 2
        (TWO_CORES, 1.0, 10, 2, "workers_per_core"),
    ],
)
def test_tiangolo_formula_on_container_cores(limits, per_core, max_workers, workers, rule):
    result = sizing(limits, workers_per_core=per_core, max_workers=max_workers)
    assert (result.workers, result.rule) == (workers, rule)


def test_web_concurrency_is_exact_and_not_capped_by_max_workers():
    result = sizing(web_concurrency=7, max_workers=2)
    assert (result.workers, result.rule, result.warning) == (7, "web_concurrency", None)


def test_memory_budget_caps_the_automatic_count():
    limits = Limits(affinity=8, cpu_quota=None, memory=300 * MiB)
    result = sizing(limits, per_worker=100 * MiB)
    assert (result.workers, result.rule) == (3, "memory_per_worker")


def test_memory_budget_is_at_least_one_worker():
    limits = Limits(affinity=8, cpu_quota=None, memory=50 * MiB)
    assert sizing(limits, per_worker=100 * MiB).workers == 1


def test_memory_budget_does_not_raise_the_count():
    limits = Limits(affinity=2, cpu_quota=None, memory=4096 * MiB)
    result = sizing(limits, per_worker=100 * MiB)
    assert (result.workers, result.rule) == (2, "workers_per_core")


def test_memory_per_worker_without_a_limit_changes_nothing():
    result = sizing(Limits(affinity=8, cpu_quota=None, memory=None), per_worker=100 * MiB)
    assert (result.workers, result.rule) == (8, "workers_per_core")


def test_web_concurrency_above_the_memory_budget_is_kept_but_warned():
    limits = Limits(affinity=2, cpu_quota=None, memory=300 * MiB)
    result = sizing(limits, web_concurrency=8, per_worker=100 * MiB)
    assert result.workers == 8
    assert "WEB_CONCURRENCY=8" in result.warning
    assert "3 workers" in result.warning


def test_web_concurrency_within_the_budget_is_not_warned():
    limits = Limits(affinity=2, cpu_quota=None, memory=300 * MiB)
    assert sizing(limits, web_concurrency=3, per_worker=100 * MiB).warning is None


def test_defaults_are_tiangolos():
    s = Settings.from_env({}, TWO_CORES)
    assert (s.host, s.port, s.bind, s.loglevel) == ("0.0.0.0", 80, "0.0.0.0:80", "info")
    assert (s.timeout, s.graceful_timeout, s.keepalive) == (120, 120, 5)
    assert (s.accesslog, s.errorlog) == ("-", "-")
    assert s.worker_class == "asgi_launcher.workers.UvicornWorker"  # a subclass of uvicorn_worker's
    assert s.workers == 2


def test_bind_beats_host_and_port():
    s = Settings.from_env({"HOST": "127.0.0.1", "PORT": "8000", "BIND": "unix:/tmp/s.sock"}, TWO_CORES)
    assert s.bind == "unix:/tmp/s.sock"
    assert Settings.from_env({"HOST": "127.0.0.1", "PORT": "8000"}, TWO_CORES).bind == "127.0.0.1:8000"


def test_empty_means_unset_for_numbers_and_disabled_for_logs():
    env = {"WEB_CONCURRENCY": "", "MAX_WORKERS": "", "ACCESS_LOG": "", "ERROR_LOG": " "}
    s = Settings.from_env(env, TWO_CORES)
    assert (s.workers, s.max_workers, s.accesslog, s.errorlog) == (2, None, None, None)


def test_log_level_is_case_insensitive():
    assert Settings.from_env({"LOG_LEVEL": "WARNING"}, TWO_CORES).loglevel == "warning"


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("WEB_CONCURRENCY", "abc", "a whole number >= 1"),
        ("WEB_CONCURRENCY", "0", "a whole number >= 1"),
        ("WEB_CONCURRENCY", "-1", "a whole number >= 1"),
        ("WEB_CONCURRENCY", "2.5", "a whole number >= 1"),
        ("WORKERS_PER_CORE", "x", "a number > 0"),
        ("WORKERS_PER_CORE", "0", "a number > 0"),
        ("WORKERS_PER_CORE", "nan", "a number > 0"),
        ("MAX_WORKERS", "-1", "a whole number >= 1"),
        ("MAX_WORKERS", "0", "a whole number >= 1"),
        ("TIMEOUT", "soon", "a whole number >= 0"),
        ("GRACEFUL_TIMEOUT", "-5", "a whole number >= 0"),
        ("KEEP_ALIVE", "1.5", "a whole number >= 0"),
        ("PORT", "http", "a TCP port number from 1 to 65535"),
        ("PORT", "70000", "a TCP port number from 1 to 65535"),
        ("MEMORY_PER_WORKER", "lots", "a size in bytes > 0"),
        ("MEMORY_PER_WORKER", "0", "a size in bytes > 0"),
        ("LOG_LEVEL", "loud", "one of critical, error, warning, info, debug"),
    ],
)
def test_bad_values_name_the_variable_the_value_and_what_is_accepted(name, value, accepted):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value}, TWO_CORES)
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r} is not valid: expected {accepted}")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("1048576", MiB),
        ("512M", 512 * MiB),
        ("512m", 512 * MiB),
        ("1.5G", 1536 * MiB),
        ("64Ki", 65536),
        ("2GiB", 2048 * MiB),
        ("100MB", 100 * MiB),
    ],
)
def test_memory_per_worker_sizes(value, size):
    assert Settings.from_env({"MEMORY_PER_WORKER": value}, TWO_CORES).memory_per_worker == size


TIANGOLO_KEYS = {
    "loglevel": str,
    "workers": int,
    "bind": str,
    "worker_class": str,
    "graceful_timeout": int,
    "timeout": int,
    "keepalive": int,
    "errorlog": str,
    "accesslog": str,
    "workers_per_core": float,
    "use_max_workers": type(None),
    "host": str,
    "port": str,
}


def test_startup_line_keeps_tiangolos_keys_and_types_and_explains_the_count():
    line = Settings.from_env({}, Limits(affinity=2, cpu_quota=0.5, memory=300 * MiB)).startup_line()
    data = json.loads(line)
    for key, kind in TIANGOLO_KEYS.items():
        assert isinstance(data[key], kind), key
    assert data["port"] == "80"
    assert data["workers"] == 2
    assert data["workers_rule"] == "minimum"
    assert (data["cpu_affinity"], data["cpu_quota"], data["cores"]) == (2, 0.5, 1)
    assert data["memory_limit"] == 300 * MiB
    assert data["memory_per_worker"] is None


def test_startup_line_disabled_logs_and_max_workers():
    data = json.loads(
        Settings.from_env({"ACCESS_LOG": "", "ERROR_LOG": "", "MAX_WORKERS": "3"}, TWO_CORES).startup_line()
    )
    assert (data["accesslog"], data["errorlog"], data["use_max_workers"]) == (None, None, 3)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in IMAGE_VARIABLES}
    env.update(extra)
    return env


def test_python_gunicorn_conf_prints_the_startup_line():
    """tiangolo's tests read the configuration by running the config file."""
    out = subprocess.run(
        [sys.executable, str(BASE_CONF)],
        env=clean_env(WORKERS_PER_CORE="2", PORT="8000", MAX_WORKERS="3"),
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    assert (data["workers_per_core"], data["port"], data["bind"], data["use_max_workers"]) == (
        2.0,
        "8000",
        "0.0.0.0:8000",
        3,
    )


def test_python_gunicorn_conf_with_a_bad_value_prints_one_line_and_no_traceback():
    result = subprocess.run(
        [sys.executable, str(BASE_CONF)],
        env=clean_env(TIMEOUT="soon"),
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "ERROR: TIMEOUT='soon' is not valid: expected a whole number >= 0\n"


def test_the_readme_table_is_the_registry():
    """One source of truth: regenerate with `python -m asgi_launcher settings-table`."""
    from asgi_launcher.settings import settings_table

    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- settings table")
    table = readme[readme.index("\n", start) + 1 : readme.index("<!-- end of settings table -->")]
    assert table == settings_table()
