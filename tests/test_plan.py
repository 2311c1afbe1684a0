"""What start.sh executes, decided in Python (asgi_launcher/start.py), as pure functions."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest
from conftest import write
from proc import BASE_CONF

from asgi_launcher.settings import DEFAULT_WORKER_CLASS, ConfigError
from asgi_launcher.start import config_sets_worker_class, make_plan, module_exists, shell

GUNICORN = f"{sys.executable} -m asgi_launcher gunicorn"


@pytest.mark.parametrize(
    "text",
    [
        'worker_class = "sync"\n',
        'worker_class: str = "sync"\n',
        'import os\nif os.environ.get("X"):\n    worker_class = "sync"\n',
        'worker_class, workers = "sync", 2\n',
        'worker_class = "sync"  # trailing comment\n',
    ],
)
def test_a_config_that_sets_worker_class_is_recognised(tmp_path, text):
    assert config_sets_worker_class(str(write(tmp_path / "conf.py", text)))


@pytest.mark.parametrize(
    "text",
    ["workers = 2\n", '# worker_class = "sync"\n', 'print("worker_class = x")\n', "def f():\n    return 1\n"],
)
def test_a_config_without_worker_class_is_not(tmp_path, text):
    assert not config_sets_worker_class(str(write(tmp_path / "conf.py", text)))


def test_module_lookup_runs_no_code_of_the_app(tmp_path, monkeypatch):
    """The plan may run as root: finding app.main must not execute app/__init__.py."""
    marker = tmp_path / "executed"
    write(tmp_path / "pkg" / "__init__.py", f"open({str(marker)!r}, 'w').close()\n")
    write(tmp_path / "pkg" / "main.py", "app = None\n")
    write(tmp_path / "plain.py", "app = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert module_exists("pkg.main")
    assert module_exists("plain")
    assert not module_exists("pkg.nope")
    assert not module_exists("plain.sub")  # a module, not a package
    assert not module_exists("nope.main")
    assert not module_exists("not a module")
    assert not marker.exists()
    assert "pkg" not in sys.modules


def plan_of(root, args=(), **env):
    base = {"APP_ROOT": str(root), "BASE_GUNICORN_CONF": str(BASE_CONF), "BIND": "127.0.0.1:8080"}
    return make_plan({**base, **env}, list(args), pid=42)


def run_plan(root, args=(), **env):
    return shell(plan_of(root, args, **env))


def shell_values(script: str) -> dict[str, str]:
    """Evaluate the plan in bash, as start.sh does, and read back what it set."""
    probe = (
        script + '\nprintf "%s\\n" "APP_MODULE=$APP_MODULE" "GUNICORN_CONF=$GUNICORN_CONF" "json=$json_logs" '
        '"prestart=${run_prestart:+$PRE_START_PATH}" "server=${server[*]}" "wc=${WEB_CONCURRENCY-unset}"'
    )
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line and not line.startswith("{"))


@pytest.fixture
def app_root(tmp_path, monkeypatch):
    write(tmp_path / "app" / "__init__.py", "")
    write(tmp_path / "app" / "main.py", "app = None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_plan_for_gunicorn(app_root):
    values = shell_values(run_plan(app_root, WEB_CONCURRENCY=""))
    assert values["APP_MODULE"] == "app.main:app"
    assert values["GUNICORN_CONF"] == str(BASE_CONF)
    # The base config sets worker_class itself; no -k.
    assert values["server"] == f"{GUNICORN} -c {BASE_CONF} app.main:app"
    assert values["prestart"] == ""
    assert values["wc"] == "unset"  # empty means unset: Gunicorn would fail on ""


def test_plan_passes_the_worker_class_when_the_config_does_not_set_it(app_root):
    write(app_root / "gunicorn_conf.py", "workers = 1\n")
    values = shell_values(run_plan(app_root))
    assert (
        values["server"]
        == f"{GUNICORN} -k {DEFAULT_WORKER_CLASS} -c {app_root}/gunicorn_conf.py app.main:app"
    )
    values = shell_values(run_plan(app_root, WORKER_CLASS="uvicorn_worker.UvicornH11Worker"))
    assert values["server"].startswith(f"{GUNICORN} -k uvicorn_worker.UvicornH11Worker -c ")


@pytest.mark.parametrize("value", ["uvicorn", " uvicorn", "UVICORN "])
def test_process_manager_is_read_once_whatever_its_spaces(app_root, value):
    """Issue: PROCESS_MANAGER=" uvicorn" ran Gunicorn while the startup line said uvicorn."""
    values = shell_values(run_plan(app_root, PROCESS_MANAGER=value))
    assert values["server"] == f"{sys.executable} -m asgi_launcher serve"


@pytest.mark.parametrize("value", ["json", "json ", " JSON"])
def test_log_format_is_read_once_whatever_its_spaces(app_root, value):
    values = shell_values(run_plan(app_root, LOG_FORMAT=value))
    assert values["json"] == "1"
    said = plan_of(app_root, LOG_FORMAT=value).said
    assert json.loads(said[0])["message"].startswith("Checking for script in ")  # JSON from the first line


def test_pre_start_lines_and_path(app_root):
    write(app_root / "prestart.sh", "echo hi\n")
    assert plan_of(app_root).said == [
        f"Checking for script in {app_root}/prestart.sh",
        f"Running script {app_root}/prestart.sh",
    ]
    assert shell_values(run_plan(app_root))["prestart"] == f"{app_root}/prestart.sh"
    assert "PRE_START_PATH=" not in run_plan(app_root, ["--after-prestart"])
    assert shell_values(run_plan(app_root, ["--prestart-only"]))["server"] == ""


def test_values_with_shell_characters_stay_values(app_root):
    path = "/tmp/$(touch /tmp/x); 'a'.sh"
    script = run_plan(app_root, APP_MODULE="app.main:app", PRE_START_PATH=path)
    assert f"PRE_START_PATH={shlex.quote(path)} run_prestart=" in script
    assert shell_values(script)["prestart"] == ""


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BIND": "garbage:xx"}, "BIND='garbage:xx' is not valid: expected HOST:PORT"),
        ({"BIND": "", "HOST": "no-such-host.invalid"}, "HOST='no-such-host.invalid' is not valid"),
        (
            {"BIND": "127.0.0.1:9100"},
            "METRICS_PORT='9100' is not valid: expected a port other than the app's",
        ),
        (
            {"PROCESS_MANAGER": "uvicorn", "MAX_REQUESTS": "100"},
            "MAX_REQUESTS='100' is not valid: expected 0",
        ),
        ({"WEB_CONCURRENCY": "100000000"}, "WEB_CONCURRENCY='100000000' is not valid: expected at most"),
    ],
)
def test_settings_that_would_fail_late_fail_in_the_plan(app_root, env, message):
    with pytest.raises(ConfigError) as raised:
        run_plan(app_root, **env)
    assert str(raised.value).startswith(message)


def test_the_metrics_port_may_equal_the_app_port_when_metrics_are_off(app_root):
    assert "server=(" in run_plan(app_root, BIND="127.0.0.1:9100", METRICS="off")
