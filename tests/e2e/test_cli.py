"""The operator's command line, run as a real process: exact forms, one-line errors."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from kensa_gql.adapters.db.migrate import head_revision
from tests.conftest import free_port
from tests.e2e.test_crash_recovery import wait_ready


def kensa(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "KENSA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
                   "KENSA_MEDIA_DIR": str(tmp_path / "media"), **env}
    return subprocess.run([sys.executable, "-m", "kensa_gql", *args], env=environment, capture_output=True,
                          text=True, timeout=60)


def test_users_create_prints_the_key_last_and_credits_grant_adds_packages(tmp_path: Path) -> None:
    created = kensa(tmp_path, "users", "create", "ops@example.test", "--credits", "25")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("kg_") and len(key) >= 40
    granted = kensa(tmp_path, "credits", "grant", "ops@example.test", "10", "--expires-in-days", "30",
                    "--type", "purchase")
    assert granted.returncode == 0, granted.stderr
    assert "available 35" in granted.stdout and "total 35" in granted.stdout
    # the key is shown once and never stored in clear
    assert key.encode() not in (tmp_path / "cli.db").read_bytes()


def test_users_create_without_credits_grants_none(tmp_path: Path) -> None:
    created = kensa(tmp_path, "users", "create", "zero@example.test")
    assert created.returncode == 0 and "with 0 credits" in created.stdout


def test_keys_revoke_takes_the_whole_key_too_but_not_a_forged_one(tmp_path: Path) -> None:
    created = kensa(tmp_path, "users", "create", "w@example.test")
    key = created.stdout.strip().splitlines()[-1]
    forged = kensa(tmp_path, "keys", "revoke", key[:-4] + "AAAA")  # right prefix, wrong secret
    assert forged.returncode == 1 and forged.stderr.strip().splitlines() == ["kensa-gql: active key not found"]
    revoked = kensa(tmp_path, "keys", "revoke", key)
    assert revoked.returncode == 0 and revoked.stdout.strip() == f"revoked key {key[:12]}"
    assert key not in revoked.stdout + revoked.stderr


def test_ensure_demo_revokes_the_key_it_issued_before(tmp_path: Path) -> None:
    first = kensa(tmp_path, "users", "ensure-demo")
    assert first.returncode == 0 and "created demo user" in first.stdout, first.stderr
    old = first.stdout.strip().splitlines()[-1]
    second = kensa(tmp_path, "users", "ensure-demo")
    new = second.stdout.strip().splitlines()[-1]
    assert second.returncode == 0 and new != old and new.startswith("kg_")
    assert f"revoked its previous key {old[:12]}" in second.stdout
    # the old key is no longer active; the new one is
    assert kensa(tmp_path, "keys", "revoke", old).returncode == 1
    assert kensa(tmp_path, "keys", "revoke", new).returncode == 0


def test_version_and_every_default_in_help(tmp_path: Path) -> None:
    version = kensa(tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.startswith("kensa-gql 0."), version
    serve = kensa(tmp_path, "serve", "--help", COLUMNS="200").stdout
    assert "(default: 8000)" in serve and "(default: 127.0.0.1)" in serve
    grant = kensa(tmp_path, "credits", "grant", "--help").stdout
    assert "(default: gift)" in grant and "KEY_OR_PREFIX" in kensa(tmp_path, "keys", "revoke", "--help").stdout


@pytest.mark.parametrize(("args", "env", "named"), [
    (("serve", "--port", "99999"), {}, "--port"),
    (("serve", "--port", "0"), {}, "--port"),
    (("serve",), {"KENSA_LOG_LEVEL": "LOUD"}, "KENSA_LOG_LEVEL"),
    (("worker",), {"KENSA_PUBLIC_URL": "ftp://x"}, "KENSA_PUBLIC_URL"),
    (("serve", "--port", "1"), {"KENSA_BROADCAST_URL": "redis://127.0.0.1:1/0"}, "KENSA_BROADCAST_URL"),
    (("credits", "grant", "a@example.test", "5", "--expires-in-days", "1e999"), {}, "--expires-in-days"),
    (("credits", "grant", "a@example.test", "5", "--expires-in-days", "99999999999"), {}, "--expires-in-days"),
    (("credits", "grant", "a@example.test", "9" * 5000), {}, "amount"),
    (("users",), {}, "{create,ensure-demo,set-limits}"),
    (("keys",), {}, "{create,revoke}"),
])
def test_a_bad_argument_or_setting_stops_with_one_line_naming_it(tmp_path: Path, args: tuple[str, ...],
                                                                 env: dict[str, str], named: str) -> None:
    result = kensa(tmp_path, *args, **env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines
    assert "Traceback" not in result.stderr and "Value error" not in lines[0] and "_command" not in lines[0]
    assert len(lines[0]) < 300


def test_serve_refuses_a_postgres_database_that_is_not_migrated(tmp_path: Path, postgres_databases: Any) -> None:
    url = postgres_databases.create()
    try:
        async def roll_back() -> None:
            conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"), timeout=5)
            try:
                await conn.execute("UPDATE alembic_version SET version_num = '0001'")
            finally:
                await conn.close()

        asyncio.run(roll_back())
        result = kensa(tmp_path, "serve", "--port", "1", KENSA_DATABASE_URL=url)
        assert result.returncode == 2
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("kensa-gql: the database at ") and line.endswith(
            f"is not migrated (at 0001, this release needs {head_revision(url)}): run `kensa-gql db upgrade`")
    finally:
        postgres_databases.drop(url)


def test_keys_create_and_revoke_by_prefix(tmp_path: Path) -> None:
    kensa(tmp_path, "users", "create", "k@example.test")
    issued = kensa(tmp_path, "keys", "create", "k@example.test")
    assert issued.returncode == 0
    key = issued.stdout.strip().splitlines()[-1]
    revoked = kensa(tmp_path, "keys", "revoke", key[:12])
    assert revoked.returncode == 0 and key[:12] in revoked.stdout
    again = kensa(tmp_path, "keys", "revoke", key[:12])
    assert again.returncode != 0 and len(again.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [
    ("users", "create", "dup@example.test"),        # duplicate (created below first)
    ("users", "create", "not-an-email"),
    ("keys", "create", "nobody@example.test"),
    ("credits", "grant", "nobody@example.test", "5"),
    ("credits", "grant", "dup@example.test", "five"),
    ("credits", "grant", "dup@example.test", "0"),
    ("credits", "grant", "dup@example.test", "5", "--expires-in-days", "-1"),
    ("credits", "grant", "dup@example.test", "5", "--type", "bonus"),
    ("users", "create", "x@example.test", "--credits", "-3"),
    ("credits", "grant", "dup@example.test", "3000000000"),        # past GraphQL Int (32-bit)
    ("credits", "grant", "dup@example.test", "2147483648"),
    ("users", "create", "x@example.test", "--credits", "2147483648"),
])
def test_errors_exit_non_zero_with_one_clear_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    assert kensa(tmp_path, "users", "create", "dup@example.test").returncode == 0
    result = kensa(tmp_path, *args)
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and "Traceback" not in result.stderr
    assert len(lines) == 1, lines


def test_a_bad_setting_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    result = kensa(tmp_path, "users", "create", "a@example.test", KENSA_LOCAL_FAILURE_RATE="1.5")
    assert result.returncode == 2
    assert "KENSA_LOCAL_FAILURE_RATE" in result.stderr and "Traceback" not in result.stderr
    result = kensa(tmp_path, "db", "upgrade", KENSA_ROUTES="{not json")
    assert result.returncode == 2 and "KENSA_ROUTES" in result.stderr
    result = kensa(tmp_path, "serve", "--port", "1", KENSA_ROUTES='{"sora-2": ["nowhere"]}')
    assert result.returncode == 2 and "KENSA_ROUTES" in result.stderr and "nowhere" in result.stderr


def test_grants_stop_where_graphql_int_would_overflow(tmp_path: Path) -> None:
    # given a user holding 2,000,000,000 credits, some of them already spent
    assert kensa(tmp_path, "users", "create", "big@example.test", "--credits", "2000000000").returncode == 0
    # when a grant would take their total past 2**31 - 1
    refused = kensa(tmp_path, "credits", "grant", "big@example.test", "147483648")
    # then it is refused in one line that gives the room left, and nothing is written
    assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
        "kensa-gql: credits: at most 2147483647 credits may ever be granted to one user; "
        "this user can receive at most 147483647 more"]
    exact = kensa(tmp_path, "credits", "grant", "big@example.test", "147483647")
    assert exact.returncode == 0 and "total 2147483647" in exact.stdout, exact.stderr
    assert kensa(tmp_path, "credits", "grant", "big@example.test", "1").returncode == 1


@pytest.mark.parametrize("command", [("serve", "--port", "1"), ("worker",)])
@pytest.mark.parametrize("where", ["a-file", "a-file/below", "/proc/kensa-media"])
def test_a_media_dir_that_cannot_be_written_stops_start_up(tmp_path: Path, command: tuple[str, ...],
                                                           where: str) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    result = kensa(tmp_path, *command, KENSA_MEDIA_DIR=str(tmp_path / where))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kensa-gql: KENSA_MEDIA_DIR: "), lines


def test_db_upgrade_says_what_it_applied_and_is_idempotent(tmp_path: Path) -> None:
    first = kensa(tmp_path, "db", "upgrade")
    assert first.returncode == 0 and first.stdout.startswith("applied "), first.stdout + first.stderr
    assert "0001" in first.stdout
    again = kensa(tmp_path, "db", "upgrade")
    assert again.returncode == 0 and again.stdout.startswith("database is up to date"), again.stdout


def test_the_cli_works_on_either_database(tmp_path: Path, database_url: str) -> None:
    # database_url is a fresh SQLite file or a fresh PostgreSQL database (see conftest).
    env = {"KENSA_DATABASE_URL": database_url}
    assert kensa(tmp_path, "db", "upgrade", **env).returncode == 0
    created = kensa(tmp_path, "users", "create", "pg@example.test", "--credits", "5", **env)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1].startswith("kg_")
    granted = kensa(tmp_path, "credits", "grant", "pg@example.test", "7", **env)
    assert granted.returncode == 0 and "total 12" in granted.stdout


async def test_serve_links_media_on_the_port_it_serves_answers_preflights_and_stops_cleanly(
        tmp_path: Path) -> None:
    # given a gateway started as an operator would, without KENSA_PUBLIC_URL or KENSA_CORS_ORIGINS
    key = kensa(tmp_path, "users", "create", "m@example.test", "--credits", "10").stdout.strip().splitlines()[-1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "KENSA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
           "KENSA_MEDIA_DIR": str(tmp_path / "media"), "KENSA_LOCAL_GENERATION_SECONDS": "2",
           "KENSA_CLAIM_INTERVAL_SECONDS": "0.1", "KENSA_POLL_INTERVAL_SECONDS": "0.2"}
    env.pop("KENSA_PUBLIC_URL", None)
    proc = _serve(port, env)
    headers = {"Authorization": f"Bearer {key}"}
    body = {"prompt": "harbour at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}
    try:
        await wait_ready(url, proc)  # type: ignore[arg-type]
        async with httpx.AsyncClient(base_url=url) as client:
            # a CORS preflight gets CORS's answer (no origin allowed), not the GraphQL view's 405
            preflight = await client.options("/graphql", headers={
                "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
            assert preflight.status_code == 204 and "access-control-allow-origin" not in preflight.headers
            # when a video completes, its links point at the port being served
            first = (await client.post("/api/v1/video/generate", json=body, headers=headers)).json()["data"]
            video = await _until(client, first["uuid"], headers, "COMPLETED")
            assert video["videoUrl"].startswith(f"{url}/media/"), video
            assert (await client.get(video["videoUrl"])).status_code == 200
            # and the gateway is stopped while another is rendering
            second = (await client.post("/api/v1/video/generate", json=body, headers=headers)).json()["data"]
            await _until(client, second["uuid"], headers, "GENERATING")
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    # then it stops without a traceback or the resource tracker's "leaked semaphore objects" warning
    assert proc.returncode in (0, -signal.SIGTERM), output  # uvicorn re-raises the signal once it is done
    assert "leaked" not in output and "Traceback" not in output, output
    # and every line was written, in the order logged, up to uvicorn's last
    written = output.strip().splitlines()
    assert "Finished server process" in written[-1], written[-3:]
    stamps = [line.split(" ", 1)[0] for line in written if not line.startswith(" ")]
    assert stamps == sorted(stamps) and all(stamp.endswith("Z") for stamp in stamps), stamps
    assert any("UPLOADING -> COMPLETED" in line for line in written)


def _serve(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "kensa_gql", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def _until(client: httpx.AsyncClient, uuid: str, headers: dict[str, str], status: str) -> dict[str, Any]:
    for _ in range(300):
        video: dict[str, Any] = (await client.get(f"/api/v1/video/{uuid}", headers=headers)).json()["data"]
        if video["status"] == status:
            return video
        assert video["status"] not in ("FAILED", "COMPLETED"), video
        await asyncio.sleep(0.1)
    raise AssertionError(f"video {uuid} never became {status}")
