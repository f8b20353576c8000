"""`python -m bench.usage_series` on a few days, so that it cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def test_a_few_days_are_timed() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.usage_series", "--days", "3", "--repeat", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usage_series, 3 daily steps:" in done.stdout
    assert "usage_series, 2,000 hourly steps:" in done.stdout
    assert "usage, 3 days:" in done.stdout
