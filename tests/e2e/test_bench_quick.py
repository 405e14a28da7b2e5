"""The benchmark suite keeps working: ``python -m bench --quick`` prints every figure with its ratio.

Benchmarks are not timed tests: nothing here checks a speed, only that each figure was measured
beside its baseline, with no failed requests and an exact ledger after the generate figure.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HTTP_FIGURES = ("baseline", "rest-read", "graphql-read", "graphql-list", "baseline@16", "rest-read@16",
                "graphql-read@16", "generate")


def test_the_quick_suite_prints_every_figure_with_a_ratio(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=110, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    table = run.stdout.split("\nresults (", 1)[1]
    for name in HTTP_FIGURES:
        line = re.search(rf"^{re.escape(name)} .*ratio (\d+\.\d+)", table, re.M)
        assert line is not None and float(line.group(1)) > 0, f"{name} missing:\n{table}"
    assert re.search(r"^fanout .*N=\d+: p50 \d+ ms, p99 min / median / max", table, re.M), table
    assert re.search(r"ratio p99 \d+\.\d+, ratio KB \d+\.\d+", table), table
    assert "ledger EXACT" in table, table
    figures = json.loads(out.read_text())["figures"]
    assert set(HTTP_FIGURES) <= set(figures) and any(k.startswith("fanout@") for k in figures)
    assert all(figures[name]["non2xx"] == 0 and figures[name]["socket_errors"] == 0 for name in HTTP_FIGURES)


# The PostgreSQL mode's own parts (its floor, the floor ratios, generate against SQLite) in few
# figures: the GraphQL and latency figures are the same code as in the SQLite run above.
PG_FIGURES = ("baseline", "floor", "rest-read", "generate", "generate-sqlite")


def test_the_postgres_mode_reports_every_figure_against_the_asyncpg_floor(tmp_path: Path,
                                                                        postgres_databases: object) -> None:
    # the fixture checks PostgreSQL is up (skips on a laptop without it, fails under CI=true)
    out = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "-m", "bench", "baseline", "rest-read", "generate", "--quick",
                          "--database", "postgres", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=150, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    table = run.stdout.split("\nresults (", 1)[1]
    for name in PG_FIGURES:
        assert re.search(rf"^{re.escape(name)} .*ratio (\d+\.\d+)", table, re.M), f"{name} missing:\n{table}"
    for name in ("rest-read", "generate"):
        assert re.search(rf"^{re.escape(name)} .*ratio \d+\.\d+ \(.*\) +\d+\.\d+ \(", table, re.M), table
    assert table.count("ledger EXACT") == 2, table
    figures = json.loads(out.read_text())["figures"]
    assert figures["rest-read"]["floor"] == "floor"
    assert figures["generate"]["floor"] == "generate-sqlite"
    assert all(figures[name]["non2xx"] == 0 and figures[name]["socket_errors"] == 0 for name in PG_FIGURES)


def test_the_python_load_generator_stands_in_for_wrk(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "bench", "baseline", "rest-read", "--quick", "--load", "python",
                          "--out", str(tmp_path / "results.json")], cwd=ROOT, capture_output=True, text=True,
                         timeout=90, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "load generator python" in run.stdout
    assert re.search(r"^rest-read .*ratio \d+\.\d+", run.stdout, re.M), run.stdout
    figures = json.loads((tmp_path / "results.json").read_text())["figures"]
    assert figures["rest-read"]["tool"] == "python" and figures["rest-read"]["non2xx"] == 0


def test_the_idle_streams_figure_reports_sse_beside_websocket_subscribers(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "-m", "bench", "idle-streams", "--quick", "--streams", "20", "--out",
                          str(out)], cwd=ROOT, capture_output=True, text=True, timeout=110, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    table = run.stdout.split("\nresults (", 1)[1]
    assert re.search(r"^idle-streams +N=20: SSE -?\d+\.\d KB/stream, WebSocket subscriber -?\d+\.\d KB/stream; "
                     r"ratio -?\d+\.\d+", table, re.M), table
    figure = json.loads(out.read_text())["figures"]["idle-streams@20"]
    assert [r["rss_after_kb"] > 0 for kind in ("sse", "websocket") for r in figure[kind]["rounds"]] == [True, True]
