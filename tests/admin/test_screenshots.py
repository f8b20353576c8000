"""The screenshot script still works: both pictures, 1280x800, from the demo."""

from __future__ import annotations

import struct
from pathlib import Path

from .screenshots import take


async def test_the_screenshots_are_taken_at_1280_by_800(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    taken = await take(out, tmp_path / "server")
    assert [path.name for path in taken] == ["admin-users.png", "admin-usage.png"]
    for path in taken:
        head = path.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n", path
        assert struct.unpack(">II", head[16:24]) == (1280, 800), path
