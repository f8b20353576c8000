"""`python -m tests.admin`: write the console's screenshots into docs/ (see `screenshots.py`)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path


def run() -> int:
    # The screenshots share the test suite's helpers, which import each other from tests/.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from .screenshots import DOCS, take

    with tempfile.TemporaryDirectory() as workdir:
        for path in asyncio.run(take(DOCS, Path(workdir))):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
