"""The metrics endpoint read as samples, for a server process and a container alike."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple], float]


def metrics_port(server) -> int:
    """Where a server's metrics answer on 127.0.0.1: a process's own METRICS_PORT (proc.Launched), or
    the host port a container published for its 9100 (dockerutil.Container, ``also_publish=[9100]``)."""
    port = getattr(server, "metrics_port", None)
    return port if port is not None else server.ports[9100]


def scrape(server) -> Samples:
    """Every sample of the metrics endpoint, keyed by (name, sorted labels)."""
    response = httpx.get(f"http://127.0.0.1:{metrics_port(server)}/metrics", timeout=10)
    # A collector's exception is a 500 with a one-line body; its traceback is in the server's log.
    if response.status_code != 200:
        log = server.logs() if hasattr(server, "logs") else server.output
        raise AssertionError(f"metrics answered {response.status_code}: {response.text}\n{log[-4000:]}")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def matching(samples: Samples, name: str, **labels: str) -> list[float]:
    return [
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    ]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` with these labels (others free): 0 when there are none."""
    return sum(matching(samples, name, **labels))


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """As ``total``, but None when no sample matches: a metric that is absent, not zero."""
    found = matching(samples, name, **labels)
    return sum(found) if found else None
