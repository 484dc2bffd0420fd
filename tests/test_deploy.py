"""The container files, checked without a Docker engine: compose syntax and structure, Dockerfile rules."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_has_postgres_redis_two_hubs_and_nginx_with_healthchecks() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "hub1", "hub2", "nginx", "migrate"} <= set(services)
    for name in ("postgres", "redis", "hub1", "hub2", "nginx"):
        assert "test" in services[name]["healthcheck"], name
    for hub in ("hub1", "hub2"):
        depends = services[hub]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert services["nginx"]["depends_on"]["hub1"]["condition"] == "service_healthy"


def test_compose_requires_its_secrets() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in ("POSTGRES_PASSWORD", "CARTSNITCH_JWT_SECRET_KEY", "CARTSNITCH_SERVICE_KEY", "CARTSNITCH_FERNET_KEY"):
        assert re.search(r"\$\{" + secret + r":\?[^}]+\}", text), secret
    environment = _compose()["services"]["hub1"]["environment"]
    assert all(":?" in str(environment[k]) for k in ("CARTSNITCH_JWT_SECRET_KEY", "CARTSNITCH_SERVICE_KEY"))


def test_compose_redis_keeps_an_append_only_file_on_a_volume() -> None:
    compose = _compose()
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data" and volume in compose["volumes"]


def test_compose_hubs_trust_forwarded_addresses_only_from_the_compose_network() -> None:
    compose = _compose()
    [subnet] = [ipaddress.ip_network(c["subnet"]) for c in compose["networks"]["default"]["ipam"]["config"]]
    assert subnet.is_private
    for hub in ("hub1", "hub2"):
        environment = compose["services"][hub]["environment"]
        trusted = [ipaddress.ip_network(part.strip()) for part in environment["CARTSNITCH_TRUSTED_PROXIES"].split(",")]
        assert trusted == [subnet]
        assert environment["CARTSNITCH_BETTER_AUTH_SECRET"] == "${CARTSNITCH_BETTER_AUTH_SECRET:-}"
    assert "networks" not in compose["services"]["nginx"]  # nginx is on the default network, inside the subnet


def test_compose_hubs_run_read_only_without_privileges() -> None:
    services = _compose()["services"]
    for name in ("hub1", "hub2", "migrate"):
        service = services[name]
        assert service["read_only"] is True
        assert service["tmpfs"] == ["/tmp"]
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]


def test_nginx_balances_both_replicas_and_upgrades_websockets() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server hub1:8000" in conf and "server hub2:8000" in conf
    assert "proxy_set_header Upgrade $http_upgrade" in conf
    assert conf.count("{") == conf.count("}")


def test_nginx_appends_the_client_address_to_x_forwarded_for_everywhere() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    locations = re.findall(r"location [^{]+\{([^}]*)\}", conf)
    assert len(locations) == conf.count("proxy_pass") == 3
    for body in locations:
        assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in body
    assert "X-Forwarded-For $remote_addr" not in conf


def test_dockerfile_installs_dependencies_before_the_source_and_runs_as_non_root() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    deps = next(i for i, line in enumerate(lines) if line.startswith("COPY pyproject.toml"))
    source = next(i for i, line in enumerate(lines) if line.startswith("COPY hub"))
    assert deps < source
    user = next(line for line in lines if line.startswith("USER "))
    assert user.split()[1] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    assert lines[-1] == 'CMD ["python", "-m", "hub"]'
