"""The node as ``python -m presence serve`` runs it, with a census of its memory on demand.

    python -m bench.census --out DIR [--tracemalloc FRAMES] -- serve --database ... --port ...

runs :func:`presence.cli.main` on the arguments after ``--``, unchanged, in a
process that answers ``SIGUSR1`` by writing ``DIR/census-<n>.json``: the
objects the collector tracks (``gc.get_objects()``), and the untracked ones
they refer to (strings, bytes, numbers), counted and sized with
``sys.getsizeof`` per type, with the resident memory (``VmRSS``) beside them.
With ``--tracemalloc``, allocations are traced from the start and each census
also gives the bytes per source line grown since the census before it. Each
census also gives the collector's passes since start, by generation (how
many, their total and longest time), and ``--gc-threshold`` runs the node
with another young-generation threshold than its own.

The runner takes a census before the hold's first session and one at its
last step (:func:`take`); the difference, divided by the sessions opened, is
where a held session's memory goes. Nothing is added to the server: the
census is this process's signal handler, run on the node's own thread
between two callbacks of its event loop, so the loop stops while it counts
(seconds at 100,000 sessions); the runner asks for one only outside the
measured windows. Tracing allocations slows the node and grows its memory,
so a run with ``--tracemalloc`` measures where memory goes, not how much.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

#: Source lines reported per census with ``--tracemalloc``.
TOP_LINES = 25
#: Seconds the runner waits for a census to be written.
CENSUS_TIMEOUT = 300.0


def _type_name(obj: object) -> str:
    kind = type(obj)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def count_objects() -> dict[str, tuple[int, int]]:
    """Per type name: how many objects and their bytes (``sys.getsizeof``), for the
    tracked objects outside the frozen generation and the untracked objects they
    refer to directly (each once)."""
    tracked = gc.get_objects()
    seen = {id(obj) for obj in tracked}
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for obj in tracked:
        name = _type_name(obj)
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
        for ref in gc.get_referents(obj):
            if not gc.is_tracked(ref) and id(ref) not in seen:
                seen.add(id(ref))
                name = _type_name(ref)
                counts[name] += 1
                sizes[name] += sys.getsizeof(ref)
    del tracked
    return {name: (counts[name], sizes[name]) for name in counts}


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Collections:
    """The collector's passes since start, by generation: how many, their total
    and longest time (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.passes = {generation: [0, 0.0, 0.0] for generation in range(3)}

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        took = time.perf_counter() - self.started
        figures = self.passes[info["generation"]]
        figures[0] += 1
        figures[1] += took
        figures[2] = max(figures[2], took)

    def figures(self) -> dict[str, dict[str, float]]:
        return {str(generation): {"count": count, "seconds": total, "longest": longest}
                for generation, (count, total, longest) in self.passes.items()}  # fmt: skip


class Census:
    """Writes a census to ``out`` on each call, numbered from 0."""

    def __init__(self, out: Path, collections: Collections) -> None:
        self.out = out
        self.collections = collections
        self.taken = 0

    def __call__(self, signum: int = 0, frame: FrameType | None = None) -> None:
        started = time.monotonic()
        collections = self.collections.figures()  # the node's, before the census's own
        gc.collect()  # what is garbage is not a session's; timed, as a full collection
        collected = time.monotonic()
        census: dict[str, Any] = {
            "collections": collections,
            "collect_seconds": collected - started,
            "rss_kib": rss_kib(),
            "objects": count_objects(),
        }
        if tracemalloc.is_tracing():
            # The snapshot before waits in a file, not among the objects counted.
            kept = self.out / "tracemalloc.snapshot"
            snapshot = tracemalloc.take_snapshot()
            census["traced_bytes"] = tracemalloc.get_traced_memory()[0]
            if self.taken:
                grown = snapshot.compare_to(tracemalloc.Snapshot.load(str(kept)), "lineno")
                census["lines"] = [(str(stat.traceback[0]), stat.size_diff, stat.count_diff)
                                   for stat in grown[:TOP_LINES]]  # fmt: skip
            snapshot.dump(str(kept))
            del snapshot
        census["seconds"] = time.monotonic() - started
        path = self.out / f"census-{self.taken}.json"
        path.with_suffix(".tmp").write_text(json.dumps(census))
        path.with_suffix(".tmp").rename(path)  # whole, or not there
        self.taken += 1


def take(pid: int, out: Path) -> dict[str, Any]:
    """Ask the node ``pid`` for its next census and wait for it."""
    path = out / f"census-{len(list(out.glob('census-*.json')))}.json"
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + CENSUS_TIMEOUT
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no census from the node in {CENSUS_TIMEOUT:.0f} s")
        time.sleep(0.1)
    census: dict[str, Any] = json.loads(path.read_text())
    return census


def per_session(before: dict[str, Any], after: dict[str, Any], sessions: int) -> dict[str, Any]:
    """What ``sessions`` added between two censuses, per session: objects and bytes
    per type (the types that grew by at least one object per 100 sessions, largest
    first), their totals, the resident memory, and the traced lines if any."""
    grown = []
    for name, (count, size) in after["objects"].items():
        count_before, size_before = before["objects"].get(name, (0, 0))
        if count - count_before >= sessions / 100:
            grown.append((name, (count - count_before) / sessions, (size - size_before) / sessions))
    grown.sort(key=lambda row: -row[2])
    figures: dict[str, Any] = {
        "sessions": sessions,
        "rss_bytes": (after["rss_kib"] - before["rss_kib"]) * 1024 / sessions,
        "object_bytes": sum(size for _, _, size in grown),
        "objects": sum(count for _, count, _ in grown),
        "tracked_objects": sum(count for name, count, _ in grown if name not in _UNTRACKED_KINDS),
        "types": grown,
        "census_seconds": after["seconds"],
        # A full collection with the sessions held (the census's own, before counting).
        "full_collection_seconds": after["collect_seconds"],
    }
    if "lines" in after:
        figures["traced_bytes"] = (after["traced_bytes"] - before["traced_bytes"]) / sessions
        figures["lines"] = [(line, size / sessions, count / sessions)
                            for line, size, count in after["lines"]]  # fmt: skip
    return figures


#: Types whose objects the collector never tracks (their count is of those found
#: as referents, not in ``gc.get_objects()``).
_UNTRACKED_KINDS = frozenset({"str", "bytes", "int", "float", "bool", "NoneType"})


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="python -m bench.census", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="where censuses are written")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                        help="trace allocations, FRAMES deep (0: do not)")  # fmt: skip
    parser.add_argument("--gc-threshold", type=int, metavar="N",
                        help="the node's young-generation threshold, if not its own")  # fmt: skip
    options = parser.parse_args(argv[:split])
    if options.tracemalloc:
        tracemalloc.start(options.tracemalloc)
    collections = Collections()
    gc.callbacks.append(collections)
    signal.signal(signal.SIGUSR1, Census(options.out, collections))
    from presence import cli

    if options.gc_threshold:
        cli.GC_THRESHOLD = options.gc_threshold
    cli.main(argv[split + 1 :])


if __name__ == "__main__":
    main()
