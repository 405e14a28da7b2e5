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


def test_the_python_load_generator_stands_in_for_wrk(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "bench", "baseline", "rest-read", "--quick", "--load", "python",
                          "--out", str(tmp_path / "results.json")], cwd=ROOT, capture_output=True, text=True,
                         timeout=90, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "load generator python" in run.stdout
    assert re.search(r"^rest-read .*ratio \d+\.\d+", run.stdout, re.M), run.stdout
    figures = json.loads((tmp_path / "results.json").read_text())["figures"]
    assert figures["rest-read"]["tool"] == "python" and figures["rest-read"]["non2xx"] == 0
