"""The HTTP figures: every server up at once, figures run round-robin so drift hits them alike.

Each round runs every figure once (its baseline included); a figure's ratio in a round is its
req/s divided by its baseline's req/s in that same round, and the reported ratio is the median
over rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import load
from bench.servers import Server

Check = Callable[[int, bytes], None]


@dataclass
class HttpFigure:
    name: str
    server: str          # which running server answers it
    target: load.Target
    connections: int
    baseline: str        # the figure its ratio is taken against ("" for a baseline itself)
    check: Check | None = None
    what: str = ""
    floor: str = ""      # a second figure it is compared with (PostgreSQL: the bare asyncpg endpoint)


def summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def preflight(figure: HttpFigure, server: Server) -> None:
    """Send the figure's request once and check the answer, so a broken figure fails loudly."""
    import httpx

    t = figure.target
    path = t.paths[0] if t.paths else t.path
    body = t.bodies[0] if t.bodies else t.body
    r = httpx.request(t.method, server.url + path, headers=t.headers, content=body, timeout=30)
    if r.status_code >= 400:
        raise RuntimeError(f"{figure.name}: {t.method} {path} answered {r.status_code}: {r.text[:500]}")
    if figure.check is not None:
        figure.check(r.status_code, r.content)


def run_rounds(figures: list[HttpFigure], servers: dict[str, Server], *, rounds: int, duration: float,
               warmup: float, tool: str, workdir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    for figure in figures:
        preflight(figure, servers[figure.server])
    runs: dict[str, list[dict[str, Any]]] = {f.name: [] for f in figures}
    # Counted so the generate figure's ledger check knows every request that was accepted.
    warm: dict[str, list[dict[str, Any]]] = {f.name: [{"requests": 1, "non2xx": 0}] for f in figures}
    if warmup > 0:
        for figure in figures:
            warm[figure.name].append(load.run(servers[figure.server].url, figure.target,
                                              connections=figure.connections, duration=warmup, tool=tool,
                                              workdir=workdir, name=figure.name))
    for rnd in range(rounds):
        for figure in figures:
            server = servers[figure.server]
            cpu = server.cpu_seconds()
            result = load.run(server.url, figure.target, connections=figure.connections,
                              duration=duration, tool=tool, workdir=workdir, name=figure.name)
            # Server CPU per request: steadier than req/s when other work shares the machine.
            result["cpu_us"] = (server.cpu_seconds() - cpu) * 1e6 / max(result["requests"], 1)
            runs[figure.name].append(result)
            log(f"  round {rnd + 1}/{rounds} {figure.name:<22} {result['rps']:9.0f} req/s  "
                f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms  {result['cpu_us']:6.0f} us CPU/req")
    out: dict[str, Any] = {}
    for figure in figures:
        rs = runs[figure.name]
        entry: dict[str, Any] = {
            "what": figure.what, "connections": figure.connections, "baseline": figure.baseline or None,
            "rps": summary([r["rps"] for r in rs]), "p50_ms": summary([r["p50_ms"] for r in rs]),
            "p99_ms": summary([r["p99_ms"] for r in rs]), "cpu_us_per_request": summary([r["cpu_us"] for r in rs]),
            "non2xx": sum(r["non2xx"] for r in rs),
            "socket_errors": sum(r["errors"] for r in rs), "tool": rs[0]["tool"], "rounds": len(rs),
            "duration_s": duration,
            "accepted": sum(r["requests"] - r["non2xx"] for r in [*rs, *warm[figure.name]]),
            "per_round_rps": [r["rps"] for r in rs],
        }
        if figure.baseline:
            base = runs[figure.baseline]
            ratios = [r["rps"] / b["rps"] for r, b in zip(rs, base, strict=True)]
            entry["ratio"] = summary(ratios)
            entry["per_round_ratio"] = ratios
            entry["cpu_ratio"] = summary([b["cpu_us"] / r["cpu_us"] for r, b in zip(rs, base, strict=True)])
        else:
            entry["ratio"] = {"min": 1.0, "median": 1.0, "max": 1.0}
        if figure.floor:
            # 0 when the floor answered nothing in a round (seconds-long --quick rounds on a busy machine)
            floors = [r["rps"] / f["rps"] if f["rps"] else 0.0 for r, f in zip(rs, runs[figure.floor], strict=True)]
            entry["floor"] = figure.floor
            entry["floor_ratio"] = summary(floors)
            entry["per_round_floor_ratio"] = floors
        out[figure.name] = entry
    return out
