"""A node raises its limit of open files to the most it may: each device holds a socket."""

from __future__ import annotations

import resource
import subprocess
import sys

from servers import REPO


def test_the_soft_limit_of_open_files_is_raised_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    script = (
        "import resource\n"
        "from presence.cli import raise_open_files_limit\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit("
        "resource.RLIMIT_NOFILE)[1]))\n"
        "print(raise_open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    said, now = (int(n) for n in done.stdout.split())
    expected = hard if hard != resource.RLIM_INFINITY else said
    assert said == now == expected and now > 256, done.stdout
