"""Driving a server from the load core: wrk when installed, else bench.pyload, each its own process."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.servers import LOAD_CORE, ROOT, pin_to


@dataclass
class Target:
    """What one figure sends: a fixed request, or one of ``paths`` / ``bodies`` at random each time,
    and with ``keys`` one of those API keys at random as its bearer token (requests of many users)."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    paths: list[str] | None = None
    bodies: list[str] | None = None
    keys: list[str] | None = None


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(text: str) -> str:
    level = "=" * 4
    assert f"]{level}]" not in text
    return f"[{level}[{text}]{level}]"


def write_lua(target: Target, path: Path) -> Path:
    lines = [f"wrk.method = {_lua_string(target.method)}", f"wrk.path = {_lua_string(target.path)}"]
    lines += [f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in target.headers.items()]
    if target.body is not None:
        lines.append(f"wrk.body = {_lua_string(target.body)}")
    items = target.paths or target.bodies
    if items:
        items_file = path.with_suffix(".items")
        items_file.write_text("\n".join(items) + "\n")
        lines += ["local items = {}", f"for line in io.lines({_lua_string(str(items_file))}) do",
                  "  items[#items + 1] = line", "end", "math.randomseed(12345)", "request = function()",
                  "  local item = items[math.random(#items)]"]
        lines.append("  return wrk.format(nil, item)" if target.paths else
                     "  return wrk.format(nil, nil, nil, item)")
        lines.append("end")
    elif target.keys:
        lines += ["local keys = {" + ", ".join(_lua_string(k) for k in target.keys) + "}",
                  "math.randomseed(12345)", "request = function()", "  local headers = {}",
                  "  for k, v in pairs(wrk.headers) do headers[k] = v end",
                  '  headers["Authorization"] = "Bearer " .. keys[math.random(#keys)]',
                  "  return wrk.format(nil, nil, headers, nil)", "end"]
    path.write_text("\n".join(lines) + "\n")
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def parse_wrk(out: str) -> dict[str, Any]:
    def metric(pattern: str) -> re.Match[str]:
        m = re.search(pattern, out, re.M)
        if m is None:
            raise RuntimeError(f"unexpected wrk output:\n{out}")
        return m

    result: dict[str, Any] = {"tool": "wrk", "rps": float(metric(r"Requests/sec:\s+([\d.]+)").group(1)),
                              "requests": int(metric(r"(\d+) requests in").group(1))}
    for p in ("50", "90", "99"):
        value, unit = metric(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m)\s*$").groups()
        result[f"p{p}_ms"] = float(value) * _UNITS[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["errors"] = sum(int(g) for g in errors.groups()) if errors else 0
    return result


def run(base_url: str, target: Target, *, connections: int, duration: float, tool: str, workdir: Path,
        name: str) -> dict[str, Any]:
    """One measurement: ``connections`` keep-alive connections for ``duration`` seconds."""
    if tool == "wrk":
        lua = write_lua(target, workdir / f"{name}.lua")
        seconds = max(1, round(duration))
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s", "-s", str(lua),
                base_url + target.path]
        proc = subprocess.run(argv, capture_output=True, text=True, preexec_fn=lambda: pin_to(LOAD_CORE),
                              timeout=seconds + 60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed: {proc.stderr}")
        return parse_wrk(proc.stdout)
    host, port = base_url.removeprefix("http://").split(":")
    spec = {"host": host, "port": int(port), "method": target.method, "path": target.path,
            "headers": target.headers, "body": target.body, "paths": target.paths, "bodies": target.bodies,
            "keys": target.keys,
            "connections": connections, "duration": duration}
    spec_file = workdir / f"{name}.json"
    spec_file.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, "-m", "bench.pyload", str(spec_file)], capture_output=True, text=True,
                          cwd=ROOT, preexec_fn=lambda: pin_to(LOAD_CORE),
                          timeout=duration + 90, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the python load generator failed: {proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result
