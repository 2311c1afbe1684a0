"""The suite's rules for the servers it starts (the launch fixture, support.proc.Launched)."""

from __future__ import annotations

from support.proc import startup_json


def test_servers_start_from_a_clean_environment(package_app, launch, monkeypatch):
    """A variable in the shell running the tests does not reach the server; one the test passes does."""
    monkeypatch.setenv("WEB_CONCURRENCY", "7")
    leaked = launch(package_app)
    leaked.wait_ready()
    passed = launch(package_app, WEB_CONCURRENCY="3")
    passed.wait_ready()
    assert startup_json(leaked.output)["workers_rule"] != "web_concurrency"
    assert (startup_json(passed.output)["workers_rule"], startup_json(passed.output)["workers"]) == (
        "web_concurrency",
        3,
    )
