"""`python -m tests.reliability`: the long runs; see `longrun.py`."""

from __future__ import annotations

import sys
from pathlib import Path


def run() -> int:
    # The runs share the test suite's helpers, which import each other from tests/.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from .longrun import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
