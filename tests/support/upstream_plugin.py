"""A pytest plugin that runs upstream test suites against our classes, without editing their files.

Loaded by tests/process/test_upstream.py into a pytest run inside an unpacked source distribution
(``-p support.upstream_plugin``, tests/ on its PYTHONPATH). ``ASGI_LAUNCHER_TARGET`` says which suite it is:

- ``protocol`` (Uvicorn's tests): every test taking the ``http_protocol_cls`` fixture gets our protocol
  instead of Uvicorn's (direct parametrisation overrides a fixture of the same name), and the tests
  that name ``HttpToolsProtocol`` themselves get ours under that name;
- ``worker`` (uvicorn-worker's tests): every test taking ``worker_class`` gets our worker;
- ``arbiter`` (Gunicorn's arbiter and worker lifecycle tests): ``gunicorn.arbiter.Arbiter``, which
  they construct by that name, is the launcher's arbiter (asgi_launcher.master); all of them run.

Only those tests run. The failures we expect are marked ``xfail(strict=True)`` with their reason, so
that any other failure, or one of these passing, fails the run.

With ``ASGI_LAUNCHER_AGAINST=stock`` the same tests run against the upstream class itself, unmarked:
the baseline that ``python -m support.upstream`` compares ours with.
"""

from __future__ import annotations

import os

import pytest

TARGET = os.environ.get("ASGI_LAUNCHER_TARGET", "")
AGAINST = os.environ.get("ASGI_LAUNCHER_AGAINST", "ours")

# test name (without parameters) -> why our class deliberately differs
EXPECTED_FAILURES = {
    "protocol": {
        "test_shutdown_during_idle": (
            "our drain: an idle keep-alive connection stays open drain_grace (0.3 s) at a graceful stop, "
            "so that a request already on its way is served rather than reset"
        ),
        "test_huge_headers_httptools_will_pass": (
            "our head limits: Gunicorn's limit_request_field_size (8190) refuses a 64 KB Cookie header"
        ),
        "test_huge_headers_httptools": (
            "our head limits: Gunicorn's limit_request_field_size (8190) refuses a 64 KB Cookie header"
        ),
    },
    "worker": {},
    "arbiter": {},
}
# Tests of Uvicorn's that construct HttpToolsProtocol by name rather than through the fixture.
BY_NAME = {
    "test_huge_headers_httptools_will_pass",
    "test_huge_headers_httptools",
    "test_httptools_http10_keep_alive_disabled",
}


def _swapped():
    """The fixture name, and the class it gets in this run."""
    if TARGET == "protocol":
        if AGAINST == "stock":
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as cls
        else:
            from asgi_launcher.protocol import LimitedHttpToolsProtocol as cls
        return "http_protocol_cls", cls
    if AGAINST == "stock":
        return "worker_class", "uvicorn_worker.UvicornWorker"
    from asgi_launcher.workers import UvicornWorker

    return "worker_class", f"{UvicornWorker.__module__}.{UvicornWorker.__name__}"


if TARGET == "arbiter" and AGAINST == "ours":
    import gunicorn.arbiter

    from asgi_launcher.master import arbiter_class

    OUR_ARBITER = arbiter_class()
    gunicorn.arbiter.Arbiter = OUR_ARBITER

    @pytest.fixture(autouse=True)
    def _our_arbiter_in_place():
        assert gunicorn.arbiter.Arbiter is OUR_ARBITER, "a test put Gunicorn's own arbiter back"


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc):
    if TARGET == "arbiter":
        return
    name, cls = _swapped()
    if name in metafunc.fixturenames:
        metafunc.parametrize(name, [cls], ids=[AGAINST])


def pytest_collection_modifyitems(config, items):
    if TARGET == "arbiter":
        return
    name, cls = _swapped()
    keep, drop = [], []
    for item in items:
        base = item.originalname
        if name in getattr(item, "fixturenames", ()):
            keep.append(item)
        elif TARGET == "protocol" and base in BY_NAME and hasattr(item.module, "HttpToolsProtocol"):
            item.module.HttpToolsProtocol = cls  # under stock, the very class it had
            keep.append(item)
        else:
            drop.append(item)
        reason = EXPECTED_FAILURES.get(TARGET, {}).get(base)
        if reason and AGAINST == "ours":
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
