"""The operator's command line, run as a real process: exact forms, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


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


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    assert kensa(tmp_path, "db", "upgrade").returncode == 0
    assert kensa(tmp_path, "db", "upgrade").returncode == 0


def test_the_cli_works_on_either_database(tmp_path: Path, database_url: str) -> None:
    # database_url is a fresh SQLite file or a fresh PostgreSQL database (see conftest).
    env = {"KENSA_DATABASE_URL": database_url}
    assert kensa(tmp_path, "db", "upgrade", **env).returncode == 0
    created = kensa(tmp_path, "users", "create", "pg@example.test", "--credits", "5", **env)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1].startswith("kg_")
    granted = kensa(tmp_path, "credits", "grant", "pg@example.test", "7", **env)
    assert granted.returncode == 0 and "total 12" in granted.stdout
