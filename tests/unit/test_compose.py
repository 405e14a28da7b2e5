"""docker-compose.yml wires a working scale-out: Docker does not run here, so the file itself is checked.

Every command must parse with our own CLI, every KENSA_* environment must build valid Settings
pointing at the compose services, and start-up order must follow health, not luck.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from kensa_gql.cli import _parser
from kensa_gql.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = ("migrate", "api", "worker")
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = compose["services"]
    return result


def interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` with nothing set in the environment."""
    return _VARIABLE.sub(lambda m: m.group(2) or "", value)


def settings_of(service: dict[str, Any]) -> Settings:
    env = {k: interpolate(str(v)) for k, v in service["environment"].items()}
    assert all(k.startswith("KENSA_") for k in env), env
    return Settings(**{k.removeprefix("KENSA_").lower(): v for k, v in env.items()})


def test_the_scale_out_services_are_all_there(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker"}


@pytest.mark.parametrize(("name", "command"), [
    ("migrate", ["db", "upgrade"]),
    ("api", ["serve", "--no-worker", "--host", "0.0.0.0", "--port", "8000"]),
    ("worker", ["worker"]),
])
def test_each_gateway_role_runs_a_real_cli_command(services: dict[str, Any], name: str,
                                                   command: list[str]) -> None:
    assert services[name]["command"] == command
    _parser().parse_args(command)  # exits (fails the test) on a form the CLI does not know


def test_the_api_listens_on_all_interfaces_and_can_be_scaled(services: dict[str, Any]) -> None:
    args = _parser().parse_args(services["api"]["command"])
    assert (args.host, args.no_worker) == ("0.0.0.0", True)
    # a fixed host port would make `--scale api=2` fail on the second replica
    assert all(":" not in str(p) for p in services["api"].get("ports", []))
    assert "container_name" not in services["api"] and "container_name" not in services["worker"]


@pytest.mark.parametrize("name", GATEWAY)
def test_gateway_environment_points_at_the_compose_services(services: dict[str, Any], name: str) -> None:
    settings = settings_of(services[name])
    db = urlsplit(settings.database_url)
    postgres = services["postgres"]["environment"]
    assert db.scheme == "postgresql+asyncpg" and db.hostname == "postgres" and db.port == 5432
    assert db.username == postgres["POSTGRES_USER"] and db.path == f"/{postgres['POSTGRES_DB']}"
    # the password is one variable shared with the postgres service, never a literal secret here
    assert interpolate(postgres["POSTGRES_PASSWORD"]) == db.password
    assert "${POSTGRES_PASSWORD" in services[name]["environment"]["KENSA_DATABASE_URL"]
    assert urlsplit(settings.broadcast_url)[:2] == ("redis", "redis:6379")


def test_api_and_workers_share_the_media_volume(services: dict[str, Any], compose: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        media = str(settings_of(services[name]).media_dir)
        assert f"media:{media}" in services[name]["volumes"]
    assert "media" in compose["volumes"]


@pytest.mark.parametrize("name", ["api", "worker"])
def test_gateway_processes_start_only_after_migrations_and_healthy_backends(services: dict[str, Any],
                                                                            name: str) -> None:
    assert services[name]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


def test_migrations_wait_for_a_healthy_database_and_run_once(services: dict[str, Any]) -> None:
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"


@pytest.mark.parametrize("name", ["postgres", "redis", "api", "worker"])
def test_long_running_services_have_healthchecks(services: dict[str, Any], name: str) -> None:
    check = services[name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] >= 1


def test_the_api_is_healthy_only_when_ready(services: dict[str, Any]) -> None:
    probe = " ".join(services["api"]["healthcheck"]["test"])
    port = _parser().parse_args(services["api"]["command"]).port
    assert f"http://127.0.0.1:{port}/readyz" in probe


def test_the_worker_healthcheck_reads_the_file_the_worker_touches(services: dict[str, Any]) -> None:
    health_file = settings_of(services["worker"]).worker_health_file
    assert health_file and health_file in " ".join(services["worker"]["healthcheck"]["test"])


def test_one_image_for_every_gateway_role(services: dict[str, Any]) -> None:
    assert {services[name]["image"] for name in GATEWAY} == {"kensa-gql:latest"}
    assert all(services[name]["build"] == "." for name in GATEWAY)


def test_the_image_runs_the_cli_as_an_unprivileged_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["kensa-gql"\]$', dockerfile, re.M)
    user = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "*.db", ".env"} <= set(ignored)
