"""deploy/kubernetes: valid against the Kubernetes API schemas (offline, strict), and consistent with
the image (Dockerfile) and the app (app/main.py) it deploys. No cluster needed."""

from __future__ import annotations

import asyncio
import copy
import importlib
import re
import shutil
import subprocess
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from support.proc import REPO

K8S = REPO / "deploy" / "kubernetes"
# The newest schemas kubernetes-validate ships, and its oldest: nothing newer than 1.25 is needed.
VERSIONS = ("1.37.0", "1.25.0")
MANIFESTS = sorted(path.name for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")
PRESTART = ["/start.sh", "--prestart-only"]

Doc = dict[str, Any]


def load_all(name: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def load(name: str) -> Doc:
    (doc,) = load_all(name)
    return doc


@pytest.fixture(scope="module")
def deployment() -> Doc:
    doc = load("deployment.yaml")
    assert doc["kind"] == "Deployment"
    return doc


@pytest.fixture(scope="module")
def job() -> Doc:
    doc = load("migrate-job.yaml")
    assert doc["kind"] == "Job"
    return doc


@pytest.fixture(scope="module")
def service() -> Doc:
    doc = load("service.yaml")
    assert doc["kind"] == "Service"
    return doc


def pod(workload: Doc) -> Doc:
    return workload["spec"]["template"]["spec"]


def main_container(deployment: Doc) -> Doc:
    (container,) = pod(deployment)["containers"]
    return container


def init_container(deployment: Doc) -> Doc:
    (container,) = pod(deployment).get("initContainers", [])
    return container


def job_container(job: Doc) -> Doc:
    (container,) = pod(job)["containers"]
    return container


def all_containers(*workloads: Doc) -> list[Doc]:
    return [c for w in workloads for c in pod(w).get("initContainers", []) + pod(w)["containers"]]


def env(container: Doc) -> dict[str, str | None]:
    """name -> value; a variable from valueFrom maps to None."""
    return {item["name"]: item.get("value") for item in container.get("env", [])}


def argv(container: Doc) -> list[str] | None:
    if "command" not in container and "args" not in container:
        return None  # the image's CMD
    return list(container.get("command", [])) + list(container.get("args", []))


def resolve_port(container: Doc, port: int | str) -> int:
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert numbers, f"no container port named {port!r} in {container['name']}"
    return numbers[0]


def probes(container: Doc) -> dict[str, Doc]:
    kinds = ("startupProbe", "readinessProbe", "livenessProbe")
    return {kind: container[kind] for kind in kinds if kind in container}


def quantity(value: str | int | float) -> float:
    units = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)", str(value))
    assert match, f"unsupported quantity {value!r}"
    assert match[2] in units, f"unsupported unit in {value!r}"
    return float(match[1]) * units[match[2]]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def image_uid() -> int:
    dockerfile = (REPO / "Dockerfile").read_text()
    match = re.search(r"^ARG APP_UID=(\d+)\s*$", dockerfile, re.MULTILINE)
    assert match, "the Dockerfile no longer declares ARG APP_UID=<number>"
    # No USER: /start.sh switches to the user made with this UID (asgi_launcher/user.py).
    assert re.search(r"useradd --uid \"\$\{APP_UID\}\"", dockerfile)
    return int(match[1])


# ---- schemas -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_valid_for_kubernetes(name, version):
    docs = load_all(name)
    assert docs
    for doc in docs:
        validated = kubernetes_validate.validate(doc, version, strict=True)
        assert validated == version.rsplit(".", 1)[0]


def test_the_expected_resources_are_there():
    kinds = {(doc["kind"], doc["apiVersion"]) for name in MANIFESTS for doc in load_all(name)}
    assert kinds >= {
        ("Deployment", "apps/v1"),
        ("Service", "v1"),
        ("HorizontalPodAutoscaler", "autoscaling/v2"),
        ("Job", "batch/v1"),
    }


def test_strict_validation_rejects_unknown_fields_and_wrong_types(deployment):
    # What strict mode buys: a typo or a number where Kubernetes wants a string fails here, not in
    # the cluster (where an unknown field is silently dropped).
    typo = copy.deepcopy(deployment)
    main_container(typo)["readinesProbe"] = main_container(typo).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, VERSIONS[0], strict=True)
    number = copy.deepcopy(deployment)
    main_container(number)["env"].append({"name": "TIMEOUT", "value": 30})
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(number, VERSIONS[0], strict=True)


# ---- agreement with the image and the app ------------------------------------------------------------


def test_one_port_everywhere(deployment, job, service):
    app = main_container(deployment)
    (http,) = [p for p in app["ports"] if p["name"] == "http"]
    port = http["containerPort"]
    assert port != 80  # a non-root process cannot bind it in Kubernetes
    for container in (app, init_container(deployment), job_container(job)):
        assert env(container)["PORT"] == str(port), container["name"]
    for kind, probe in probes(app).items():
        assert resolve_port(app, probe["httpGet"]["port"]) == port, kind
    (service_port,) = service["spec"]["ports"]
    assert resolve_port(app, service_port["targetPort"]) == port
    assert service_port["port"] == 80


def test_pods_run_as_the_image_user(deployment, job):
    uid = image_uid()
    for workload in (deployment, job):
        context = pod(workload)["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == context["runAsGroup"] == context["fsGroup"] == uid
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_probes_use_a_route_that_answers_200(deployment, monkeypatch):
    app_probes = probes(main_container(deployment))
    assert set(app_probes) == {"startupProbe", "readinessProbe", "livenessProbe"}
    paths = {probe["httpGet"]["path"] for probe in app_probes.values()}

    monkeypatch.syspath_prepend(str(REPO))
    app = importlib.import_module("app.main").app
    routes = {getattr(route, "path", None) for route in app.routes}
    assert paths <= routes, f"{paths - routes} not routes of app.main"

    async def get_all() -> dict[str, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
            return {path: (await client.get(path)).status_code for path in paths}

    assert asyncio.run(get_all()) == dict.fromkeys(paths, 200)


def test_liveness_gives_up_later_than_readiness(deployment):
    def window(probe: Doc) -> int:  # seconds of failures before the probe acts (Kubernetes defaults)
        return probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get(
            "failureThreshold", 3
        )

    app_probes = probes(main_container(deployment))
    liveness, readiness = app_probes["livenessProbe"], app_probes["readinessProbe"]
    assert window(liveness) > window(readiness)
    assert liveness.get("failureThreshold", 3) > readiness.get("failureThreshold", 3)
    # Slow starts are the startup probe's job: it outlasts the liveness window.
    assert window(app_probes["startupProbe"]) >= window(app_probes["livenessProbe"])


def test_app_container_runs_one_uvicorn_without_prestart(deployment):
    app = main_container(deployment)
    variables = env(app)
    assert variables.get("PROCESS_MANAGER") == "uvicorn"
    # Set and empty (not absent: absent means the default /app/prestart.sh would run again).
    assert "PRE_START_PATH" in variables
    assert variables["PRE_START_PATH"] == ""
    command = argv(app)
    assert command is None or command == ["/start.sh"]


def test_prestart_runs_from_the_app_image(deployment, job):
    app = main_container(deployment)
    for container in (init_container(deployment), job_container(job)):
        assert argv(container) == PRESTART, container["name"]
        assert container["image"] == app["image"], container["name"]
        assert container["imagePullPolicy"] == app["imagePullPolicy"] == "IfNotPresent"


def test_prestart_containers_have_the_app_settings(deployment, job):
    # --prestart-only validates the settings and the script sees them: the same ones as the server,
    # except PRE_START_PATH, which must stay unset there (empty would silently skip the migrations).
    app_settings = env(main_container(deployment))
    del app_settings["PRE_START_PATH"]
    for container in (init_container(deployment), job_container(job)):
        assert env(container) == app_settings, container["name"]
    assert pod(job)["securityContext"] == pod(deployment)["securityContext"]


def test_migration_job_is_bounded(job):
    spec = job["spec"]
    assert 0 <= spec["backoffLimit"] <= 3
    assert spec["ttlSecondsAfterFinished"] > 0
    assert spec.get("activeDeadlineSeconds", 0) > 0
    assert pod(job)["restartPolicy"] in {"Never", "OnFailure"}


def test_grace_period_outlasts_prestop_and_graceful_timeout(deployment):
    app = main_container(deployment)
    pre_stop = app["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        sleep = pre_stop["sleep"]["seconds"]
    else:
        command = pre_stop["exec"]["command"]
        assert command[0] == "sleep", command
        assert len(command) == 2, command
        sleep = int(command[1])
    assert sleep > 0
    graceful_timeout = int(env(app)["GRACEFUL_TIMEOUT"])
    assert pod(deployment)["terminationGracePeriodSeconds"] > sleep + graceful_timeout


def test_read_only_root_with_tmp_from_an_empty_dir(deployment, job):
    for workload in (deployment, job):
        volumes = {volume["name"]: volume for volume in pod(workload).get("volumes", [])}
        for container in all_containers(workload):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["capabilities"]["drop"] == ["ALL"], container["name"]
            (tmp,) = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert not tmp.get("readOnly", False), container["name"]
            assert "emptyDir" in volumes[tmp["name"]], container["name"]


def test_resources_fit_one_process(deployment, job):
    for container in all_containers(deployment, job):
        resources = container["resources"]
        for resource in ("cpu", "memory"):
            request = quantity(resources["requests"][resource])
            limit = quantity(resources["limits"][resource])
            assert 0 < request <= limit, (container["name"], resource)
    assert quantity(main_container(deployment)["resources"]["limits"]["cpu"]) <= 1


def test_hpa_scales_the_deployment_on_cpu(deployment):
    hpa = load("hpa.yaml")
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 2 <= spec["minReplicas"] <= deployment["spec"]["replicas"] <= spec["maxReplicas"]
    (metric,) = spec["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert 0 < metric["resource"]["target"]["averageUtilization"] < 100
    # Utilization is relative to the requests: without a CPU request the HPA cannot compute it.
    for container in pod(deployment)["containers"]:
        assert quantity(container["resources"]["requests"]["cpu"]) > 0


def test_selectors_pick_the_server_pods_and_not_the_job(deployment, job, service):
    server_labels = deployment["spec"]["template"]["metadata"]["labels"]
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "deployment": deployment["spec"]["selector"]["matchLabels"],
        "service": service["spec"]["selector"],
        "pdb": load("pdb.yaml")["spec"]["selector"]["matchLabels"],
    }
    for name, selector in selectors.items():
        assert selects(selector, server_labels), name
        # A running Job pod counts as ready: a Service selecting it would send it traffic.
        assert not selects(selector, job_labels), name


def test_kustomization_lists_every_manifest_but_the_job():
    kustomization = load("kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    for name in listed:
        assert (K8S / name).is_file(), name
    assert set(listed) == set(MANIFESTS) - {"migrate-job.yaml"}


@pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl is not installed: scripts/test.sh installs it (apt-get install kubectl)",
)
def test_kustomize_renders_the_listed_resources():
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    built = {(doc["kind"], doc["metadata"]["name"]) for doc in yaml.safe_load_all(rendered) if doc}
    expected = {
        (doc["kind"], doc["metadata"]["name"])
        for name in load("kustomization.yaml")["resources"]
        for doc in load_all(name)
    }
    assert built == expected
