"""The examples of docs/clients.md run as written, against a real server,
and print what the page says they print."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path

from server.client import Harness

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "clients.md"
#: Seconds an example may take.
EXAMPLE_TIMEOUT = 30.0


def blocks(language: str) -> list[str]:
    """The fenced blocks of `language` in docs/clients.md, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", DOCS.read_text(), re.M | re.S)


def printed(text: str) -> list[str]:
    """Lines of output, with the time stamps made one."""
    return re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z", "<time>", text).strip().splitlines()


async def run_example(harness: Harness, *command: str, cwd: Path | None = None) -> list[str]:
    """Run an example as a seat user of a fresh pool of 2 seats; what it printed."""
    domain = await harness.new_domain()
    member = await domain.seat_user(await domain.pool(2))
    env = os.environ | {"DEVICE_URL": harness.server.ws_url, "DEVICE_TOKEN": member.token}
    process = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(EXAMPLE_TIMEOUT):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return printed(out.decode())


async def test_the_python_example_prints_what_the_docs_say(harness: Harness) -> None:
    example = blocks("python")[0]
    output = blocks("text")[0]
    got = await run_example(harness, sys.executable, "-c", example)
    assert got == printed(output), "\n".join(got)


async def test_the_node_example_prints_what_the_docs_say(harness: Harness, tmp_path: Path) -> None:
    """As `device.mjs` beside the module, with `ws` (installed by `npm ci --prefix tests/js`)."""
    example = blocks("js")[0]
    output = blocks("text")[1]
    (tmp_path / "device.mjs").write_text(example)
    shutil.copy(REPO / "static" / "client" / "presence-client.js", tmp_path)
    (tmp_path / "node_modules").symlink_to(REPO / "tests" / "js" / "node_modules")
    got = await run_example(harness, "node", "device.mjs", cwd=tmp_path)
    assert got == printed(output), "\n".join(got)
