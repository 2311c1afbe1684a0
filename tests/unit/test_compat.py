"""Which worker and metrics the installed packages allow (asgi_launcher/compat.py), on given versions.

The same decisions against real pinned packages: tests/container/test_container_compat.py (the version
matrix).
"""

from __future__ import annotations

import pytest
from support.fakecgroups import TWO_CORES

from asgi_launcher import compat
from asgi_launcher.compat import STOCK_WORKER, Stack, default_worker, metrics_unsupported, parse_version
from asgi_launcher.settings import DEFAULT_WORKER_CLASS, Settings

PINNED = Stack(
    uvicorn=(0, 54, 0), uvicorn_worker=(0, 4, 0), gunicorn=(27, 0, 1), prometheus_client=(0, 26, 0)
)


@pytest.mark.parametrize(
    ("text", "version"),
    [("0.31.0", (0, 31, 0)), ("1.0.0rc1", (1, 0, 0)), ("2.14", (2, 14)), ("0.66b2", (0, 66)), ("x", ())],
)
def test_parse_version(text, version):
    assert parse_version(text) == version


def test_the_installed_versions_are_read_from_the_environment():
    import gunicorn
    import uvicorn

    stack = compat.detect()
    assert stack.uvicorn == parse_version(uvicorn.__version__)
    assert stack.gunicorn == parse_version(gunicorn.__version__)
    assert compat.installed("no-such-distribution-here") is None


def test_the_image_worker_with_the_pinned_versions():
    assert default_worker(PINNED) == (DEFAULT_WORKER_CLASS, None)
    assert default_worker(PINNED._replace(uvicorn=(0, 36, 0), gunicorn=(21, 2, 0)))[0] == DEFAULT_WORKER_CLASS


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"uvicorn": (0, 31, 0)}, "uvicorn 0.31.0 (this image's worker needs >= 0.36)"),
        ({"gunicorn": (20, 1, 0)}, "gunicorn 20.1.0 (this image's worker needs >= 21.0)"),
        ({"uvicorn_worker": None}, "uvicorn-worker is not installed"),
    ],
)
def test_an_older_pin_falls_back_to_the_stock_worker_and_says_why(change, reason):
    worker, warning = default_worker(PINNED._replace(**change))
    assert worker == STOCK_WORKER
    assert reason in warning
    assert warning.endswith(f"serving with {STOCK_WORKER}; off: {compat.WORKER_FEATURES}")


def test_metrics_need_prometheus_client_0_20():
    assert metrics_unsupported(PINNED) is None
    assert metrics_unsupported(PINNED._replace(prometheus_client=(0, 20, 0))) is None
    assert "prometheus-client 0.19.0 is older than 0.20" in metrics_unsupported(
        PINNED._replace(prometheus_client=(0, 19, 0))
    )
    assert "not installed" in metrics_unsupported(PINNED._replace(prometheus_client=None))


def test_settings_follow_the_stack_and_report_it():
    old = PINNED._replace(uvicorn=(0, 20, 0), prometheus_client=(0, 14, 1))
    settings = Settings.from_env({}, TWO_CORES, old)
    assert settings.worker_class == STOCK_WORKER
    assert settings.metrics is False
    assert len(settings.warnings) == 2
    assert '"metrics_port": null' in settings.startup_line()
    # An explicit WORKER_CLASS is the operator's choice: no fallback, no warning about it.
    explicit = Settings.from_env({"WORKER_CLASS": DEFAULT_WORKER_CLASS, "METRICS": "off"}, TWO_CORES, old)
    assert (explicit.worker_class, explicit.warnings) == (DEFAULT_WORKER_CLASS, [])
