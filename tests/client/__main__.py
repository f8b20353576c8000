"""`python -m tests.client`: the herd of clients through a restart, bigger; see `herd.py`."""

from __future__ import annotations

import sys
from pathlib import Path


def run() -> int:
    # The herd shares the test suite's helpers, which import each other from tests/.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from .herd import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
