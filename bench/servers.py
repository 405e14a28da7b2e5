"""Server processes: started pinned to the server core, waited for, measured, stopped by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE = 0
LOAD_CORE = 1


def pinning_possible() -> bool:
    return hasattr(os, "sched_setaffinity") and {SERVER_CORE, LOAD_CORE} <= os.sched_getaffinity(0)


def pin_to(core: int) -> None:
    """preexec_fn: pin the child to one core (server and load generator never share one)."""
    if pinning_possible():
        os.sched_setaffinity(0, {core})
    with contextlib.suppress(ValueError, OSError):
        import resource
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One uvicorn process (one worker, uvloop + httptools, no access log), pinned to core 0."""

    def __init__(self, name: str, argv: list[str], *, env: Mapping[str, str] | None = None,
                 log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._argv = [a.replace("{port}", str(self.port)) for a in argv]
        self._env = {**os.environ, **(env or {})}
        self.log_path = log_dir / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(self._argv, cwd=ROOT, env=self._env, stdout=log, stderr=subprocess.STDOUT,
                                          preexec_fn=lambda: pin_to(SERVER_CORE))
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up; see {self.log_path}:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not listen within {timeout}s") from None
                time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def rss_kb(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0])

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def uvicorn_argv(app: str) -> list[str]:
    """The baseline's command line: the same uvicorn settings the gateway runs with."""
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}", "--loop", "uvloop",
            "--http", "httptools", "--ws", "websockets-sansio", "--ws-per-message-deflate", "false",
            "--log-level", "warning", "--no-access-log", "--backlog", "4096"]


def gateway_argv(*, worker: bool = False) -> list[str]:
    argv = [sys.executable, "-m", "bench.apps.gateway", "--port", "{port}"]
    return argv if worker else [*argv, "--no-worker"]


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[None]:
    try:
        for server in servers:
            server.start()
        yield
    finally:
        for server in servers:
            server.stop()
