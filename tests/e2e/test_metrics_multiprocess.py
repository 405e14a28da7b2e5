"""PROMETHEUS_MULTIPROC_DIR: what several processes count, one /metrics serves summed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

COUNT = "from kensa_gql import metrics; metrics.task_transition('COMPLETED'); metrics.credits_settled({n})"
SCRAPE = ("import sys; from prometheus_client import generate_latest; from kensa_gql.api.metrics import _registry; "
          "sys.stdout.write(generate_latest(_registry()).decode())")


def test_two_processes_counts_are_served_summed_by_a_third(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", COUNT.format(n=n)], env=env, check=True, timeout=60)
    text = subprocess.run([sys.executable, "-c", SCRAPE], env=env, check=True, timeout=60,
                          capture_output=True, text=True).stdout
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("kensa_task_transitions_total", (("status", "COMPLETED"),))] == 2
    assert samples[("kensa_credits_settled_total", ())] == 7
