"""Real gateway processes for scale-out tests: ``kensa-gql serve`` replicas and ``kensa-gql worker``s."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from kensa_gql.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a process needs to join the deployment ``settings`` describes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENSA_")}
    env.update({
        "KENSA_DATABASE_URL": settings.database_url,
        "KENSA_BROADCAST_URL": settings.broadcast_url,
        "KENSA_MEDIA_DIR": str(settings.media_dir),
        "KENSA_LOCAL_GENERATION_SECONDS": str(settings.local_generation_seconds),
        "KENSA_POLL_INTERVAL_SECONDS": str(settings.poll_interval_seconds),
        "KENSA_CLAIM_INTERVAL_SECONDS": str(settings.claim_interval_seconds),
        "KENSA_LEASE_SECONDS": str(settings.lease_seconds),
        "KENSA_CLAIM_BATCH": str(settings.claim_batch),
        "KENSA_MAX_RUNNING_TASKS": str(settings.max_running_tasks),
        "KENSA_MAX_ACTIVE_VIDEOS_PER_USER": str(settings.max_active_videos_per_user),
        "KENSA_AUTH_CACHE_SECONDS": "0",
        "KENSA_LOG_LEVEL": "INFO",
        # As in-process servers (tests/conftest.py): limits on, budgets no test reaches.
        **{name: "1000000000" for name in ("KENSA_RATE_LIMIT_GENERATE_PER_MINUTE",
                                           "KENSA_RATE_LIMIT_REQUESTS_PER_MINUTE",
                                           "KENSA_RATE_LIMIT_ANONYMOUS_PER_MINUTE")},
    })
    env.update(extra)
    return env


@dataclass(frozen=True)
class ProcessId:
    """A process as /proc shows it; its start time tells it apart from a later one given the same pid."""

    pid: int
    started: int

    @staticmethod
    def _stat(pid: int) -> tuple[str, int, int] | None:
        """(state, parent pid, start time) of ``pid`` from /proc, or None when there is no such process."""
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return None
        fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
        return fields[0], int(fields[1]), int(fields[19])

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        stat = cls._stat(pid)
        return None if stat is None else cls(pid, stat[2])

    def alive(self) -> bool:
        stat = self._stat(self.pid)
        # A zombie has ended: it only waits for a parent (init, in a container perhaps not) to reap it.
        return stat is not None and stat[2] == self.started and stat[0] not in ("Z", "X")

    def command(self) -> str:
        try:
            return Path(f"/proc/{self.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            return ""


def descendants(pid: int) -> list[ProcessId]:
    """Every live process under ``pid`` (children, their children, ...), from one scan of /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := ProcessId._stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat[1]
    found: list[ProcessId] = []
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found.extend(p for child in frontier if (p := ProcessId.of(child)) is not None and p.alive())
    return found


def wait_gone(processes: list[ProcessId], timeout: float) -> list[ProcessId]:
    """Wait up to ``timeout`` seconds for ``processes`` to end; return the ones still running."""
    deadline = time.monotonic() + timeout
    while (left := [p for p in processes if p.alive()]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def kill_and_check_orphans(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGKILL ``process`` and fail if any process it started outlives it by ``timeout`` seconds."""
    before = descendants(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    left = wait_gone(before, timeout)
    for orphan in left:  # clean up before failing, so one failure does not leak into later tests
        os.kill(orphan.pid, signal.SIGKILL)
    assert not left, f"still running {timeout} s after their parent was killed: {[p.command() for p in left]}"


class GatewayProcess:
    """One ``python -m kensa_gql ...`` subprocess, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kensa_gql", *self.args], env=self.env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.log())
            if found:
                return found
            self._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never logged {pattern!r}:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as when a machine dies; what it started must end by itself."""
        if self.process is not None and self.process.poll() is None:
            kill_and_check_orphans(self.process)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


class Replica(GatewayProcess):
    """``kensa-gql serve --no-worker`` on a free loopback port (``worker=True``: with its runner)."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, *, worker: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["serve", *([] if worker else ["--no-worker"]), "--host", "127.0.0.1", "--port", str(self.port)]
        super().__init__(name, args, {**env, "KENSA_PUBLIC_URL": f"http://127.0.0.1:{self.port}"}, log_dir)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            self._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never became ready:\n{self.log()[-3000:]}")
            time.sleep(0.1)


class Worker(GatewayProcess):
    """``kensa-gql worker``; ``owner`` is the lease owner it writes into the tasks table."""

    owner = ""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        super().__init__(name, ["worker"], env, log_dir)

    def wait_ready(self, timeout: float = 60) -> None:
        self.owner = self.wait_for_log(r"worker (\S+) running", timeout).group(1)
