"""``python -m bench.writer URL RATE``: commits RATE progress updates a second to a SQLite bench
database, as a worker process would, until it is stopped.

With ``--writes-per-second`` the read figures run beside it: every commit empties the read
memo of the gateway's connections (``KENSA_DB_READ_MEMO``), so the figures show what reads cost
while videos are being generated, not only on a database nobody writes to.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import time


def main(url: str, rate: float) -> None:
    if not url.startswith("sqlite") or ":///" not in url:
        raise SystemExit("bench.writer: SQLite database files only")
    conn = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None, timeout=5)
    ids = [row[0] for row in conn.execute("SELECT id FROM videos WHERE deleted_at_ms IS NULL")]
    rng = random.Random(0)
    interval = 1.0 / rate
    due = time.monotonic()
    while True:
        conn.execute("UPDATE videos SET progress = (progress + 1) % 100 WHERE id = ?", (rng.choice(ids),))
        due += interval
        time.sleep(max(0.0, due - time.monotonic()))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
